import Checkpoint
import Numerics

/// DoRA and HiRA adapters as plain LoRA, for runtimes without magnitude vectors or Hadamard updates: per
/// module the effective change of the base weight, ΔW = W' − W with W' exactly what `coto-fuse` computes
/// (DoRA: m ⊙ (W + s·B·A)/‖W + s·B·A‖_row; HiRA: W ⊙ (1 + s·B·A)), and its best rank-k approximation
/// (top-k SVD): B = U_k·S_k, A = V_kᵀ, lora_alpha = k. k defaults to 2r of each module.
public enum VariantConversion {
    public struct Entry: Sendable {
        public var module: String
        public var rankBefore: Int
        public var rank: Int
        public var deltaNorm: Double
        public var relativeError: Double
    }

    public static func toLoRA(
        _ adapter: Adapter, base: HFModelDir, rank: Int? = nil,
        progress: ((OperatorProgress) -> Void)? = nil
    ) throws -> (Adapter, [Entry]) {
        guard adapter.variant != .lora else {
            throw MergeError(adapter.source, "is already a LoRA adapter (nothing to convert; coto-prune --rank changes its rank)")
        }
        if let k = rank, k < 1 { throw MergeError(nil, "--rank must be at least 1, got \(k)") }
        let store = base.weights
        let names = Set(store.tensorNames)
        var modules: [LoraModule] = []
        var report: [Entry] = []
        let fanInFanOut = adapter.config.fanInFanOut
        for (i, m) in adapter.modules.enumerated() {
            progress?(.module(name: m.name, index: i, total: adapter.modules.count))
            guard let wName = Fuser.resolve(m.name, suffix: ".weight", in: names, modelType: base.config.modelType) else {
                throw MergeError(adapter.source, "module '\(m.name)' has no weight in the base model \(base.path) (adapter for another base?)")
            }
            let w = try store.loadTensor(wName)
            store.release(wName)
            let transposed = fanInFanOut || m.isEmbedding
            guard w.shape == (transposed ? [m.inFeatures, m.outFeatures] : [m.outFeatures, m.inFeatures]) else {
                throw MergeError(
                    adapter.source, "module '\(m.name)': the base weight '\(wName)' is \(w.shape), the adapter is \(m.outFeatures)x\(m.inFeatures)")
            }
            let target = Fuser.Target(adapter: 0, module: m, fanInFanOut: fanInFanOut, hira: adapter.variant == .hira)
            var d = Fuser.fuseWeight(w, targets: [target], weights: [1]) - w
            if transposed { d = d.transposed() }  // PEFT's [out, in] layout of B·A
            let k = rank ?? 2 * m.rank
            let f = try Extractor.factor(d, rank: k, energy: nil, maxRank: k)
            let bias = m.bias.map { AdapterTensor(dtype: $0.dtype, tensor: Float(m.scaling) * $0.tensor) }  // scaling is 1 now
            modules.append(
                LoraModule(
                    name: m.name, a: AdapterTensor(dtype: m.a.dtype, tensor: f.a), b: AdapterTensor(dtype: m.b.dtype, tensor: f.b),
                    bias: bias, magnitude: nil, isEmbedding: m.isEmbedding, alpha: Double(f.rank), scaling: 1))
            report.append(Entry(module: m.name, rankBefore: m.rank, rank: f.rank, deltaNorm: f.norm, relativeError: f.error))
        }
        var out = adapter
        out.modules = modules
        out.variant = .lora
        out.config.useDora = false
        out.config.useRslora = false
        out.config.fit(modules: modules.map { ($0.name, $0.rank, $0.alpha) })
        out.source = "to-lora(\(adapter.source))"
        return (out, report)
    }
}
