import Checkpoint
import Model
import Numerics
#if canImport(Glibc)
import Glibc
#endif

/// Forward/backward pairs for LLaMA causal-LM training: RMSNorm, RoPE, GQA attention, SiLU-gated MLP,
/// frozen (tied) LM head, cross-entropy over the positions whose label is not ignored.
final class LlamaTrainer {
    let model: LlamaModel
    struct L { var q, k, v, o, gate, up, down: TrainLinear }
    let layers: [L]
    struct Saved {
        var x0: [Float] = [], r1: [Float] = [], xn1: [Float] = []
        var q: [Float] = [], k: [Float] = [], v: [Float] = [], probs: [Float] = []
        var x1: [Float] = [], r2: [Float] = [], xn2: [Float] = [], g: [Float] = [], u: [Float] = []
    }
    var saved: [Saved] = []
    var xL: [Float] = [], rL: [Float] = [], h: [Float] = []
    var B = 0, T = 0, mask: [[Int]] = []
    var table: LlamaModel.RopeTable? = nil

    init(model: LlamaModel, trainables: [String: TrainLinear]) {
        self.model = model
        layers = (0..<model.L).map { i in
            let b = "layers.\(i)."
            func t(_ n: String) -> TrainLinear { trainables[b + n]! }
            return L(q: t("self_attn.q_proj"), k: t("self_attn.k_proj"), v: t("self_attn.v_proj"), o: t("self_attn.o_proj"),
                     gate: t("mlp.gate_proj"), up: t("mlp.up_proj"), down: t("mlp.down_proj"))
        }
    }

    func rmsForward(_ x: [Float], w: [Float], rows: Int) -> ([Float], [Float]) {
        let d = model.H
        var y = x, r = [Float](repeating: 0, count: rows)
        for i in 0..<rows {
            var ss: Float = 0
            for j in 0..<d { ss += x[i * d + j] * x[i * d + j] }
            r[i] = 1 / (ss / Float(d) + model.eps).squareRoot()
            for j in 0..<d { y[i * d + j] = w[j] * (x[i * d + j] * r[i]) }
        }
        return (y, r)
    }

    /// y = w ⊙ x·r, r = (mean x² + eps)^-½: dx = r·g − x·r³·(Σ g·x)/d with g = w ⊙ dy.
    func rmsBackward(_ dy: [Float], x: [Float], r: [Float], w: [Float], rows: Int) -> [Float] {
        let d = model.H
        var dx = [Float](repeating: 0, count: rows * d)
        for i in 0..<rows {
            var dot: Float = 0
            for j in 0..<d { dot += w[j] * dy[i * d + j] * x[i * d + j] }
            let r3 = r[i] * r[i] * r[i] / Float(d)
            for j in 0..<d { dx[i * d + j] = r[i] * w[j] * dy[i * d + j] - x[i * d + j] * r3 * dot }
        }
        return dx
    }

    func rope(_ x: inout [Float], heads: Int, sign: Float) {
        guard let table else { return }
        x.withUnsafeMutableBufferPointer { model.rope($0.baseAddress!, rows: B * T, nHeads: heads, table: table, sign: sign) }
    }

