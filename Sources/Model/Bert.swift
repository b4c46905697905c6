import Checkpoint
import Numerics

/// BERT encoder (BertModel), with the pooler and an optional sequence-classification head on the
/// pooled [CLS]; mean pooling for sentence embeddings as sentence-transformers does.
public final class BertModel: AdaptableModel {
    public let config: ModelConfig
    public let modelType = "bert"
    package let H: Int, L: Int, heads: Int, ffn: Int, vocab: Int, maxPos: Int, types: Int
    package let eps: Float
    package let wordEmb: AdaptedEmbedding
    package let posEmb: [Float], typeEmb: [Float]
    package let embLN: ([Float], [Float])
    package struct Layer {
        package var q, k, v, attnOut, inter, out: AdaptedLinear
        package var attnLN, outLN: ([Float], [Float])
    }
    package let layers: [Layer]
    package let pooler: AdaptedLinear?
    package var classifier: AdaptedLinear?
    public private(set) var linears: [String: AdaptedLinear] = [:]
    public private(set) var embeddings: [String: AdaptedEmbedding] = [:]

    public init(dir: HFModelDir) throws {
        let c = dir.config
        config = c
        let path = dir.path
        guard let H = c.hiddenSize, let L = c.numHiddenLayers, let heads = c.numAttentionHeads, let ffn = c.intermediateSize,
            let vocab = c.vocabSize, H > 0, L > 0, heads > 0, H % heads == 0
        else {
            throw ModelError.fail(path, "config.json lacks hidden_size / num_hidden_layers / num_attention_heads / intermediate_size / vocab_size")
        }
        self.H = H
        self.L = L
        self.heads = heads
        self.ffn = ffn
        self.vocab = vocab
        maxPos = c.maxPositionEmbeddings ?? 512
        types = c.typeVocabSize ?? 2
        eps = Float(c.layerNormEps ?? 1e-12)
        let s = dir.weights
        let p = s.tensorInfo("bert.embeddings.word_embeddings.weight") != nil ? "bert." : ""
        func lin(_ n: String, out: Int, inF: Int, bias: Bool = true) throws -> AdaptedLinear {
            AdaptedLinear(
                name: n, matrix: try loadMatrix(s, p + n + ".weight", rows: out, cols: inF),
                bias: bias ? try load(s, p + n + ".bias", shape: [out]) : nil)
        }
        func ln(_ n: String) throws -> ([Float], [Float]) {
            (try load(s, p + n + ".weight", shape: [H]), try load(s, p + n + ".bias", shape: [H]))
        }
        wordEmb = AdaptedEmbedding(
            name: "embeddings.word_embeddings", table: try loadMatrix(s, p + "embeddings.word_embeddings.weight", rows: vocab, cols: H))
        posEmb = try load(s, p + "embeddings.position_embeddings.weight", shape: [maxPos, H])
        typeEmb = try load(s, p + "embeddings.token_type_embeddings.weight", shape: [types, H])
        embLN = try ln("embeddings.LayerNorm")
        var ls: [Layer] = []
        for i in 0..<L {
            let b = "encoder.layer.\(i)."
            ls.append(
                Layer(
                    q: try lin(b + "attention.self.query", out: H, inF: H), k: try lin(b + "attention.self.key", out: H, inF: H),
                    v: try lin(b + "attention.self.value", out: H, inF: H), attnOut: try lin(b + "attention.output.dense", out: H, inF: H),
                    inter: try lin(b + "intermediate.dense", out: ffn, inF: H), out: try lin(b + "output.dense", out: H, inF: ffn),
                    attnLN: try ln(b + "attention.output.LayerNorm"), outLN: try ln(b + "output.LayerNorm")))
        }
        layers = ls
        pooler = s.tensorInfo(p + "pooler.dense.weight") != nil ? try lin("pooler.dense", out: H, inF: H) : nil
        if let w = s.tensorInfo("classifier.weight"), w.shape.count == 2, w.shape[1] == H {
            classifier = AdaptedLinear(
                name: "classifier", weight: try s.loadTensor("classifier.weight").data,
                bias: try optionalTensor(s, "classifier.bias", shape: [w.shape[0]]), out: w.shape[0], in: H)
        }
        for (i, l) in layers.enumerated() {
            let b = "encoder.layer.\(i)."
            for (n, x) in [
                ("attention.self.query", l.q), ("attention.self.key", l.k), ("attention.self.value", l.v),
                ("attention.output.dense", l.attnOut), ("intermediate.dense", l.inter), ("output.dense", l.out),
            ] {
                linears[b + n] = x
            }
        }
        if let pooler { linears["pooler.dense"] = pooler }
        embeddings["embeddings.word_embeddings"] = wordEmb
    }

