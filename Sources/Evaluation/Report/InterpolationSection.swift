import Checkpoint
import Foundation

extension Report {
    /// Interpolation sweeps: accuracy along the path between two adapters, the midpoint and the barrier.
    static func interpolationSection(_ sweeps: [Joined], into b: inout Builder) throws {
        let interp = sweeps.filter { $0.sweep == "interpolate" }
        if !interp.isEmpty {
            b.md += "## Interpolation\n\nAccuracy along θ(λ) = (1−λ)·A + λ·B between two adapters of the same task (different seeds). "
            b.md += "The barrier is the largest drop below the straight line between the end points"
            b.md += interp.contains { Sweeps.metric($0.header).name == "perplexity" } ? " (for perplexity: the largest rise above it).\n\n" : ".\n\n"
            var rows: [[String]] = []
            var ij: [JSON] = []
            for task in Array(Set(interp.map(\.task))).sorted() {
                let metric = Sweeps.metric(interp.first { $0.task == task }!.header)
                var fig = Figure(title: "Interpolation: \(task)", xLabel: "λ", yLabel: metric.name)
                for name in seriesOrder(interp.filter { $0.task == task }.map(\.name)) {
                    let runs = interp.filter { $0.task == task && $0.name == name }
                    var byL: [Double: [Double]] = [:]
                    var barriers: [Double] = []
                    for r in runs {
                        let pts = Sweeps.curve(r.points, metric)
                        for (l, a) in pts { byL[l, default: []].append(a) }
                        if r.complete, let b = Sweeps.barrier(pts, metric) { barriers.append(b) }
                    }
                    let ls = byL.keys.sorted()
                    fig.series.append(.init(name: name, x: ls, y: ls.map { meanStd(byL[$0]!).0 }, err: ls.map { meanStd(byL[$0]!).1 }))
                    let mid = ls.min { abs($0 - 0.5) < abs($1 - 0.5) }
                    let label = Sweeps.label(task, metricName: metric.name)
                    rows.append([label, name, String(runs.count), pm(byL[0] ?? []), pm(mid.map { byL[$0]! } ?? []), pm(byL[1] ?? []), pm(barriers)])
                    ij.append(
                        .object([
                            ("task", .string(task)), ("name", .string(name)), ("pairs", .int(runs.count)),
                            ("lambda", .array(ls.map { .double($0) })), (metric.name, .array(ls.map { stats(byL[$0]!) })),
                            ("barrier", stats(barriers)),
                        ]))
                }
                try b.addPlot(fig, "interpolation-\(slug(task)).png", alt: "interpolation on \(task)")
            }
            b.md += mdTable(["task", "adapter", "pairs", "λ=0", "λ=0.5", "λ=1", "barrier"], rows) + "\n"
            b.results.append(("interpolation", .array(ij)))
        }
    }
}
