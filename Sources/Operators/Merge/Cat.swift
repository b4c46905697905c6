import Checkpoint
import Numerics

/// PEFT's `cat`: A = concat(w_i s_i A_i), B = concat(B_i), zero-padded to the new rank
/// Σ r_i of the configs (peft 0.21 `add_weighted_adapter`); r = lora_alpha = new rank.
public struct Cat: MergeMethod {
    public let name = "cat"
    public init() {}

    public func merge(_ inputs: [Adapter], options o: MergeOptions, progress: ((OperatorProgress) -> Void)?) throws -> Adapter {
        try MergeSupport.check(inputs, o, method: name)
        try MergeSupport.refuseDora(inputs, method: name)
        if inputs.count == 1 { return try TaskVectorMerge(.linear).merge(inputs, options: o, progress: progress) }
        let newRank = inputs.reduce(0) { $0 + PEFTRanks.configRank($1.config) }
        let aligned = MergeSupport.aligned(inputs)
        var modules: [LoraModule] = []
        for (idx, (name, mods)) in aligned.enumerated() {
            progress?(.module(name: name, index: idx, total: aligned.count))
            let (b, a) = try Concat.factors(mods, weights: o.weights, source: inputs)
            let (pb, pa) = LowRank.pad(b: b, a: a, to: newRank)
            modules.append(MergeSupport.unitModule(name: name, b: pb, a: pa, bias: MergeSupport.mergedBias(mods, o.weights), like: mods[0].1, o: o))
        }
        let config = MergeSupport.fitConfig(base: inputs[0].config, inputs: inputs, modules: modules, heads: o.heads)
        return try MergeSupport.finish(modules, heads: try MergeSupport.heads(inputs, o), config: config, inputs: inputs, o: o, method: name)
    }
}

/// PEFT's notion of an adapter's rank in `_check_add_weighted_adapter`: r, or the largest of r and the
/// rank_pattern values.
enum PEFTRanks {
    static func configRank(_ c: LoraConfig) -> Int { max(c.r, c.rankPattern.map(\.1).max() ?? c.r) }
}
