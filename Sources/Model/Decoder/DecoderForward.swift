import Checkpoint
import Numerics
#if canImport(Glibc)
import Glibc
#endif

// The decoder's forward pass: embeddings, the blocks as the family's `DecoderSpec` shapes them, the final
// norm, the LM or classification head; greedy generation with a KV cache.

extension LlamaModel {
    public func forward(_ batch: Batch, outputLayers: Bool = false, head: Head = .languageModel) throws -> ForwardOutput {
        try forward(batch, outputLayers: outputLayers, head: head, cache: nil)
    }

    /// Which adapters of layer `i` take part in the forward pass (the key of a `PrefixCache`).
    func signature(layer i: Int) -> [Bool] {
        layers[i].named.map { $0.1.hasAdapter && $0.1.active }
    }

    /// With a `cache`, as BERT's: a later pass of the same batch whose adapters are switched the same way in
    /// layers 0..<j (and in the embeddings) starts at layer j from the kept hidden state (Shapley sweeps).
    public func forward(_ batch: Batch, outputLayers: Bool = false, head: Head = .languageModel, cache: PrefixCache?) throws -> ForwardOutput {
        var out = ForwardOutput(batch: batch.count, length: batch.length, hidden: H, lastHidden: [])
        let (h, states) = try run(ids: batch.ids, masks: batch.mask, cache: nil, keepLayers: outputLayers, prefix: cache)
        out.lastHidden = h
        out.layerStates = states
        let T = batch.length
        switch head {
        case .languageModel:
            out.logits = lmLogits(h, rows: batch.count * T)
            out.logitsWidth = vocab
        case .classification:
            guard let score else { throw ModelError.fail("model", "no classification head (score): give an adapter with one, or --head") }
            var last = [Float](repeating: 0, count: batch.count * H)
            for b in 0..<batch.count {
                let t = batch.mask[b].lastIndex(of: 1) ?? 0
                for j in 0..<H { last[b * H + j] = h[(b * T + t) * H + j] }
            }
            var cls = [Float](repeating: 0, count: batch.count * score.outFeatures)
            last.withUnsafeBufferPointer { p in
                cls.withUnsafeMutableBufferPointer { r in score.forward(p.baseAddress!, rows: batch.count, into: r.baseAddress!) }
            }
            out.logits = cls
            out.logitsWidth = score.outFeatures
        case .none: break
        }
        return out
    }

    /// Logits [rows.count, vocab] of chosen rows of final-normed hidden states [*, H] (a forward pass with
    /// head `.none` gives them in `lastHidden`): scoring a few positions of long sequences without the
    /// logits of every position.
    public func lmLogits(rowsOf hidden: [Float], rows: [Int]) -> [Float] {
        var picked = [Float](repeating: 0, count: rows.count * H)
        for (i, r) in rows.enumerated() { for j in 0..<H { picked[i * H + j] = hidden[r * H + j] } }
        return lmLogits(picked, rows: rows.count)
    }

    /// Final-norm'd hidden states [rows, H] -> logits [rows, vocab] (rows split across threads), soft-capped
    /// where the family caps them (Gemma 2's final_logit_softcapping).
    func lmLogits(_ h: [Float], rows: Int) -> [Float] {
        var logits = [Float](repeating: 0, count: rows * vocab)
        let vocab = self.vocab
        h.withUnsafeBufferPointer { ph in
            logits.withUnsafeMutableBufferPointer { pl in
                lmHead.multiplyTransposed(ph.baseAddress!, rows: rows, into: pl.baseAddress!)
                if let cap = spec.finalSoftcap { Kernels.softcapForward(pl.baseAddress!, count: rows * vocab, cap: cap) }
            }
        }
        return logits
    }

