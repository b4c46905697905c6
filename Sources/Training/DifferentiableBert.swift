import Checkpoint
import Model
import Numerics
#if canImport(Glibc)
import Glibc
#endif

/// BERT sequence classification as a differentiable model: the forward keeps what each backward needs,
/// and both run the shared kernels (`Kernels`, in Model) that inference runs. Base weights are frozen;
/// adapters and the classification head train. The linears have the model's names.
final class DifferentiableBert: Worker {
    let model: BertModel
    let H: Int, heads: Int, ffn: Int, hd: Int
    let eps: Float
    var hiddenDropout: Float
    var attentionDropout: Float
    struct L {
        var q, k, v, attnOut, inter, out: TrainLinear
        var all: [TrainLinear] { [q, k, v, attnOut, inter, out] }
    }
    let layers: [L]
    let pooler: TrainLinear?
    var headW: Param, headB: Param

    // Per-layer saved activations.
    struct Saved {
        var q: [Float] = [], k: [Float] = [], v: [Float] = []
        var probs: [Float] = []  // [B, heads, T, T] after softmax
        var probsDrop: [Float]? = nil  // dropout mask on probs
        var attnDrop: [Float] = []  // dropout mask on the attention output
        var ln1Rstd: [Float] = [], s1Hat: [Float] = []
        var inter: [Float] = []  // pre-GELU
        var outDrop: [Float] = []
        var ln2Rstd: [Float] = [], s2Hat: [Float] = []
    }
    var saved: [Saved] = []
    var pooledPre: [Float] = [], pooled: [Float] = [], pooledDrop: [Float] = [], pooledIn: [Float] = []
    var B = 0
    /// The batch's sequences back to back, without padding (`Kernels.Packing`).
    var packing = Kernels.Packing(lengths: [])

    init(model: BertModel, trainables: [String: TrainLinear], hiddenDropout: Float, attentionDropout: Float) throws {
        self.model = model
        H = model.H
        heads = model.heads
        ffn = model.ffn
        hd = model.H / model.heads
        eps = model.eps
        self.hiddenDropout = hiddenDropout
        self.attentionDropout = attentionDropout
        func tl(_ name: String) -> TrainLinear { trainables[name]! }
        layers = (0..<model.L).map { i in
            let b = "encoder.layer.\(i)."
            return L(
                q: tl(b + "attention.self.query"), k: tl(b + "attention.self.key"), v: tl(b + "attention.self.value"),
                attnOut: tl(b + "attention.output.dense"), inter: tl(b + "intermediate.dense"), out: tl(b + "output.dense"))
        }
        pooler = trainables["pooler.dense"]
        guard let c = model.classifier else { throw TrainError("model", "no classification head") }
        headW = Param(name: "classifier.weight", value: c.weight.toArray())
        headB = Param(name: "classifier.bias", value: c.bias ?? [Float](repeating: 0, count: c.outFeatures))
    }

    /// The adapted linears, for the worker split (`Workers`): every layer's, then the pooler.
    var trainLinears: [TrainLinear] { layers.flatMap(\.all) + (pooler.map { [$0] } ?? []) }

    func syncHead() {
        if let c = model.classifier { c.weight = WeightMatrix(headW.value, rows: c.outFeatures, cols: c.inFeatures) }
        model.classifier?.bias = headB.value
    }

    /// LayerNorm in place keeping x̂ and 1/σ for the backward.
    func layerNorm(_ x: inout [Float], rows: Int, _ ln: ([Float], [Float])) -> (xhat: [Float], rstd: [Float]) {
        var xhat = [Float](repeating: 0, count: x.count)
        var rstd = [Float](repeating: 0, count: rows)
        x.withUnsafeMutableBufferPointer { px in
            xhat.withUnsafeMutableBufferPointer { ph in
                rstd.withUnsafeMutableBufferPointer { pr in
                    Kernels.layerNormForward(
                        px.baseAddress!, rows: rows, d: H, weight: ln.0, bias: ln.1, eps: eps, xhat: ph.baseAddress!, rstd: pr.baseAddress!)
                }
            }
        }
        return (xhat, rstd)
    }

