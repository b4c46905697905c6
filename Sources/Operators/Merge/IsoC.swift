import Checkpoint
import Numerics

/// Iso-C, isotropic merging (Marczak et al., "No Task Left Behind", arXiv 2502.04959): the task-arithmetic
/// sum Δ = Σ w_i s_i B_i A_i with its spectrum flattened, U·σ̄·Vᵀ where σ̄ is the mean singular value
/// (the reference code: `torch.linalg.svd(Δ)`, `ones_like(s) * s.mean()`, `multi_dot(u, diag, v)`; the
/// paper's α is the common weight, `--weights α,α,...`, default 1). Low-rank: Δ is never formed (QR of
/// the stacked factors, SVD of the small core), and the isotropic spectrum is kept on Δ's own span: where
/// Σ r_i ≥ min(out, in) this is exactly the reference; where the sum has lower rank the reference's thin
/// SVD also spreads σ̄ (a mean diluted by the zero singular values) over directions the inputs never
/// touched, whose basis is whatever LAPACK returns; here the mean is over the span's singular values and
/// nothing is added outside it. Output rank: the numerical rank of Δ (singular values above 1e-6·σ_max;
/// Float32 cannot resolve smaller ones, and the reference's direction for them is noise).
public struct IsoC: MergeMethod {
    public let name = "iso_c"
    public init() {}

    public func merge(_ inputs: [Adapter], options o: MergeOptions, progress: ((OperatorProgress) -> Void)?) throws -> Adapter {
        try MergeSupport.perModule(inputs, o, method: name, progress: progress) { _, mods in
            let (cb, ca) = try Concat.factors(mods, weights: o.weights, source: inputs)
            return try IsoC.isotropic(b: cb, a: ca)
        }
    }

    /// B·A with every singular value on its numerical span replaced by their mean: (σ̄·U, Vᵀ), or nil when
    /// B·A is zero.
    static func isotropic(b: Tensor, a: Tensor) throws -> (Tensor, Tensor)? {
        let (u, s, vt) = try LowRank.span(b: b, a: a)
        guard !s.isEmpty else { return nil }
        let mean = Float(s.reduce(0) { $0 + Double($1) } / Double(s.count))
        return (mean * u, vt)
    }
}
