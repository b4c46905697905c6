import Checkpoint
import Foundation
import Model
import Numerics
import Operators

// The pruning sweep: magnitude sparsity, dropped layer sets and module kinds, rank truncation.

extension Sweeps {
    public struct PrunePoint: Sendable {
        public var kind: String  // sparsity, layers, modules, rank
        public var value: String
        public var options: PruneOptions?
    }

    public static func prunePoints(
        sparsities: [Double], scope: PruneOptions.Scope, layers: [String], modules: [String], ranks: [Int],
        rankMethod: PruneOptions.RankMethod
    ) -> [PrunePoint] {
        var pts: [PrunePoint] = []
        for s in sparsities {
            var o = PruneOptions()
            o.sparsity = s
            o.scope = scope
            o.allowNonFinite = true
            pts.append(PrunePoint(kind: "sparsity", value: fmtValue(s), options: s == 0 ? nil : o))
        }
        for l in layers {
            var o = PruneOptions()
            o.allowNonFinite = true
            if l == "none" {
                pts.append(PrunePoint(kind: "layers", value: l, options: nil))
                continue
            }
            o.dropLayers = l
            pts.append(PrunePoint(kind: "layers", value: l, options: o))
        }
        for m in modules {
            var o = PruneOptions()
            o.dropModules = [m]
            o.allowNonFinite = true
            pts.append(PrunePoint(kind: "modules", value: m, options: o))
        }
        for r in ranks {
            var o = PruneOptions()
            o.rank = r
            o.rankMethod = rankMethod
            o.allowNonFinite = true
            pts.append(PrunePoint(kind: "rank", value: String(r), options: o))
        }
        return pts
    }

    static func fmtValue(_ v: Double) -> String {
        v == v.rounded() ? String(Int(v)) : String(format: "%g", v)
    }

    /// Pruning curves: magnitude sparsity, dropped layer sets (`all` drops every adapter), dropped module
    /// kinds, rank truncation.
    public static func prune(
        _ ev: SweepEvaluator, adapter: Adapter, data: PreparedData, points pts: [PrunePoint], name: String,
        shard: Shard = .whole
    ) throws -> SweepResult {
        let labels = SweepEvaluator.labels(for: [adapter], data: data)
        let mine = pts.indices.filter(shard.owns)
        var points: [SweepPoint] = []
        for (n, k) in mine.enumerated() {
            let p = pts[k]
            var pruned = adapter
            var kept = 1.0
            var zeroed = 0
            var dropped = 0
            if let o = p.options {
                if p.kind == "layers" && p.value == "all" {
                    pruned.modules = []
                    kept = 0
                    dropped = adapter.modules.reduce(0) { $0 + $1.a.tensor.count + $1.b.tensor.count }
                } else {
                    let (out, report) = try Pruner.prune(adapter, options: o)
                    pruned = out
                    kept = report.normFractionKept
                    zeroed = report.zeroed
                    dropped = report.dropped
                }
            }
            try ev.load(pruned)
            let s = try ev.score(data, labels: labels)
            var point = SweepPoint(score: s)
            (point.kind, point.value, point.normFractionKept) = (p.kind, p.value, kept)
            (point.zeroed, point.dropped) = (zeroed, dropped)
            points.append(point)
            ev.progress?(n + 1, mine.count)
        }
        var r = pruneHeader(adapter: adapter.source, data: data.path, points: pts, name: name, shard: shard, task: data.task)
        r.points = points
        return r
    }

    /// A pruning sweep's result without its points.
    public static func pruneHeader(
        adapter: String, data: String, points: [PrunePoint], name: String, shard: Shard, task: EvalTask = .classification
    ) -> SweepResult {
        result(
            "prune", name: name, adapters: [adapter], data: [data], shard: shard, settings: SweepSettings(points: points.map { "\($0.kind)=\($0.value)" }),
            task: task)
    }
}
