import Numerics

// The tokenizer files of a converted GGUF: tokenizer.json, tokenizer_config.json and generation_config.json
// from `tokenizer.ggml.*`.

extension GGUFConverter {
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
}
