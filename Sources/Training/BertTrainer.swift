import Checkpoint
import Model
import Numerics
#if canImport(Glibc)
import Glibc
#endif

/// Forward/backward pairs for BERT sequence classification (llm.c style: each forward keeps what its
/// backward needs). Base weights are frozen; adapters and the classification head train.
final class BertTrainer {
    let model: BertModel
    let H: Int, heads: Int, ffn: Int, hd: Int
    let eps: Float
    var hiddenDropout: Float
    var attentionDropout: Float
    struct L {
        var q, k, v, o, i, out: TrainLinear
        var all: [TrainLinear] { [q, k, v, o, i, out] }
    }
    let layers: [L]
    let pooler: TrainLinear?
    var headW: Param, headB: Param

    // Per-layer saved activations.
    struct Saved {
        var x0: [Float] = []          // layer input
        var q: [Float] = [], k: [Float] = [], v: [Float] = []
        var probs: [Float] = []       // [B, heads, T, T] after softmax
        var probsDrop: [Float] = []   // dropout mask on probs (empty if none)
        var ctx: [Float] = []
        var attnDrop: [Float] = []    // dropout mask on the attention output
        var ln1Mean: [Float] = [], ln1Rstd: [Float] = [], h1: [Float] = [], s1Hat: [Float] = []
        var inter: [Float] = []       // pre-GELU
        var outDrop: [Float] = []
        var ln2Mean: [Float] = [], ln2Rstd: [Float] = [], s2Hat: [Float] = []
    }
    var saved: [Saved] = []
    var pooledPre: [Float] = [], pooled: [Float] = [], pooledDrop: [Float] = [], pooledIn: [Float] = []
    var B = 0, T = 0
    var mask: [[Int]] = []

    init(model: BertModel, trainables: [String: TrainLinear], hiddenDropout: Float, attentionDropout: Float) throws {
        self.model = model
        H = model.H; heads = model.heads; ffn = model.ffn; hd = model.H / model.heads
        eps = model.eps
        self.hiddenDropout = hiddenDropout
        self.attentionDropout = attentionDropout
        func tl(_ name: String) -> TrainLinear { trainables[name]! }
        layers = (0..<model.L).map { i in
            let b = "encoder.layer.\(i)."
            return L(q: tl(b + "attention.self.query"), k: tl(b + "attention.self.key"), v: tl(b + "attention.self.value"),
                     o: tl(b + "attention.output.dense"), i: tl(b + "intermediate.dense"), out: tl(b + "output.dense"))
        }
        pooler = trainables["pooler.dense"]
        guard let c = model.classifier else { throw CheckpointError("model", .invalid("no classification head")) }
        headW = Param(name: "classifier.weight", value: c.weight)
        headB = Param(name: "classifier.bias", value: c.bias ?? [Float](repeating: 0, count: c.outFeatures))
    }

    /// Adds this worker's adapter and head gradients into `main`'s (fixed order) and clears them.
    func moveGradients(into main: BertTrainer) {
        for (mine, theirs) in zip(layers, main.layers) {
            for (a, b) in zip(mine.all, theirs.all) { a.moveGradients(into: b) }
        }
        if let p = pooler, let q = main.pooler { p.moveGradients(into: q) }
        for (mine, theirs) in [(headW, main.headW), (headB, main.headB)] {
            for i in mine.grad.indices { theirs.grad[i] += mine.grad[i] }
            mine.zeroGrad()
        }
    }

    func syncHead() {
        model.classifier?.weight = headW.value
        model.classifier?.bias = headB.value
    }

    static func dropoutMask(_ n: Int, p: Float, rng: inout SeededRNG) -> [Float] {
        let keep = 1 - p
        return (0..<n).map { _ in rng.uniformFloat() < keep ? 1 / keep : 0 }
    }

    /// GELU'(x) = Φ(x) + x φ(x), with the same erf as the forward (Ops.gelu).
    @inline(__always) static func geluGrad(_ x: Float) -> Float {
        0.5 * (1 + Ops.erfApprox(x * 0.70710678118654752)) + x * expf(-0.5 * x * x) * 0.3989422804014327
    }

