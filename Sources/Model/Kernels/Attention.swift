import Numerics
#if canImport(Glibc)
import Glibc
#endif

// Softmax and scaled dot-product attention over padded batches, forward beside backward.

extension Kernels {
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

    /// The shapes of one multi-head attention: B sequences of T queries over S keys, H query heads of
    /// width d, KV key/value heads (GQA: head h reads kv head h / (H/KV)). q and out are [B, T, H·d],
    /// k and v [B, S, KV·d]. Key s of sequence b is visible iff keyValid[b][s − keyOffset] ≠ 0 (keys
    /// before keyOffset, cached ones, always are) and, when causal, s ≤ keyOffset + t; with a sliding
    /// `window` W also s > keyOffset + t − W (transformers' `sliding_window_overlay`). Scores are q·k times
    /// `scale` (default 1/√d; Gemma: query_pre_attn_scalar^−½), then with `softcap` c: c·tanh(score/c)
    /// (Gemma 2's attn_logit_softcapping).
    public struct AttentionShape: Sendable {
        public var B, T, S, heads, kvHeads, headDim: Int
        public var keyOffset = 0
        public var causal: Bool
        public var options = AttentionOptions()
        public init(
            B: Int, T: Int, S: Int, heads: Int, kvHeads: Int, headDim: Int, keyOffset: Int = 0, causal: Bool,
            options: AttentionOptions = AttentionOptions()
        ) {
            self.B = B
            self.T = T
            self.S = S
            self.heads = heads
            self.kvHeads = kvHeads
            self.headDim = headDim
            self.keyOffset = keyOffset
            self.causal = causal
            self.options = options
        }
        var scale: Float { options.scale ?? 1 / Float(headDim).squareRoot() }
    }

    /// What a family changes in attention: the score scale, logit soft-capping and a sliding window.
    public struct AttentionOptions: Sendable, Equatable {
        public var scale: Float? = nil
        public var softcap: Float? = nil
        public var window: Int? = nil
        public init(scale: Float? = nil, softcap: Float? = nil, window: Int? = nil) {
            self.scale = scale
            self.softcap = softcap
            self.window = window
        }
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
                        if let c = a.options.softcap { for s in 0..<S { row[s] = c * tanhf(row[s] / c) } }
                        // Visible: low ≤ s < limit, and for s ≥ keyOffset its key-valid flag.
                        let limit = a.causal ? min(S, a.keyOffset + t + 1) : S
                        let low = min(limit, a.options.window.map { max(0, a.keyOffset + t - $0 + 1) } ?? 0)
                        for s in 0..<low { row[s] = -.infinity }
                        for s in limit..<S { row[s] = -.infinity }
                        let from = max(a.keyOffset, low)
                        if from < limit { for s in from..<limit where valid[s - a.keyOffset] == 0 { row[s] = -.infinity } }
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
        let cap = a.options.softcap
        var scratch = [Float](repeating: 0, count: (cap == nil ? 3 : 4) * T * S)
        scratch.withUnsafeMutableBufferPointer { sp in
            let pp = sp.baseAddress!
            let ppd = pp + T * S
            let pdp = ppd + T * S
            let raw = pdp + T * S
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
                    if let c = cap {
                        // Through the soft-cap: d(c·tanh(z/c))/dz = 1 − tanh²(z/c), z = scale·q·k recomputed.
                        softmaxBackward(pp, pdp, rows: T, cols: S, scale: 1)
                        BLAS.sgemm(
                            transA: false, transB: true, m: T, n: S, k: d, alpha: scale, a: q + b * T * H * d + h * d, lda: H * d, b: k + kvOff,
                            ldb: KV * d, c: raw, ldc: S)
                        for i in 0..<(T * S) {
                            let th = tanhf(raw[i] / c)
                            pp[i] *= (1 - th * th) * scale
                        }
                    } else {
                        softmaxBackward(pp, pdp, rows: T, cols: S, scale: scale)
                    }
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
}
