import Checkpoint
import Numerics

/// What `coto-prune` is asked to do. Rules apply in this order: layers, modules, rank, magnitude.
public struct PruneOptions: Sendable {
    public enum Scope: String, Sendable, CaseIterable { case tensor, global }
    public enum RankMethod: String, Sendable, CaseIterable { case svd, norm }

    public var sparsity: Double? = nil
    public var scope: Scope = .tensor
    public var dropLayers: String? = nil
    public var keepLayers: String? = nil
    /// Number of layers of the base model for `low|middle|high|every-other` (default: last adapter layer + 1).
    public var numLayers: Int? = nil
    public var dropModules: [String]? = nil
    public var keepModules: [String]? = nil
    public var rank: Int? = nil
    public var rankFraction: Double? = nil
    public var rankMethod: RankMethod = .svd
    public var allowNonFinite = false

    public init() {}

    public var isEmpty: Bool {
        sparsity == nil && dropLayers == nil && keepLayers == nil && dropModules == nil && keepModules == nil && rank == nil && rankFraction == nil
    }
}

/// What a prune removed, per module and in total.
public struct PruneReport: Sendable {
    public struct Entry: Sendable {
        public var module: String
        public var layer: Int?
        public var kind: String
        public var action: String
        public var parameters: Int
        public var zeroed = 0
        public var dropped = 0
        public var rankBefore: Int
        public var rankAfter: Int
        public var normBefore: Double
        public var normAfter: Double
    }

    public var entries: [Entry] = []

    public var parameters: Int { entries.reduce(0) { $0 + $1.parameters } }
    public var zeroed: Int { entries.reduce(0) { $0 + $1.zeroed } }
    public var dropped: Int { entries.reduce(0) { $0 + $1.dropped } }
    /// ||s·BA||_F kept over all modules: sqrt(Σ after²) / sqrt(Σ before²).
    public var normFractionKept: Double {
        let b = entries.reduce(0.0) { $0 + $1.normBefore * $1.normBefore }
        let a = entries.reduce(0.0) { $0 + $1.normAfter * $1.normAfter }
        return b > 0 ? (a / b).squareRoot() : 1
    }

    public var json: JSON {
        var byLayer: [Int: (Int, Int, Int)] = [:]
        for e in entries {
            if let l = e.layer {
                let v = byLayer[l] ?? (0, 0, 0)
                byLayer[l] = (v.0 + e.parameters, v.1 + e.zeroed, v.2 + e.dropped)
            }
        }
        return .object([
            ("parameters", .int(parameters)), ("zeroed", .int(zeroed)), ("dropped", .int(dropped)),
            ("norm_fraction_kept", .double(normFractionKept)),
            (
                "layers",
                .array(
                    byLayer.keys.sorted().map { l in
                        .object([("layer", .int(l)), ("parameters", .int(byLayer[l]!.0)), ("zeroed", .int(byLayer[l]!.1)), ("dropped", .int(byLayer[l]!.2))])
                    })
            ),
            (
                "modules",
                .array(
                    entries.map { e in
                        .object([
                            ("name", .string(e.module)), ("layer", e.layer.map(JSON.int) ?? .null), ("kind", .string(e.kind)),
                            ("action", .string(e.action)), ("parameters", .int(e.parameters)), ("zeroed", .int(e.zeroed)),
                            ("dropped", .int(e.dropped)), ("rank_before", .int(e.rankBefore)), ("rank_after", .int(e.rankAfter)),
                            ("norm_before", .double(e.normBefore)), ("norm_after", .double(e.normAfter)),
                            ("norm_fraction_kept", .double(e.normBefore > 0 ? e.normAfter / e.normBefore : 1)),
                        ])
                    })
            ),
        ])
    }
}

public enum Pruner {
    static func params(_ m: LoraModule) -> Int { m.a.tensor.count + m.b.tensor.count + (m.bias?.tensor.count ?? 0) + (m.magnitude?.tensor.count ?? 0) }

    /// Applies every requested rule; returns the pruned adapter and what was removed.
    public static func prune(_ adapter: Adapter, options o: PruneOptions, progress: ((OperatorProgress) -> Void)? = nil) throws -> (Adapter, PruneReport) {
        if o.isEmpty {
            throw MergeError(nil, "nothing to prune: give --sparsity, --drop-layers/--keep-layers, --drop-modules/--keep-modules or --rank/--rank-fraction")
        }
        if !o.allowNonFinite { try MergeSupport.checkFinite(adapter, where: adapter.source) }
        var report = PruneReport()
        var entries: [String: PruneReport.Entry] = [:]
        for m in adapter.modules {
            entries[m.name] = .init(
                module: m.name, layer: m.layer, kind: m.kind, action: "kept", parameters: params(m),
                rankBefore: m.rank, rankAfter: m.rank, normBefore: m.deltaNorm, normAfter: m.deltaNorm)
        }
        var out = adapter
        // 1-2. Whole modules: by layer, by kind.
        let dropped = try LayerPruning.selectDropped(adapter, options: o).union(ModulePruning.selectDropped(adapter, options: o))
        if !dropped.isEmpty {
            out.modules.removeAll { dropped.contains($0.name) }
            out.config.exclude(modules: dropped.sorted())
            for n in dropped {
                entries[n]!.action = "dropped"
                entries[n]!.dropped = entries[n]!.parameters
                entries[n]!.rankAfter = 0
                entries[n]!.normAfter = 0
            }
        }
        // 3. Rank.
        if o.rank != nil || o.rankFraction != nil {
            for (i, m) in out.modules.enumerated() {
                progress?(.module(name: m.name, index: i, total: out.modules.count))
                let pruned = try RankPruning.apply(m, options: o, rslora: out.config.useRslora)
                if pruned.rank != m.rank {
                    entries[m.name]!.action = "rank \(m.rank)→\(pruned.rank) (\(o.rankMethod.rawValue))"
                    entries[m.name]!.dropped += params(m) - params(pruned)
                }
                out.modules[i] = pruned
            }
        }
        // 4. Magnitude.
        if let s = o.sparsity {
            let zeroed = try MagnitudePruning.apply(&out.modules, sparsity: s, scope: o.scope)
            for (name, n) in zeroed where n > 0 {
                entries[name]!.zeroed += n
                entries[name]!.action = entries[name]!.action == "kept" ? "magnitude" : entries[name]!.action + " + magnitude"
            }
        }
        if o.rank != nil || o.rankFraction != nil || !dropped.isEmpty {
            out.config.fit(modules: out.modules.map { ($0.name, $0.rank, $0.alpha) })
        }
        for m in out.modules {
            entries[m.name]!.rankAfter = m.rank
            entries[m.name]!.normAfter = m.deltaNorm
        }
        report.entries = adapter.modules.map { entries[$0.name]! }
        out.source = "prune(\(adapter.source))"
        return (out, report)
    }
}
