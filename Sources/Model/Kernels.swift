import Numerics
#if canImport(Glibc)
import Glibc
#endif

/// The kernels of the transformer blocks, each forward beside its backward (llm.c style), over flat
/// row-major buffers with their dimensions named once. Inference (`BertModel`, `LlamaModel`) and the
/// differentiable models of training (`DifferentiableBert`, `DifferentiableLlama`) call the same
/// functions, so a forward pass is written once; what a backward needs is what its forward can keep
/// (the optional outputs). Row-wise kernels split their rows over `Parallel`'s threads (rows are
/// independent, so the result does not depend on the split). See Docs/architecture.md.
public enum Kernels {
    // MARK: LayerNorm

    /// y = (x − mean)·rstd·w + b over rows of width d, in place (biased variance, as torch). With `xhat`
    /// and `rstd` the normalized rows [rows, d] and 1/σ [rows] are kept for the backward.
    public static func layerNormForward(
        _ x: UnsafeMutablePointer<Float>, rows: Int, d: Int, weight: [Float], bias: [Float], eps: Float,
        xhat: UnsafeMutablePointer<Float>? = nil, rstd: UnsafeMutablePointer<Float>? = nil
    ) {
        weight.withUnsafeBufferPointer { w in
            bias.withUnsafeBufferPointer { b in
                Parallel.forEach(rows, minChunk: 16) { range in
                    for r in range {
                        let row = x + r * d
                        var mean: Float = 0
                        for j in 0..<d { mean += row[j] }
                        mean /= Float(d)
                        var v: Float = 0
                        for j in 0..<d {
                            let c = row[j] - mean
                            v += c * c
                        }
                        v /= Float(d)
                        let inv = 1 / (v + eps).squareRoot()
                        rstd?[r] = inv
                        for j in 0..<d {
                            let h = (row[j] - mean) * inv
                            xhat?[r * d + j] = h
                            row[j] = h * w[j] + b[j]
                        }
                    }
                }
            }
        }
    }

    /// dx = rstd · (g − mean(g) − x̂·mean(g·x̂)) with g = dy ⊙ w, from the forward's x̂ and rstd.
    public static func layerNormBackward(_ dy: [Float], xhat: [Float], rstd: [Float], weight w: [Float], rows: Int, d: Int) -> [Float] {
        var dx = [Float](repeating: 0, count: rows * d)
        for r in 0..<rows {
            var m1: Float = 0
            var m2: Float = 0
            for j in 0..<d {
                let g = dy[r * d + j] * w[j]
                m1 += g
                m2 += g * xhat[r * d + j]
            }
            m1 /= Float(d)
            m2 /= Float(d)
            for j in 0..<d {
                let g = dy[r * d + j] * w[j]
                dx[r * d + j] = rstd[r] * (g - m1 - xhat[r * d + j] * m2)
            }
        }
        return dx
    }

    // MARK: RMSNorm

    /// out[r] = w ⊙ x[r]·rms, rms = (mean(x[r]²) + eps)^-½ (LLaMA RMSNorm, in Float32 as transformers).
    /// With `rms` the factor [rows] is kept for the backward.
    public static func rmsNormForward(
        _ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, rows: Int, d: Int, weight: [Float], eps: Float,
        rms: UnsafeMutablePointer<Float>? = nil
    ) {
        weight.withUnsafeBufferPointer { w in
            Parallel.forEach(rows, minChunk: 16) { range in
                for r in range {
                    let row = x + r * d
                    let o = out + r * d
                    var ss: Float = 0
                    for j in 0..<d { ss += row[j] * row[j] }
                    let inv = 1 / (ss / Float(d) + eps).squareRoot()
                    rms?[r] = inv
                    for j in 0..<d { o[j] = w[j] * (row[j] * inv) }
                }
            }
        }
    }

    /// dx = r·g − x·r³·(Σ g·x)/d with g = w ⊙ dy, from the forward's input x and factor r.
    public static func rmsNormBackward(_ dy: [Float], x: [Float], rms r: [Float], weight w: [Float], rows: Int, d: Int) -> [Float] {
        var dx = [Float](repeating: 0, count: rows * d)
        for i in 0..<rows {
            var dot: Float = 0
            for j in 0..<d { dot += w[j] * dy[i * d + j] * x[i * d + j] }
            let r3 = r[i] * r[i] * r[i] / Float(d)
            for j in 0..<d { dx[i * d + j] = r[i] * w[j] * dy[i * d + j] - x[i * d + j] * r3 * dot }
        }
        return dx
    }