    /// Sequences (all of length T) through the decoder, their rows batched in every linear layer.
    /// With a cache (one sequence), `ids` continue the cached positions.
    /// Returns the final-normed hidden states [B*T, H] and (optionally) each layer's output.
    func run(ids: [[Int]], masks: [[Int]], cache: KVCache?, keepLayers: Bool, prefix: PrefixCache? = nil) throws -> ([Float], [[Float]]) {
        for row in ids { for id in row where id < 0 || id >= vocab { throw ModelError.fail("input", "token id \(id) outside the vocabulary (\(vocab))") } }
        let B = ids.count
        let T = ids.first?.count ?? 0
        if cache != nil && B != 1 { throw ModelError.fail("input", "the KV cache takes one sequence") }
        let start = cache?.length ?? 0
        if let c = cache, start + T > c.capacity { throw ModelError.fail("input", "KV cache of \(c.capacity) positions is full") }
        let N = B * T
        var x = [Float](repeating: 0, count: N * H)
        var layerOut: [[Float]] = []
        let tables = ropeTables(rows: N) { start + $0 % T }
        let signatures = prefix == nil ? [] : (0..<L).map { signature(layer: $0) }
        var first = 0
        if let prefix {
            let (start, state) = prefix.begin(
                ids: ids, typeIds: nil, masks: masks, embeddingSignature: [embed.active && embed.a != nil], signatures: signatures)
            first = start
            if let state { x = state }
        }
        if first == 0 {
            x.withUnsafeMutableBufferPointer { px in for b in 0..<B { embed.forward(ids[b], into: px.baseAddress! + b * T * H) } }
            if let sc = spec.embedScale { for i in x.indices { x[i] *= sc } }
            prefix?.recordEmbeddings(x)
        }
        if keepLayers { for i in 0..<first { layerOut.append(prefix!.state(afterLayer: i)) } }
        let scratch = DecoderScratch(self, rows: N)
        for li in layers.indices where li >= first {
            x.withUnsafeMutableBufferPointer { px in
                block(
                    li, px.baseAddress!, scratch, B: B, T: T, start: start, masks: masks, cache: cache, table: tables[spec.layerRope[li]])
            }
            if keepLayers { layerOut.append(x) }
            prefix?.record(x, signature: signatures[li])
        }
        cache?.length = start + T
        var h = x
        x.withUnsafeBufferPointer { px in
            h.withUnsafeMutableBufferPointer { ph in
                Kernels.rmsNormForward(px.baseAddress!, ph.baseAddress!, rows: N, d: H, weight: norm, eps: eps)
            }
        }
        if keepLayers { layerOut[layerOut.count - 1] = h }  // transformers' last hidden state is after the final norm
        return (h, layerOut)
    }

    /// Layer `li` on the hidden states x [N, H] in place: norm, q/k/v (fused or not; q/k normed per head
    /// where the family does), RoPE, attention (over the cache's keys too), o (its output normed for Gemma),
    /// residual; norm, gated MLP (its output normed for Gemma), residual.
    func block(
        _ li: Int, _ x: UnsafeMutablePointer<Float>, _ w: DecoderScratch, B: Int, T: Int, start: Int, masks: [[Int]], cache: KVCache?,
        table: RopeTable
    ) {
        let layer = layers[li]
        let N = B * T
        let (qw, kvw) = (heads * headDim, kvHeads * headDim)
        Kernels.rmsNormForward(x, w.xn, rows: N, d: H, weight: layer.inNorm, eps: eps)
        if let f = layer.qkv {
            f.forward(w.xn, rows: N, into: w.fused)
            Kernels.splitColumns(w.fused, rows: N, into: [(w.q, qw), (w.k, kvw), (w.v, kvw)])
        } else {
            layer.q!.forward(w.xn, rows: N, into: w.q)
            layer.k!.forward(w.xn, rows: N, into: w.k)
            layer.v!.forward(w.xn, rows: N, into: w.v)
        }
        if let qn = layer.qNorm, let kn = layer.kNorm {
            Kernels.rmsNormForward(w.q, w.q, rows: N * heads, d: headDim, weight: qn, eps: eps)
            Kernels.rmsNormForward(w.k, w.k, rows: N * kvHeads, d: headDim, weight: kn, eps: eps)
        }
        Kernels.ropeForward(w.q, rows: N, heads: heads, headDim: headDim, rotary: spec.rotaryDims, cos: table.cos, sin: table.sin)
        Kernels.ropeForward(w.k, rows: N, heads: kvHeads, headDim: headDim, rotary: spec.rotaryDims, cos: table.cos, sin: table.sin)
        let options = spec.attention(layer: li)
        if let c = cache {
            for i in 0..<(T * kvw) {
                c.k[li][start * kvw + i] = w.k[i]
                c.v[li][start * kvw + i] = w.v[i]
            }
            c.k[li].withUnsafeBufferPointer { ck in
                c.v[li].withUnsafeBufferPointer { cv in
                    Kernels.attentionForward(
                        q: w.q, k: ck.baseAddress!, v: cv.baseAddress!, out: w.att,
                        Kernels.AttentionShape(
                            B: 1, T: T, S: start + T, heads: heads, kvHeads: kvHeads, headDim: headDim, keyOffset: start, causal: true, options: options),
                        keyValid: masks)
                }
            }
        } else {
            Kernels.attentionForward(
                q: w.q, k: w.k, v: w.v, out: w.att,
                Kernels.AttentionShape(B: B, T: T, S: T, heads: heads, kvHeads: kvHeads, headDim: headDim, causal: true, options: options),
                keyValid: masks)
        }
        layer.o.forward(w.att, rows: N, into: w.tmp)
        if let n = layer.attnOutNorm { Kernels.rmsNormForward(w.tmp, w.tmp, rows: N, d: H, weight: n, eps: eps) }
        for i in 0..<(N * H) { x[i] += w.tmp[i] }
        Kernels.rmsNormForward(x, w.xn, rows: N, d: H, weight: layer.mlpNorm, eps: eps)
        if let f = layer.gateUp {
            f.forward(w.xn, rows: N, into: w.fused)
            Kernels.splitColumns(w.fused, rows: N, into: [(w.g, ffn), (w.u, ffn)])
        } else {
            layer.gate!.forward(w.xn, rows: N, into: w.g)
            layer.up!.forward(w.xn, rows: N, into: w.u)
        }
        switch spec.activation {
        case .silu: Kernels.swigluForward(w.g, w.u, count: N * ffn)
        case .geluTanh: Kernels.gegluTanhForward(w.g, w.u, count: N * ffn)
        }
        layer.down.forward(w.g, rows: N, into: w.tmp)
        if let n = layer.mlpOutNorm { Kernels.rmsNormForward(w.tmp, w.tmp, rows: N, d: H, weight: n, eps: eps) }
        for i in 0..<(N * H) { x[i] += w.tmp[i] }
    }