    public var hasClassifier: Bool { classifier != nil }
    public var classifierHead: (Tensor, Tensor?)? { classifier?.weightTensors }

    public func setClassifier(weight: Tensor, bias: Tensor?) throws {
        classifier = try AdaptedLinear.head(name: "classifier", weight: weight, bias: bias, hidden: H)
    }

    public func forward(_ batch: Batch, outputLayers: Bool = false, head: Head = .none) throws -> ForwardOutput {
        try forward(batch, outputLayers: outputLayers, head: head, cache: nil)
    }

    /// Which adapters of layer `i` take part in the forward pass (the key of a `PrefixCache`).
    func signature(layer i: Int) -> [Bool] {
        let l = layers[i]
        return [l.q, l.k, l.v, l.attnOut, l.inter, l.out].map { $0.hasAdapter && $0.active }
    }

    /// With a `cache`, the hidden states after the embeddings and after each layer are kept; a later call
    /// on the same batch whose adapters are switched the same way in layers 0..<j (and in the embeddings)
    /// starts at layer j from the kept state. Only on/off switches are tracked: the caller clears the
    /// cache when it changes adapter weights.
    public func forward(_ batch: Batch, outputLayers: Bool = false, head: Head = .none, cache: PrefixCache?) throws -> ForwardOutput {
        let B = batch.count
        let T = batch.length
        guard T <= maxPos else { throw ModelError.fail("input", "sequence of \(T) tokens exceeds max_position_embeddings \(maxPos)") }
        for row in batch.ids {
            for id in row where id < 0 || id >= vocab { throw ModelError.fail("input", "token id \(id) outside the vocabulary (\(vocab))") }
        }
        for row in batch.typeIds ?? [] {
            for t in row where t < 0 || t >= types { throw ModelError.fail("input", "token type id \(t) outside the \(types) token types (type_vocab_size)") }
        }
        let N = B * T
        var x = [Float](repeating: 0, count: N * H)
        var q = x
        var k = x
        var v = x
        var ctx = x
        var tmp = x
        var mid = [Float](repeating: 0, count: N * ffn)
        var out = ForwardOutput(batch: B, length: T, hidden: H, lastHidden: [])
        // Which adapters are on, per layer: only a cached run needs it.
        let signatures = cache == nil ? [] : (0..<layers.count).map { signature(layer: $0) }
        var start = 0
        if let cache {
            let embSignature = embeddings.keys.sorted().map { embeddings[$0]!.active && embeddings[$0]!.a != nil }
            let (first, state) = cache.begin(
                ids: batch.ids, typeIds: batch.typeIds, masks: batch.mask, embeddingSignature: embSignature, signatures: signatures)
            start = first
            if let state { x = state }
        }
        if start == 0 {
            x.withUnsafeMutableBufferPointer { embed(ids: batch.ids, typeIds: batch.typeIds, into: $0.baseAddress!) }
            cache?.recordEmbeddings(x)
        }
        if outputLayers { for i in 0..<start { out.layerStates.append(cache!.state(afterLayer: i)) } }
        for (index, layer) in layers.enumerated() where index >= start {
            x.withUnsafeMutableBufferPointer { px in
                q.withUnsafeMutableBufferPointer { pq in
                    k.withUnsafeMutableBufferPointer { pk in
                        v.withUnsafeMutableBufferPointer { pv in
                            ctx.withUnsafeMutableBufferPointer { pc in
                                tmp.withUnsafeMutableBufferPointer { pt in
                                    mid.withUnsafeMutableBufferPointer { pm in
                                        let X = px.baseAddress!
                                        layer.q.forward(X, rows: N, into: pq.baseAddress!)
                                        layer.k.forward(X, rows: N, into: pk.baseAddress!)
                                        layer.v.forward(X, rows: N, into: pv.baseAddress!)
                                        Kernels.attentionForward(
                                            q: pq.baseAddress!, k: pk.baseAddress!, v: pv.baseAddress!, out: pc.baseAddress!,
                                            Kernels.AttentionShape(B: B, T: T, S: T, heads: heads, kvHeads: heads, headDim: H / heads, causal: false),
                                            keyValid: batch.mask)
                                        layer.attnOut.forward(pc.baseAddress!, rows: N, into: pt.baseAddress!)
                                        for i in 0..<(N * H) { pt[i] += px[i] }
                                        Kernels.layerNormForward(pt.baseAddress!, rows: N, d: H, weight: layer.attnLN.0, bias: layer.attnLN.1, eps: eps)
                                        layer.inter.forward(pt.baseAddress!, rows: N, into: pm.baseAddress!)
                                        Kernels.geluForward(pm.baseAddress!, count: N * ffn)
                                        layer.out.forward(pm.baseAddress!, rows: N, into: px.baseAddress!)
                                        for i in 0..<(N * H) { px[i] += pt[i] }
                                        Kernels.layerNormForward(px.baseAddress!, rows: N, d: H, weight: layer.outLN.0, bias: layer.outLN.1, eps: eps)
                                    }
                                }
                            }
                        }
                    }
                }
            }
            if outputLayers { out.layerStates.append(x) }
            cache?.record(x, signature: signatures[index])
        }
        out.lastHidden = x
        if head == .classification {
            guard let classifier, let pooler else { throw ModelError.fail("model", "no classification head: give an adapter with a classifier, or --head") }
            var cls = [Float](repeating: 0, count: B * H)
            for b in 0..<B { for j in 0..<H { cls[b * H + j] = x[b * T * H + j] } }
            var pooled = [Float](repeating: 0, count: B * H)
            cls.withUnsafeBufferPointer { pc in
                pooled.withUnsafeMutableBufferPointer { pp in
                    pooler.forward(pc.baseAddress!, rows: B, into: pp.baseAddress!)
                    Kernels.tanhForward(pp.baseAddress!, count: B * H)
                }
            }
            var logits = [Float](repeating: 0, count: B * classifier.outFeatures)
            pooled.withUnsafeBufferPointer { pp in
                logits.withUnsafeMutableBufferPointer { pl in
                    classifier.forward(pp.baseAddress!, rows: B, into: pl.baseAddress!)
                }
            }
            out.logits = logits
            out.logitsWidth = classifier.outFeatures
        }
        return out
    }

