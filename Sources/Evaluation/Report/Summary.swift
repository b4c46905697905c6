import Checkpoint
import Foundation

// The summary: the numbers the paper compares, per task and series (the findings table reads them too).

extension Report {
    /// The numbers the paper compares for one task and series, one value per seed (or pair of seeds).
    struct SeriesFigures {
        var task: String
        var name: String
        var metric: Sweeps.Metric
        var test: [Double] = []
        var mid: [Double] = []
        var barrier: [Double] = []
        var sparse: [Double] = []
        var half: [Double] = []
        var cv: [Double] = []
        var time: [Double] = []
        /// The fewest examples behind one of the accuracy values (nil for perplexity): one example is the
        /// finest difference such a value can show.
        var examples: Int?
    }

    /// A merge method's mean accuracy over the tasks, one value per set of adapters (seed), per series.
    struct MergeFigures {
        var method: String
        var name: String
        var perSet: [Double]
    }

    /// Test accuracy (magnitude sparsity 0, else the merge sweep's `individual`), the interpolation midpoint and
    /// barrier, the score at the highest magnitude sparsity and with every other layer's adapters dropped, the
    /// Shapley spread and the optimizer steps' time per task and series; the merge methods' mean accuracy per series.
    static func figures(_ sweeps: [Joined], _ runs: [TrainingRun]) -> (series: [SeriesFigures], maxSparsity: String?, merges: [MergeFigures]) {
        var keys: [(String, String)] = []
        func add(_ t: String, _ n: String) { if !keys.contains(where: { $0 == (t, n) }) { keys.append((t, n)) } }
        for s in sweeps where s.sweep != "merge" { add(s.task, s.name) }
        for r in runs { add(r.task, r.name) }
        keys.sort { $0.0 != $1.0 ? $0.0 < $1.0 : seriesLess($0.1, $1.1) }
        // Each task's numbers are of its sweeps' metric (accuracy; perplexity for perplexity sweeps).
        func metric(_ t: String) -> Sweeps.Metric { Sweeps.metric(task: sweeps.first { $0.task == t }?.header.settings.task) }
        func prunePoint(_ t: String, _ n: String, _ kind: String, _ value: String) -> [Double] {
            sweeps.filter { $0.sweep == "prune" && $0.task == t && $0.name == n }.flatMap { s in
                s.points.filter { $0.kind == kind && $0.value == value }.compactMap(metric(t).value)
            }
        }
        let prunePoints: [SweepPoint] = sweeps.filter { $0.sweep == "prune" }.flatMap(\.points)
        let sparsities: [String] = prunePoints.filter { $0.kind == "sparsity" }.compactMap(\.value)
        let maxSparsity = sparsities.max { (Double($0) ?? 0) < (Double($1) ?? 0) }
        var series: [SeriesFigures] = []
        for (t, n) in keys {
            let m = metric(t)
            var f = SeriesFigures(task: t, name: n, metric: m)
            f.test = prunePoint(t, n, "sparsity", "0")
            if f.test.isEmpty {
                f.test = sweeps.filter { $0.sweep == "merge" && $0.name == n }.flatMap { s in
                    s.points.filter { $0.method == "individual" && $0.task == t }.compactMap(m.value)
                }
            }
            for s in sweeps where s.sweep == "interpolate" && s.task == t && s.name == n {
                let pts = Sweeps.curve(s.points, m)
                if let p = pts.min(by: { abs($0.0 - 0.5) < abs($1.0 - 0.5) }) { f.mid.append(p.1) }
                if s.complete, let b = Sweeps.barrier(pts, m) { f.barrier.append(b) }
            }
            f.sparse = maxSparsity.map { prunePoint(t, n, "sparsity", $0) } ?? []
            f.half = prunePoint(t, n, "layers", "every-other")
            if m.higherIsBetter {
                f.examples = sweeps.filter { $0.task == t && $0.name == n && $0.sweep != "shapley" }.flatMap { $0.points.compactMap(\.examples) }.min()
            }
            for s in sweeps where s.sweep == "shapley" && s.task == t && s.name == n && s.complete {
                guard let plan = ShapleyPlan(settings: s.header.settings.plan, players: s.header.players?.count ?? 0) else { continue }
                let est = plan.estimate(scored: s.values, value: m.shapleyValue)
                let (mean, sd) = meanStd(est.values)
                if abs(mean) > 1e-12 { f.cv.append(sd / abs(mean)) }
            }
            f.time = runs.filter { $0.task == t && $0.name == n }.map(\.stepSeconds)
            series.append(f)
        }
        var merges: [MergeFigures] = []
        let mergeSweeps = sweeps.filter { $0.sweep == "merge" }
        var methods: [String] = []
        for s in mergeSweeps { for p in s.points { if let x = p.method, !methods.contains(x) { methods.append(x) } } }
        for method in methods {
            for n in seriesOrder(mergeSweeps.map(\.name)) {
                // Mean over tasks within each set of adapters; one value per set (seed).
                let perSet = mergeSweeps.filter { $0.name == n }.compactMap { s -> Double? in
                    let a = s.points.filter { $0.method == method }.compactMap { $0.accuracy }
                    return a.isEmpty ? nil : a.reduce(0, +) / Double(a.count)
                }
                merges.append(MergeFigures(method: method, name: n, perSet: perSet))
            }
        }
        return (series, maxSparsity, merges)
    }

