import Checkpoint
import Foundation

// The decoder families' configs: one Codable type per `model_type` with the keys only that family reads
// (HF names through CodingKeys) and transformers' class defaults for the keys a saved config.json may omit,
// each building the `DecoderSpec` the llama block runs with.

/// A family's config type: decoded from config.json beside the common `ModelConfig`.
protocol DecoderFamilyConfig: Decodable {
    /// The family's defaults where config.json says nothing (transformers' config class).
    static var defaultHeadDim: Int? { get }
    static var defaultEps: Double { get }
    func spec(_ c: ModelConfig, _ base: DecoderSpec, path: String) throws -> DecoderSpec
}

extension DecoderFamilyConfig {
    static var defaultHeadDim: Int? { nil }
    static var defaultEps: Double { 1e-6 }
}

/// `[model_type: config type]`; every entry runs on `LlamaModel`.
enum DecoderFamilies {
    static let configs: [String: DecoderFamilyConfig.Type] = [
        "llama": LlamaFamilyConfig.self, "qwen2": Qwen2Config.self, "mistral": MistralConfig.self, "qwen3": Qwen3Config.self,
        "gemma2": Gemma2Config.self, "gemma3_text": Gemma3TextConfig.self, "phi3": Phi3Config.self,
    ]

    static var modelTypes: [String] { configs.keys.sorted() }

    /// The family's spec from the model directory's config.json.
    static func spec(_ dir: HFModelDir, heads: Int, hidden: Int, layers: Int) throws -> (DecoderSpec, headDim: Int, eps: Float) {
        let c = dir.config
        let path = FileSystem.join(dir.path, "config.json")
        guard let type = configs[c.modelType] else { throw ModelError(dir.path, "model_type '\(c.modelType)' is not a decoder family") }
        let family: DecoderFamilyConfig
        do { family = try JSONDecoder().decode(type, from: Data(dir.configJSON.compact.utf8)) } catch {
            throw ModelError(path, ModelConfig.problem(error))
        }
        let headDim = c.headDim ?? type.defaultHeadDim ?? hidden / heads
        let theta = c.ropeTheta ?? 10000
        let base = DecoderSpec(
            family: c.modelType, windows: [Int?](repeating: nil, count: layers), rotaryDims: headDim,
            invFreqs: [try RopeFrequencies.make(theta: theta, dims: headDim, scaling: c.ropeScaling, path: path)],
            layerRope: [Int](repeating: 0, count: layers))
        let spec = try family.spec(c, base, path: path)
        let act = c.hiddenAct ?? (spec.activation == .geluTanh ? "gelu_pytorch_tanh" : "silu")
        let expected: Set<String> = spec.activation == .silu ? ["silu", "swish"] : ["gelu_pytorch_tanh", "gelu_new", "gelu_fast"]
        guard expected.contains(act) else {
            throw ModelError(path, "hidden_act '\(act)' is not supported for \(c.modelType) (\(expected.sorted().joined(separator: ", ")))")
        }
        return (spec, headDim, Float(c.rmsNormEps ?? type.defaultEps))
    }

    /// Per-layer windows from transformers' `layer_types` ("sliding_attention" / "full_attention").
    static func windows(_ types: [String], window: Int?, layers: Int, path: String) throws -> [Int?] {
        guard types.count == layers else { throw ModelError(path, "layer_types has \(types.count) entries for \(layers) layers") }
        return try types.map { t in
            switch t {
            case "full_attention": return nil
            case "sliding_attention":
                guard let w = window, w > 0 else { throw ModelError(path, "layer_types names sliding_attention but sliding_window is not set") }
                return w
            default: throw ModelError(path, "layer type '\(t)' is not supported (full_attention, sliding_attention)")
            }
        }
    }
}

/// LLaMA 2/3: the plain block; llama3 RoPE scaling comes through `ModelConfig.ropeScaling`.
struct LlamaFamilyConfig: DecoderFamilyConfig {
    func spec(_ c: ModelConfig, _ base: DecoderSpec, path: String) throws -> DecoderSpec { base }
}

