import Checkpoint
import Model
import Numerics
#if canImport(Glibc)
import Glibc
#endif

/// LLaMA as a differentiable model for causal-LM training: RMSNorm, RoPE, GQA attention, SiLU-gated MLP,
/// frozen (tied) LM head; the forward keeps what each backward needs and both run the shared kernels
/// (`Kernels`, in Model) that inference runs. The linears have the model's names.
final class DifferentiableLlama: Worker {
    let model: LlamaModel
    struct L { var q, k, v, o, gate, up, down: TrainLinear }
    /// The adapted linears, for the worker split (`Workers`).
    var trainLinears: [TrainLinear] { layers.flatMap { [$0.q, $0.k, $0.v, $0.o, $0.gate, $0.up, $0.down] } }
    let layers: [L]
    struct Saved {
        var x0: [Float] = [], r1: [Float] = [], xn1: [Float] = []
        var q: [Float] = [], k: [Float] = [], v: [Float] = [], probs: [Float] = []
        var x1: [Float] = [], r2: [Float] = [], xn2: [Float] = [], g: [Float] = [], u: [Float] = []
    }
    var saved: [Saved] = []
    var xL: [Float] = [], rL: [Float] = [], h: [Float] = []
    /// The batch's sequences back to back, without padding (`Kernels.Packing`).
    var packing = Kernels.Packing(lengths: [])
    var table: LlamaModel.RopeTable? = nil

    init(model: LlamaModel, trainables: [String: TrainLinear]) {
        self.model = model
        layers = (0..<model.L).map { i in
            let b = "layers.\(i)."
            func t(_ n: String) -> TrainLinear { trainables[b + n]! }
            return L(
                q: t("self_attn.q_proj"), k: t("self_attn.k_proj"), v: t("self_attn.v_proj"), o: t("self_attn.o_proj"),
                gate: t("mlp.gate_proj"), up: t("mlp.up_proj"), down: t("mlp.down_proj"))
        }
    }

    /// RMSNorm of x, keeping the factor per row for the backward.
    func rmsNorm(_ x: [Float], weight: [Float], rows: Int) -> (y: [Float], rms: [Float]) {
        var y = [Float](repeating: 0, count: x.count)
        var r = [Float](repeating: 0, count: rows)
        x.withUnsafeBufferPointer { px in
            y.withUnsafeMutableBufferPointer { py in
                r.withUnsafeMutableBufferPointer { pr in
                    Kernels.rmsNormForward(px.baseAddress!, py.baseAddress!, rows: rows, d: model.H, weight: weight, eps: model.eps, rms: pr.baseAddress!)
                }
            }
        }
        return (y, r)
    }

    func rope(_ x: inout [Float], heads: Int, backward: Bool = false) {
        guard let table else { return }
        let (rows, d) = (packing.rows, model.headDim)
        x.withUnsafeMutableBufferPointer { p in
            if backward {
                Kernels.ropeBackward(p.baseAddress!, rows: rows, heads: heads, headDim: d, cos: table.cos, sin: table.sin)
            } else {
                Kernels.ropeForward(p.baseAddress!, rows: rows, heads: heads, headDim: d, cos: table.cos, sin: table.sin)
            }
        }
    }

