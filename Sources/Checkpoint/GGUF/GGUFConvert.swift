import Numerics

/// Converts a llama.cpp GGUF (LLaMA architecture) into a Hugging Face model directory:
/// config.json, model.safetensors (dequantized; sharded with a size limit), tokenizer.json,
/// tokenizer_config.json, generation_config.json. The result loads in transformers and gives the
/// logits transformers gives on the GGUF itself.
public struct GGUFConverter {
    public let gguf: GGUFFile
    public var dtype: DType = .f32
    public var maxShardSize: UInt64? = nil

    public init(gguf: GGUFFile) { self.gguf = gguf }

    public enum Event {
        case tensor(name: String, index: Int, total: Int)
        case wrote(file: String)
        case note(String)
    }

    public var architecture: String { gguf["general.architecture"]?.string ?? "unknown" }

    func meta(_ key: String) -> GGUFValue? { gguf["\(architecture).\(key)"] }

    func requireInt(_ key: String) throws -> Int {
        guard let v = meta(key)?.int, v > 0 else {
            throw CheckpointError(gguf.path, .invalid("GGUF metadata '\(architecture).\(key)' is missing or not a positive integer"))
        }
        return v
    }

    // MARK: config

    public func config() throws -> JSON {
        guard architecture == "llama" else {
            throw CheckpointError(gguf.path, .invalid("architecture '\(architecture)' is not supported (coto-convert handles llama)"))
        }
        let hidden = try requireInt("embedding_length")
        let layers = try requireInt("block_count")
        let heads = try requireInt("attention.head_count")
        let kvHeads = meta("attention.head_count_kv")?.int ?? heads
        guard kvHeads > 0, heads % kvHeads == 0, hidden % heads == 0 else {
            throw CheckpointError(gguf.path, .invalid("GGUF: head_count \(heads) / head_count_kv \(kvHeads) / embedding_length \(hidden) are inconsistent"))
        }
        let headDim = meta("rope.dimension_count")?.int ?? hidden / heads
        let ffn = try requireInt("feed_forward_length")
        let vocab = meta("vocab_size")?.int ?? vocabTokens()?.count
        guard let vocabSize = vocab, vocabSize > 0 else {
            throw CheckpointError(gguf.path, .invalid("GGUF: no vocab_size and no tokenizer.ggml.tokens"))
        }
        let eps = meta("attention.layer_norm_rms_epsilon")?.double ?? 1e-6
        let theta = meta("rope.freq_base")?.double ?? 10000
        let ctx = meta("context_length")?.int ?? 2048
        let tied = gguf.tensorInfo(named: "output.weight") == nil
        let bias = gguf.tensorInfo(named: "blk.0.attn_q.bias") != nil
        var ropeScaling = JSON.null
        if let type = meta("rope.scaling.type")?.string, type != "none" {
            guard type == "linear", let f = meta("rope.scaling.factor")?.double else {
                throw CheckpointError(gguf.path, .invalid("GGUF: rope scaling '\(type)' is not supported (none and linear are)"))
            }
            ropeScaling = .object([("factor", .double(f)), ("rope_type", .string("linear")), ("type", .string("linear"))])
        } else if let f = meta("rope.scale_linear")?.double, f != 1 {
            ropeScaling = .object([("factor", .double(f)), ("rope_type", .string("linear")), ("type", .string("linear"))])
        }
        var pairs: [(String, JSON)] = [
            ("architectures", .array([.string("LlamaForCausalLM")])),
            ("attention_bias", .bool(bias)),
            ("attention_dropout", .double(0)),
        ]
        if let b = gguf["tokenizer.ggml.bos_token_id"]?.int { pairs.append(("bos_token_id", .int(b))) }
        if let e = gguf["tokenizer.ggml.eos_token_id"]?.int { pairs.append(("eos_token_id", .int(e))) }
        pairs += [
            ("head_dim", .int(headDim)),
            ("hidden_act", .string("silu")),
            ("hidden_size", .int(hidden)),
            ("initializer_range", .double(0.02)),
            ("intermediate_size", .int(ffn)),
            ("max_position_embeddings", .int(ctx)),
            ("mlp_bias", .bool(false)),
            ("model_type", .string("llama")),
            ("num_attention_heads", .int(heads)),
            ("num_hidden_layers", .int(layers)),
            ("num_key_value_heads", .int(kvHeads)),
        ]
        if let p = gguf["tokenizer.ggml.padding_token_id"]?.int { pairs.append(("pad_token_id", .int(p))) }
        pairs += [
            ("pretraining_tp", .int(1)),
            ("rms_norm_eps", .double(eps)),
            ("rope_scaling", ropeScaling),
            ("rope_theta", .double(theta)),
            ("tie_word_embeddings", .bool(tied)),
            ("torch_dtype", .string(dtype == .f32 ? "float32" : dtype == .f16 ? "float16" : "bfloat16")),
            ("use_cache", .bool(true)),
            ("vocab_size", .int(vocabSize)),
        ]
        return .object(pairs)
    }