    /// Greedy decoding with a KV cache: the prompt in one pass, then one token per step.
    public func generate(prompt: [Int], maxNewTokens: Int, stop: Set<Int> = [], onToken: ((Int) -> Void)? = nil) throws -> [Int] {
        guard !prompt.isEmpty else { throw ModelError.fail("input", "empty prompt") }
        let cache = makeCache(capacity: prompt.count + maxNewTokens)
        var (h, _) = try run(ids: [prompt], masks: [prompt.map { _ in 1 }], cache: cache, keepLayers: false)
        var out: [Int] = []
        for _ in 0..<maxNewTokens {
            let last = Array(h[((h.count / H - 1) * H)...])
            let logits = lmLogits(last, rows: 1)
            var best = 0
            for i in 1..<vocab where logits[i] > logits[best] { best = i }
            out.append(best)
            onToken?(best)
            if stop.contains(best) { break }
            (h, _) = try run(ids: [[best]], masks: [[1]], cache: cache, keepLayers: false)
        }
        return out
    }
}

/// The per-forward work buffers of `LlamaModel.block`, allocated once per pass for every layer.
final class DecoderScratch {
    let xn, q, k, v, att, tmp, g, u, fused: UnsafeMutablePointer<Float>
    private let all: [UnsafeMutablePointer<Float>]

    init(_ m: LlamaModel, rows N: Int) {
        func buffer(_ n: Int) -> UnsafeMutablePointer<Float> {
            let p = UnsafeMutablePointer<Float>.allocate(capacity: max(1, n))
            p.initialize(repeating: 0, count: max(1, n))
            return p
        }
        let (qw, kvw) = (m.heads * m.headDim, m.kvHeads * m.headDim)
        xn = buffer(N * m.H)
        q = buffer(N * qw)
        k = buffer(N * kvw)
        v = buffer(N * kvw)
        att = buffer(N * qw)
        tmp = buffer(N * m.H)
        g = buffer(N * m.ffn)
        u = buffer(N * m.ffn)
        fused = buffer(m.spec.fusedProjections ? N * max(qw + 2 * kvw, 2 * m.ffn) : 0)
        all = [xn, q, k, v, att, tmp, g, u, fused]
    }

    deinit { for p in all { p.deallocate() } }
}