    /// LayerNorm forward keeping x̂ and 1/σ per row.
    static func layerNormForward(_ x: inout [Float], rows: Int, d: Int, w: [Float], b: [Float], eps: Float) -> (mean: [Float], rstd: [Float], xhat: [Float]) {
        var mean = [Float](repeating: 0, count: rows), rstd = mean
        var xhat = x
        for r in 0..<rows {
            var m: Float = 0
            for j in 0..<d { m += x[r * d + j] }
            m /= Float(d)
            var v: Float = 0
            for j in 0..<d { let c = x[r * d + j] - m; v += c * c }
            v /= Float(d)
            let rs = 1 / (v + eps).squareRoot()
            mean[r] = m; rstd[r] = rs
            for j in 0..<d {
                let h = (x[r * d + j] - m) * rs
                xhat[r * d + j] = h
                x[r * d + j] = h * w[j] + b[j]
            }
        }
        return (mean, rstd, xhat)
    }

    /// dx = rstd · (dxhat − mean(dxhat) − x̂·mean(dxhat·x̂)), dxhat = dy ⊙ w.
    static func layerNormBackward(_ dy: [Float], xhat: [Float], rstd: [Float], w: [Float], rows: Int, d: Int) -> [Float] {
        var dx = [Float](repeating: 0, count: rows * d)
        for r in 0..<rows {
            var m1: Float = 0, m2: Float = 0
            for j in 0..<d { let g = dy[r * d + j] * w[j]; m1 += g; m2 += g * xhat[r * d + j] }
            m1 /= Float(d); m2 /= Float(d)
            for j in 0..<d {
                let g = dy[r * d + j] * w[j]
                dx[r * d + j] = rstd[r] * (g - m1 - xhat[r * d + j] * m2)
            }
        }
        return dx
    }

