import Checkpoint
import Numerics

/// Core Space merging (Panariello et al., "Accurate and Efficient Low-Rank Model Merging in Core Space",
/// NeurIPS 2025, arXiv 2509.17786; the reference's `MatrixPerLayerMerger` with merge_space "core"): per
/// module, reference bases from the stacked factors of all tasks, U_B = the left singular vectors of
/// [s_1 B_1 … s_T B_T] and V_Aᵀ = the right singular vectors of [A_1; …; A_T]; each task becomes a small
/// core M_i = U_Bᵀ·s_i B_i·A_i·V_A [k_B, k_A] (k ≤ Σ r_i, so ranks may differ), and nothing is lost: U_B·M_i·V_Aᵀ
/// is Δ_i exactly. A merge runs on the cores and the result is U_B·M·V_Aᵀ, written as B = U_B·M [out, k_A]
/// and A = V_Aᵀ [k_A, in]. Out×in is never formed; every SVD is of a stack of factors or of a core.
/// - `core`: Σ w_i M_i (task arithmetic; equal to task-arithmetic's delta, the space is lossless)
/// - `core_ties`: TIES on the cores as the reference's `ties_merging` (per module, `--density`, the mean of
///   the weighted agreeing values; `TaskVectors.svdSpaceTies`)
/// - `core_tsv`: TSV-M on the weighted cores (k = ⌊min(k_B, k_A) / T⌋ triplets per task)
/// - `core_iso_c`: Iso-C on Σ w_i M_i (its isotropic spectrum)
/// The reference scales the merged delta by one coefficient α; `--weights α,α,…` gives exactly that (TIES,
/// TSV and Iso-C are positively homogeneous). The bases keep the stacks' numerical span (σ > 1e-6·σ_max),
/// which for inputs of full rank Σ r_i ≤ min(out, in) is the reference's whole thin SVD.
public struct CoreSpace: MergeMethod {
    public enum Inner: String, Sendable, CaseIterable {
        case taskArithmetic = "core", ties = "core_ties", tsv = "core_tsv", isoC = "core_iso_c"
    }
    public let inner: Inner
    public var name: String { inner.rawValue }
    public var needsDensity: Bool { inner == .ties }
    public var electsSigns: Bool { inner == .ties }
    public init(_ inner: Inner) { self.inner = inner }

    public func merge(_ inputs: [Adapter], options o: MergeOptions, progress: ((OperatorProgress) -> Void)?) throws -> Adapter {
        try MergeSupport.perModule(inputs, o, method: name, needsDensity: needsDensity, progress: progress) { _, mods in
            _ = try MergeSupport.sameShape(mods, inputs)  // shapes checked
            let (bStack, aStack) = LowRank.stack(mods.map { _, m in (Float(m.scaling) * m.b.tensor, m.a.tensor) })
            let ub = try CoreSpace.span(bStack, left: true)  // [out, kB]
            let va = try CoreSpace.span(aStack, left: false)  // [kA, in]
            guard ub.cols > 0, va.rows > 0 else { return nil }
            // Each task's core as factors: (U_Bᵀ·s_i B_i) [kB, r_i] · (A_i·V_A) [r_i, kA], and weighted by w_i.
            let plainCores = mods.map { _, m in
                (b: BLAS.matmul(ub, Float(m.scaling) * m.b.tensor, transA: true), a: BLAS.matmul(m.a.tensor, va, transB: true))
            }
            let cores = zip(mods, plainCores).map { mod, c in (b: Float(o.weights[mod.0]) * c.b, a: c.a) }
            let kB = ub.cols
            let kA = va.rows
            let merged: Tensor
            switch inner {
            case .taskArithmetic:
                var sum = Tensor(zeros: [kB, kA])
                for c in cores { sum = sum + BLAS.matmul(c.b, c.a) }
                merged = sum
            case .ties:
                // The reference prunes and elects signs on the unweighted cores, then weights.
                let plain = plainCores.map { BLAS.matmul($0.b, $0.a).data }
                merged = Tensor(shape: [kB, kA], data: TaskVectors.svdSpaceTies(plain, density: o.density ?? 1, weights: mods.map { o.weights[$0.0] }))
            case .tsv:
                guard let (b, a) = try TSV.combine(cores, tasks: inputs.count, out: kB, inF: kA) else { return nil }
                merged = BLAS.matmul(b, a)
            case .isoC:
                let (cb, ca) = LowRank.stack(cores)
                guard let (b, a) = try IsoC.isotropic(b: cb, a: ca) else { return nil }
                merged = BLAS.matmul(b, a)
            }
            return (BLAS.matmul(ub, merged), va)
        }
    }

    /// The numerical span of a stack's columns (left: U [rows, k]) or rows (right: Vᵀ [k, cols]), from its
    /// thin SVD, singular values above 1e-6·σ_max.
    static func span(_ m: Tensor, left: Bool) throws -> Tensor {
        let (u, s, vt) = try LAPACK.svd(m)
        let top = s.first ?? 0
        let k = s.prefix { $0 > top * 1e-6 && $0 > 0 }.count
        return left ? LowRank.columns(u, k) : LowRank.rows(vt, k)
    }
}
