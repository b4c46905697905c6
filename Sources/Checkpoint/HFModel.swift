import Foundation

/// The fields of a Hugging Face `config.json` that coto reads (Codable, HF names through CodingKeys).
/// Every key a model reads goes through this type, so a new family adds fields here, not look-ups. The
/// spellings transformers accepts are read too: `hidden_activation` (Gemma) for `hidden_act`,
/// transformers 5's `rope_parameters` (with `rope_theta` inside it) for `rope_scaling` and `rope_theta`,
/// and `dtype` for `torch_dtype`. The file itself is kept as JSON too, so tools copy it unchanged.
public struct ModelConfig: Codable, Equatable, Sendable {
    public var modelType: String
    public var architectures: [String]?
    public var vocabSize: Int?
    public var hiddenSize: Int?
    public var numHiddenLayers: Int?
    public var numAttentionHeads: Int?
    public var numKeyValueHeads: Int?
    public var headDim: Int?
    public var intermediateSize: Int?
    public var maxPositionEmbeddings: Int?
    public var hiddenAct: String?
    public var layerNormEps: Double?
    public var rmsNormEps: Double?
    /// `rope_theta`, or transformers 5's `rope_parameters.rope_theta`.
    public var ropeTheta: Double?
    /// `rope_scaling`, or transformers 5's `rope_parameters` (which also holds `rope_theta`).
    public var ropeScaling: RopeScaling?
    public var tieWordEmbeddings: Bool?
    public var attentionBias: Bool?
    public var typeVocabSize: Int?
    public var padTokenId: Int?
    public var bosTokenId: IntOrList?
    public var eosTokenId: IntOrList?
    public var id2label: [String: String]?
    /// `torch_dtype`, or transformers 5's `dtype`.
    public var torchDtype: String?
    /// BERT's dropout probabilities (`hidden_dropout_prob`, `attention_probs_dropout_prob`).
    public var hiddenDropout: Double?
    public var attentionDropout: Double?

    /// RoPE scaling: `rope_type` (or the older `type`) and its parameters (transformers'
    /// `ROPE_INIT_FUNCTIONS`: linear `factor`; llama3 `factor`, `low_freq_factor`, `high_freq_factor`,
    /// `original_max_position_embeddings`; yarn and dynamic their own).
    public struct RopeScaling: Codable, Equatable, Sendable {
        public var type: String?
        public var ropeType: String?
        public var factor: Double?
        public var lowFreqFactor: Double?
        public var highFreqFactor: Double?
        public var originalMaxPositionEmbeddings: Int?
        /// transformers 5 keeps θ here.
        public var ropeTheta: Double?

        public init(ropeType: String? = nil, factor: Double? = nil) {
            self.ropeType = ropeType
            self.factor = factor
        }

        /// `rope_type`, else `type`, else "default".
        public var kind: String { ropeType ?? type ?? "default" }

        enum CodingKeys: String, CodingKey {
            case type
            case ropeType = "rope_type"
            case factor
            case lowFreqFactor = "low_freq_factor"
            case highFreqFactor = "high_freq_factor"
            case originalMaxPositionEmbeddings = "original_max_position_embeddings"
            case ropeTheta = "rope_theta"
        }
    }