/// Mistral: every layer attends to the last `sliding_window` keys (default 4096; null: full attention).
struct MistralConfig: DecoderFamilyConfig {
    var slidingWindow: Int??
    enum CodingKeys: String, CodingKey { case slidingWindow = "sliding_window" }
    init(from decoder: Decoder) throws {
        let k = try decoder.container(keyedBy: CodingKeys.self)
        slidingWindow = k.contains(.slidingWindow) ? .some(try k.decodeIfPresent(Int.self, forKey: .slidingWindow)) : .none
    }
    func spec(_ c: ModelConfig, _ base: DecoderSpec, path: String) throws -> DecoderSpec {
        var s = base
        let w = slidingWindow ?? 4096
        s.windows = s.windows.map { _ in w }
        return s
    }
}

/// Qwen2: the llama block with q/k/v biases (read from the weights); sliding layers only with
/// use_sliding_window (from max_window_layers on), or as layer_types says.
struct Qwen2Config: DecoderFamilyConfig {
    var slidingWindow: Int?
    var useSlidingWindow: Bool?
    var maxWindowLayers: Int?
    var layerTypes: [String]?
    enum CodingKeys: String, CodingKey {
        case slidingWindow = "sliding_window"
        case useSlidingWindow = "use_sliding_window"
        case maxWindowLayers = "max_window_layers"
        case layerTypes = "layer_types"
    }
    func spec(_ c: ModelConfig, _ base: DecoderSpec, path: String) throws -> DecoderSpec {
        var s = base
        let window = useSlidingWindow == true ? (slidingWindow ?? 4096) : nil
        if let t = layerTypes {
            s.windows = try DecoderFamilies.windows(t, window: window, layers: s.windows.count, path: path)
        } else if let w = window {
            s.windows = s.windows.indices.map { $0 >= (maxWindowLayers ?? 28) ? w : nil }
        }
        return s
    }
}

/// Qwen3: Qwen2's layer windows, q/k RMSNorm per head, head_dim 128 by default.
struct Qwen3Config: DecoderFamilyConfig {
    static var defaultHeadDim: Int? { 128 }
    var qwen2: Qwen2Config
    init(from decoder: Decoder) throws { qwen2 = try Qwen2Config(from: decoder) }
    func spec(_ c: ModelConfig, _ base: DecoderSpec, path: String) throws -> DecoderSpec {
        var s = try qwen2.spec(c, base, path: path)
        s.qkNorm = true
        return s
    }
}

/// Gemma 2: (1 + w) norms, embeddings × √hidden, GeGLU, sandwich norms, query_pre_attn_scalar, attention
/// and final soft-caps (defaults 50 and 30), sliding layers alternating from layer 0.
struct Gemma2Config: DecoderFamilyConfig {
    static var defaultHeadDim: Int? { 256 }
    var shared: Gemma.SharedKeys
    var attnLogitSoftcapping: Double??
    var finalLogitSoftcapping: Double??
    enum CodingKeys: String, CodingKey {
        case attnLogitSoftcapping = "attn_logit_softcapping"
        case finalLogitSoftcapping = "final_logit_softcapping"
    }
    init(from decoder: Decoder) throws {
        shared = try Gemma.SharedKeys(from: decoder)
        let k = try decoder.container(keyedBy: CodingKeys.self)
        // Absent: transformers' defaults (50, 30); null: no cap.
        attnLogitSoftcapping = k.contains(.attnLogitSoftcapping) ? .some(try k.decodeIfPresent(Double.self, forKey: .attnLogitSoftcapping)) : .none
        finalLogitSoftcapping = k.contains(.finalLogitSoftcapping) ? .some(try k.decodeIfPresent(Double.self, forKey: .finalLogitSoftcapping)) : .none
    }
    func spec(_ c: ModelConfig, _ base: DecoderSpec, path: String) throws -> DecoderSpec {
        var s = Gemma.common(c, base, queryPreAttnScalar: shared.queryPreAttnScalar)
        s.attentionSoftcap = (attnLogitSoftcapping ?? 50).map { Float($0) }
        s.finalSoftcap = (finalLogitSoftcapping ?? 30).map { Float($0) }
        let types = shared.layerTypes ?? s.windows.indices.map { ($0 + 1) % 2 != 0 ? "sliding_attention" : "full_attention" }
        s.windows = try DecoderFamilies.windows(types, window: shared.slidingWindow ?? 4096, layers: s.windows.count, path: path)
        return s
    }
}