    /// Forward in training mode: returns logits [B, labels].
    func forward(ids: [[Int]], typeIds: [[Int]]?, mask: [[Int]], train: Bool, rng: inout SeededRNG) -> [Float] {
        B = ids.count; T = ids[0].count
        self.mask = mask
        let N = B * T
        var x = [Float](repeating: 0, count: N * H)
        x.withUnsafeMutableBufferPointer { px in
            for b in 0..<B {
                model.wordEmb.forward(ids[b], into: px.baseAddress! + b * T * H)
                for t in 0..<T {
                    let tt = typeIds?[b][t] ?? 0
                    for j in 0..<H { px[(b * T + t) * H + j] += model.posEmb[t * H + j] + model.typeEmb[tt * H + j] }
                }
            }
            Ops.layerNorm(px.baseAddress!, rows: N, d: H, weight: model.embLN.0, bias: model.embLN.1, eps: eps)
        }
        if train && hiddenDropout > 0 {
            let m = BertTrainer.dropoutMask(x.count, p: hiddenDropout, rng: &rng)
            for i in x.indices { x[i] *= m[i] }
        }
        saved = []
        for (li, l) in layers.enumerated() {
            var s = Saved()
            s.x0 = x
            s.q = l.q.forward(x, rows: N, train: train, rng: &rng)
            s.k = l.k.forward(x, rows: N, train: train, rng: &rng)
            s.v = l.v.forward(x, rows: N, train: train, rng: &rng)
            // Attention with saved probabilities.
            s.probs = [Float](repeating: 0, count: B * heads * T * T)
            s.ctx = [Float](repeating: 0, count: N * H)
            if train && attentionDropout > 0 { s.probsDrop = BertTrainer.dropoutMask(s.probs.count, p: attentionDropout, rng: &rng) }
            let scale = 1 / Float(hd).squareRoot()
            s.q.withUnsafeBufferPointer { pq in s.k.withUnsafeBufferPointer { pk in s.v.withUnsafeBufferPointer { pv in
            s.probs.withUnsafeMutableBufferPointer { pp in s.ctx.withUnsafeMutableBufferPointer { pc in
                for b in 0..<B { for h in 0..<heads {
                    let P = pp.baseAddress! + ((b * heads + h) * T * T)
                    BLAS.sgemm(transA: false, transB: true, m: T, n: T, k: hd, alpha: scale, a: pq.baseAddress! + b * T * H + h * hd, lda: H,
                               b: pk.baseAddress! + b * T * H + h * hd, ldb: H, c: P, ldc: T)
                    for t in 0..<T {
                        for u in 0..<T where mask[b][u] == 0 { P[t * T + u] = -.infinity }
                        Ops.softmax(P + t * T, n: T)
                    }
                    if !s.probsDrop.isEmpty {
                        // Dropped probabilities feed the context; the undropped ones are kept for backward.
                        var pd = [Float](repeating: 0, count: T * T)
                        for i in 0..<(T * T) { pd[i] = P[i] * s.probsDrop[(b * heads + h) * T * T + i] }
                        pd.withUnsafeBufferPointer { ppd in
                            BLAS.sgemm(transA: false, transB: false, m: T, n: hd, k: T, a: ppd.baseAddress!, lda: T,
                                       b: pv.baseAddress! + b * T * H + h * hd, ldb: H, c: pc.baseAddress! + b * T * H + h * hd, ldc: H)
                        }
                    } else {
                        BLAS.sgemm(transA: false, transB: false, m: T, n: hd, k: T, a: P, lda: T,
                                   b: pv.baseAddress! + b * T * H + h * hd, ldb: H, c: pc.baseAddress! + b * T * H + h * hd, ldc: H)
                    }
                } }
            } } } } }
            var a = l.o.forward(s.ctx, rows: N, train: train, rng: &rng)
            if train && hiddenDropout > 0 { s.attnDrop = BertTrainer.dropoutMask(a.count, p: hiddenDropout, rng: &rng); for i in a.indices { a[i] *= s.attnDrop[i] } }
            for i in a.indices { a[i] += x[i] }
            let ln1 = BertTrainer.layerNormForward(&a, rows: N, d: H, w: model.layers[li].attnLN.0, b: model.layers[li].attnLN.1, eps: eps)
            s.ln1Mean = ln1.mean; s.ln1Rstd = ln1.rstd; s.s1Hat = ln1.xhat; s.h1 = a
            s.inter = l.i.forward(a, rows: N, train: train, rng: &rng)
            var g = s.inter
            g.withUnsafeMutableBufferPointer { Ops.gelu($0.baseAddress!, count: $0.count) }
            var o = l.out.forward(g, rows: N, train: train, rng: &rng)
            if train && hiddenDropout > 0 { s.outDrop = BertTrainer.dropoutMask(o.count, p: hiddenDropout, rng: &rng); for i in o.indices { o[i] *= s.outDrop[i] } }
            for i in o.indices { o[i] += a[i] }
            let ln2 = BertTrainer.layerNormForward(&o, rows: N, d: H, w: model.layers[li].outLN.0, b: model.layers[li].outLN.1, eps: eps)
            s.ln2Mean = ln2.mean; s.ln2Rstd = ln2.rstd; s.s2Hat = ln2.xhat
            x = o
            saved.append(s)
        }
        // Pooler on [CLS], dropout, classifier.
        var cls = [Float](repeating: 0, count: B * H)
        for b in 0..<B { for j in 0..<H { cls[b * H + j] = x[b * T * H + j] } }
        pooledIn = cls
        if let pooler {
            pooledPre = pooler.forward(cls, rows: B, train: train, rng: &rng)
        } else { pooledPre = cls }
        pooled = pooledPre.map { tanhf($0) }
        var pd = pooled
        pooledDrop = []
        if train && hiddenDropout > 0 { pooledDrop = BertTrainer.dropoutMask(pd.count, p: hiddenDropout, rng: &rng); for i in pd.indices { pd[i] *= pooledDrop[i] } }
        let C = headB.value.count
        var logits = [Float](repeating: 0, count: B * C)
        for b in 0..<B { for c in 0..<C {
            var acc = headB.value[c]
            for j in 0..<H { acc += pd[b * H + j] * headW.value[c * H + j] }
            logits[b * C + c] = acc
        } }
        return logits
    }