    /// `eos_token_id` may be an int or a list.
    public enum IntOrList: Codable, Equatable, Sendable {
        case one(Int), many([Int])
        public init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let i = try? c.decode(Int.self) { self = .one(i) } else { self = .many(try c.decode([Int].self)) }
        }
        public func encode(to encoder: Encoder) throws {
            var c = encoder.singleValueContainer()
            switch self {
            case let .one(i): try c.encode(i)
            case let .many(a): try c.encode(a)
            }
        }
        /// Every id.
        public var all: [Int] {
            switch self {
            case let .one(i): return [i]
            case let .many(a): return a
            }
        }
    }

    enum CodingKeys: String, CodingKey {
        case modelType = "model_type"
        case architectures
        case vocabSize = "vocab_size"
        case hiddenSize = "hidden_size"
        case numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads"
        case numKeyValueHeads = "num_key_value_heads"
        case headDim = "head_dim"
        case intermediateSize = "intermediate_size"
        case maxPositionEmbeddings = "max_position_embeddings"
        case hiddenAct = "hidden_act"
        case layerNormEps = "layer_norm_eps"
        case rmsNormEps = "rms_norm_eps"
        case ropeTheta = "rope_theta"
        case ropeScaling = "rope_scaling"
        case tieWordEmbeddings = "tie_word_embeddings"
        case attentionBias = "attention_bias"
        case typeVocabSize = "type_vocab_size"
        case padTokenId = "pad_token_id"
        case bosTokenId = "bos_token_id"
        case eosTokenId = "eos_token_id"
        case id2label
        case torchDtype = "torch_dtype"
        case hiddenDropout = "hidden_dropout_prob"
        case attentionDropout = "attention_probs_dropout_prob"
    }

    /// Other spellings of the same keys (transformers accepts them; they are read, never written).
    enum AliasKeys: String, CodingKey {
        case hiddenActivation = "hidden_activation"
        case ropeParameters = "rope_parameters"
        case dtype
    }

    public init(modelType: String) { self.modelType = modelType }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let alias = try decoder.container(keyedBy: AliasKeys.self)
        modelType = try c.decode(String.self, forKey: .modelType)
        architectures = try c.decodeIfPresent([String].self, forKey: .architectures)
        vocabSize = try c.decodeIfPresent(Int.self, forKey: .vocabSize)
        hiddenSize = try c.decodeIfPresent(Int.self, forKey: .hiddenSize)
        numHiddenLayers = try c.decodeIfPresent(Int.self, forKey: .numHiddenLayers)
        numAttentionHeads = try c.decodeIfPresent(Int.self, forKey: .numAttentionHeads)
        numKeyValueHeads = try c.decodeIfPresent(Int.self, forKey: .numKeyValueHeads)
        headDim = try c.decodeIfPresent(Int.self, forKey: .headDim)
        intermediateSize = try c.decodeIfPresent(Int.self, forKey: .intermediateSize)
        maxPositionEmbeddings = try c.decodeIfPresent(Int.self, forKey: .maxPositionEmbeddings)
        hiddenAct = try c.decodeIfPresent(String.self, forKey: .hiddenAct) ?? alias.decodeIfPresent(String.self, forKey: .hiddenActivation)
        layerNormEps = try c.decodeIfPresent(Double.self, forKey: .layerNormEps)
        rmsNormEps = try c.decodeIfPresent(Double.self, forKey: .rmsNormEps)
        let parameters = try alias.decodeIfPresent(RopeScaling.self, forKey: .ropeParameters)
        ropeTheta = try c.decodeIfPresent(Double.self, forKey: .ropeTheta) ?? parameters?.ropeTheta
        ropeScaling = try c.decodeIfPresent(RopeScaling.self, forKey: .ropeScaling) ?? parameters
        tieWordEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings)
        attentionBias = try c.decodeIfPresent(Bool.self, forKey: .attentionBias)
        typeVocabSize = try c.decodeIfPresent(Int.self, forKey: .typeVocabSize)
        padTokenId = try c.decodeIfPresent(Int.self, forKey: .padTokenId)
        bosTokenId = try c.decodeIfPresent(IntOrList.self, forKey: .bosTokenId)
        eosTokenId = try c.decodeIfPresent(IntOrList.self, forKey: .eosTokenId)
        id2label = try c.decodeIfPresent([String: String].self, forKey: .id2label)
        torchDtype = try c.decodeIfPresent(String.self, forKey: .torchDtype) ?? alias.decodeIfPresent(String.self, forKey: .dtype)
        hiddenDropout = try c.decodeIfPresent(Double.self, forKey: .hiddenDropout)
        attentionDropout = try c.decodeIfPresent(Double.self, forKey: .attentionDropout)
    }

    public static func decode(_ bytes: [UInt8], path: String) throws -> ModelConfig {
        do {
            return try JSONDecoder().decode(ModelConfig.self, from: Data(bytes))
        } catch {
            throw CheckpointError(path, .invalid(problem(error)))
        }
    }

    /// What is wrong with a config.json a `JSONDecoder` refused, in one line naming the key (the family
    /// config types of the inference core report through it too).
    public static func problem(_ error: Error) -> String {
        func key(_ ctx: DecodingError.Context) -> String { ctx.codingPath.map(\.stringValue).joined(separator: ".") }
        switch error {
        case let DecodingError.keyNotFound(k, _): return "config.json has no '\(k.stringValue)'"
        case let DecodingError.typeMismatch(_, ctx): return "config.json: '\(key(ctx))' has the wrong type"
        case let DecodingError.valueNotFound(_, ctx): return "config.json: '\(key(ctx))' is null"
        case let DecodingError.dataCorrupted(ctx) where !ctx.codingPath.isEmpty: return "config.json: '\(key(ctx))' has an invalid value"
        default: return "config.json is not valid JSON"
        }
    }
}

