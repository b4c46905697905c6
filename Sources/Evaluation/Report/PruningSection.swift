import Checkpoint
import Foundation

extension Report {
    /// Pruning sweeps: accuracy against magnitude sparsity, dropped layers, module kinds and rank.
    static func pruningSection(_ sweeps: [Joined], into b: inout Builder) throws {
        let prunes = sweeps.filter { $0.sweep == "prune" }
        if !prunes.isEmpty {
            b.md += "## Pruning\n\nMagnitude pruning of lora_A/lora_B entries, dropping layer sets (`all` drops every adapter: the base "
            b.md += "model with the trained head), dropping module kinds, truncating the rank (SVD).\n\n"
            var pj: [JSON] = []
            var rows: [[String]] = []
            for task in Array(Set(prunes.map(\.task))).sorted() {
                let metric = Sweeps.metric(prunes.first { $0.task == task }!.header)
                for kind in ["sparsity", "layers", "modules", "rank"] {
                    let names = seriesOrder(prunes.filter { $0.task == task }.map(\.name))
                    var values: [String] = []
                    for r in prunes where r.task == task {
                        for p in r.points where p.kind == kind {
                            if let v = p.value, !values.contains(v) { values.append(v) }
                        }
                    }
                    if values.isEmpty { continue }
                    let numeric = values.allSatisfy { Double($0) != nil }
                    if numeric { values.sort { Double($0)! < Double($1)! } }
                    var fig = Figure(
                        title: "Pruning (\(kind)): \(task)",
                        xLabel: [
                            "sparsity": "fraction of adapter entries zeroed", "layers": "adapter layers dropped",
                            "modules": "module kind dropped", "rank": "rank kept",
                        ][kind]!, yLabel: metric.name)
                    if !numeric {
                        fig.categories = values
                        fig.bars = true
                    }
                    for name in names {
                        let runs = prunes.filter { $0.task == task && $0.name == name }
                        var x: [Double] = []
                        var y: [Double] = []
                        var e: [Double] = []
                        for (i, v) in values.enumerated() {
                            let a = runs.flatMap { r in
                                r.points.filter { $0.kind == kind && $0.value == v }.compactMap(metric.value)
                            }
                            if a.isEmpty { continue }
                            let (m, s) = meanStd(a)
                            x.append(numeric ? Double(v)! : Double(i))
                            y.append(m)
                            e.append(s)
                            rows.append([Sweeps.label(task, metricName: metric.name), kind, v, name, pm(a)])
                            pj.append(
                                .object([
                                    ("task", .string(task)), ("kind", .string(kind)), ("value", .string(v)), ("name", .string(name)), (metric.name, stats(a)),
                                ]))
                        }
                        fig.series.append(.init(name: name, x: x, y: y, err: e))
                    }
                    try b.addPlot(fig, "pruning-\(kind)-\(slug(task)).png", alt: "pruning (\(kind)) on \(task)")
                }
            }
            b.md +=
                mdTable(["task", "rule", "value", "adapter", prunes.allSatisfy { Sweeps.metric($0.header).name == "accuracy" } ? "accuracy" : "score"], rows)
                + "\n"
            b.results.append(("pruning", .array(pj)))
        }
    }
}
