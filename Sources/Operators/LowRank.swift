import Numerics

/// Low-rank linear algebra on factored deltas: a delta B·A (B [out, R], A [R, in]) is never formed.
public enum LowRank {
    /// The best rank-k factorization of B·A: QR of B and of Aᵀ, SVD of the small core Rb·Raᵀ.
    /// Returns B' = Qb·U_k·S_k [out, k'] and A' = V_kᵀ·Qaᵀ [k', in] with k' = min(k, rank bound), and all
    /// singular values of B·A (descending).
    public static func truncate(b: Tensor, a: Tensor, k: Int) throws -> (b: Tensor, a: Tensor, singular: [Float]) {
        let (qb, rb) = try LAPACK.qr(b)  // [out, kb], [kb, R]
        let (qa, ra) = try LAPACK.qr(a.transposed())  // [in, ka], [ka, R]
        let core = BLAS.matmul(rb, ra, transB: true)  // [kb, ka]
        let (u, s, vt) = try LAPACK.svd(core)
        let (us, vk) = top(u: u, s: s, vt: vt, k: k)
        let newB = BLAS.matmul(qb, us)  // [out, kk]
        let newA = BLAS.matmul(vk, qa, transB: true)  // [kk, in]
        return (newB, newA, s)
    }

    /// The thin SVD of B·A on its numerical span (σ > 1e-6·σ_max; Float32 resolves no smaller ones), at most
    /// `maxRank` triplets: U [out, k], σ (descending), Vᵀ [k, in]. Never forms out×in.
    public static func span(b: Tensor, a: Tensor, maxRank: Int? = nil) throws -> (u: Tensor, s: [Float], vt: Tensor) {
        let (us, vt, s) = try truncate(b: b, a: a, k: maxRank ?? b.cols)  // us = U·S
        let top = s.first ?? 0
        let k = min(us.cols, s.prefix { $0 > top * 1e-6 }.count)
        var u = Tensor(zeros: [us.rows, k])
        var v = Tensor(zeros: [k, vt.cols])
        for i in 0..<us.rows { for j in 0..<k { u[i, j] = us[i, j] / s[j] } }
        for j in 0..<k { for c in 0..<vt.cols { v[j, c] = vt[j, c] } }
        return (u, Array(s.prefix(k)), v)
    }

    /// (U_k·S_k, V_kᵀ) from an SVD, k clamped to the number of singular values.
    public static func top(u: Tensor, s: [Float], vt: Tensor, k: Int) -> (Tensor, Tensor) {
        let kk = min(k, s.count)
        var us = Tensor(zeros: [u.rows, kk])
        for i in 0..<u.rows { for j in 0..<kk { us[i, j] = u[i, j] * s[j] } }
        var v = Tensor(zeros: [kk, vt.cols])
        for i in 0..<kk { for j in 0..<vt.cols { v[i, j] = vt[i, j] } }
        return (us, v)
    }

    /// The factors of Σ b_i a_i side by side: B = [b_1 … b_T] [out, Σ k_i] and A = [a_1; …; a_T] [Σ k_i, in]
    /// (every b_i has `out` rows, every a_i `in` columns). With `blockDiagonal`, A is [Σ k_i, T·in] with a_i
    /// in column block i, so B·A = [b_1 a_1 … b_T a_T] (the deltas side by side).
    public static func stack(_ pairs: [(b: Tensor, a: Tensor)], blockDiagonal: Bool = false) -> (b: Tensor, a: Tensor) {
        let out = pairs.first?.b.rows ?? 0
        let inF = pairs.first?.a.cols ?? 0
        let total = pairs.reduce(0) { $0 + $1.a.rows }
        var b = Tensor(zeros: [out, total])
        var a = Tensor(zeros: [total, blockDiagonal ? pairs.count * inF : inF])
        var off = 0
        for (p, f) in pairs.enumerated() {
            let k = f.a.rows
            let col0 = blockDiagonal ? p * inF : 0
            for row in 0..<out { for j in 0..<k { b[row, off + j] = f.b[row, j] } }
            for j in 0..<k { for c in 0..<inF { a[off + j, col0 + c] = f.a[j, c] } }
            off += k
        }
        return (b, a)
    }

    /// The first k columns of m.
    public static func columns(_ m: Tensor, _ k: Int) -> Tensor {
        var out = Tensor(zeros: [m.rows, k])
        for i in 0..<m.rows { for j in 0..<k { out[i, j] = m[i, j] } }
        return out
    }

    /// The first k rows of m.
    public static func rows(_ m: Tensor, _ k: Int) -> Tensor {
        Tensor(shape: [k, m.cols], data: Array(m.data.prefix(k * m.cols)))
    }

    /// Pads factors with zero components up to rank k (B gains zero columns, A zero rows).
    public static func pad(b: Tensor, a: Tensor, to k: Int) -> (Tensor, Tensor) {
        let r = a.rows
        guard k > r else { return (b, a) }
        var nb = Tensor(zeros: [b.rows, k])
        for i in 0..<b.rows { for j in 0..<r { nb[i, j] = b[i, j] } }
        var na = Tensor(zeros: [k, a.cols])
        for i in 0..<r { for j in 0..<a.cols { na[i, j] = a[i, j] } }
        return (nb, na)
    }

    /// torch.quantile (linear interpolation) of `values` at q in [0, 1].
    public static func quantile(_ values: [Float], _ q: Double) -> Float {
        guard !values.isEmpty else { return 0 }
        let v = values.sorted()
        let pos = q * Double(v.count - 1)
        let lo = Int(pos.rounded(.down))
        let hi = Int(pos.rounded(.up))
        return Float(Double(v[lo]) + (Double(v[hi]) - Double(v[lo])) * (pos - Double(lo)))
    }

    /// PEFT's svd_clamp: hi = quantile(concat(B, A), q); both factors clamped to [-hi, hi].
    public static func clamp(b: inout Tensor, a: inout Tensor, quantile q: Double) {
        let hi = quantile(b.data + a.data, q)
        let lo = -hi
        for i in b.data.indices { b.data[i] = min(max(b.data[i], lo), hi) }
        for i in a.data.indices { a.data[i] = min(max(a.data[i], lo), hi) }
    }
}
