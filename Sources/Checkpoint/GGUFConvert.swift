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

    // MARK: tokenizer

    func vocabTokens() -> [String]? {
        guard case let .array(a)? = gguf["tokenizer.ggml.tokens"] else { return nil }
        return a.values.compactMap(\.string)
    }

    /// GPT-2's byte -> printable character table (`bytes_to_unicode`).
    public static let byteToUnicode: [Character] = {
        var bs: [Int] = Array(33...126) + Array(161...172) + Array(174...255)
        var cs = bs
        var n = 0
        for b in 0..<256 where !bs.contains(b) {
            bs.append(b)
            cs.append(256 + n)
            n += 1
        }
        var table = [Character](repeating: " ", count: 256)
        for (b, c) in zip(bs, cs) { table[b] = Character(Unicode.Scalar(UInt32(c))!) }
        return table
    }()

    static let llama3Split = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let qwen2Split = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let splits: [String: String] = [
        "llama3": llama3Split, "llama-v3": llama3Split, "llama-bpe": llama3Split, "falcon3": llama3Split,
        "smaug-bpe": llama3Split, "dbrx": llama3Split, "pixtral": llama3Split,
        "qwen2": qwen2Split, "deepseek-r1-qwen": qwen2Split, "megrez": qwen2Split,
    ]

    /// tokenizer.json for a byte-level BPE ("gpt2") vocabulary, as transformers builds it from the GGUF.
    public func tokenizerJSON() throws -> JSON {
        let model = gguf["tokenizer.ggml.model"]?.string ?? "none"
        guard model == "gpt2" else {
            throw CheckpointError(gguf.path, .invalid("tokenizer.ggml.model '\(model)': only byte-level BPE ('gpt2') tokenizers are converted"))
        }
        guard let tokens = vocabTokens(), !tokens.isEmpty else {
            throw CheckpointError(gguf.path, .invalid("GGUF has no tokenizer.ggml.tokens"))
        }
        var types: [Int] = []
        if case let .array(a)? = gguf["tokenizer.ggml.token_type"] { types = a.values.compactMap(\.int) }
        var merges: [JSON] = []
        if case let .array(a)? = gguf["tokenizer.ggml.merges"] {
            for v in a.values {
                guard let s = v.string else { continue }
                let p = s.split(separator: " ", omittingEmptySubsequences: false).map { JSON.string(String($0)) }
                merges.append(.array(p))
            }
        }
        let alphabet = Set(GGUFConverter.byteToUnicode)
        func spell(_ t: String) -> String {
            if t.allSatisfy({ alphabet.contains($0) }) { return t }
            return String(t.utf8.map { GGUFConverter.byteToUnicode[Int($0)] })
        }
        // Python dict semantics: a repeated token keeps its last id, at its first position.
        var vocabOrder: [String] = []
        var vocabId: [String: Int] = [:]
        for (i, t) in tokens.enumerated() {
            let s = spell(t)
            if vocabId[s] == nil { vocabOrder.append(s) }
            vocabId[s] = i
        }
        var added: [JSON] = []
        for (i, t) in tokens.enumerated() where i < types.count {
            let special: Bool
            if types[i] == 3 && t.allSatisfy({ alphabet.contains($0) }) {
                special = true
            } else if types[i] == 4 && vocabId[t] != nil {
                special = false
            } else {
                continue
            }
            added.append(
                .object([
                    ("id", .int(i)), ("content", .string(t)), ("single_word", .bool(false)), ("lstrip", .bool(false)),
                    ("rstrip", .bool(false)), ("normalized", .bool(false)), ("special", .bool(special)),
                ]))
        }
        let byteLevel: (Bool) -> JSON = { useRegex in
            .object([
                ("type", .string("ByteLevel")), ("add_prefix_space", .bool(false)),
                ("trim_offsets", .bool(true)), ("use_regex", .bool(useRegex)),
            ])
        }
        var pre = byteLevel(true)
        if let p = gguf["tokenizer.ggml.pre"]?.string, let split = GGUFConverter.splits[p] {
            pre = .object([
                ("type", .string("Sequence")),
                (
                    "pretokenizers",
                    .array([
                        .object([
                            ("type", .string("Split")), ("pattern", .object([("Regex", .string(split))])),
                            ("behavior", .string("Isolated")), ("invert", .bool(false)),
                        ]),
                        byteLevel(false),
                    ])
                ),
            ])
        }
        let seqA = JSON.object([("Sequence", .object([("id", .string("A")), ("type_id", .int(0))]))])
        let seqB = JSON.object([("Sequence", .object([("id", .string("B")), ("type_id", .int(1))]))])
        return .object([
            ("version", .string("1.0")),
            ("truncation", .null),
            ("padding", .null),
            ("added_tokens", .array(added)),
            ("normalizer", .null),
            ("pre_tokenizer", pre),
            (
                "post_processor",
                .object([
                    ("type", .string("TemplateProcessing")), ("single", .array([seqA])),
                    ("pair", .array([seqA, seqB])), ("special_tokens", .object([])),
                ])
            ),
            (
                "decoder",
                .object([
                    ("type", .string("ByteLevel")), ("add_prefix_space", .bool(true)),
                    ("trim_offsets", .bool(true)), ("use_regex", .bool(true)),
                ])
            ),
            (
                "model",
                .object([
                    ("type", .string("BPE")), ("dropout", .null), ("unk_token", .null),
                    ("continuing_subword_prefix", .string("")), ("end_of_word_suffix", .string("")),
                    ("fuse_unk", .bool(false)), ("byte_fallback", .bool(false)), ("ignore_merges", .bool(false)),
                    ("vocab", .object(vocabOrder.map { ($0, JSON.int(vocabId[$0]!)) })),
                    ("merges", .array(merges)),
                ])
            ),
        ])
    }

    public func tokenizerConfigJSON() -> JSON {
        let tokens = vocabTokens() ?? []
        func tok(_ key: String) -> JSON {
            guard let i = gguf["tokenizer.ggml.\(key)"]?.int, i >= 0, i < tokens.count else { return .null }
            return .string(tokens[i])
        }
        var pairs: [(String, JSON)] = [
            ("add_bos_token", .bool(gguf["tokenizer.ggml.add_bos_token"]?.bool ?? false)),
            ("add_eos_token", .bool(gguf["tokenizer.ggml.add_eos_token"]?.bool ?? false)),
            ("bos_token", tok("bos_token_id")),
        ]
        if let t = gguf["tokenizer.chat_template"]?.string { pairs.append(("chat_template", .string(t))) }
        pairs += [
            ("eos_token", tok("eos_token_id")),
            ("model_max_length", .int(meta("context_length")?.int ?? 2048)),
            ("pad_token", tok("padding_token_id")),
            ("tokenizer_class", .string("PreTrainedTokenizerFast")),
            ("unk_token", tok("unknown_token_id")),
        ]
        return .object(pairs)
    }

    public func generationConfigJSON() -> JSON {
        var pairs: [(String, JSON)] = []
        if let b = gguf["tokenizer.ggml.bos_token_id"]?.int { pairs.append(("bos_token_id", .int(b))) }
        if let e = gguf["tokenizer.ggml.eos_token_id"]?.int { pairs.append(("eos_token_id", .int(e))) }
        if let p = gguf["tokenizer.ggml.padding_token_id"]?.int { pairs.append(("pad_token_id", .int(p))) }
        return .object(pairs)
    }

    // MARK: whole conversion

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