    /// The embedding block, word + position + token type, then LayerNorm, into x: the rows of sequence b
    /// follow those of sequence b − 1 ([B·T, H] for a padded batch; packed when the lengths differ), each
    /// sequence's positions counted from 0 (unchecked ids: `forward` validates them).
    package func embed(ids: [[Int]], typeIds: [[Int]]?, into x: UnsafeMutablePointer<Float>) {
        var row = 0
        for b in ids.indices {
            wordEmb.forward(ids[b], into: x + row * H)
            for t in ids[b].indices {
                let tt = typeIds?[b][t] ?? 0
                for j in 0..<H { x[(row + t) * H + j] += posEmb[t * H + j] + typeEmb[tt * H + j] }
            }
            row += ids[b].count
        }
        Kernels.layerNormForward(x, rows: row, d: H, weight: embLN.0, bias: embLN.1, eps: eps)
    }

    /// sentence-transformers mean pooling: Σ h·mask / Σ mask per sequence, [B, H].
    public func meanPool(_ out: ForwardOutput, mask: [[Int]]) -> [Float] {
        let B = out.batch
        let T = out.length
        var e = [Float](repeating: 0, count: B * H)
        for b in 0..<B {
            let n = max(1, mask[b].reduce(0, +))
            for t in 0..<T where mask[b][t] != 0 { for j in 0..<H { e[b * H + j] += out.lastHidden[(b * T + t) * H + j] } }
            for j in 0..<H { e[b * H + j] /= Float(n) }
        }
        return e
    }
}