/// Gemma 3 (text): Gemma 2's block with q/k norms, no soft-caps by default, five sliding layers to one
/// global (`sliding_window_pattern` 6, or layer_types), and a RoPE per layer type: global θ (default 1e6,
/// with the rope scaling) and local θ (`rope_local_base_freq`, default 1e4); transformers 5 writes both
/// under `rope_parameters.{full_attention, sliding_attention}`.
struct Gemma3TextConfig: DecoderFamilyConfig {
    static var defaultHeadDim: Int? { 256 }
    var shared: Gemma.SharedKeys
    var attnLogitSoftcapping: Double?
    var finalLogitSoftcapping: Double?
    var slidingWindowPattern: Int?
    var ropeLocalBaseFreq: Double?
    var ropeParameters: [String: ModelConfig.RopeScaling]?
    enum CodingKeys: String, CodingKey {
        case attnLogitSoftcapping = "attn_logit_softcapping"
        case finalLogitSoftcapping = "final_logit_softcapping"
        case slidingWindowPattern = "sliding_window_pattern"
        case ropeLocalBaseFreq = "rope_local_base_freq"
        case ropeParameters = "rope_parameters"
    }
    init(from decoder: Decoder) throws {
        shared = try Gemma.SharedKeys(from: decoder)
        let k = try decoder.container(keyedBy: CodingKeys.self)
        attnLogitSoftcapping = try k.decodeIfPresent(Double.self, forKey: .attnLogitSoftcapping)
        finalLogitSoftcapping = try k.decodeIfPresent(Double.self, forKey: .finalLogitSoftcapping)
        slidingWindowPattern = try k.decodeIfPresent(Int.self, forKey: .slidingWindowPattern)
        ropeLocalBaseFreq = try k.decodeIfPresent(Double.self, forKey: .ropeLocalBaseFreq)
        // Per layer type (transformers 5) or flat (4.x, read by ModelConfig): only the nested form here.
        let nested = try? k.decodeIfPresent([String: ModelConfig.RopeScaling].self, forKey: .ropeParameters)
        ropeParameters = nested.flatMap { $0["full_attention"] != nil || $0["sliding_attention"] != nil ? $0 : nil }
    }
    func spec(_ c: ModelConfig, _ base: DecoderSpec, path: String) throws -> DecoderSpec {
        var s = Gemma.common(c, base, queryPreAttnScalar: shared.queryPreAttnScalar)
        s.qkNorm = true
        s.attentionSoftcap = attnLogitSoftcapping.map { Float($0) }
        s.finalSoftcap = finalLogitSoftcapping.map { Float($0) }
        let pattern = slidingWindowPattern ?? 6
        guard pattern >= 1 else { throw ModelError(path, "sliding_window_pattern must be at least 1") }
        let types = shared.layerTypes ?? s.windows.indices.map { ($0 + 1) % pattern != 0 ? "sliding_attention" : "full_attention" }
        s.windows = try DecoderFamilies.windows(types, window: shared.slidingWindow ?? 4096, layers: s.windows.count, path: path)
        let global = ropeParameters?["full_attention"]
        let local = ropeParameters?["sliding_attention"]
        let globalTheta = global?.ropeTheta ?? (ropeParameters == nil ? c.ropeTheta : nil) ?? 1_000_000
        let localTheta = local?.ropeTheta ?? ropeLocalBaseFreq ?? 10_000
        let globalScaling = ropeParameters == nil ? c.ropeScaling : global
        s.invFreqs = [
            try RopeFrequencies.make(theta: globalTheta, dims: s.rotaryDims, scaling: globalScaling, path: path),
            try RopeFrequencies.make(theta: localTheta, dims: s.rotaryDims, scaling: local, path: path),
        ]
        s.layerRope = types.map { $0 == "sliding_attention" ? 1 : 0 }
        return s
    }
}

