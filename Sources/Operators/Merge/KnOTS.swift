import Checkpoint
import Numerics

/// KnOTS-TIES (Stoica et al., "Model merging with SVD to tie the KnOTS", arXiv 2410.19735; the reference
/// code's `SVDMerger` with `ties_masking` and `masked_merge`): per module, the thin SVD of the deltas side
/// by side, [Δ_1 … Δ_T] = U·diag(σ)·[V_1ᵀ … V_Tᵀ] with Δ_i = s_i B_i A_i (a module an input lacks is an
/// exactly zero delta), aligns the tasks in one basis U; each task is represented by σ·V_iᵀ [k, in]. TIES then
/// runs on those representations, every module of a task in one vector (as the reference flattens the
/// whole model): top-k by magnitude at `--density`, sign election, and the mean of the weighted values
/// that agree (`TaskVectors.svdSpaceTies`). The merge is U·(merged σV) per module: B = U [out, k],
/// A = the merged σV [k, in], k = the numerical rank of the side-by-side deltas (≤ Σ r_i; singular values
/// above 1e-5, the reference's cut, and above 1e-6·σ_max, what Float32 resolves). Low-rank: the SVD comes
/// from QR of the stacked factors; out×in is never formed.
public struct KnOTS: MergeMethod {
    public let name = "knots"
    public var needsDensity: Bool { true }
    public var electsSigns: Bool { true }
    public init() {}

    public func merge(_ inputs: [Adapter], options o: MergeOptions, progress: ((OperatorProgress) -> Void)?) throws -> Adapter {
        try MergeSupport.check(inputs, o, method: name, needsDensity: needsDensity)
        try MergeSupport.refuseDora(inputs, method: name)
        let t = inputs.count
        // 1. Per module: the shared basis U and each task's σ·V_iᵀ.
        var spaces: [(name: String, mods: [(Int, LoraModule)], u: Tensor, sv: [Tensor])] = []
        let aligned = MergeSupport.aligned(inputs)
        for (idx, (name, mods)) in aligned.enumerated() {
            progress?(.module(name: name, index: idx, total: aligned.count))
            let (_, inF) = try MergeSupport.sameShape(mods, inputs)
            // The inputs that have the module, side by side (A block-diagonal); the others' blocks are zero.
            let (b, a) = LowRank.stack(mods.map { _, m in (Float(m.scaling) * m.b.tensor, m.a.tensor) }, blockDiagonal: true)
            var (u, s, vt) = try LowRank.span(b: b, a: a)
            let k = s.prefix { $0 > 1e-5 }.count
            if k < s.count {
                u = LowRank.columns(u, k)
                s = Array(s.prefix(k))
                vt = LowRank.rows(vt, k)
            }
            guard k > 0 else { continue }
            var sv = [Tensor](repeating: Tensor(zeros: [k, inF]), count: t)
            for (p, (i, _)) in mods.enumerated() {
                for j in 0..<k { for c in 0..<inF { sv[i][j, c] = s[j] * vt[j, p * inF + c] } }
            }
            spaces.append((name, mods, u, sv))
        }
        // 2. TIES over each task's whole representation (all modules, in name order).
        let merged = TaskVectors.svdSpaceTies(
            (0..<t).map { i in spaces.flatMap { $0.sv[i].data } },
            density: o.density ?? 1, weights: o.weights)
        // 3. Back to factors: B = U, A = the merged σV of the module.
        var off = 0
        var factors: [(String, [(Int, LoraModule)], Tensor, Tensor)] = []
        for sp in spaces {
            let shape = sp.sv[0].shape
            let n = shape[0] * shape[1]
            factors.append((sp.name, sp.mods, sp.u, Tensor(shape: shape, data: Array(merged[off..<(off + n)]))))
            off += n
        }
        return try MergeSupport.assemble(inputs, o, method: name, factors)
    }
}
