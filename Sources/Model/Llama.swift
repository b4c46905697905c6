import Checkpoint
import Numerics
#if canImport(Glibc)
import Glibc
#endif

/// LLaMA-family decoder (LlamaForCausalLM; Qwen2-style q/k/v biases load too): RMSNorm, RoPE
/// (rope_theta, rope_scaling none/linear), GQA, SiLU-gated MLP, tied or separate lm_head, and sequence
/// classification on the last non-pad token (`score`).
public final class LlamaModel: AdaptableModel {
    public let config: ModelConfig
    public var modelType: String { config.modelType }
    package let H: Int, L: Int, heads: Int, kvHeads: Int, headDim: Int, ffn: Int, vocab: Int
    package let eps: Float
    package let invFreq: [Double]
    package let embed: AdaptedEmbedding
    package struct Layer {
        package var q, k, v, o, gate, up, down: AdaptedLinear
        package var inNorm, postNorm: [Float]
    }
    package let layers: [Layer]
    package let norm: [Float]
    package let lmHead: [Float]  // [vocab, H] (the embedding table when tied)
    var score: AdaptedLinear?
    public private(set) var linears: [String: AdaptedLinear] = [:]
    public private(set) var embeddings: [String: AdaptedEmbedding] = [:]

    public init(dir: HFModelDir) throws {
        let c = dir.config
        config = c
        let path = dir.path
        guard let H = c.hiddenSize, let L = c.numHiddenLayers, let heads = c.numAttentionHeads, let ffn = c.intermediateSize,
            let vocab = c.vocabSize, H > 0, L > 0, heads > 0
        else {
            throw ModelError.fail(path, "config.json lacks hidden_size / num_hidden_layers / num_attention_heads / intermediate_size / vocab_size")
        }
        let kv = c.numKeyValueHeads ?? heads
        let hd = c.headDim ?? H / heads
        guard kv > 0, heads % kv == 0, hd % 2 == 0 else {
            throw ModelError.fail(path, "num_attention_heads \(heads) / num_key_value_heads \(kv) / head_dim \(hd) are inconsistent")
        }
        self.H = H
        self.L = L
        self.heads = heads
        kvHeads = kv
        headDim = hd
        self.ffn = ffn
        self.vocab = vocab
        eps = Float(c.rmsNormEps ?? 1e-6)
        let theta = c.ropeTheta ?? 10000
        var factor = 1.0
        if let sc = c.ropeScaling, sc.kind != "default" {
            guard sc.kind == "linear", let f = sc.factor, f > 0 else {
                throw ModelError.fail(path, "rope scaling '\(sc.kind)' is not supported (none and linear are)")
            }
            factor = f
        }
        // transformers: inv_freq = 1 / theta^(arange(0, d, 2) / d), linear scaling divides it by the factor.
        invFreq = stride(from: 0, to: hd, by: 2).map { Double(Float(1 / pow(theta, Double($0) / Double(hd)))) / factor }
        let s = dir.weights
        let bias = c.attentionBias ?? (s.tensorInfo("model.layers.0.self_attn.q_proj.bias") != nil)
        func lin(_ n: String, out: Int, inF: Int, b: Bool = false) throws -> AdaptedLinear {
            AdaptedLinear(
                name: n, weight: try load(s, "model." + n + ".weight", shape: [out, inF]),
                bias: b ? try load(s, "model." + n + ".bias", shape: [out]) : nil, out: out, in: inF)
        }
        embed = AdaptedEmbedding(name: "embed_tokens", table: try load(s, "model.embed_tokens.weight", shape: [vocab, H]), vocab: vocab, dim: H)
        var ls: [Layer] = []
        for i in 0..<L {
            let b = "layers.\(i)."
            ls.append(
                Layer(
                    q: try lin(b + "self_attn.q_proj", out: heads * hd, inF: H, b: bias),
                    k: try lin(b + "self_attn.k_proj", out: kv * hd, inF: H, b: bias),
                    v: try lin(b + "self_attn.v_proj", out: kv * hd, inF: H, b: bias),
                    o: try lin(b + "self_attn.o_proj", out: H, inF: heads * hd),
                    gate: try lin(b + "mlp.gate_proj", out: ffn, inF: H), up: try lin(b + "mlp.up_proj", out: ffn, inF: H),
                    down: try lin(b + "mlp.down_proj", out: H, inF: ffn),
                    inNorm: try load(s, "model." + b + "input_layernorm.weight", shape: [H]),
                    postNorm: try load(s, "model." + b + "post_attention_layernorm.weight", shape: [H])))
        }
        layers = ls
        norm = try load(s, "model.norm.weight", shape: [H])
        lmHead = try optionalTensor(s, "lm_head.weight", shape: [vocab, H]) ?? embed.table
        if let w = s.tensorInfo("score.weight"), w.shape.count == 2, w.shape[1] == H {
            score = AdaptedLinear(name: "score", weight: try s.loadTensor("score.weight").data, bias: nil, out: w.shape[0], in: H)
        }
        for (i, l) in layers.enumerated() {
            let b = "layers.\(i)."
            for (n, x) in [
                ("self_attn.q_proj", l.q), ("self_attn.k_proj", l.k), ("self_attn.v_proj", l.v), ("self_attn.o_proj", l.o),
                ("mlp.gate_proj", l.gate), ("mlp.up_proj", l.up), ("mlp.down_proj", l.down),
            ] {
                linears[b + n] = x
            }
        }
        embeddings["embed_tokens"] = embed
    }

