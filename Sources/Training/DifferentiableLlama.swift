import Checkpoint
import Model
import Numerics
#if canImport(Glibc)
import Glibc
#endif

/// The llama-family decoder as a differentiable model for causal-LM training, every family `LlamaModel`
/// runs (its `DecoderSpec`: q/k norms, (1 + w) norms, sandwich norms, GeGLU, fused projections, partial
/// and per-layer RoPE, sliding windows, soft-caps); the forward keeps what each backward needs and both run
/// the shared kernels (`Kernels`, in Model) that inference runs. The frozen (tied) LM head is the task's.
/// The linears have the model's names.
final class DifferentiableLlama: Worker {
    let model: LlamaModel
    /// One block's linears: separate q/k/v and gate/up, or Phi-3's fused qkv and gateUp.
    struct L {
        var q, k, v, qkv: TrainLinear?
        var o: TrainLinear
        var gate, up, gateUp: TrainLinear?
        var down: TrainLinear
        var all: [TrainLinear] { [qkv, q, k, v, o, gateUp, gate, up, down].compactMap { $0 } }
    }
    /// The adapted linears, for the worker split (`Workers`).
    var trainLinears: [TrainLinear] { layers.flatMap(\.all) }
    let layers: [L]
    /// What one layer's backward needs from its forward.
    struct Saved {
        var x0: [Float] = [], r1: [Float] = [], xn1: [Float] = []
        /// q and k before their per-head norms (with the norms' factors), then after RoPE.
        var qPre: [Float] = [], kPre: [Float] = [], rq: [Float] = [], rk: [Float] = []
        var q: [Float] = [], k: [Float] = [], v: [Float] = [], probs: [Float] = []
        /// The attention output before its norm (Gemma) and that norm's factor.
        var attnOut: [Float] = [], rAttn: [Float] = []
        var x1: [Float] = [], r2: [Float] = [], xn2: [Float] = [], g: [Float] = [], u: [Float] = []
        /// The MLP output before its norm (Gemma) and that norm's factor.
        var mlpOut: [Float] = [], rMlp: [Float] = []
    }
    var saved: [Saved] = []
    var xL: [Float] = [], rL: [Float] = [], h: [Float] = []
    /// The batch's sequences back to back, without padding (`Kernels.Packing`).
    var packing = Kernels.Packing(lengths: [])
    var tables: [LlamaModel.RopeTable] = []

    init(model: LlamaModel, trainables: [String: TrainLinear]) {
        self.model = model
        layers = model.layers.indices.map { i in
            func t(_ n: String) -> TrainLinear? { trainables["layers.\(i)." + n] }
            return L(
                q: t("self_attn.q_proj"), k: t("self_attn.k_proj"), v: t("self_attn.v_proj"), qkv: t("self_attn.qkv_proj"),
                o: t("self_attn.o_proj")!, gate: t("mlp.gate_proj"), up: t("mlp.up_proj"), gateUp: t("mlp.gate_up_proj"),
                down: t("mlp.down_proj")!)
        }
    }

    /// RMSNorm of rows of width d, keeping the factor per row for the backward.
    func rmsNorm(_ x: [Float], weight: [Float], rows: Int, d: Int? = nil) -> (y: [Float], rms: [Float]) {
        var y = [Float](repeating: 0, count: x.count)
        var r = [Float](repeating: 0, count: rows)
        x.withUnsafeBufferPointer { px in
            y.withUnsafeMutableBufferPointer { py in
                r.withUnsafeMutableBufferPointer { pr in
                    Kernels.rmsNormForward(
                        px.baseAddress!, py.baseAddress!, rows: rows, d: d ?? model.H, weight: weight, eps: model.eps, rms: pr.baseAddress!)
                }
            }
        }
        return (y, r)
    }

    func rope(_ x: inout [Float], heads: Int, layer li: Int, backward: Bool = false) {
        guard !tables.isEmpty else { return }
        let table = tables[model.spec.layerRope[li]]
        let (rows, d, rot) = (packing.rows, model.headDim, model.spec.rotaryDims)
        x.withUnsafeMutableBufferPointer { p in
            if backward {
                Kernels.ropeBackward(p.baseAddress!, rows: rows, heads: heads, headDim: d, rotary: rot, cos: table.cos, sin: table.sin)
            } else {
                Kernels.ropeForward(p.baseAddress!, rows: rows, heads: heads, headDim: d, rotary: rot, cos: table.cos, sin: table.sin)
            }
        }
    }

