import Checkpoint
import Numerics

/// TSV-M, task singular vectors merging (Gargiulo et al., CVPR 2025): per module, each task's delta
/// Δ_i = w_i s_i B_i A_i keeps its top k singular triplets (k = ⌊min(out, in) / T⌋ for T tasks, as the
/// reference's compression factor), the left and right singular vectors of all tasks are concatenated and
/// each concatenation is replaced by its nearest orthogonal matrix (polar factor u·vᵀ of its thin SVD),
/// and the merge is U_⊥ · diag(σ_cat) · V_⊥ᵀ. Low-rank: the per-task SVDs come from the factors (QR and a
/// small core), the polar factors from the thin [out, K] and [K, in] concatenations; out×in is never
/// formed. A task of rank r_i < k contributes its r_i nonzero triplets only (the reference's thin SVD of a
/// rank-deficient delta also appends zero-σ triplets whose vectors are arbitrary yet enter the polar
/// factors); with r_i ≥ k the result is the reference's. Output rank K = Σ k_i.
public struct TSV: MergeMethod {
    public let name = "tsv"
    public init() {}

    public func merge(_ inputs: [Adapter], options o: MergeOptions, progress: ((OperatorProgress) -> Void)?) throws -> Adapter {
        try MergeSupport.perModule(inputs, o, method: name, progress: progress) { _, mods in
            let (out, inF) = try MergeSupport.sameShape(mods, inputs)
            let tasks = mods.map { i, m in (b: Float(o.weights[i] * m.scaling) * m.b.tensor, a: m.a.tensor) }
            return try TSV.combine(tasks, tasks: inputs.count, out: out, inF: inF)
        }
    }

    /// TSV-M of the deltas b_i·a_i (each [out, in], given by factors) for `tasks` tasks: factors (B [out, K],
    /// A [K, in]) of the merge, or nil when every delta is zero.
    static func combine(_ deltas: [(b: Tensor, a: Tensor)], tasks: Int, out: Int, inF: Int) throws -> (Tensor, Tensor)? {
        let k = max(1, min(out, inF) / tasks)
        var us: [Tensor] = []
        var vs: [Tensor] = []
        var sigma: [Float] = []
        for d in deltas {
            let (u, s, v) = try LowRank.span(b: d.b, a: d.a, maxRank: k)
            guard !s.isEmpty else { continue }
            us.append(u)
            vs.append(v)
            sigma += s
        }
        guard !sigma.isEmpty else { return nil }
        let K = sigma.count
        let (uCat, vCat) = LowRank.stack(zip(us, vs).map { ($0, $1) })
        var b = try polar(uCat)  // [out, K]
        let a = try polar(vCat)  // [K, in]
        for r in 0..<out { for j in 0..<K { b[r, j] *= sigma[j] } }
        return (b, a)
    }

    /// The nearest matrix with orthonormal columns (or rows): u·vᵀ of the thin SVD u·s·vᵀ.
    static func polar(_ m: Tensor) throws -> Tensor {
        let (u, _, vt) = try LAPACK.svd(m)
        return BLAS.matmul(u, vt)
    }
}