    // MARK: RoPE

    /// Rotary position embedding in place over rows of `heads` heads of width d: each pair (i, i + d/2)
    /// of a head rotated by the row's angle (cos/sin tables [rows, d/2], LLaMA's rotate_half layout).
    public static func ropeForward(_ x: UnsafeMutablePointer<Float>, rows: Int, heads: Int, headDim d: Int, cos: [Float], sin: [Float]) {
        rotate(x, rows: rows, heads: heads, headDim: d, cos: cos, sin: sin, sign: 1)
    }

    /// RoPE is a rotation: its backward rotates the gradient back (by the negative angle), in place.
    public static func ropeBackward(_ dx: UnsafeMutablePointer<Float>, rows: Int, heads: Int, headDim d: Int, cos: [Float], sin: [Float]) {
        rotate(dx, rows: rows, heads: heads, headDim: d, cos: cos, sin: sin, sign: -1)
    }

    static func rotate(_ x: UnsafeMutablePointer<Float>, rows: Int, heads: Int, headDim: Int, cos: [Float], sin: [Float], sign: Float) {
        let half = headDim / 2
        for r in 0..<rows {
            for i in 0..<half {
                let c = cos[r * half + i]
                let s = sign * sin[r * half + i]
                for h in 0..<heads {
                    let base = x + r * heads * headDim + h * headDim
                    let a = base[i]
                    let b = base[i + half]
                    base[i] = a * c - b * s
                    base[i + half] = b * c + a * s
                }
            }
        }
    }

    // MARK: GELU

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

    /// e^v in Float32 for v ≤ 0 (clamped below at −87, where it is ~1.6e-38): v = n·ln2 + r with |r| ≤ ln2/2
    /// (Cody–Waite split of ln2), e^r by its degree-7 Taylor polynomial, times 2ⁿ built in the exponent
    /// bits; within about 1 ulp of expf (relative 1.5e-7), branch-free so the loop around it vectorizes (expf is a call).
    @inline(__always)
    public static func expNegApprox(_ v: Float) -> Float {
        let x = max(min(v, 0), -87)
        // n = round(x/ln2) by the 1.5·2²³ shift: t's low mantissa bits then hold n (no checked conversion).
        let t = x * 1.44269504088896341 + 12_582_912
        let n = t - 12_582_912
        let r = (x - n * 0.693359375) + n * 2.12194440e-4
        var p: Float = 1.0 / 5040
        p = p * r + 1.0 / 720
        p = p * r + 1.0 / 120
        p = p * r + 1.0 / 24
        p = p * r + 1.0 / 6
        p = p * r + 0.5
        p = p * r + 1
        p = p * r + 1
        return p * Float(bitPattern: (t.bitPattern &- 0x4B40_0000 &+ 127) << 23)
    }

    /// GELU in place: 0.5·x·(1 + erf(x/√2)).
    public static func geluForward(_ x: UnsafeMutablePointer<Float>, count: Int) {
        Parallel.forEach(count, minChunk: 4096) { r in
            for i in r {
                let v = x[i]
                x[i] = 0.5 * v * (1 + erfApprox(v * 0.70710678118654752))
            }
        }
    }

    /// dx = dy · GELU'(x), GELU'(x) = Φ(x) + x·φ(x) with the forward's erf; `x` is the forward's input.
    public static func geluBackward(_ dy: inout [Float], x: [Float]) {
        dy.withUnsafeMutableBufferPointer { pd in
            x.withUnsafeBufferPointer { px in
                for i in 0..<min(pd.count, px.count) {
                    let v = px[i]
                    pd[i] *= 0.5 * (1 + erfApprox(v * 0.70710678118654752)) + v * expNegApprox(-0.5 * v * v) * 0.3989422804014327
                }
            }
        }
    }

    // MARK: tanh (the BERT pooler)

    public static func tanhForward(_ x: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { x[i] = tanhf(x[i]) }
    }

    // MARK: SwiGLU

    /// gate ← silu(gate) ⊙ up.
    public static func swigluForward(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count: Int) {
        Parallel.forEach(count, minChunk: 4096) { r in
            for i in r {
                let g = gate[i]
                gate[i] = g / (1 + expf(-g)) * up[i]
            }
        }
    }