    /// One row per task and series with the numbers the paper compares (`figures`); and the mean multi-task
    /// accuracy per merge method.
    static func summary(_ sweeps: [Joined], _ runs: [TrainingRun]) -> (String, JSON) {
        let (series, maxSparsity, merges) = figures(sweeps, runs)
        guard !series.isEmpty || !merges.isEmpty else { return ("", .null) }
        var rows: [[String]] = []
        var js: [JSON] = []
        for f in series {
            let label = Sweeps.label(f.task, metricName: f.metric.name)
            rows.append([label, f.name, pm(f.test, 3), pm(f.mid, 3), pm(f.barrier, 3), pm(f.sparse, 3), pm(f.half, 3), pm(f.cv, 2), pm(f.time, 1)])
            js.append(
                .object([
                    ("task", .string(f.task)), ("name", .string(f.name)), ("test_accuracy", stats(f.test)), ("interpolation_midpoint", stats(f.mid)),
                    ("barrier", stats(f.barrier)), ("sparsity", maxSparsity.map(JSON.string) ?? .null), ("accuracy_at_sparsity", stats(f.sparse)),
                    ("accuracy_every_other_layer", stats(f.half)), ("shapley_spread", stats(f.cv)), ("step_seconds", stats(f.time)),
                ]))
        }
        var md = "## Summary\n\n"
        // Perplexity tasks show perplexity in the score columns (their task label says so).
        let scoreHeader = series.allSatisfy { $0.metric.name == "accuracy" } ? "test accuracy" : "test score"
        if !series.isEmpty {
            md +=
                mdTable(
                    [
                        "task", "adapter", scoreHeader, "λ=0.5", "barrier",
                        "sparsity \(maxSparsity ?? "–")", "every other layer", "Shapley spread", "training steps (s)",
                    ], rows) + "\n"
        }
        var mj: [JSON] = []
        if !merges.isEmpty {
            let names = seriesOrder(merges.map(\.name))
            var mrows: [[String]] = []
            for method in merges.map(\.method).reduce(into: [String](), { if !$0.contains($1) { $0.append($1) } }) {
                var row = [method]
                for n in names {
                    let perSet = merges.first { $0.method == method && $0.name == n }?.perSet ?? []
                    row.append(pm(perSet, 3))
                    mj.append(.object([("method", .string(method)), ("name", .string(n)), ("mean_accuracy", stats(perSet))]))
                }
                mrows.append(row)
            }
            md += "Multi-task merge, mean accuracy over the tasks (each with its own head):\n\n" + mdTable(["method"] + names, mrows) + "\n"
        }
        return (md, .object([("tasks", .array(js)), ("merge", .array(mj))]))
    }
}
