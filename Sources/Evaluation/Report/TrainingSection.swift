import Checkpoint
import Foundation

// The training section: dev accuracy, convergence (the stated rule), time and throughput, loss and dev curves.

extension Report {
    /// Whether a run converged, by the rule the report states ("not still rising"): the best dev accuracy in
    /// the last 20% of the steps is no more than 1 point (0.01) above the best before that window, i.e. the
    /// curve had reached its level before the last fifth. A run that peaked and then declined is converged
    /// (more steps cannot help it; `pastPeak` says by how much it fell). Nil when no evaluation falls inside
    /// the window or none before it (train with `--eval-every`).
    public static func converged(_ log: [StepLog], steps: Int) -> Bool? {
        let evals = log.compactMap { e in e.devAccuracy.map { (e.step, $0) } }
        let inWindow = { (step: Int) in Double(step) > 0.8 * Double(steps) }
        guard let late = evals.filter({ inWindow($0.0) }).map(\.1).max(),
            let early = evals.filter({ !inWindow($0.0) }).map(\.1).max()
        else { return nil }
        return late <= early + 0.01
    }

    /// How far the run's last dev evaluation is below its best (0 at the peak; nil without evaluations).
    public static func pastPeak(_ log: [StepLog]) -> Double? {
        let acc = log.compactMap(\.devAccuracy)
        guard let best = acc.max(), let last = acc.last else { return nil }
        return best - last
    }

    /// The training runs: per task and series, dev accuracy, convergence, time and throughput, the loss
    /// curves and the dev curves.
    static func trainingSection(_ runs: [TrainingRun], into b: inout Builder) throws {
        if !runs.isEmpty {
            b.md += "## Training\n\n"
            let withCurves = runs.contains { r in r.log.contains { $0.devAccuracy != nil } }
            if withCurves {
                b.md += "Converged (\"not still rising\"): the best dev accuracy in the last 20% of the steps is no more than 1 point "
                b.md += "above the best before that window, so the curve had reached its level before the last fifth (– when no "
                b.md += "evaluation falls in that window or before it). A run that peaked and then declined is converged; past peak "
                b.md += "is how far its last dev evaluation is below its best (points, mean ± std over seeds).\n\n"
            }
            var rows: [[String]] = []
            var tj: [JSON] = []
            let tasks = Array(Set(runs.map(\.task))).sorted()
            for task in tasks {
                for name in seriesOrder(runs.filter { $0.task == task }.map(\.name)) {
                    let rs = runs.filter { $0.task == task && $0.name == name }
                    let acc = rs.compactMap(\.metrics.devAccuracy)
                    let secs = rs.map(\.metrics.trainSeconds)
                    let tps = rs.map(\.metrics.tokensPerSecond)
                    let steps = rs.map(\.metrics.steps)
                    let conv = rs.map { converged($0.log, steps: $0.metrics.steps) }
                    var row = [task, name, String(rs.count), steps.map(String.init).first ?? "–", pm(acc), pm(secs, 1), pm(tps, 0)]
                    let peak = rs.compactMap { pastPeak($0.log) }
                    if withCurves {
                        let known = conv.compactMap { $0 }
                        row.insert(known.isEmpty ? "–" : "\(known.filter { $0 }.count) of \(rs.count)", at: 5)
                        row.insert(peak.isEmpty ? "–" : pm(peak.map { 100 * $0 }, 1), at: 6)
                    }
                    rows.append(row)
                    var fields: [(String, JSON)] = [
                        ("task", .string(task)), ("name", .string(name)), ("seeds", .array(rs.map { $0.seed.map(JSON.int) ?? .null })),
                        ("dev_accuracy", stats(acc)), ("train_seconds", stats(secs)), ("tokens_per_second", stats(tps)),
                    ]
                    if withCurves {
                        fields.append(("converged", .array(conv.map { $0.map(JSON.bool) ?? .null })))
                        fields.append(("not_converged", .array(zip(rs, conv).filter { $0.1 == false }.map { .string($0.0.path) })))
                        fields.append(("past_peak", .array(rs.map { pastPeak($0.log).map(JSON.double) ?? .null })))
                    }
                    tj.append(.object(fields))
                }
            }
            var header = ["task", "adapter", "seeds", "steps", "dev accuracy", "training time (s)", "tokens/s"]
            if withCurves {
                header.insert("converged", at: 5)
                header.insert("past peak (points)", at: 6)
            }
            b.md += mdTable(header, rows) + "\n"
            let notConverged = runs.filter { converged($0.log, steps: $0.metrics.steps) == false }
            if !notConverged.isEmpty {
                b.md += "**Not converged:** " + notConverged.map { "`\($0.path)`" }.joined(separator: ", ") + "\n\n"
            }
            // Time: one bar group per task.
            var fig = Figure(title: "Training time", xLabel: "task", yLabel: "seconds (mean over seeds)")
            fig.categories = tasks
            fig.bars = true
            for name in seriesOrder(runs.map(\.name)) {
                var x: [Double] = []
                var y: [Double] = []
                var e: [Double] = []
                for (i, t) in tasks.enumerated() {
                    let secs = runs.filter { $0.task == t && $0.name == name }.map(\.metrics.trainSeconds)
                    if secs.isEmpty { continue }
                    let (m, s) = meanStd(secs)
                    x.append(Double(i))
                    y.append(m)
                    e.append(s)
                }
                fig.series.append(.init(name: name, x: x, y: y, err: e))
            }
            try b.addPlot(fig, "training-time.png", alt: "training time")
            for task in tasks {
                var curve = Figure(title: "Training loss: \(task)", xLabel: "optimizer step", yLabel: "loss (mean over seeds, smoothed)")
                for name in seriesOrder(runs.filter { $0.task == task }.map(\.name)) {
                    let rs = runs.filter { $0.task == task && $0.name == name }
                    var byStep: [Int: [Double]] = [:]
                    for r in rs { for e in r.log { byStep[e.step, default: []].append(e.loss) } }
                    let steps = byStep.keys.sorted()
                    let raw = steps.map { meanStd(byStep[$0]!).0 }
                    // Exponential moving average (0.8) so the CoTo and LoRA curves can be told apart.
                    var ema: [Double] = []
                    var acc = raw.first ?? 0
                    for v in raw {
                        acc = 0.8 * acc + 0.2 * v
                        ema.append(acc)
                    }
                    curve.series.append(.init(name: name, x: steps.map(Double.init), y: ema))
                }
                try b.addPlot(curve, "training-loss-\(slug(task)).png", alt: "training loss on \(task)")
            }
            // Dev curves: every run of the task, its seed in the legend.
            for task in tasks where withCurves {
                var dev = Figure(title: "Dev accuracy: \(task)", xLabel: "optimizer step", yLabel: "dev accuracy")
                for name in seriesOrder(runs.filter { $0.task == task }.map(\.name)) {
                    for r in runs.filter({ $0.task == task && $0.name == name }) {
                        let pts = r.log.compactMap { e in e.devAccuracy.map { (Double(e.step), $0) } }
                        if pts.isEmpty { continue }
                        let mark = converged(r.log, steps: r.metrics.steps) == false ? " (not converged)" : ""
                        dev.series.append(.init(name: "\(name) s\(r.seed.map(String.init) ?? "?")\(mark)", x: pts.map(\.0), y: pts.map(\.1)))
                    }
                }
                if !dev.series.isEmpty { try b.addPlot(dev, "dev-accuracy-\(slug(task)).png", alt: "dev accuracy on \(task)") }
            }
            b.results.append(("training", .array(tj)))
        }
    }
}
