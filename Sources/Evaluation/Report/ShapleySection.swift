import Checkpoint
import Foundation

extension Report {
    /// Shapley sweeps: per-layer (or per-module) contributions and their spread.
    static func shapleySection(_ sweeps: [Joined], into b: inout Builder) throws {
        let shap = sweeps.filter { $0.sweep == "shapley" }
        if !shap.isEmpty {
            b.md += "## Shapley values\n\nContribution of each adapter group to accuracy (v(S) = accuracy with only the groups in S on), "
            b.md += "estimated through the multilinear extension. Spread = coefficient of variation of the values over groups "
            b.md += "(lower: contributions more even). Efficiency check: Σφ against v(all) − v(none).\n\n"
            var sj: [JSON] = []
            var rows: [[String]] = []
            for task in Array(Set(shap.map(\.task))).sorted() {
                let metric = Sweeps.metric(shap.first { $0.task == task }!.header)
                var fig = Figure(title: "Shapley values: \(task)", xLabel: "adapter group", yLabel: "Shapley value (\(metric.shapleyName))")
                fig.bars = true
                var playersAll: [String] = []
                for name in seriesOrder(shap.filter { $0.task == task }.map(\.name)) {
                    let runs = shap.filter { $0.task == task && $0.name == name && $0.complete }
                    var perPlayer: [[Double]] = []
                    var spreads: [Double] = []
                    var ses: [[Double]] = []
                    var effGap: [Double] = []
                    for r in runs {
                        let players = r.header.players ?? []
                        guard let plan = ShapleyPlan(settings: r.header.settings.plan, players: players.count) else { continue }
                        let est = plan.estimate(scored: r.values, value: metric.shapleyValue)
                        if playersAll.isEmpty { playersAll = players }
                        if perPlayer.isEmpty {
                            perPlayer = [[Double]](repeating: [], count: players.count)
                            ses = perPlayer
                        }
                        guard players.count == perPlayer.count else { continue }
                        for i in players.indices {
                            perPlayer[i].append(est.values[i])
                            ses[i].append(est.standardErrors[i])
                        }
                        let (m, s) = meanStd(est.values)
                        spreads.append(abs(m) > 1e-12 ? s / abs(m) : .nan)
                        effGap.append(est.sum - (est.full - est.empty))
                    }
                    if perPlayer.isEmpty { continue }
                    let means = perPlayer.map { meanStd($0).0 }
                    // Error bars: the std over seeds when there are several, else the estimator's standard error.
                    let errs = perPlayer.indices.map { perPlayer[$0].count > 1 ? meanStd(perPlayer[$0]).1 : (ses[$0].first ?? 0) }
                    fig.series.append(.init(name: name, x: means.indices.map(Double.init), y: means, err: errs))
                    rows.append([
                        Sweeps.label(task, metricName: metric.shapleyName), name, String(runs.count),
                        means.map { String(format: "%.3f", $0) }.joined(separator: " "), pm(spreads, 3), pm(effGap, 4),
                    ])
                    sj.append(
                        .object([
                            ("task", .string(task)), ("name", .string(name)), ("players", .array(playersAll.map { .string($0) })),
                            ("values", .array(perPlayer.map(stats))), ("standard_errors", .array(ses.map { .array($0.map { .double($0) }) })),
                            ("spread", stats(spreads)), ("efficiency_gap", stats(effGap)),
                        ]))
                }
                fig.categories = playersAll.map { $0.replacingOccurrences(of: "layer ", with: "L") }
                try b.addPlot(fig, "shapley-\(slug(task)).png", alt: "Shapley values on \(task)")
            }
            b.md += mdTable(["task", "adapter", "seeds", "φ per group", "spread (CV)", "Σφ − (v(all) − v(none))"], rows) + "\n"
            b.results.append(("shapley", .array(sj)))
        }
    }
}