    /// The gradients of gate and up from d(silu(g) ⊙ u), with the forward's g and u.
    public static func swigluBackward(_ da: [Float], gate g: [Float], up u: [Float]) -> (dGate: [Float], dUp: [Float]) {
        var dg = da
        var du = da
        for i in da.indices {
            let sg = 1 / (1 + expf(-g[i]))
            du[i] = da[i] * g[i] * sg
            dg[i] = da[i] * u[i] * sg * (1 + g[i] * (1 - sg))
        }
        return (dg, du)
    }

    // MARK: softmax

    /// Softmax of one row in place over its first n entries (a row of -inf only becomes 0).
    @inline(__always)
    public static func softmaxForward(_ row: UnsafeMutablePointer<Float>, n: Int) {
        var m = -Float.infinity
        for j in 0..<n { m = max(m, row[j]) }
        if m == -Float.infinity {
            for j in 0..<n { row[j] = 0 }
            return
        }
        var z: Float = 0
        for j in 0..<n {
            let e = expf(row[j] - m)
            row[j] = e
            z += e
        }
        let inv = 1 / z
        for j in 0..<n { row[j] *= inv }
    }

    /// In place: P ← P ⊙ (dP − rowsum(dP ⊙ P))·scale, the gradient of the pre-softmax scores (times the
    /// score scale of attention), from the forward's probabilities P [rows, cols].
    public static func softmaxBackward(_ P: UnsafeMutablePointer<Float>, _ dP: UnsafePointer<Float>, rows: Int, cols: Int, scale: Float) {
        for t in 0..<rows {
            var dot: Float = 0
            for u in 0..<cols { dot += dP[t * cols + u] * P[t * cols + u] }
            for u in 0..<cols { P[t * cols + u] = P[t * cols + u] * (dP[t * cols + u] - dot) * scale }
        }
    }

    // MARK: attention

    /// The shapes of one multi-head attention: B sequences of T queries over S keys, H query heads of
    /// width d, KV key/value heads (GQA: head h reads kv head h / (H/KV)). q and out are [B, T, H·d],
    /// k and v [B, S, KV·d]. Key s of sequence b is visible iff keyValid[b][s − keyOffset] ≠ 0 (keys
    /// before keyOffset, cached ones, always are) and, when causal, s ≤ keyOffset + t.
    public struct AttentionShape: Sendable {
        public var B, T, S, heads, kvHeads, headDim: Int
        public var keyOffset = 0
        public var causal: Bool
        public init(B: Int, T: Int, S: Int, heads: Int, kvHeads: Int, headDim: Int, keyOffset: Int = 0, causal: Bool) {
            self.B = B
            self.T = T
            self.S = S
            self.heads = heads
            self.kvHeads = kvHeads
            self.headDim = headDim
            self.keyOffset = keyOffset
            self.causal = causal
        }
        var scale: Float { 1 / Float(headDim).squareRoot() }
    }

    /// softmax(q kᵀ·scale + mask) v for every (sequence, head), parallel over them. With `probs`
    /// ([B, H, T, S]) the probabilities are kept for the backward; with `dropout` (same shape, 0 or
    /// 1/(1−p)) the dropped probabilities feed the context while the undropped ones are kept.
    public static func attentionForward(
        q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>,
        _ a: AttentionShape, keyValid: [[Int]], probs: UnsafeMutablePointer<Float>? = nil,
        dropout: UnsafePointer<Float>? = nil
    ) {
        let (T, S, H, KV, d) = (a.T, a.S, a.heads, a.kvHeads, a.headDim)
        let group = H / KV
        let scale = a.scale
        Parallel.forEach(a.B * H) { items in
            var scratch = [Float](repeating: 0, count: (probs == nil ? T * S : 0) + (dropout == nil ? 0 : T * S))
            scratch.withUnsafeMutableBufferPointer { sp in
                for item in items {
                    let b = item / H
                    let h = item % H
                    let kh = h / group
                    let P = probs.map { $0 + item * T * S } ?? sp.baseAddress!
                    let qb = q + b * T * H * d
                    let kb = k + b * S * KV * d
                    let vb = v + b * S * KV * d
                    let ob = out + b * T * H * d
                    BLAS.sgemm(
                        transA: false, transB: true, m: T, n: S, k: d, alpha: scale,
                        a: qb + h * d, lda: H * d, b: kb + kh * d, ldb: KV * d, c: P, ldc: S)
                    let valid = keyValid[b]
                    for t in 0..<T {
                        let row = P + t * S
                        let limit = a.causal ? min(S, a.keyOffset + t + 1) : S
                        for s in limit..<S { row[s] = -.infinity }
                        for s in a.keyOffset..<limit where valid[s - a.keyOffset] == 0 { row[s] = -.infinity }
                        softmaxForward(row, n: S)
                    }
                    var used = UnsafePointer(P)
                    if let mask = dropout {
                        let pd = sp.baseAddress! + (probs == nil ? T * S : 0)
                        for i in 0..<(T * S) { pd[i] = P[i] * mask[item * T * S + i] }
                        used = UnsafePointer(pd)
                    }
                    BLAS.sgemm(
                        transA: false, transB: false, m: T, n: d, k: S,
                        a: used, lda: S, b: vb + kh * d, ldb: KV * d, c: ob + h * d, ldc: H * d)
                }
            }
        }
    }

