import Numerics

/// How one llama.cpp architecture stores a transformers decoder family (read from llama.cpp's
/// convert_hf_to_gguf.py and its model loaders): tensor names, the q/k row permutation (llama only),
/// Gemma's norms stored as 1 + w, and the transformers model type it converts back to.
public struct GGUFArchitecture: Sendable {
    /// `general.architecture`.
    public let name: String
    /// config.json's `model_type` and `architectures` entry.
    public let modelType: String
    public let hfClass: String
    /// llama.cpp permutes the rows of q and k (and their biases) of this architecture.
    public let permutesQK: Bool
    /// Every `*norm.weight` is stored as 1 + w (Gemma): subtracted on reading.
    public let normsPlusOne: Bool
    /// Block tensor suffixes (after `blk.N.`) to the HF names after `model.layers.N.`.
    let blockNames: [String: String]

    static let attention: [String: String] = [
        "attn_norm.weight": "input_layernorm.weight",
        "attn_q.weight": "self_attn.q_proj.weight", "attn_q.bias": "self_attn.q_proj.bias",
        "attn_k.weight": "self_attn.k_proj.weight", "attn_k.bias": "self_attn.k_proj.bias",
        "attn_v.weight": "self_attn.v_proj.weight", "attn_v.bias": "self_attn.v_proj.bias",
        "attn_output.weight": "self_attn.o_proj.weight",
    ]
    static let mlp: [String: String] = [
        "ffn_gate.weight": "mlp.gate_proj.weight", "ffn_up.weight": "mlp.up_proj.weight", "ffn_down.weight": "mlp.down_proj.weight",
    ]
    static let qkNorms: [String: String] = ["attn_q_norm.weight": "self_attn.q_norm.weight", "attn_k_norm.weight": "self_attn.k_norm.weight"]
    static let llamaNorm: [String: String] = ["ffn_norm.weight": "post_attention_layernorm.weight"]
    static let gemmaNorms: [String: String] = [
        "post_attention_norm.weight": "post_attention_layernorm.weight", "ffn_norm.weight": "pre_feedforward_layernorm.weight",
        "post_ffw_norm.weight": "post_feedforward_layernorm.weight",
    ]

    public static let all: [String: GGUFArchitecture] = {
        let llamaBlock = attention.merging(mlp) { a, _ in a }.merging(llamaNorm) { a, _ in a }
        let gemmaBlock = attention.merging(mlp) { a, _ in a }.merging(gemmaNorms) { a, _ in a }
        let phi3Block: [String: String] = [
            "attn_norm.weight": "input_layernorm.weight", "attn_qkv.weight": "self_attn.qkv_proj.weight",
            "attn_output.weight": "self_attn.o_proj.weight", "ffn_norm.weight": "post_attention_layernorm.weight",
            "ffn_up.weight": "mlp.gate_up_proj.weight", "ffn_down.weight": "mlp.down_proj.weight",
        ]
        let list = [
            GGUFArchitecture(name: "llama", modelType: "llama", hfClass: "LlamaForCausalLM", permutesQK: true, normsPlusOne: false, blockNames: llamaBlock),
            GGUFArchitecture(name: "qwen2", modelType: "qwen2", hfClass: "Qwen2ForCausalLM", permutesQK: false, normsPlusOne: false, blockNames: llamaBlock),
            GGUFArchitecture(
                name: "qwen3", modelType: "qwen3", hfClass: "Qwen3ForCausalLM", permutesQK: false, normsPlusOne: false,
                blockNames: llamaBlock.merging(qkNorms) { a, _ in a }),
            GGUFArchitecture(name: "gemma2", modelType: "gemma2", hfClass: "Gemma2ForCausalLM", permutesQK: false, normsPlusOne: true, blockNames: gemmaBlock),
            GGUFArchitecture(
                name: "gemma3", modelType: "gemma3_text", hfClass: "Gemma3ForCausalLM", permutesQK: false, normsPlusOne: true,
                blockNames: gemmaBlock.merging(qkNorms) { a, _ in a }),
            GGUFArchitecture(name: "phi3", modelType: "phi3", hfClass: "Phi3ForCausalLM", permutesQK: false, normsPlusOne: false, blockNames: phi3Block),
        ]
        return Dictionary(uniqueKeysWithValues: list.map { ($0.name, $0) })
    }()

    /// The architecture of `general.architecture` = `name`, or a one-line refusal listing those coto reads.
    public static func named(_ name: String, path: String) throws -> GGUFArchitecture {
        guard let a = all[name] else {
            throw CheckpointError(
                path, .invalid("architecture '\(name)' is not supported (coto reads \(all.keys.sorted().joined(separator: ", ")))"))
        }
        return a
    }

    /// GGUF tensor name -> HF name (nil: not part of the HF model, e.g. `rope_freqs.weight`).
    public func hfName(_ g: String) -> String? {
        switch g {
        case "token_embd.weight": return "model.embed_tokens.weight"
        case "output_norm.weight": return "model.norm.weight"
        case "output.weight": return "lm_head.weight"
        default: break
        }
        let parts = g.split(separator: ".", maxSplits: 2).map(String.init)
        guard parts.count == 3, parts[0] == "blk", let layer = Int(parts[1]), let m = blockNames[parts[2]] else { return nil }
        return "model.layers.\(layer).\(m)"
    }

    /// Whether the GGUF tensor `g` holds 1 + w of a Gemma norm.
    public func isShiftedNorm(_ g: String) -> Bool { normsPlusOne && g.hasSuffix("norm.weight") }

    /// Rows of `g` that llama.cpp permuted (q: the query heads, k: the key/value heads), or nil.
    public func permutedHeads(_ g: String, heads: Int, kvHeads: Int) -> Int? {
        guard permutesQK else { return nil }
        if g.hasSuffix("attn_q.weight") || g.hasSuffix("attn_q.bias") { return heads }
        if g.hasSuffix("attn_k.weight") || g.hasSuffix("attn_k.bias") { return kvHeads }
        return nil
    }
}
