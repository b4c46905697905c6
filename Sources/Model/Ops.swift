import Numerics
#if canImport(Glibc)
import Glibc
#endif

/// Row-wise kernels of the forward passes (flat row-major buffers, dimensions named once).
/// Each has the shape its backward will need beside it (training issue).
public enum Ops {
    /// out[r] = LayerNorm(x[r]) * w + b over rows of width d (biased variance, as torch).
    public static func layerNorm(_ x: UnsafeMutablePointer<Float>, rows: Int, d: Int, weight: [Float], bias: [Float], eps: Float) {
        weight.withUnsafeBufferPointer { weight in bias.withUnsafeBufferPointer { bias in
        Parallel.forEach(rows, minChunk: 16) { range in
        for r in range {
            let row = x + r * d
            var mean: Float = 0
            for j in 0..<d { mean += row[j] }
            mean /= Float(d)
            var v: Float = 0
            for j in 0..<d { let c = row[j] - mean; v += c * c }
            v /= Float(d)
            let inv = 1 / (v + eps).squareRoot()
            for j in 0..<d { row[j] = (row[j] - mean) * inv * weight[j] + bias[j] }
        }
        } } }
    }

    /// out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w (LLaMA RMSNorm, computed in Float32 as transformers).
    public static func rmsNorm(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, rows: Int, d: Int, weight: [Float], eps: Float) {
        weight.withUnsafeBufferPointer { weight in
        Parallel.forEach(rows, minChunk: 16) { range in
        for r in range {
            let row = x + r * d, o = out + r * d
            var ss: Float = 0
            for j in 0..<d { ss += row[j] * row[j] }
            let inv = 1 / (ss / Float(d) + eps).squareRoot()
            for j in 0..<d { o[j] = weight[j] * (row[j] * inv) }
        }
        } }
    }

    /// erf in Float32 by the rational approximation XLA/Eigen use (clamped to [-4, 4]; error within a few
    /// ulp of erff), branch-free so the loop vectorizes.
    @inline(__always)
    public static func erfApprox(_ v: Float) -> Float {
        let x = min(max(v, -4), 4)
        let x2 = x * x
        var p: Float = -2.72614225801306e-10
        p = p * x2 + 2.77068142495902e-08
        p = p * x2 - 2.10102402082508e-06
        p = p * x2 - 5.69250639462346e-05
        p = p * x2 - 7.34990630326855e-04
        p = p * x2 - 2.95459980854025e-03
        p = p * x2 - 1.60960333262415e-02
        var q: Float = -1.45660718464996e-05
        q = q * x2 - 2.13374055278905e-04
        q = q * x2 - 1.68282697438203e-03
        q = q * x2 - 7.37332916720468e-03
        q = q * x2 - 1.42647390514189e-02
        return x * p / q
    }

    /// GELU: 0.5 x (1 + erf(x / √2)), rows split across threads.
    public static func gelu(_ x: UnsafeMutablePointer<Float>, count: Int) {
        Parallel.forEach(count, minChunk: 4096) { r in
            for i in r { let v = x[i]; x[i] = 0.5 * v * (1 + erfApprox(v * 0.70710678118654752)) }
        }
    }

    /// gate <- silu(gate) * up.
    public static func swiglu(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count: Int) {
        Parallel.forEach(count, minChunk: 4096) { r in
            for i in r { let g = gate[i]; gate[i] = g / (1 + expf(-g)) * up[i] }
        }
    }

    public static func tanh(_ x: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { x[i] = tanhf(x[i]) }
    }

    /// Softmax of one row in place over its first n entries (entries that are -inf get 0).
    @inline(__always)
    public static func softmax(_ row: UnsafeMutablePointer<Float>, n: Int) {
        var m = -Float.infinity
        for j in 0..<n { m = max(m, row[j]) }
        if m == -Float.infinity { for j in 0..<n { row[j] = 0 }; return }
        var z: Float = 0
        for j in 0..<n { let e = expf(row[j] - m); row[j] = e; z += e }
        let inv = 1 / z
        for j in 0..<n { row[j] *= inv }
    }

    /// Multi-head attention for B sequences, all heads, through BLAS, parallel over (sequence, head):
    /// q [B, T, H*d], k/v [B, S, KV*d] (S key positions; GQA: head h reads kv head h / (H/KV)),
    /// out [B, T, H*d]. Key s of sequence b is visible iff keyValid[b][s - keyOffset] (positions before
    /// keyOffset, i.e. cached ones, are always valid) and, when causal, s <= keyOffset + t.
    public static func attention(q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
                                 out: UnsafeMutablePointer<Float>, B: Int, T: Int, S: Int, heads H: Int, kvHeads KV: Int, headDim d: Int,
                                 keyValid: [[Int]], keyOffset: Int, causal: Bool) {
        let group = H / KV
        let scale = 1 / Float(d).squareRoot()
        Parallel.forEach(B * H) { items in
            var scoresBuf = [Float](repeating: 0, count: T * S)
            scoresBuf.withUnsafeMutableBufferPointer { sp in
                let scores = sp.baseAddress!
                for item in items {
                    let b = item / H, h = item % H, kh = h / group
                    let qb = q + b * T * H * d, kb = k + b * S * KV * d, vb = v + b * S * KV * d, ob = out + b * T * H * d
                    BLAS.sgemm(transA: false, transB: true, m: T, n: S, k: d, alpha: scale,
                               a: qb + h * d, lda: H * d, b: kb + kh * d, ldb: KV * d, c: scores, ldc: S)
                    let valid = keyValid[b]
                    for t in 0..<T {
                        let row = scores + t * S
                        let limit = causal ? min(S, keyOffset + t + 1) : S
                        for s in limit..<S { row[s] = -.infinity }
                        for s in keyOffset..<limit where valid[s - keyOffset] == 0 { row[s] = -.infinity }
                        softmax(row, n: S)
                    }
                    BLAS.sgemm(transA: false, transB: false, m: T, n: d, k: S,
                               a: scores, lda: S, b: vb + kh * d, ldb: KV * d, c: ob + h * d, ldc: H * d)
                }
            }
        }
    }
}
