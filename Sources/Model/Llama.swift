import Checkpoint
import Numerics
#if canImport(Glibc)
import Glibc
#endif

/// The llama-family decoder (LlamaForCausalLM and the families built on its block: Mistral, Qwen2/3, Gemma 2,
/// Gemma 3 text, Phi-3; what each changes is its `DecoderSpec`, from its config type in
/// `Decoder/Families.swift`): RMSNorm, RoPE (default, linear, llama3; partial; per layer type), GQA with
/// sliding windows, soft-caps and q/k norms where the family has them, SiLU- or GELU-gated MLP, tied or
/// separate lm_head, and sequence classification on the last non-pad token (`score`). The forward pass is
/// in `Decoder/DecoderForward.swift`.
public final class LlamaModel: AdaptableModel {
    public let config: ModelConfig
    public var modelType: String { config.modelType }
    package let H: Int, L: Int, heads: Int, kvHeads: Int, headDim: Int, ffn: Int, vocab: Int
    package let eps: Float
    package let spec: DecoderSpec
    package let embed: AdaptedEmbedding
    /// One block. Separate q/k/v and gate/up projections, or (Phi-3) the fused `qkv` and `gateUp`; norm
    /// weights as the kernels use them ((1 + w) already for Gemma).
    package struct Layer {
        package var q, k, v: AdaptedLinear?
        package var qkv: AdaptedLinear?
        package var o: AdaptedLinear
        package var gate, up: AdaptedLinear?
        package var gateUp: AdaptedLinear?
        package var down: AdaptedLinear
        /// input_layernorm; the MLP's input norm (llama: post_attention_layernorm, Gemma: pre_feedforward_layernorm).
        package var inNorm, mlpNorm: [Float]
        /// Gemma: the attention output's norm (post_attention_layernorm) and the MLP output's (post_feedforward_layernorm).
        package var attnOutNorm, mlpOutNorm: [Float]?
        /// Qwen3, Gemma 3: q_norm, k_norm [head_dim].
        package var qNorm, kNorm: [Float]?
        /// Every linear of the block with its name under `layers.i.`.
        package var named: [(String, AdaptedLinear)] {
            var out: [(String, AdaptedLinear)] = []
            if let f = qkv { out.append(("self_attn.qkv_proj", f)) }
            for (n, l) in [("self_attn.q_proj", q), ("self_attn.k_proj", k), ("self_attn.v_proj", v)] { if let l { out.append((n, l)) } }
            out.append(("self_attn.o_proj", o))
            if let f = gateUp { out.append(("mlp.gate_up_proj", f)) }
            for (n, l) in [("mlp.gate_proj", gate), ("mlp.up_proj", up)] { if let l { out.append((n, l)) } }
            out.append(("mlp.down_proj", down))
            return out
        }
    }
    package let layers: [Layer]
    package let norm: [Float]
    package let lmHead: WeightMatrix  // [vocab, H] (the embedding table when tied)
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
        let (spec, hd, eps) = try DecoderFamilies.spec(dir, heads: heads, hidden: H, layers: L)
        let kv = c.numKeyValueHeads ?? heads
        guard kv > 0, heads % kv == 0, hd % 2 == 0, hd > 0 else {
            throw ModelError.fail(path, "num_attention_heads \(heads) / num_key_value_heads \(kv) / head_dim \(hd) are inconsistent")
        }
        self.H = H
        self.L = L
        self.heads = heads
        kvHeads = kv
        headDim = hd
        self.ffn = ffn
        self.vocab = vocab
        self.eps = eps
        self.spec = spec
        let s = dir.weights
        let bias = c.attentionBias ?? (s.tensorInfo("model.layers.0.self_attn.q_proj.bias") != nil)
        func lin(_ n: String, out: Int, inF: Int, b: Bool = false) throws -> AdaptedLinear {
            AdaptedLinear(
                name: n, matrix: try loadMatrix(s, "model." + n + ".weight", rows: out, cols: inF),
                bias: b ? try load(s, "model." + n + ".bias", shape: [out]) : nil)
        }
        // Gemma's norms scale by (1 + w): the 1 is added once here, in Float32 as torch adds it.
        let plusOne = spec.normPlusOne
        func normWeight(_ n: String, _ d: Int) throws -> [Float] {
            let w = try load(s, "model." + n + ".weight", shape: [d])
            return plusOne ? w.map { 1 + $0 } : w
        }
        embed = AdaptedEmbedding(name: "embed_tokens", table: try loadMatrix(s, "model.embed_tokens.weight", rows: vocab, cols: H))
        var ls: [Layer] = []
        for i in 0..<L {
            let b = "layers.\(i)."
            let fused = spec.fusedProjections
            let qkvOut = (heads + 2 * kv) * hd
            ls.append(
                Layer(
                    q: fused ? nil : try lin(b + "self_attn.q_proj", out: heads * hd, inF: H, b: bias),
                    k: fused ? nil : try lin(b + "self_attn.k_proj", out: kv * hd, inF: H, b: bias),
                    v: fused ? nil : try lin(b + "self_attn.v_proj", out: kv * hd, inF: H, b: bias),
                    qkv: fused ? try lin(b + "self_attn.qkv_proj", out: qkvOut, inF: H, b: bias) : nil,
                    o: try lin(b + "self_attn.o_proj", out: H, inF: heads * hd),
                    gate: fused ? nil : try lin(b + "mlp.gate_proj", out: ffn, inF: H),
                    up: fused ? nil : try lin(b + "mlp.up_proj", out: ffn, inF: H),
                    gateUp: fused ? try lin(b + "mlp.gate_up_proj", out: 2 * ffn, inF: H) : nil,
                    down: try lin(b + "mlp.down_proj", out: H, inF: ffn),
                    inNorm: try normWeight(b + "input_layernorm", H),
                    mlpNorm: try normWeight(b + (spec.sandwichNorms ? "pre_feedforward_layernorm" : "post_attention_layernorm"), H),
                    attnOutNorm: spec.sandwichNorms ? try normWeight(b + "post_attention_layernorm", H) : nil,
                    mlpOutNorm: spec.sandwichNorms ? try normWeight(b + "post_feedforward_layernorm", H) : nil,
                    qNorm: spec.qkNorm ? try normWeight(b + "self_attn.q_norm", hd) : nil,
                    kNorm: spec.qkNorm ? try normWeight(b + "self_attn.k_norm", hd) : nil))
        }
        layers = ls
        norm = try normWeight("norm", H)
        lmHead = try optionalMatrix(s, "lm_head.weight", rows: vocab, cols: H) ?? embed.table
        if let w = s.tensorInfo("score.weight"), w.shape.count == 2, w.shape[1] == H {
            score = AdaptedLinear(name: "score", weight: try s.loadTensor("score.weight").data, bias: nil, out: w.shape[0], in: H)
        }
        for (i, l) in layers.enumerated() {
            for (n, x) in l.named { linears["layers.\(i)." + n] = x }
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

    /// One table per distinct inverse-frequency list of the spec (layer i uses `spec.layerRope[i]`).
    package func ropeTables(rows: Int, positions: (Int) -> Int) -> [RopeTable] {
        spec.invFreqs.map { invFreq in
            let half = invFreq.count
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
}