enum Gemma {
    /// The keys Gemma 2 and 3 read alike.
    struct SharedKeys: Decodable {
        var queryPreAttnScalar: Double?
        var slidingWindow: Int?
        var layerTypes: [String]?
        enum CodingKeys: String, CodingKey {
            case queryPreAttnScalar = "query_pre_attn_scalar"
            case slidingWindow = "sliding_window"
            case layerTypes = "layer_types"
        }
    }

    /// What Gemma 2 and 3 share: (1 + w) norms, √hidden embeddings, GeGLU, sandwich norms, the score scale.
    static func common(_ c: ModelConfig, _ base: DecoderSpec, queryPreAttnScalar: Double?) -> DecoderSpec {
        var s = base
        s.normPlusOne = true
        s.embedScale = Float((Double(c.hiddenSize ?? 1)).squareRoot())
        s.activation = .geluTanh
        s.sandwichNorms = true
        s.attentionScale = Float(pow(queryPreAttnScalar ?? 256, -0.5))
        return s
    }
}

/// Phi-3: fused qkv_proj and gate_up_proj, partial rotary (`partial_rotary_factor`, top level or inside
/// rope_parameters), an optional sliding window on every layer, rms_norm_eps 1e-5 by default.
struct Phi3Config: DecoderFamilyConfig {
    static var defaultEps: Double { 1e-5 }
    var slidingWindow: Int?
    var partialRotaryFactor: Double?
    var ropeParameters: ModelConfig.RopeScaling?
    var ropePartial: Double?
    enum CodingKeys: String, CodingKey {
        case slidingWindow = "sliding_window"
        case partialRotaryFactor = "partial_rotary_factor"
        case ropeParameters = "rope_parameters"
    }
    enum RopeKeys: String, CodingKey { case partialRotaryFactor = "partial_rotary_factor" }
    init(from decoder: Decoder) throws {
        let k = try decoder.container(keyedBy: CodingKeys.self)
        slidingWindow = try k.decodeIfPresent(Int.self, forKey: .slidingWindow)
        partialRotaryFactor = try k.decodeIfPresent(Double.self, forKey: .partialRotaryFactor)
        if k.contains(.ropeParameters), try !k.decodeNil(forKey: .ropeParameters) {
            let r = try k.nestedContainer(keyedBy: RopeKeys.self, forKey: .ropeParameters)
            ropePartial = try r.decodeIfPresent(Double.self, forKey: .partialRotaryFactor)
        }
    }
    func spec(_ c: ModelConfig, _ base: DecoderSpec, path: String) throws -> DecoderSpec {
        var s = base
        s.fusedProjections = true
        let factor = ropePartial ?? partialRotaryFactor ?? 1
        let headDim = base.rotaryDims
        let dims = Int(Double(headDim) * factor)
        guard factor > 0, factor <= 1, dims >= 2, dims % 2 == 0 else {
            throw ModelError(path, "partial_rotary_factor \(factor) gives \(dims) rotary dimensions of \(headDim): must be even and at least 2")
        }
        s.rotaryDims = dims
        s.invFreqs = [try RopeFrequencies.make(theta: c.ropeTheta ?? 10000, dims: dims, scaling: c.ropeScaling, path: path)]
        if let w = slidingWindow { s.windows = s.windows.map { _ in w } }
        return s
    }
}