    public var hasClassifier: Bool { score != nil }
    public var classifierHead: (Tensor, Tensor?)? { score?.weightTensors }

    public func setClassifier(weight: Tensor, bias: Tensor?) throws {
        score = try AdaptedLinear.head(name: "score", weight: weight, bias: bias, hidden: H)
    }

    /// cos/sin of pos·invFreq[i] for each row's position (transformers computes them in Float32);
    /// built once per forward and shared by every layer's q and k.
    package struct RopeTable {
        package let cos: [Float], sin: [Float]
    }

    package func ropeTable(rows: Int, positions: (Int) -> Int) -> RopeTable {
        let half = headDim / 2
        var c = [Float](repeating: 0, count: rows * half)
        var s = c
        for r in 0..<rows {
            let pos = Float(positions(r))
            for i in 0..<half {
                let angle = pos * Float(invFreq[i])
                c[r * half + i] = cosf(angle)
                s[r * half + i] = sinf(angle)
            }
        }
        return RopeTable(cos: c, sin: s)
    }

    /// Key/value cache for incremental decoding: per layer [capacity, kvHeads*headDim].
    public final class KVCache {
        var k: [[Float]], v: [[Float]]
        public internal(set) var length = 0
        let capacity: Int
        init(layers: Int, capacity: Int, width: Int) {
            k = [[Float]](repeating: [Float](repeating: 0, count: capacity * width), count: layers)
            v = k
            self.capacity = capacity
        }
    }

    public func makeCache(capacity: Int) -> KVCache { KVCache(layers: L, capacity: capacity, width: kvHeads * headDim) }

    public func forward(_ batch: Batch, outputLayers: Bool = false, head: Head = .languageModel) throws -> ForwardOutput {
        try forward(batch, outputLayers: outputLayers, head: head, cache: nil)
    }