    // MARK: tensors

    /// GGUF tensor name -> HF name (nil: not part of the HF model).
    public static func hfName(_ g: String) -> String? {
        switch g {
        case "token_embd.weight": return "model.embed_tokens.weight"
        case "output_norm.weight": return "model.norm.weight"
        case "output.weight": return "lm_head.weight"
        case "rope_freqs.weight": return nil
        default: break
        }
        let parts = g.split(separator: ".", maxSplits: 2).map(String.init)
        guard parts.count == 3, parts[0] == "blk", let layer = Int(parts[1]) else { return nil }
        let map: [String: String] = [
            "attn_norm.weight": "input_layernorm.weight",
            "attn_q.weight": "self_attn.q_proj.weight", "attn_q.bias": "self_attn.q_proj.bias",
            "attn_k.weight": "self_attn.k_proj.weight", "attn_k.bias": "self_attn.k_proj.bias",
            "attn_v.weight": "self_attn.v_proj.weight", "attn_v.bias": "self_attn.v_proj.bias",
            "attn_output.weight": "self_attn.o_proj.weight",
            "ffn_norm.weight": "post_attention_layernorm.weight",
            "ffn_gate.weight": "mlp.gate_proj.weight",
            "ffn_up.weight": "mlp.up_proj.weight",
            "ffn_down.weight": "mlp.down_proj.weight",
        ]
        guard let m = map[parts[2]] else { return nil }
        return "model.layers.\(layer).\(m)"
    }

    /// Undo llama.cpp's q/k row permutation (Docs/formats.md, "GGUF"): HF row h*D + s*D/2 + i is
    /// GGUF row h*D + 2i + s. Works on [rows, cols] weights and on [rows] biases (cols = 1).
    public static func unpermute(_ t: Tensor, heads: Int) -> Tensor {
        let rows = t.shape[0]
        let cols = t.count / max(rows, 1)
        let d = rows / heads
        let half = d / 2
        var out = [Float](repeating: 0, count: t.count)
        t.data.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for h in 0..<heads {
                    for s in 0..<2 {
                        for i in 0..<half {
                            let hfRow = h * d + s * half + i
                            let gRow = h * d + 2 * i + s
                            for c in 0..<cols { dst[hfRow * cols + c] = src[gRow * cols + c] }
                        }
                    }
                }
            }
        }
        return Tensor(shape: t.shape, data: out)
    }

    /// The HF tensors as lazily-computed entries, in GGUF order.
    public func entries(progress: ((Event) -> Void)? = nil) throws -> [TensorEntry] {
        let store = try GGUFTensorStore(self, progress: progress)
        let dtype = self.dtype
        return store.tensorNames.enumerated().map { i, name in
            let info = store.tensorInfo(name)!
            return TensorEntry(
                name: name, dtype: dtype, shape: info.shape,
                source: .lazy {
                    progress?(.tensor(name: name, index: i, total: store.tensorNames.count))
                    let x = try store.loadTensor(name)
                    store.release(name)
                    return Storage.encode(x.data, dtype: dtype)
                })
        }
    }

    /// Writes the HF directory. Each file is written atomically; weights first, config.json last, so a
    /// directory with a config.json is complete.
    @discardableResult
    public func convert(to dir: String, progress: ((Event) -> Void)? = nil) throws -> [String] {
        let cfg = try config()
        var tokenizer: JSON? = nil
        do { tokenizer = try tokenizerJSON() } catch let e as CheckpointError {
            progress?(.note("tokenizer not converted: \(e.message)"))
        }
        try FileSystem.makeDirectory(dir)
        var written = try ShardedWriter.write(try entries(progress: progress), to: dir, maxShardSize: maxShardSize)
        for f in written { progress?(.wrote(file: f)) }
        var files: [(String, String)] = []
        if let t = tokenizer {
            files.append(("tokenizer.json", t.compact))
            files.append(("tokenizer_config.json", tokenizerConfigJSON().pretty + "\n"))
        }
        files.append(("generation_config.json", generationConfigJSON().pretty + "\n"))
        files.append(("config.json", cfg.pretty + "\n"))
        for (name, text) in files {
            try AtomicFileWriter.write(text, to: FileSystem.join(dir, name))
            progress?(.wrote(file: name))
            written.append(name)
        }
        return written
    }
}
