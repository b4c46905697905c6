import Checkpoint
import Numerics

/// PEFT's SVD combinations (peft 0.21 `_svd_generalized_task_arithmetic_weighted_adapter`): the merge
/// function on the dense deltas Δ_i = s_i B_i A_i with weights w_i, then the best rank-k factorization
/// B = U_k S_k, A = V_kᵀ (k = --rank, default the largest input r), optionally clamped at a quantile.
/// `svd` never forms a dense delta: QR of the stacked factors and an SVD of the small core. The others
/// need the dense merged delta and compute only its top-k singular triplets (LAPACK sgesvdx).
/// With `--svd-clamp` the result depends on the sign of each singular pair (PEFT clamps at a quantile of
/// the signed factor values), so then the dense delta goes through sgesdd as in torch.linalg.svd, and
/// the result matches PEFT's.
public struct SVDMerge: MergeMethod {
    public enum Kind: String, Sendable {
        case svd, tiesSVD = "ties_svd", dareLinearSVD = "dare_linear_svd", dareTiesSVD = "dare_ties_svd", magnitudePruneSVD = "magnitude_prune_svd"
        /// Beyond PEFT: mergekit's breadcrumbs on the dense deltas, then the same best rank-k factorization.
        case breadcrumbs, breadcrumbsTies = "breadcrumbs_ties"
        /// Beyond PEFT: mergekit's DELLA and DELLA-linear (MagPrune) on the dense deltas, then rank k.
        case della, dellaLinear = "della_linear"

        var combine: TaskVectors.Combine {
            switch self {
            case .svd: return .taskArithmetic
            case .tiesSVD: return .ties
            case .dareLinearSVD: return .dareLinear
            case .dareTiesSVD: return .dareTies
            case .magnitudePruneSVD: return .magnitudePrune
            case .breadcrumbs: return .breadcrumbs
            case .breadcrumbsTies: return .breadcrumbsTies
            case .della: return .della
            case .dellaLinear: return .dellaLinear
            }
        }
    }

    public let kind: Kind
    public var name: String { kind.rawValue }
    public var needsDensity: Bool { kind.combine.needsDensity }
    public var electsSigns: Bool { kind.combine.electsSigns }
    public init(_ kind: Kind) { self.kind = kind }

    public func merge(_ inputs: [Adapter], options o: MergeOptions, progress: ((OperatorProgress) -> Void)?) throws -> Adapter {
        if inputs.count == 1 { return try TaskVectorMerge(.linear).merge(inputs, options: o, progress: progress) }
        try MergeSupport.check(inputs, o, method: name, needsDensity: needsDensity)
        try MergeSupport.refuseDora(inputs, method: name)
        let newRank = o.rank ?? inputs.map { PEFTRanks.configRank($0.config) }.max()!
        var rng = SeededRNG(seed: o.seed)
        let aligned = MergeSupport.aligned(inputs)
        var modules: [LoraModule] = []
        for (idx, (mname, mods)) in aligned.enumerated() {
            progress?(.module(name: mname, index: idx, total: aligned.count))
            var b: Tensor
            var a: Tensor
            if kind == .svd && o.svdClamp == nil {
                // Never forms the dense delta: QR of the stacked factors, SVD of the small core.
                let (cb, ca) = try Concat.factors(mods, weights: o.weights, source: inputs)
                (b, a, _) = try LowRank.truncate(b: cb, a: ca, k: newRank)
            } else {
                let (out, inF) = try MergeSupport.sameShape(mods, inputs)
                let deltas = mods.map { $0.1.delta().data }
                let merged = Tensor(
                    shape: [out, inF],
                    data: TaskVectors.combine(
                        deltas, weights: mods.map { o.weights[$0.0] }, how: kind.combine, density: o.density, majority: o.majoritySign,
                        gamma: o.gamma, epsilon: o.epsilon, cols: inF, rng: &rng))
                (b, a) = try SVDMerge.topK(merged, k: newRank, signsAsPEFT: o.svdClamp != nil)
            }
            (b, a) = LowRank.pad(b: b, a: a, to: newRank)
            if let q = o.svdClamp { LowRank.clamp(b: &b, a: &a, quantile: q) }
            modules.append(MergeSupport.unitModule(name: mname, b: b, a: a, bias: MergeSupport.mergedBias(mods, o.weights), like: mods[0].1, o: o))
        }
        let config = MergeSupport.fitConfig(base: inputs[0].config, inputs: inputs, modules: modules, heads: o.heads)
        return try MergeSupport.finish(modules, heads: try MergeSupport.heads(inputs, o), config: config, inputs: inputs, o: o, method: name)
    }

    /// B = U_k S_k, A = V_kᵀ of a dense matrix. Only the top k triplets (sgesvdx), unless the caller needs
    /// the singular vectors' signs exactly as PEFT gets them (the clamp quantile is of signed values):
    /// then the full divide-and-conquer SVD (sgesdd), which is what torch.linalg.svd runs.
    static func topK(_ m: Tensor, k: Int, signsAsPEFT: Bool) throws -> (Tensor, Tensor) {
        let (u, s, vt) = signsAsPEFT ? try LAPACK.svd(m) : try LAPACK.svdTop(m, k: k)
        return LowRank.top(u: u, s: s, vt: vt, k: k)
    }
}