/// A Hugging Face model directory: config.json, weights (single file or sharded), and the other files
/// (tokenizer, generation config...) that tools copy along.
public final class HFModelDir {
    public let path: String
    public let config: ModelConfig
    /// config.json as written (order kept).
    public let configJSON: JSON
    public let weights: TensorStore
    /// Weight files (safetensors shards and index).
    public let weightFiles: [String]
    /// Every other regular file in the directory (tokenizer.json, vocab.txt, generation_config.json, ...).
    public let otherFiles: [String]
    /// A temporary directory this value made (a GGUF's side files) and removes when it is released.
    private var ownedDirectory: String? = nil

    deinit { if let d = ownedDirectory { FileSystem.removeTree(d) } }

    /// A model directory, or a llama.cpp GGUF seen as one: its config and tokenizer files derived into a
    /// temporary directory this value owns (removed when it is released), its weights dequantized on demand.
    public static func open(_ path: String) throws -> HFModelDir {
        guard !FileSystem.isDirectory(path), Inspection.isGGUF(path) else { return try HFModelDir(path: path) }
        let dir = try FileSystem.makeTemporaryDirectory(prefix: "coto-gguf-base-")
        do {
            let m = try HFModelDir(gguf: try GGUFFile(path: path), sideFilesIn: dir)
            m.ownedDirectory = dir
            return m
        } catch {
            FileSystem.removeTree(dir)
            throw error
        }
    }

    public init(path: String) throws {
        guard FileSystem.exists(path) else { throw CheckpointError(path, .notFound) }
        guard FileSystem.isDirectory(path) else { throw CheckpointError(path, .notDirectory) }
        self.path = path
        let cfgPath = FileSystem.join(path, "config.json")
        guard FileSystem.exists(cfgPath) else {
            throw CheckpointError(path, .invalid("not a Hugging Face model directory: no config.json"))
        }
        let bytes = try FileSystem.readFile(cfgPath, limit: 64 << 20)
        do { configJSON = try JSON.parse(bytes) } catch {
            throw CheckpointError(cfgPath, .invalid("not valid JSON: \(error)"))
        }
        config = try ModelConfig.decode(bytes, path: cfgPath)
        let names = try FileSystem.listDirectory(path)
        if names.contains("pytorch_model.bin") && !names.contains(where: { $0.hasSuffix(".safetensors") }) {
            throw CheckpointError(
                FileSystem.join(path, "pytorch_model.bin"), .invalid("pickle weights are not loaded (unsafe); convert the model to safetensors"))
        }
        weights = try openTensorStore(path)
        let weightSet: Set<String>
        if let sharded = weights as? ShardedCheckpoint {
            weightSet = Set(sharded.shardFiles + [FileSystem.basename(of: sharded.indexPath)])
        } else {
            weightSet = [FileSystem.basename(of: weights.location)]
        }
        weightFiles = names.filter { weightSet.contains($0) }
        otherFiles = names.filter { n in
            !weightSet.contains(n) && n != "config.json" && !FileSystem.isDirectory(FileSystem.join(path, n))
        }
    }

    /// A GGUF model as an HF model directory without converting its weights: config.json, tokenizer.json,
    /// tokenizer_config.json and generation_config.json are written into `sideFilesIn` (a directory the
    /// caller owns and removes), the weights are the GGUF's, dequantized to Float32 on demand.
    public init(gguf: GGUFFile, sideFilesIn dir: String) throws {
        let conv = GGUFConverter(gguf: gguf)
        let cfg = try conv.config()
        try FileSystem.makeDirectory(dir)
        var files: [(String, String)] = [("generation_config.json", conv.generationConfigJSON().pretty + "\n")]
        if let t = try? conv.tokenizerJSON() {
            files += [("tokenizer.json", t.compact), ("tokenizer_config.json", conv.tokenizerConfigJSON().pretty + "\n")]
        }
        for (name, text) in files { try AtomicFileWriter.write(text, to: FileSystem.join(dir, name)) }
        let cfgText = cfg.pretty + "\n"
        try AtomicFileWriter.write(cfgText, to: FileSystem.join(dir, "config.json"))
        path = dir
        configJSON = cfg
        config = try ModelConfig.decode(Array(cfgText.utf8), path: gguf.path)
        weights = try GGUFTensorStore(conv)
        weightFiles = []
        otherFiles = files.map(\.0).sorted()
    }

    /// Tokenizer-related files present.
    public var tokenizerFiles: [String] {
        otherFiles.filter {
            [
                "tokenizer.json", "tokenizer_config.json", "vocab.txt", "merges.txt", "vocab.json",
                "special_tokens_map.json", "tokenizer.model", "added_tokens.json", "chat_template.jinja",
            ].contains($0)
        }
    }

    public var parameterCount: Int { weights.tensorNames.reduce(0) { $0 + (weights.tensorInfo($1)?.elementCount ?? 0) } }
}