    /// Forward in training mode over the batch's sequences packed back to back (no padding position is
    /// computed; the values at the real tokens are a padded batch's): returns logits [B, labels].
    func forward(ids: [[Int]], typeIds: [[Int]]?, train: Bool, rng: inout SeededRNG) -> [Float] {
        B = ids.count
        packing = Kernels.Packing(lengths: ids.map(\.count))
        let N = packing.rows
        let probCount = packing.probabilityStarts(heads: heads).count
        var x = [Float](repeating: 0, count: N * H)
        x.withUnsafeMutableBufferPointer { model.embed(ids: ids, typeIds: typeIds, into: $0.baseAddress!) }
        if train && hiddenDropout > 0 {
            let m = Dropout.mask(x.count, p: hiddenDropout, rng: &rng)
            for i in x.indices { x[i] *= m[i] }
        }
        saved = []
        for (li, l) in layers.enumerated() {
            var s = Saved()
            s.q = l.q.forward(x, rows: N, train: train, rng: &rng)
            s.k = l.k.forward(x, rows: N, train: train, rng: &rng)
            s.v = l.v.forward(x, rows: N, train: train, rng: &rng)
            s.probs = [Float](repeating: 0, count: probCount)
            var ctx = [Float](repeating: 0, count: N * H)
            if train && attentionDropout > 0 { s.probsDrop = Dropout.mask(s.probs.count, p: attentionDropout, rng: &rng) }
            let drop = s.probsDrop ?? []
            s.q.withUnsafeBufferPointer { pq in
                s.k.withUnsafeBufferPointer { pk in
                    s.v.withUnsafeBufferPointer { pv in
                        s.probs.withUnsafeMutableBufferPointer { pp in
                            ctx.withUnsafeMutableBufferPointer { pc in
                                drop.withUnsafeBufferPointer { pd in
                                    Kernels.attentionForward(
                                        packed: packing, q: pq.baseAddress!, k: pk.baseAddress!, v: pv.baseAddress!, out: pc.baseAddress!,
                                        heads: heads, kvHeads: heads, headDim: hd, causal: false, probs: pp.baseAddress!,
                                        dropout: drop.isEmpty ? nil : pd.baseAddress)
                                }
                            }
                        }
                    }
                }
            }
            var a = l.attnOut.forward(ctx, rows: N, train: train, rng: &rng)
            if train && hiddenDropout > 0 {
                s.attnDrop = Dropout.mask(a.count, p: hiddenDropout, rng: &rng)
                for i in a.indices { a[i] *= s.attnDrop[i] }
            }
            for i in a.indices { a[i] += x[i] }
            (s.s1Hat, s.ln1Rstd) = layerNorm(&a, rows: N, model.layers[li].attnLN)
            s.inter = l.inter.forward(a, rows: N, train: train, rng: &rng)
            var g = s.inter
            g.withUnsafeMutableBufferPointer { Kernels.geluForward($0.baseAddress!, count: $0.count) }
            var o = l.out.forward(g, rows: N, train: train, rng: &rng)
            if train && hiddenDropout > 0 {
                s.outDrop = Dropout.mask(o.count, p: hiddenDropout, rng: &rng)
                for i in o.indices { o[i] *= s.outDrop[i] }
            }
            for i in o.indices { o[i] += a[i] }
            (s.s2Hat, s.ln2Rstd) = layerNorm(&o, rows: N, model.layers[li].outLN)
            x = o
            saved.append(s)
        }
        // Pooler on [CLS], dropout, classifier.
        var cls = [Float](repeating: 0, count: B * H)
        for b in 0..<B { for j in 0..<H { cls[b * H + j] = x[packing.starts[b] * H + j] } }
        pooledIn = cls
        if let pooler {
            pooledPre = pooler.forward(cls, rows: B, train: train, rng: &rng)
        } else {
            pooledPre = cls
        }
        pooled = pooledPre
        pooled.withUnsafeMutableBufferPointer { Kernels.tanhForward($0.baseAddress!, count: $0.count) }
        var pd = pooled
        pooledDrop = []
        if train && hiddenDropout > 0 {
            pooledDrop = Dropout.mask(pd.count, p: hiddenDropout, rng: &rng)
            for i in pd.indices { pd[i] *= pooledDrop[i] }
        }
        let C = headB.value.count
        var logits = [Float](repeating: 0, count: B * C)
        for b in 0..<B {
            for c in 0..<C {
                var acc = headB.value[c]
                for j in 0..<H { acc += pd[b * H + j] * headW.value[c * H + j] }
                logits[b * C + c] = acc
            }
        }
        return logits
    }

