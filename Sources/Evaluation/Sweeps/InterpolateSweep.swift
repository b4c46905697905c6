import Checkpoint
import Foundation
import Model
import Numerics
import Operators

// The interpolation sweep: the metric along (1-λ)A + λB, and the barrier of its curve.

extension Sweeps {
    /// Metric along θ(λ) = (1−λ)·A + λ·B for every adapter tensor and the heads (the paper's linear path).
    public static func interpolate(
        _ ev: SweepEvaluator, a: Adapter, b: Adapter, data: PreparedData, grid: [Double], name: String,
        shard: Shard = .whole
    ) throws -> SweepResult {
        let labels = SweepEvaluator.labels(for: [a, b], data: data)
        guard a.labels == nil || b.labels == nil || a.labels == b.labels else {
            throw EvalError(b.source, "its label list differs from \(a.source)'s: the heads cannot be interpolated")
        }
        let mine = grid.indices.filter(shard.owns)
        var points: [SweepPoint] = []
        for (n, k) in mine.enumerated() {
            let l = grid[k]
            var o = MergeOptions(weights: [1 - l, l])
            o.allowNonFinite = true
            let merged = l == 0 ? a : (l == 1 ? b : try Interpolate().merge([a, b], options: o, progress: nil))
            try ev.load(merged)
            let s = try ev.score(data, labels: labels)
            var point = SweepPoint(score: s)
            point.lambda = l
            points.append(point)
            ev.progress?(n + 1, mine.count)
        }
        var r = interpolateHeader(a: a.source, b: b.source, data: data.path, grid: grid, name: name, shard: shard, task: data.task)
        r.points = points
        return r
    }

    /// An interpolation sweep's result without its points (what it is, before it runs).
    public static func interpolateHeader(
        a: String, b: String, data: String, grid: [Double], name: String, shard: Shard, task: EvalTask = .classification
    ) -> SweepResult {
        result("interpolate", name: name, adapters: [a, b], data: [data], shard: shard, settings: SweepSettings(grid: grid), task: task)
    }

    /// (λ, metric) of an interpolation sweep's points.
    public static func curve(_ points: [SweepPoint], _ metric: Metric) -> [(Double, Double)] {
        points.compactMap { p in
            guard let l = p.lambda, let v = metric.value(p) else { return nil }
            return (l, v)
        }
    }

    /// The barrier of a whole interpolation sweep by its metric: the largest drop below the straight line
    /// between the end points, or for perplexity the largest rise above it.
    public static func barrier(_ r: SweepResult) -> Double? {
        let m = metric(r)
        return barrier(curve(r.points ?? [], m), m)
    }

    /// The barrier of a curve by its metric: the largest drop below the line between the end points, or
    /// (lower is better) the largest rise above it.
    public static func barrier(_ points: [(Double, Double)], _ metric: Metric) -> Double? {
        barrier(metric.higherIsBetter ? points : points.map { ($0.0, -$0.1) })
    }

    /// Largest drop of the curve below the straight line between its end points (0 if none).
    public static func barrier(_ points: [(Double, Double)]) -> Double? {
        let p = points.sorted { $0.0 < $1.0 }
        guard let first = p.first, let last = p.last, last.0 > first.0 else { return nil }
        var worst = 0.0
        for (x, y) in p {
            let t = (x - first.0) / (last.0 - first.0)
            worst = max(worst, (1 - t) * first.1 + t * last.1 - y)
        }
        return worst
    }
}
