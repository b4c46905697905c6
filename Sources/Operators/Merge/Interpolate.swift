import Checkpoint
import Numerics

/// Linear interpolation of every adapter tensor, θ = Σ w_i θ_i: lora_A, lora_B, biases, DoRA magnitudes
/// and heads. The paper's linear path ((1-λ)·A + λ·B) and multi-task weight averaging. Inputs must
/// have the same modules, shapes and scalings.
public struct Interpolate: MergeMethod {
    public let name = "interpolate"
    public func defaultWeights(count: Int) -> [Double] { [Double](repeating: 1 / Double(max(count, 1)), count: count) }
    public init() {}

    public func merge(_ inputs: [Adapter], options o: MergeOptions, progress: ((OperatorProgress) -> Void)?) throws -> Adapter {
        try MergeSupport.check(inputs, o, method: name)
        let ref = inputs[0]
        for a in inputs.dropFirst() {
            let names = Set(a.modules.map(\.name))
            let refNames = Set(ref.modules.map(\.name))
            if names != refNames {
                let diff = names.symmetricDifference(refNames).sorted().first ?? ""
                throw MergeError(a.source, "module '\(diff)' is not in every input; interpolate needs identical modules (use --method task-arithmetic)")
            }
            if a.config.useRslora != ref.config.useRslora { throw MergeError(a.source, "use_rslora differs from \(ref.source); use --method task-arithmetic") }
        }
        var modules: [LoraModule] = []
        for (idx, m0) in ref.modules.enumerated() {
            progress?(.module(name: m0.name, index: idx, total: ref.modules.count))
            let mods = inputs.map { a in a.modules.first { $0.name == m0.name }! }
            for (a, m) in zip(inputs, mods) {
                guard m.a.tensor.shape == m0.a.tensor.shape, m.b.tensor.shape == m0.b.tensor.shape else {
                    throw MergeError(
                        a.source,
                        "module '\(m.name)': lora_A \(m.a.tensor.shape) / lora_B \(m.b.tensor.shape) differ from \(m0.a.tensor.shape) / \(m0.b.tensor.shape); interpolate needs equal shapes (use --method task-arithmetic)"
                    )
                }
                guard abs(m.scaling - m0.scaling) <= 1e-12 * max(1, abs(m0.scaling)) else {
                    throw MergeError(
                        a.source,
                        "module '\(m.name)': scaling \(m.scaling) differs from \(m0.scaling); interpolate needs equal scalings (use --method task-arithmetic)")
                }
                guard (m.bias == nil) == (m0.bias == nil), (m.magnitude == nil) == (m0.magnitude == nil), m.isEmbedding == m0.isEmbedding else {
                    throw MergeError(a.source, "module '\(m.name)': bias / DoRA magnitude / embedding form differ between inputs")
                }
            }
            func mix(_ pick: (LoraModule) -> AdapterTensor?) -> AdapterTensor? {
                guard let first = pick(m0) else { return nil }
                let data = TaskVectors.weightedSum(mods.map { pick($0)!.tensor.data }, o.weights)
                return AdapterTensor(dtype: o.dtype ?? first.dtype, tensor: Tensor(shape: first.tensor.shape, data: data))
            }
            modules.append(
                LoraModule(
                    name: m0.name, a: mix { $0.a }!, b: mix { $0.b }!, bias: mix { $0.bias }, magnitude: mix { $0.magnitude },
                    isEmbedding: m0.isEmbedding, alpha: m0.alpha, scaling: m0.scaling))
        }
        var config = ref.config
        if o.heads == .drop { config.modulesToSave = nil }
        return try MergeSupport.finish(modules, heads: try MergeSupport.heads(inputs, o), config: config, inputs: inputs, o: o, method: name)
    }
}