    /// Final-normed hidden states [B*T, H].
    func forward(ids: [[Int]], mask: [[Int]], train: Bool, rng: inout SeededRNG) -> [Float] {
        B = ids.count; T = ids[0].count; self.mask = mask
        let T = self.T
        table = model.ropeTable(rows: B * T) { $0 % T }
        let N = B * T, H = model.H, hd = model.headDim, nh = model.heads, kv = model.kvHeads
        var x = [Float](repeating: 0, count: N * H)
        x.withUnsafeMutableBufferPointer { px in for b in 0..<B { model.embed.forward(ids[b], into: px.baseAddress! + b * T * H) } }
        saved = []
        for (li, l) in layers.enumerated() {
            var s = Saved()
            s.x0 = x
            (s.xn1, s.r1) = rmsForward(x, w: model.layers[li].inNorm, rows: N)
            s.q = l.q.forward(s.xn1, rows: N, train: train, rng: &rng)
            s.k = l.k.forward(s.xn1, rows: N, train: train, rng: &rng)
            s.v = l.v.forward(s.xn1, rows: N, train: train, rng: &rng)
            rope(&s.q, heads: nh, sign: 1)
            rope(&s.k, heads: kv, sign: 1)
            s.probs = [Float](repeating: 0, count: B * nh * T * T)
            var ctx = [Float](repeating: 0, count: N * nh * hd)
            let scale = 1 / Float(hd).squareRoot(), group = nh / kv
            s.q.withUnsafeBufferPointer { pq in s.k.withUnsafeBufferPointer { pk in s.v.withUnsafeBufferPointer { pv in
            s.probs.withUnsafeMutableBufferPointer { pp in ctx.withUnsafeMutableBufferPointer { pc in
                for b in 0..<B { for h in 0..<nh {
                    let P = pp.baseAddress! + (b * nh + h) * T * T, kh = h / group
                    BLAS.sgemm(transA: false, transB: true, m: T, n: T, k: hd, alpha: scale, a: pq.baseAddress! + b * T * nh * hd + h * hd, lda: nh * hd,
                               b: pk.baseAddress! + b * T * kv * hd + kh * hd, ldb: kv * hd, c: P, ldc: T)
                    for t in 0..<T {
                        for u in 0..<T where u > t || mask[b][u] == 0 { P[t * T + u] = -.infinity }
                        Ops.softmax(P + t * T, n: T)
                    }
                    BLAS.sgemm(transA: false, transB: false, m: T, n: hd, k: T, a: P, lda: T, b: pv.baseAddress! + b * T * kv * hd + kh * hd, ldb: kv * hd,
                               c: pc.baseAddress! + b * T * nh * hd + h * hd, ldc: nh * hd)
                } }
            } } } } }
            let o = l.o.forward(ctx, rows: N, train: train, rng: &rng)
            for i in x.indices { x[i] += o[i] }
            s.x1 = x
            (s.xn2, s.r2) = rmsForward(x, w: model.layers[li].postNorm, rows: N)
            s.g = l.gate.forward(s.xn2, rows: N, train: train, rng: &rng)
            s.u = l.up.forward(s.xn2, rows: N, train: train, rng: &rng)
            var a = s.g
            for i in a.indices { let g = s.g[i]; a[i] = g / (1 + expf(-g)) * s.u[i] }
            let d = l.down.forward(a, rows: N, train: train, rng: &rng)
            for i in x.indices { x[i] += d[i] }
            saved.append(s)
        }
        xL = x
        (h, rL) = rmsForward(x, w: model.norm, rows: N)
        return h
    }

    /// Backward from dh (gradient w.r.t. the final-normed hidden states).
    func backward(_ dh: [Float], lowestLayer: Int) {
        guard lowestLayer < layers.count else { return }
        let N = B * T, hd = model.headDim, nh = model.heads, kv = model.kvHeads
        var dx = rmsBackward(dh, x: xL, r: rL, w: model.norm, rows: N)
        for li in stride(from: layers.count - 1, through: lowestLayer, by: -1) {
            let l = layers[li], s = saved[li]
            // MLP: x2 = x1 + down(silu(g) ⊙ u)
            let da = l.down.backward(dx, needDx: true)!
            var dg = da, du = da
            for i in da.indices {
                let g = s.g[i], sg = 1 / (1 + expf(-g))
                du[i] = da[i] * g * sg
                dg[i] = da[i] * s.u[i] * sg * (1 + g * (1 - sg))
            }
            var dxn2 = l.gate.backward(dg, needDx: true)!
            let dxn2u = l.up.backward(du, needDx: true)!
            for i in dxn2.indices { dxn2[i] += dxn2u[i] }
            let dr2 = rmsBackward(dxn2, x: s.x1, r: s.r2, w: model.layers[li].postNorm, rows: N)
            for i in dx.indices { dx[i] += dr2[i] }
            // Attention: x1 = x0 + o(ctx)
            let dctx = l.o.backward(dx, needDx: true)!
            var dq = [Float](repeating: 0, count: N * nh * hd), dk = [Float](repeating: 0, count: N * kv * hd), dv = dk
            let scale = 1 / Float(hd).squareRoot(), group = nh / kv
            for b in 0..<B { for h in 0..<nh {
                let kh = h / group, base = (b * nh + h) * T * T
                var P = Array(s.probs[base..<(base + T * T)])
                var dP = [Float](repeating: 0, count: T * T)
                dctx.withUnsafeBufferPointer { pdc in s.v.withUnsafeBufferPointer { pv in dP.withUnsafeMutableBufferPointer { pdp in
                    BLAS.sgemm(transA: false, transB: true, m: T, n: T, k: hd, a: pdc.baseAddress! + b * T * nh * hd + h * hd, lda: nh * hd,
                               b: pv.baseAddress! + b * T * kv * hd + kh * hd, ldb: kv * hd, c: pdp.baseAddress!, ldc: T)
                } } }
                P.withUnsafeBufferPointer { pp in dctx.withUnsafeBufferPointer { pdc in dv.withUnsafeMutableBufferPointer { pdv in
                    BLAS.sgemm(transA: true, transB: false, m: T, n: hd, k: T, a: pp.baseAddress!, lda: T, b: pdc.baseAddress! + b * T * nh * hd + h * hd, ldb: nh * hd,
                               beta: 1, c: pdv.baseAddress! + b * T * kv * hd + kh * hd, ldc: kv * hd)
                } } }
                softmaxBackward(&P, dP, rows: T, cols: T, scale: scale)
                P.withUnsafeBufferPointer { pds in
                    s.k.withUnsafeBufferPointer { pk in dq.withUnsafeMutableBufferPointer { pdq in
                        BLAS.sgemm(transA: false, transB: false, m: T, n: hd, k: T, a: pds.baseAddress!, lda: T, b: pk.baseAddress! + b * T * kv * hd + kh * hd, ldb: kv * hd,
                                   c: pdq.baseAddress! + b * T * nh * hd + h * hd, ldc: nh * hd)
                    } }
                    s.q.withUnsafeBufferPointer { pq in dk.withUnsafeMutableBufferPointer { pdk in
                        BLAS.sgemm(transA: true, transB: false, m: T, n: hd, k: T, a: pds.baseAddress!, lda: T, b: pq.baseAddress! + b * T * nh * hd + h * hd, ldb: nh * hd,
                                   beta: 1, c: pdk.baseAddress! + b * T * kv * hd + kh * hd, ldc: kv * hd)
                    } }
                }
            } }
            // RoPE is a rotation: its backward rotates the gradient back.
            rope(&dq, heads: nh, sign: -1)
            rope(&dk, heads: kv, sign: -1)
            let needDx = li > lowestLayer
            var dxn1 = l.q.backward(dq, needDx: needDx)
            for (lin, d) in [(l.k, dk), (l.v, dv)] {
                if let g = lin.backward(d, needDx: needDx) { for i in dxn1!.indices { dxn1![i] += g[i] } }
            }
            if needDx, let d1 = dxn1 {
                let dr1 = rmsBackward(d1, x: s.x0, r: s.r1, w: model.layers[li].inNorm, rows: N)
                for i in dx.indices { dx[i] += dr1[i] }
            }
        }
    }
}