    /// Final-normed hidden states [rows, H] of the batch's sequences packed back to back (no padding
    /// position is computed; the values at the real tokens are a right-padded batch's).
    func forward(ids: [[Int]], train: Bool, rng: inout SeededRNG) -> [Float] {
        packing = Kernels.Packing(lengths: ids.map(\.count))
        let positions = ids.flatMap { $0.indices }
        tables = model.ropeTables(rows: packing.rows) { positions[$0] }
        let spec = model.spec
        let N = packing.rows
        let (H, hd, nh, kv, F) = (model.H, model.headDim, model.heads, model.kvHeads, model.ffn)
        var x = [Float](repeating: 0, count: N * H)
        x.withUnsafeMutableBufferPointer { px in for b in ids.indices { model.embed.forward(ids[b], into: px.baseAddress! + packing.starts[b] * H) } }
        if let sc = spec.embedScale { for i in x.indices { x[i] *= sc } }
        saved = []
        for (li, l) in layers.enumerated() {
            let ml = model.layers[li]
            var s = Saved()
            s.x0 = x
            (s.xn1, s.r1) = rmsNorm(x, weight: ml.inNorm, rows: N)
            if let f = l.qkv {
                let p = Kernels.splitColumns(f.forward(s.xn1, rows: N, train: train, rng: &rng), rows: N, widths: [nh * hd, kv * hd, kv * hd])
                (s.q, s.k, s.v) = (p[0], p[1], p[2])
            } else {
                s.q = l.q!.forward(s.xn1, rows: N, train: train, rng: &rng)
                s.k = l.k!.forward(s.xn1, rows: N, train: train, rng: &rng)
                s.v = l.v!.forward(s.xn1, rows: N, train: train, rng: &rng)
            }
            if let qn = ml.qNorm, let kn = ml.kNorm {
                (s.qPre, s.kPre) = (s.q, s.k)
                (s.q, s.rq) = rmsNorm(s.qPre, weight: qn, rows: N * nh, d: hd)
                (s.k, s.rk) = rmsNorm(s.kPre, weight: kn, rows: N * kv, d: hd)
            }
            rope(&s.q, heads: nh, layer: li)
            rope(&s.k, heads: kv, layer: li)
            s.probs = [Float](repeating: 0, count: packing.probabilityStarts(heads: nh).count)
            var ctx = [Float](repeating: 0, count: N * nh * hd)
            s.q.withUnsafeBufferPointer { pq in
                s.k.withUnsafeBufferPointer { pk in
                    s.v.withUnsafeBufferPointer { pv in
                        s.probs.withUnsafeMutableBufferPointer { pp in
                            ctx.withUnsafeMutableBufferPointer { pc in
                                Kernels.attentionForward(
                                    packed: packing, q: pq.baseAddress!, k: pk.baseAddress!, v: pv.baseAddress!, out: pc.baseAddress!,
                                    heads: nh, kvHeads: kv, headDim: hd, causal: true, options: spec.attention(layer: li), probs: pp.baseAddress!)
                            }
                        }
                    }
                }
            }
            var o = l.o.forward(ctx, rows: N, train: train, rng: &rng)
            if let n = ml.attnOutNorm {
                s.attnOut = o
                (o, s.rAttn) = rmsNorm(s.attnOut, weight: n, rows: N)
            }
            for i in x.indices { x[i] += o[i] }
            s.x1 = x
            (s.xn2, s.r2) = rmsNorm(x, weight: ml.mlpNorm, rows: N)
            if let f = l.gateUp {
                let p = Kernels.splitColumns(f.forward(s.xn2, rows: N, train: train, rng: &rng), rows: N, widths: [F, F])
                (s.g, s.u) = (p[0], p[1])
            } else {
                s.g = l.gate!.forward(s.xn2, rows: N, train: train, rng: &rng)
                s.u = l.up!.forward(s.xn2, rows: N, train: train, rng: &rng)
            }
            var a = s.g
            a.withUnsafeMutableBufferPointer { pa in
                s.u.withUnsafeBufferPointer { pu in
                    switch spec.activation {
                    case .silu: Kernels.swigluForward(pa.baseAddress!, pu.baseAddress!, count: pa.count)
                    case .geluTanh: Kernels.gegluTanhForward(pa.baseAddress!, pu.baseAddress!, count: pa.count)
                    }
                }
            }
            var d = l.down.forward(a, rows: N, train: train, rng: &rng)
            if let n = ml.mlpOutNorm {
                s.mlpOut = d
                (d, s.rMlp) = rmsNorm(s.mlpOut, weight: n, rows: N)
            }
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
        let spec = model.spec
        let N = packing.rows
        let (H, hd, nh, kv) = (model.H, model.headDim, model.heads, model.kvHeads)
        var dx = Kernels.rmsNormBackward(dh, x: xL, rms: rL, weight: model.norm, rows: N, d: H)
        for li in stride(from: layers.count - 1, through: lowestLayer, by: -1) {
            let l = layers[li]
            let ml = model.layers[li]
            let s = saved[li]
            // MLP: x2 = x1 + [norm](down(act(g) ⊙ u))
            var dMlp = dx
            if let n = ml.mlpOutNorm { dMlp = Kernels.rmsNormBackward(dx, x: s.mlpOut, rms: s.rMlp, weight: n, rows: N, d: H) }
            let da = l.down.backward(dMlp, needDx: true)!
            let (dg, du) =
                spec.activation == .silu
                ? Kernels.swigluBackward(da, gate: s.g, up: s.u) : Kernels.gegluTanhBackward(da, gate: s.g, up: s.u)
            var dxn2: [Float]
            if let f = l.gateUp {
                dxn2 = f.backward(Kernels.joinColumns([dg, du], widths: [model.ffn, model.ffn], rows: N), needDx: true)!
            } else {
                dxn2 = l.gate!.backward(dg, needDx: true)!
                let dxn2u = l.up!.backward(du, needDx: true)!
                for i in dxn2.indices { dxn2[i] += dxn2u[i] }
            }
            let dr2 = Kernels.rmsNormBackward(dxn2, x: s.x1, rms: s.r2, weight: ml.mlpNorm, rows: N, d: H)
            for i in dx.indices { dx[i] += dr2[i] }
            // Attention: x1 = x0 + [norm](o(ctx))
            var dAttn = dx
            if let n = ml.attnOutNorm { dAttn = Kernels.rmsNormBackward(dx, x: s.attnOut, rms: s.rAttn, weight: n, rows: N, d: H) }
            let dctx = l.o.backward(dAttn, needDx: true)!
            var (dq, dk, dv) = Kernels.attentionBackward(
                packed: packing, dctx: dctx, q: s.q, k: s.k, v: s.v, probs: s.probs, dropout: nil, heads: nh, kvHeads: kv, headDim: hd,
                options: spec.attention(layer: li))
            // RoPE is a rotation: its backward rotates the gradient back.
            rope(&dq, heads: nh, layer: li, backward: true)
            rope(&dk, heads: kv, layer: li, backward: true)
            if let qn = ml.qNorm, let kn = ml.kNorm {
                dq = Kernels.rmsNormBackward(dq, x: s.qPre, rms: s.rq, weight: qn, rows: N * nh, d: hd)
                dk = Kernels.rmsNormBackward(dk, x: s.kPre, rms: s.rk, weight: kn, rows: N * kv, d: hd)
            }
            let needDx = li > lowestLayer
            var dxn1: [Float]?
            if let f = l.qkv {
                dxn1 = f.backward(Kernels.joinColumns([dq, dk, dv], widths: [nh * hd, kv * hd, kv * hd], rows: N), needDx: needDx)
            } else {
                dxn1 = l.q!.backward(dq, needDx: needDx)
                for (lin, d) in [(l.k!, dk), (l.v!, dv)] {
                    if let g = lin.backward(d, needDx: needDx) { for i in dxn1!.indices { dxn1![i] += g[i] } }
                }
            }
            if needDx, let d1 = dxn1 {
                let dr1 = Kernels.rmsNormBackward(d1, x: s.x0, rms: s.r1, weight: ml.inNorm, rows: N, d: H)
                for i in dx.indices { dx[i] += dr1[i] }
            }
        }
    }
}