    /// Backward from dlogits [B, C]; `lowestLayer`: the lowest layer with anything trainable and active
    /// (the backward pass stops there).
    func backward(_ dlogits: [Float], lowestLayer: Int) {
        let N = packing.rows
        let C = headB.value.count
        var pd = pooled
        if !pooledDrop.isEmpty { for i in pd.indices { pd[i] *= pooledDrop[i] } }
        var dpd = [Float](repeating: 0, count: B * H)
        for b in 0..<B {
            for c in 0..<C {
                let g = dlogits[b * C + c]
                headB.grad[c] += g
                for j in 0..<H {
                    headW.grad[c * H + j] += g * pd[b * H + j]
                    dpd[b * H + j] += g * headW.value[c * H + j]
                }
            }
        }
        guard lowestLayer < layers.count || pooler?.trainable == true else { return }
        if !pooledDrop.isEmpty { for i in dpd.indices { dpd[i] *= pooledDrop[i] } }
        for i in dpd.indices { dpd[i] *= 1 - pooled[i] * pooled[i] }
        let dcls = pooler?.backward(dpd, needDx: lowestLayer < layers.count) ?? dpd
        var dx = [Float](repeating: 0, count: N * H)
        for b in 0..<B { for j in 0..<H { dx[packing.starts[b] * H + j] = dcls[b * H + j] } }
        guard lowestLayer < layers.count else { return }
        for li in stride(from: layers.count - 1, through: lowestLayer, by: -1) {
            let l = layers[li]
            let s = saved[li]
            let needDx = li > lowestLayer
            // x1 = LN2(out(GELU(inter(h1)))·drop + h1)
            var ds2 = Kernels.layerNormBackward(dx, xhat: s.s2Hat, rstd: s.ln2Rstd, weight: model.layers[li].outLN.0, rows: N, d: H)
            var dh1 = ds2
            if !s.outDrop.isEmpty { for i in ds2.indices { ds2[i] *= s.outDrop[i] } }
            var dg = l.out.backward(ds2, needDx: true)!
            Kernels.geluBackward(&dg, x: s.inter)
            let dh1b = l.inter.backward(dg, needDx: true)!
            for i in dh1.indices { dh1[i] += dh1b[i] }
            // h1 = LN1(attnOut(ctx)·drop + x0)
            let ds1 = Kernels.layerNormBackward(dh1, xhat: s.s1Hat, rstd: s.ln1Rstd, weight: model.layers[li].attnLN.0, rows: N, d: H)
            var dxPrev = ds1
            var da = ds1
            if !s.attnDrop.isEmpty { for i in da.indices { da[i] *= s.attnDrop[i] } }
            let dctx = l.attnOut.backward(da, needDx: true)!
            let (dq, dk, dv) = Kernels.attentionBackward(
                packed: packing, dctx: dctx, q: s.q, k: s.k, v: s.v, probs: s.probs, dropout: s.probsDrop, heads: heads, kvHeads: heads, headDim: hd)
            for (lin, d) in [(l.q, dq), (l.k, dk), (l.v, dv)] {
                if let g = lin.backward(d, needDx: needDx) { for i in dxPrev.indices { dxPrev[i] += g[i] } }
            }
            dx = dxPrev
        }
    }
}