/// Causal language modelling: transformers' shifted cross-entropy (position t predicts target t+1,
/// −100 ignored), mean over the scored positions; the (tied) LM head is frozen.
final class LlamaCausalLMTask: TrainTask {
    let trainer: LlamaTrainer
    init(_ t: LlamaTrainer) { trainer = t }
    var headParams: [Param] { [] }
    func syncHead() {}
    var layerCount: Int { trainer.layers.count }

    func lossAndGradients(_ batch: [Example], train: Bool, scale: Float, lowest: Int, rng: inout SeededRNG) -> Double {
        let model = trainer.model
        let padded = Batch.padded(batch.map(\.ids), pad: 0)
        let labels = batch.map { e in (e.targets ?? e.ids) + [Int](repeating: -100, count: padded.length - e.ids.count) }
        let h = trainer.forward(ids: padded.ids, mask: padded.mask, train: train, rng: &rng)
        let B = batch.count, T = padded.length, H = model.H, V = model.vocab
        var logits = [Float](repeating: 0, count: B * T * V)
        h.withUnsafeBufferPointer { ph in model.lmHead.withUnsafeBufferPointer { pw in logits.withUnsafeMutableBufferPointer { pl in
            BLAS.sgemm(transA: false, transB: true, m: B * T, n: V, k: H, a: ph.baseAddress!, lda: H, b: pw.baseAddress!, ldb: H, c: pl.baseAddress!, ldc: V)
        } } }
        var count = 0
        for b in 0..<B { for t in 0..<(T - 1) where labels[b][t + 1] != -100 { count += 1 } }
        var dlogits = [Float](repeating: 0, count: logits.count)
        var loss = 0.0
        for b in 0..<B { for t in 0..<(T - 1) {
            let y = labels[b][t + 1]
            guard y != -100 else { continue }
            let row = (b * T + t) * V
            var m = -Float.infinity
            for j in 0..<V { m = max(m, logits[row + j]) }
            var z = 0.0
            for j in 0..<V { z += exp(Double(logits[row + j] - m)) }
            loss += Glibc.log(z) + Double(m) - Double(logits[row + y])
            let w = scale / Float(max(count, 1))
            for j in 0..<V { dlogits[row + j] = Float(exp(Double(logits[row + j] - m)) / z) * w }
            dlogits[row + y] -= w
        } }
        guard count > 0 else { return 0 }
        var dh = [Float](repeating: 0, count: B * T * H)
        dlogits.withUnsafeBufferPointer { pd in model.lmHead.withUnsafeBufferPointer { pw in dh.withUnsafeMutableBufferPointer { ph in
            BLAS.sgemm(transA: false, transB: false, m: B * T, n: H, k: V, a: pd.baseAddress!, lda: V, b: pw.baseAddress!, ldb: H, c: ph.baseAddress!, ldc: H)
        } } }
        trainer.backward(dh, lowestLayer: lowest)
        return loss / Double(count)
    }
}