    /// Backward from dlogits [B, C]; `lowestLayer`: the lowest layer with anything trainable and active
    /// (the backward pass stops there).
    func backward(_ dlogits: [Float], lowestLayer: Int) {
        let N = B * T, C = headB.value.count
        var pd = pooled
        if !pooledDrop.isEmpty { for i in pd.indices { pd[i] *= pooledDrop[i] } }
        var dpd = [Float](repeating: 0, count: B * H)
        for b in 0..<B { for c in 0..<C {
            let g = dlogits[b * C + c]
            headB.grad[c] += g
            for j in 0..<H { headW.grad[c * H + j] += g * pd[b * H + j]; dpd[b * H + j] += g * headW.value[c * H + j] }
        } }
        guard lowestLayer < layers.count || pooler?.trainable == true else { return }
        if !pooledDrop.isEmpty { for i in dpd.indices { dpd[i] *= pooledDrop[i] } }
        for i in dpd.indices { dpd[i] *= 1 - pooled[i] * pooled[i] }
        let dcls = pooler?.backward(dpd, needDx: lowestLayer < layers.count) ?? dpd
        var dx = [Float](repeating: 0, count: N * H)
        for b in 0..<B { for j in 0..<H { dx[b * T * H + j] = dcls[b * H + j] } }
        guard lowestLayer < layers.count else { return }
        for li in stride(from: layers.count - 1, through: lowestLayer, by: -1) {
            let l = layers[li], s = saved[li]
            let needDx = li > lowestLayer
            // x1 = LN2(o·drop + h1)
            var ds2 = BertTrainer.layerNormBackward(dx, xhat: s.s2Hat, rstd: s.ln2Rstd, w: model.layers[li].outLN.0, rows: N, d: H)
            var dh1 = ds2
            if !s.outDrop.isEmpty { for i in ds2.indices { ds2[i] *= s.outDrop[i] } }
            var dg = l.out.backward(ds2, needDx: true)!
            for i in dg.indices { dg[i] *= BertTrainer.geluGrad(s.inter[i]) }
            let dh1b = l.i.backward(dg, needDx: true)!
            for i in dh1.indices { dh1[i] += dh1b[i] }
            // h1 = LN1(a·drop + x0)
            let ds1 = BertTrainer.layerNormBackward(dh1, xhat: s.s1Hat, rstd: s.ln1Rstd, w: model.layers[li].attnLN.0, rows: N, d: H)
            var dxPrev = ds1
            var da = ds1
            if !s.attnDrop.isEmpty { for i in da.indices { da[i] *= s.attnDrop[i] } }
            let dctx = l.o.backward(da, needDx: true)!
            // Attention backward per (b, h).
            var dq = [Float](repeating: 0, count: N * H), dk = dq, dv = dq
            let scale = 1 / Float(hd).squareRoot()
            for b in 0..<B { for h in 0..<heads {
                let base = (b * heads + h) * T * T
                var P = Array(s.probs[base..<(base + T * T)])
                var Pd = P
                if !s.probsDrop.isEmpty { for i in 0..<(T * T) { Pd[i] *= s.probsDrop[base + i] } }
                var dP = [Float](repeating: 0, count: T * T)
                dctx.withUnsafeBufferPointer { pdc in s.v.withUnsafeBufferPointer { pv in dP.withUnsafeMutableBufferPointer { pdp in
                    // dPd = dctx vᵀ
                    BLAS.sgemm(transA: false, transB: true, m: T, n: T, k: hd, a: pdc.baseAddress! + b * T * H + h * hd, lda: H,
                               b: pv.baseAddress! + b * T * H + h * hd, ldb: H, c: pdp.baseAddress!, ldc: T)
                } } }
                Pd.withUnsafeBufferPointer { ppd in dctx.withUnsafeBufferPointer { pdc in dv.withUnsafeMutableBufferPointer { pdv in
                    // dv = Pdᵀ dctx
                    BLAS.sgemm(transA: true, transB: false, m: T, n: hd, k: T, a: ppd.baseAddress!, lda: T,
                               b: pdc.baseAddress! + b * T * H + h * hd, ldb: H, c: pdv.baseAddress! + b * T * H + h * hd, ldc: H)
                } } }
                if !s.probsDrop.isEmpty { for i in 0..<(T * T) { dP[i] *= s.probsDrop[base + i] } }
                // dS = P ⊙ (dP − rowsum(dP ⊙ P)), times the score scale.
                softmaxBackward(&P, dP, rows: T, cols: T, scale: scale)
                P.withUnsafeBufferPointer { pds in
                    s.k.withUnsafeBufferPointer { pk in dq.withUnsafeMutableBufferPointer { pdq in
                        BLAS.sgemm(transA: false, transB: false, m: T, n: hd, k: T, a: pds.baseAddress!, lda: T,
                                   b: pk.baseAddress! + b * T * H + h * hd, ldb: H, c: pdq.baseAddress! + b * T * H + h * hd, ldc: H)
                    } }
                    s.q.withUnsafeBufferPointer { pq in dk.withUnsafeMutableBufferPointer { pdk in
                        BLAS.sgemm(transA: true, transB: false, m: T, n: hd, k: T, a: pds.baseAddress!, lda: T,
                                   b: pq.baseAddress! + b * T * H + h * hd, ldb: H, c: pdk.baseAddress! + b * T * H + h * hd, ldc: H)
                    } }
                }
            } }
            for (lin, d) in [(l.q, dq), (l.k, dk), (l.v, dv)] {
                if let g = lin.backward(d, needDx: needDx) { for i in dxPrev.indices { dxPrev[i] += g[i] } }
            }
            dx = dxPrev
        }
    }
}