    /// Final-normed hidden states [rows, H] of the batch's sequences packed back to back (no padding
    /// position is computed; the values at the real tokens are a right-padded batch's).
    func forward(ids: [[Int]], train: Bool, rng: inout SeededRNG) -> [Float] {
        packing = Kernels.Packing(lengths: ids.map(\.count))
        let positions = ids.flatMap { $0.indices }
        table = model.ropeTable(rows: packing.rows) { positions[$0] }
        let N = packing.rows
        let H = model.H
        let hd = model.headDim
        let nh = model.heads
        let kv = model.kvHeads
        var x = [Float](repeating: 0, count: N * H)
        x.withUnsafeMutableBufferPointer { px in for b in ids.indices { model.embed.forward(ids[b], into: px.baseAddress! + packing.starts[b] * H) } }
        saved = []
        for (li, l) in layers.enumerated() {
            var s = Saved()
            s.x0 = x
            (s.xn1, s.r1) = rmsNorm(x, weight: model.layers[li].inNorm, rows: N)
            s.q = l.q.forward(s.xn1, rows: N, train: train, rng: &rng)
            s.k = l.k.forward(s.xn1, rows: N, train: train, rng: &rng)
            s.v = l.v.forward(s.xn1, rows: N, train: train, rng: &rng)
            rope(&s.q, heads: nh)
            rope(&s.k, heads: kv)
            s.probs = [Float](repeating: 0, count: packing.probabilityStarts(heads: nh).count)
            var ctx = [Float](repeating: 0, count: N * nh * hd)
            s.q.withUnsafeBufferPointer { pq in
                s.k.withUnsafeBufferPointer { pk in
                    s.v.withUnsafeBufferPointer { pv in
                        s.probs.withUnsafeMutableBufferPointer { pp in
                            ctx.withUnsafeMutableBufferPointer { pc in
                                Kernels.attentionForward(
                                    packed: packing, q: pq.baseAddress!, k: pk.baseAddress!, v: pv.baseAddress!, out: pc.baseAddress!,
                                    heads: nh, kvHeads: kv, headDim: hd, causal: true, probs: pp.baseAddress!)
                            }
                        }
                    }
                }
            }
            let o = l.o.forward(ctx, rows: N, train: train, rng: &rng)
            for i in x.indices { x[i] += o[i] }
            s.x1 = x
            (s.xn2, s.r2) = rmsNorm(x, weight: model.layers[li].postNorm, rows: N)
            s.g = l.gate.forward(s.xn2, rows: N, train: train, rng: &rng)
            s.u = l.up.forward(s.xn2, rows: N, train: train, rng: &rng)
            var a = s.g
            a.withUnsafeMutableBufferPointer { pa in
                s.u.withUnsafeBufferPointer { pu in Kernels.swigluForward(pa.baseAddress!, pu.baseAddress!, count: pa.count) }
            }
            let d = l.down.forward(a, rows: N, train: train, rng: &rng)
            for i in x.indices { x[i] += d[i] }
            saved.append(s)
        }
        xL = x
        (h, rL) = rmsNorm(x, weight: model.norm, rows: N)
        return h
    }

    /// Backward from dh (gradient w.r.t. the final-normed hidden states).
    func backward(_ dh: [Float], lowestLayer: Int) {
        guard lowestLayer < layers.count else { return }
        let N = packing.rows
        let H = model.H
        let nh = model.heads
        let kv = model.kvHeads
        var dx = Kernels.rmsNormBackward(dh, x: xL, rms: rL, weight: model.norm, rows: N, d: H)
        for li in stride(from: layers.count - 1, through: lowestLayer, by: -1) {
            let l = layers[li]
            let s = saved[li]
            // MLP: x2 = x1 + down(silu(g) ⊙ u)
            let da = l.down.backward(dx, needDx: true)!
            let (dg, du) = Kernels.swigluBackward(da, gate: s.g, up: s.u)
            var dxn2 = l.gate.backward(dg, needDx: true)!
            let dxn2u = l.up.backward(du, needDx: true)!
            for i in dxn2.indices { dxn2[i] += dxn2u[i] }
            let dr2 = Kernels.rmsNormBackward(dxn2, x: s.x1, rms: s.r2, weight: model.layers[li].postNorm, rows: N, d: H)
            for i in dx.indices { dx[i] += dr2[i] }
            // Attention: x1 = x0 + o(ctx)
            let dctx = l.o.backward(dx, needDx: true)!
            var (dq, dk, dv) = Kernels.attentionBackward(
                packed: packing, dctx: dctx, q: s.q, k: s.k, v: s.v, probs: s.probs, dropout: nil, heads: nh, kvHeads: kv, headDim: model.headDim)
            // RoPE is a rotation: its backward rotates the gradient back.
            rope(&dq, heads: nh, backward: true)
            rope(&dk, heads: kv, backward: true)
            let needDx = li > lowestLayer
            var dxn1 = l.q.backward(dq, needDx: needDx)
            for (lin, d) in [(l.k, dk), (l.v, dv)] {
                if let g = lin.backward(d, needDx: needDx) { for i in dxn1!.indices { dxn1![i] += g[i] } }
            }
            if needDx, let d1 = dxn1 {
                let dr1 = Kernels.rmsNormBackward(d1, x: s.x0, rms: s.r1, weight: model.layers[li].inNorm, rows: N, d: H)
                for i in dx.indices { dx[i] += dr1[i] }
            }
        }
    }
}
