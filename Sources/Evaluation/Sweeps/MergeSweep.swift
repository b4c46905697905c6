import Checkpoint
import Foundation
import Model
import Numerics
import Operators

// The merge sweep: every merge method on every task, each task scored with its own adapter's head.

extension Sweeps {
    /// Weights of a method in a merge sweep of n adapters: 1 for the sign-electing methods (TIES family,
    /// DELLA, KnOTS: they average the agreeing values themselves), 1/n for the averaging ones, so every
    /// method is compared at the adapters' mean.
    public static func sweepWeights(_ method: MergeMethod, count n: Int) -> [Double] {
        method.electsSigns ? [Double](repeating: 1, count: n) : [Double](repeating: 1 / Double(n), count: n)
    }

    /// Every method on every task; each task is scored with its own adapter's head and label list.
    /// The "individual" rows are each adapter on its own task (the reference for the drops); `merged` adds
    /// adapters merged elsewhere (RegMean by `coto-merge`, a searched merge by `coto-eval search`) as rows of
    /// their own names, scored the same way.
    public static func merge(
        _ ev: SweepEvaluator, adapters: [Adapter], data: [PreparedData], methods: [String], weights: [Double]?,
        density: Double, seed: UInt64, name: String, shard: Shard = .whole, merged: [(name: String, adapter: Adapter)] = []
    ) throws -> SweepResult {
        guard adapters.count == data.count, !adapters.isEmpty else {
            throw EvalError("--task-data", "\(adapters.count) adapters but \(data.count) task files: give one task file per adapter")
        }
        if let other = data.first(where: { $0.task != data[0].task }) {
            throw EvalError(other.path, "is a \(other.task.rawValue) task but \(data[0].path) is \(data[0].task.rawValue): a merge sweep scores one kind")
        }
        var work: [(String, Int)] = []
        for t in data.indices { work.append(("individual", t)) }
        for m in methods { for t in data.indices { work.append((m, t)) } }
        for m in merged { for t in data.indices { work.append((m.name, t)) } }
        let mine = work.indices.filter(shard.owns)
        var mergedCache: [String: Adapter] = [:]
        var points: [SweepPoint] = []
        for (n, k) in mine.enumerated() {
            let (method, t) = work[k]
            let adapter: Adapter
            if method == "individual" {
                adapter = adapters[t]
            } else if let m = merged.first(where: { $0.name == method }) {
                adapter = m.adapter
            } else if let m = mergedCache[method] {
                adapter = m
            } else {
                guard let m = MergeMethods.named(method) else { throw EvalError("--methods", MergeMethods.unknownMessage(method)) }
                var o = MergeOptions(weights: weights ?? sweepWeights(m, count: adapters.count))
                o.density = m.needsDensity ? density : nil
                o.seed = seed
                o.heads = .drop
                o.allowNonFinite = true
                adapter = try m.merge(adapters, options: o, progress: nil)
                mergedCache[method] = adapter
            }
            try ev.load(adapter, head: adapters[t])
            let s = try ev.score(data[t], labels: SweepEvaluator.labels(for: [adapters[t]], data: data[t]))
            var point = SweepPoint(score: s)
            (point.method, point.task, point.adapter) = (method, data[t].taskName, adapters[t].source)
            points.append(point)
            ev.progress?(n + 1, mine.count)
        }
        var r = mergeHeader(
            adapters: adapters.map(\.source), data: data.map(\.path), methods: methods, weights: weights, density: density, seed: seed, name: name,
            shard: shard, task: data[0].task, merged: merged.map { "\($0.name)=\($0.adapter.source)" })
        r.points = points
        return r
    }

    /// A merge sweep's result without its points.
    public static func mergeHeader(
        adapters: [String], data: [String], methods: [String], weights: [Double]?, density: Double, seed: UInt64, name: String, shard: Shard,
        task: EvalTask = .classification, merged: [String] = []
    ) -> SweepResult {
        var settings = SweepSettings(methods: methods, weights: weights, density: density, seed: seed)
        settings.merged = merged.isEmpty ? nil : merged
        return result("merge", name: name, adapters: adapters, data: data, shard: shard, settings: settings, task: task)
    }
}