    /// Which adapters of layer `i` take part in the forward pass (the key of a `PrefixCache`).
    func signature(layer i: Int) -> [Bool] {
        let l = layers[i]
        return [l.q, l.k, l.v, l.o, l.gate, l.up, l.down].map { $0.hasAdapter && $0.active }
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

    /// Final-norm'd hidden states [rows, H] -> logits [rows, vocab] (rows split across threads).
    func lmLogits(_ h: [Float], rows: Int) -> [Float] {
        var logits = [Float](repeating: 0, count: rows * vocab)
        let (H, vocab) = (self.H, self.vocab)
        h.withUnsafeBufferPointer { ph in
            lmHead.withUnsafeBufferPointer { pw in
                logits.withUnsafeMutableBufferPointer { pl in
                    let (x, w, y) = (ph.baseAddress!, pw.baseAddress!, pl.baseAddress!)
                    if rows == 1 {
                        // One row (decoding): split the vocabulary instead.
                        Parallel.forEach(vocab, minChunk: 1024) { r in
                            BLAS.sgemm(
                                transA: false, transB: true, m: 1, n: r.count, k: H, a: x, lda: H, b: w + r.lowerBound * H, ldb: H, c: y + r.lowerBound,
                                ldc: vocab)
                        }
                    } else {
                        Parallel.forEach(rows, minChunk: 8) { r in
                            BLAS.sgemm(
                                transA: false, transB: true, m: r.count, n: vocab, k: H, a: x + r.lowerBound * H, lda: H, b: w, ldb: H,
                                c: y + r.lowerBound * vocab, ldc: vocab)
                        }
                    }
                }
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
        let S = start + T
        let N = B * T
        let qw = heads * headDim
        let kvw = kvHeads * headDim
        var x = [Float](repeating: 0, count: N * H)
        var xn = x
        var tmp = x
        var q = [Float](repeating: 0, count: N * qw)
        var att = q
        var kNew = [Float](repeating: 0, count: N * kvw)
        var vNew = kNew
        var g = [Float](repeating: 0, count: N * ffn)
        var u = g
        var layerOut: [[Float]] = []
        let table = ropeTable(rows: N) { start + $0 % T }
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
            prefix?.recordEmbeddings(x)
        }
        if keepLayers { for i in 0..<first { layerOut.append(prefix!.state(afterLayer: i)) } }
        for (li, layer) in layers.enumerated() where li >= first {
            x.withUnsafeMutableBufferPointer { px in
                xn.withUnsafeMutableBufferPointer { pn in
                    tmp.withUnsafeMutableBufferPointer { pt in
                        q.withUnsafeMutableBufferPointer { pq in
                            att.withUnsafeMutableBufferPointer { pa in
                                kNew.withUnsafeMutableBufferPointer { pk in
                                    vNew.withUnsafeMutableBufferPointer { pv in
                                        g.withUnsafeMutableBufferPointer { pg in
                                            u.withUnsafeMutableBufferPointer { pu in
                                                Kernels.rmsNormForward(px.baseAddress!, pn.baseAddress!, rows: N, d: H, weight: layer.inNorm, eps: eps)
                                                layer.q.forward(pn.baseAddress!, rows: N, into: pq.baseAddress!)
                                                layer.k.forward(pn.baseAddress!, rows: N, into: pk.baseAddress!)
                                                layer.v.forward(pn.baseAddress!, rows: N, into: pv.baseAddress!)
                                                Kernels.ropeForward(pq.baseAddress!, rows: N, heads: heads, headDim: headDim, cos: table.cos, sin: table.sin)
                                                Kernels.ropeForward(pk.baseAddress!, rows: N, heads: kvHeads, headDim: headDim, cos: table.cos, sin: table.sin)
                                                if let c = cache {
                                                    for i in 0..<(T * kvw) {
                                                        c.k[li][start * kvw + i] = pk[i]
                                                        c.v[li][start * kvw + i] = pv[i]
                                                    }
                                                    c.k[li].withUnsafeBufferPointer { ck in
                                                        c.v[li].withUnsafeBufferPointer { cv in
                                                            Kernels.attentionForward(
                                                                q: pq.baseAddress!, k: ck.baseAddress!, v: cv.baseAddress!, out: pa.baseAddress!,
                                                                Kernels.AttentionShape(
                                                                    B: 1, T: T, S: S, heads: heads, kvHeads: kvHeads, headDim: headDim,
                                                                    keyOffset: start, causal: true), keyValid: masks)
                                                        }
                                                    }
                                                } else {
                                                    Kernels.attentionForward(
                                                        q: pq.baseAddress!, k: pk.baseAddress!, v: pv.baseAddress!, out: pa.baseAddress!,
                                                        Kernels.AttentionShape(
                                                            B: B, T: T, S: S, heads: heads, kvHeads: kvHeads, headDim: headDim, causal: true),
                                                        keyValid: masks)
                                                }
                                                layer.o.forward(pa.baseAddress!, rows: N, into: pt.baseAddress!)
                                                for i in 0..<(N * H) { px[i] += pt[i] }
                                                Kernels.rmsNormForward(px.baseAddress!, pn.baseAddress!, rows: N, d: H, weight: layer.postNorm, eps: eps)
                                                layer.gate.forward(pn.baseAddress!, rows: N, into: pg.baseAddress!)
                                                layer.up.forward(pn.baseAddress!, rows: N, into: pu.baseAddress!)
                                                Kernels.swigluForward(pg.baseAddress!, pu.baseAddress!, count: N * ffn)
                                                layer.down.forward(pg.baseAddress!, rows: N, into: pt.baseAddress!)
                                                for i in 0..<(N * H) { px[i] += pt[i] }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            if keepLayers { layerOut.append(x) }
            prefix?.record(x, signature: signatures[li])
        }
        cache?.length = S
        var h = x
        x.withUnsafeBufferPointer { px in
            h.withUnsafeMutableBufferPointer { ph in
                Kernels.rmsNormForward(px.baseAddress!, ph.baseAddress!, rows: N, d: H, weight: norm, eps: eps)
            }
        }
        if keepLayers { layerOut[layerOut.count - 1] = h }  // transformers' last hidden state is after the final norm
        return (h, layerOut)
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