    /// The gradients of q, k and v [as the forward's] from dctx into dq (overwritten) and dk, dv (accumulated:
    /// they sum over the query heads that share a kv head, so the caller zeroes them), with the forward's q,
    /// k, v, probabilities and dropout mask. One thread: training runs one worker per core.
    public static func attentionBackward(
        dctx: UnsafePointer<Float>, q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
        probs: UnsafePointer<Float>, dropout: UnsafePointer<Float>?,
        dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>, dv: UnsafeMutablePointer<Float>, _ a: AttentionShape
    ) {
        let (B, T, S, H, KV, d) = (a.B, a.T, a.S, a.heads, a.kvHeads, a.headDim)
        let group = H / KV
        let scale = a.scale
        var scratch = [Float](repeating: 0, count: 3 * T * S)
        scratch.withUnsafeMutableBufferPointer { sp in
            let pp = sp.baseAddress!
            let ppd = pp + T * S
            let pdp = ppd + T * S
            for b in 0..<B {
                for h in 0..<H {
                    let kh = h / group
                    let base = (b * H + h) * T * S
                    pp.update(from: probs + base, count: T * S)
                    if let mask = dropout { for i in 0..<(T * S) { ppd[i] = pp[i] * mask[base + i] } }
                    let used = dropout == nil ? pp : ppd
                    let dcb = dctx + b * T * H * d + h * d
                    let kvOff = b * S * KV * d + kh * d
                    // dPd = dctx vᵀ; dv += Pdᵀ dctx
                    BLAS.sgemm(transA: false, transB: true, m: T, n: S, k: d, a: dcb, lda: H * d, b: v + kvOff, ldb: KV * d, c: pdp, ldc: S)
                    BLAS.sgemm(transA: true, transB: false, m: S, n: d, k: T, a: used, lda: S, b: dcb, ldb: H * d, beta: 1, c: dv + kvOff, ldc: KV * d)
                    if let mask = dropout { for i in 0..<(T * S) { pdp[i] *= mask[base + i] } }
                    softmaxBackward(pp, pdp, rows: T, cols: S, scale: scale)
                    // dq = dS k; dk += dSᵀ q
                    BLAS.sgemm(
                        transA: false, transB: false, m: T, n: d, k: S, a: pp, lda: S, b: k + kvOff, ldb: KV * d,
                        c: dq + b * T * H * d + h * d, ldc: H * d)
                    BLAS.sgemm(
                        transA: true, transB: false, m: S, n: d, k: T, a: pp, lda: S, b: q + b * T * H * d + h * d, ldb: H * d, beta: 1,
                        c: dk + kvOff, ldc: KV * d)
                }
            }
        }
    }

    // MARK: packed sequences

    /// Sequences of different lengths stored back to back without padding: sequence b is rows
    /// starts[b]..<starts[b] + lengths[b] of every [rows, width] activation. Row-wise work (linears, norms,
    /// activations) runs over all rows at once, attention over each sequence on its own, so no padding
    /// position is ever computed; a padded batch with its key mask gives the same values at the real tokens.
    public struct Packing: Sendable {
        public let lengths: [Int]
        public let starts: [Int]
        public let rows: Int
        public init(lengths: [Int]) {
            self.lengths = lengths
            var s: [Int] = []
            var r = 0
            for n in lengths {
                s.append(r)
                r += n
            }
            starts = s
            rows = r
        }
        public var count: Int { lengths.count }
        /// Where each sequence's [heads, T, T] attention probabilities start in one buffer, and its size.
        public func probabilityStarts(heads: Int) -> (starts: [Int], count: Int) {
            var s: [Int] = []
            var r = 0
            for n in lengths {
                s.append(r)
                r += heads * n * n
            }
            return (s, r)
        }
    }

