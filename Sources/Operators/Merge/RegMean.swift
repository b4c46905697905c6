import Checkpoint
import Numerics

/// RegMean (Jin et al., ICLR 2023), the closed-form data-aware merge: per linear layer, the delta minimizing
/// Σ_i ||X_i ΔW_iᵀ − X_i ΔWᵀ||² over the inputs' activations, ΔW* = (Σ ΔW_i G̃_i)(Σ G̃_i)⁻¹ with
/// G_i = X_iᵀX_i / n_i and G̃ = a·G + (1 − a)·diag(G). Written without loss as a LoRA of rank Σ r_i:
/// B* = [s_1 B_1 … s_k B_k], A*'s rows A_i G̃_i (Σ G̃)⁻¹ (solved by Cholesky in Float64); with `--rank K` the
/// best rank K in the activation-weighted norm ||(ΔW* − X) L||_F, L the Cholesky factor of Σ G̃ (SVD of
/// ΔW* L, mapped back through L⁻¹). A module an input lacks is a zero delta whose Gram still counts; embedding
/// modules, biases and heads merge as task arithmetic with weight 1.
public struct RegMean: MergeMethod {
    public let name = "regmean"
    public var needsActivations: Bool { true }
    public init() {}

    public func merge(_ inputs: [Adapter], options o: MergeOptions, progress: ((OperatorProgress) -> Void)?) throws -> Adapter {
        guard let grams = o.grams, grams.count == inputs.count else {
            throw MergeError(nil, "regmean needs each input's activation statistics: give --model and --data (one data file per adapter)")
        }
        if let w = o.weights.first(where: { $0 != 1 }) {
            throw MergeError(nil, "regmean takes no weights (its weighting is the activations'); got \(w)")
        }
        guard o.regmeanAlpha >= 0 && o.regmeanAlpha <= 1 else { throw MergeError(nil, "--regmean-alpha must be in [0, 1], got \(o.regmeanAlpha)") }
        if let h = inputs.first(where: { $0.variant == .hira }) {
            throw MergeError(h.source, "is a HiRA adapter: its delta W ⊙ (s·B·A) is not what regmean solves for")
        }
        return try MergeSupport.perModule(inputs, o, method: name, progress: progress) { name, mods in
            let (out, inF) = try MergeSupport.sameShape(mods, inputs)
            if mods[0].1.isEmbedding { return try Concat.factors(mods, weights: o.weights, source: inputs) }
            var shrunk: [[Double]] = []
            for (i, g) in grams.enumerated() {
                guard let gi = g[name] else { throw MergeError(inputs[i].source, "no activation statistics for module '\(name)'") }
                guard gi.dim == inF else {
                    throw MergeError(inputs[i].source, "module '\(name)': activation Gram is \(gi.dim)x\(gi.dim), the layer takes \(inF) inputs")
                }
                shrunk.append(gi.shrunk(o.regmeanAlpha))
            }
            let factors = mods.map { i, m in (i, m.scaling, m.b.tensor, m.a.tensor) }
            return try Self.solve(name: name, out: out, inF: inF, factors: factors, shrunk: shrunk, rank: o.rank)
        }
    }

    /// The merged factors (B [out, k], A [k, in]) of one module from each present input's (index, scaling,
    /// B, A) and every input's G̃.
    static func solve(
        name: String, out: Int, inF: Int, factors: [(Int, Double, Tensor, Tensor)], shrunk: [[Double]], rank: Int?
    ) throws -> (b: Tensor, a: Tensor) {
        var sum = [Double](repeating: 0, count: inF * inF)
        for g in shrunk { for j in 0..<sum.count { sum[j] += g[j] } }
        // Singular, or so near it that a pivot is lost in rounding (relative to the largest variance).
        var l: [Double] = []
        let scale = (0..<inF).map { sum[$0 * inF + $0] }.max() ?? 0
        if let f = try? LAPACK.cholesky(sum, n: inF), scale > 0, (0..<inF).allSatisfy({ f[$0 * inF + $0] * f[$0 * inF + $0] > 1e-10 * scale }) { l = f }
        if l.isEmpty {
            throw MergeError(
                nil,
                "module '\(name)': the sum of the inputs' activation Grams is singular (some input features never vary); give --regmean-alpha below 1 (e.g. 0.9) to lean on their diagonal"
            )
        }
        // A*_i = A_i G̃_i S⁻¹, i.e. (A*_i)ᵀ = S⁻¹ G̃_i A_iᵀ (S symmetric).
        var bCols: [Tensor] = []
        var aRows: [Tensor] = []
        for (i, s, b, a) in factors {
            let r = a.rows
            let rhs = BLAS.dgemm(shrunk[i], a.transposed().data.map(Double.init), m: inF, n: r, k: inF)
            let x = try LAPACK.choleskySolve(l, n: inF, rhs, nrhs: r)  // (A*_i)ᵀ [in, r]
            aRows.append(Tensor(shape: [inF, r], data: x.map(Float.init)).transposed())
            bCols.append(Float(s) * b)
        }
        let (bStar, aStar) = LowRank.stack(zip(bCols, aRows).map { ($0, $1) })
        guard let k = rank, k < aStar.rows else { return (bStar, aStar) }
        // Best rank k in ||(ΔW* − X) L||_F: SVD of ΔW* L = B* (A* L), then A = V_kᵀ L⁻¹.
        let R = aStar.rows
        let aL = BLAS.dgemm(aStar.data.map(Double.init), l, m: R, n: inF, k: inF)
        let m = BLAS.dgemm(bStar.data.map(Double.init), aL, m: out, n: inF, k: R)
        let (u, sv, vt) = try LAPACK.svd(m, m: out, n: inF)
        let kk = min(k, sv.count)
        var bK = Tensor(zeros: [out, kk])
        for p in 0..<out { for q in 0..<kk { bK[p, q] = Float(u[p * sv.count + q] * sv[q]) } }
        var vk = [Double](repeating: 0, count: inF * kk)  // V_k [in, k]
        for p in 0..<inF { for q in 0..<kk { vk[p * kk + q] = vt[q * inF + p] } }
        let y = try LAPACK.lowerSolve(l, n: inF, vk, nrhs: kk, transpose: true)  // Lᵀ Y = V_k: Y = L⁻ᵀ V_k = Aᵀ
        return (bK, Tensor(shape: [inF, kk], data: y.map(Float.init)).transposed())
    }
}