/// A GGUF model read as the transformers model it converts to: HF tensor names, PyTorch shapes, every
/// tensor dequantized to Float32 on demand (q/k rows un-permuted). Lets the operators (coto-fuse) take a
/// GGUF base without converting it to disk first.
public final class GGUFTensorStore: TensorStore {
    public let gguf: GGUFFile
    public let tensorNames: [String]
    private let infos: [String: (GGUFTensorInfo, Int?)]

    public init(_ conv: GGUFConverter, progress: ((GGUFConverter.Event) -> Void)? = nil) throws {
        gguf = conv.gguf
        let cfg = try conv.config()
        let heads = cfg["num_attention_heads"]?.intValue ?? 1
        let kvHeads = cfg["num_key_value_heads"]?.intValue ?? heads
        var names: [String] = []
        var infos: [String: (GGUFTensorInfo, Int?)] = [:]
        for t in gguf.tensors {
            guard let name = GGUFConverter.hfName(t.name) else {
                progress?(.note("skipped tensor '\(t.name)' (not part of the transformers model)"))
                continue
            }
            guard t.type.canDequantize else {
                throw CheckpointError(
                    gguf.path, .invalid("tensor '\(t.name)': type \(t.type.name) cannot be dequantized (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1)"))
            }
            let permuteHeads: Int? =
                t.name.hasSuffix("attn_q.weight") || t.name.hasSuffix("attn_q.bias")
                ? heads
                : t.name.hasSuffix("attn_k.weight") || t.name.hasSuffix("attn_k.bias") ? kvHeads : nil
            if let h = permuteHeads, t.shape[0] % (2 * h) != 0 {
                throw CheckpointError(gguf.path, .invalid("tensor '\(t.name)': \(t.shape[0]) rows do not split into \(h) heads"))
            }
            names.append(name)
            infos[name] = (t, permuteHeads)
        }
        tensorNames = names
        self.infos = infos
    }

    public var location: String { gguf.path }

    public func tensorInfo(_ name: String) -> TensorInfo? {
        guard let (t, _) = infos[name] else { return nil }
        return TensorInfo(name: name, dtype: .f32, shape: t.shape, begin: 0, end: UInt64(t.elementCount * 4))
    }

    public func loadTensor(_ name: String) throws -> Tensor {
        guard let (t, heads) = infos[name] else { throw CheckpointError(gguf.path, .tensorNotFound(name)) }
        let x = try gguf.dequantize(t.name)
        return heads.map { GGUFConverter.unpermute(x, heads: $0) } ?? x
    }

    public func entry(_ name: String) throws -> TensorEntry {
        guard let info = tensorInfo(name) else { throw CheckpointError(gguf.path, .tensorNotFound(name)) }
        return TensorEntry(
            name: name, dtype: .f32, shape: info.shape,
            source: .lazy { [self] in
                let x = try self.loadTensor(name)
                self.release(name)
                return Storage.encode(x.data, dtype: .f32)
            })
    }

    public func release(_ name: String) {
        guard let (t, _) = infos[name] else { return }
        gguf.file.release(offset: gguf.dataOffset + Int(t.offset), length: t.byteCount)
    }
}