    /// Self-attention over packed sequences (each sequence attends to itself only, causally when asked):
    /// `attentionForward` on every sequence, with `probs` and `dropout` laid out by `probabilityStarts`.
    public static func attentionForward(
        packed p: Packing, q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>,
        heads: Int, kvHeads: Int, headDim: Int, causal: Bool, probs: UnsafeMutablePointer<Float>? = nil, dropout: UnsafePointer<Float>? = nil
    ) {
        let ps = p.probabilityStarts(heads: heads).starts
        for b in 0..<p.count where p.lengths[b] > 0 {
            let n = p.lengths[b]
            let shape = AttentionShape(B: 1, T: n, S: n, heads: heads, kvHeads: kvHeads, headDim: headDim, causal: causal)
            let r = p.starts[b]
            attentionForward(
                q: q + r * heads * headDim, k: k + r * kvHeads * headDim, v: v + r * kvHeads * headDim, out: out + r * heads * headDim, shape,
                keyValid: [[Int](repeating: 1, count: n)], probs: probs.map { $0 + ps[b] }, dropout: dropout.map { $0 + ps[b] })
        }
    }

    /// The backward of `attentionForward(packed:)`: dq, dk, dv [rows, heads·d / kvHeads·d], new arrays.
    public static func attentionBackward(
        packed p: Packing, dctx: [Float], q: [Float], k: [Float], v: [Float], probs: [Float], dropout: [Float]?,
        heads: Int, kvHeads: Int, headDim: Int
    ) -> (dq: [Float], dk: [Float], dv: [Float]) {
        var dq = [Float](repeating: 0, count: p.rows * heads * headDim)
        var dk = [Float](repeating: 0, count: p.rows * kvHeads * headDim)
        var dv = dk
        let ps = p.probabilityStarts(heads: heads).starts
        let drop = dropout ?? []
        dctx.withUnsafeBufferPointer { pdc in
            q.withUnsafeBufferPointer { pq in
                k.withUnsafeBufferPointer { pk in
                    v.withUnsafeBufferPointer { pv in
                        probs.withUnsafeBufferPointer { pp in
                            drop.withUnsafeBufferPointer { pd in
                                dq.withUnsafeMutableBufferPointer { pdq in
                                    dk.withUnsafeMutableBufferPointer { pdk in
                                        dv.withUnsafeMutableBufferPointer { pdv in
                                            for b in 0..<p.count where p.lengths[b] > 0 {
                                                let n = p.lengths[b]
                                                let (qo, ko) = (p.starts[b] * heads * headDim, p.starts[b] * kvHeads * headDim)
                                                attentionBackward(
                                                    dctx: pdc.baseAddress! + qo, q: pq.baseAddress! + qo, k: pk.baseAddress! + ko, v: pv.baseAddress! + ko,
                                                    probs: pp.baseAddress! + ps[b], dropout: dropout == nil ? nil : pd.baseAddress! + ps[b],
                                                    dq: pdq.baseAddress! + qo, dk: pdk.baseAddress! + ko, dv: pdv.baseAddress! + ko,
                                                    AttentionShape(B: 1, T: n, S: n, heads: heads, kvHeads: kvHeads, headDim: headDim, causal: false))
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return (dq, dk, dv)
    }

    // MARK: cross-entropy

    /// −log softmax(logits)[target] for one row of n logits (in Double: max-shifted sum of exponentials),
    /// and, with `dlogits`, its gradient (softmax − onehot) / divisor · scale written there (divisor: the
    /// number of rows the loss is averaged over).
    public static func crossEntropy(
        _ logits: UnsafePointer<Float>, n: Int, target: Int, dlogits: UnsafeMutablePointer<Float>? = nil,
        divisor: Double = 1, scale: Float = 1
    ) -> Double {
        var m = -Float.infinity
        for j in 0..<n { m = max(m, logits[j]) }
        var z = 0.0
        for j in 0..<n { z += exp(Double(logits[j] - m)) }
        if let dl = dlogits {
            for j in 0..<n {
                let p = exp(Double(logits[j] - m)) / z
                dl[j] = Float((p - (j == target ? 1 : 0)) / divisor) * scale
            }
        }
        return Glibc.log(z) + Double(m) - Double(logits[target])
    }

    /// −log softmax(row)[target] of one row of logits.
    public static func crossEntropy(_ row: ArraySlice<Float>, target: Int) -> Double {
        row.withUnsafeBufferPointer { crossEntropy($0.baseAddress!, n: $0.count, target: target) }
    }
}
