import Checkpoint
import Numerics

/// PEFT's factor-wise combinations (peft 0.21 `_generalized_task_arithmetic_weighted_adapter`): linear,
/// ties, dare_linear, dare_ties, magnitude_prune. The merge function runs separately on the stack of
/// lora_A with weights sign(w_i s_i)·sqrt|w_i s_i| and on the stack of lora_B with sqrt|w_i s_i|.
/// Ranks must be equal; the result has r = lora_alpha = that rank.
public struct TaskVectorMerge: MergeMethod {
    public enum Kind: String, Sendable {
        case linear, ties, dareLinear = "dare_linear", dareTies = "dare_ties", magnitudePrune = "magnitude_prune"

        var combine: TaskVectors.Combine {
            switch self {
            case .linear: return .taskArithmetic
            case .ties: return .ties
            case .dareLinear: return .dareLinear
            case .dareTies: return .dareTies
            case .magnitudePrune: return .magnitudePrune
            }
        }
    }

    public let kind: Kind
    public var name: String { kind.rawValue }
    public var needsDensity: Bool { kind.combine.needsDensity }
    public var electsSigns: Bool { kind.combine.electsSigns }
    public init(_ kind: Kind) { self.kind = kind }

    public func merge(_ inputs: [Adapter], options o: MergeOptions, progress: ((OperatorProgress) -> Void)?) throws -> Adapter {
        // One adapter: PEFT falls back to linear.
        let kind = inputs.count == 1 ? .linear : self.kind
        try MergeSupport.check(inputs, o, method: name, needsDensity: needsDensity)
        try MergeSupport.refuseDora(inputs, method: name)
        let ranks = inputs.map { PEFTRanks.configRank($0.config) }
        if Set(ranks).count != 1 {
            throw MergeError(
                nil, "all adapters must have the same r for \(name) (got \(ranks.map(String.init).joined(separator: ", "))); use cat, svd or task-arithmetic")
        }
        var rng = SeededRNG(seed: o.seed)
        let aligned = MergeSupport.aligned(inputs)
        var modules: [LoraModule] = []
        for (idx, (mname, mods)) in aligned.enumerated() {
            progress?(.module(name: mname, index: idx, total: aligned.count))
            let m0 = mods[0].1
            for (i, m) in mods where m.a.tensor.shape != m0.a.tensor.shape || m.b.tensor.shape != m0.b.tensor.shape {
                throw MergeError(
                    inputs[i].source,
                    "module '\(mname)': lora_A \(m.a.tensor.shape) / lora_B \(m.b.tensor.shape) differ from \(m0.a.tensor.shape) / \(m0.b.tensor.shape); \(name) needs equal ranks and shapes (use cat, svd or task-arithmetic)"
                )
            }
            var wA: [Double] = []
            var wB: [Double] = []
            for (i, m) in mods {
                let ws = o.weights[i] * m.scaling
                let sign: Double = ws >= 0 ? 1 : -1
                wA.append(abs(ws).squareRoot() * sign)
                wB.append(abs(ws).squareRoot())
            }
            let a = TaskVectors.combine(
                mods.map { $0.1.a.tensor.data }, weights: wA, how: kind.combine, density: o.density, majority: o.majoritySign, rng: &rng)
            let b = TaskVectors.combine(
                mods.map { $0.1.b.tensor.data }, weights: wB, how: kind.combine, density: o.density, majority: o.majoritySign, rng: &rng)
            modules.append(
                MergeSupport.unitModule(
                    name: mname, b: Tensor(shape: m0.b.tensor.shape, data: b), a: Tensor(shape: m0.a.tensor.shape, data: a),
                    bias: MergeSupport.mergedBias(mods, o.weights), like: m0, o: o))
        }
        let config = MergeSupport.fitConfig(base: inputs[0].config, inputs: inputs, modules: modules, heads: o.heads)
        return try MergeSupport.finish(modules, heads: try MergeSupport.heads(inputs, o), config: config, inputs: inputs, o: o, method: name)
    }
}
