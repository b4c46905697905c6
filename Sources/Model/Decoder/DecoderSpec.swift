import Checkpoint
import Foundation

/// What a decoder family changes in the llama block, resolved once from its config.json (each family's
/// config type in `Families.swift` builds one). Inference (`LlamaModel`) and training
/// (`DifferentiableLlama`) read it; the plain llama block is the default of every field.
package struct DecoderSpec: Sendable {
    package enum Activation: String, Sendable {
        /// silu(gate) ⊙ up (llama, mistral, qwen, phi3).
        case silu
        /// gelu_tanh(gate) ⊙ up (Gemma's `gelu_pytorch_tanh`).
        case geluTanh
    }
    package var family: String
    /// Gemma: RMSNorm scales by (1 + w) (the loaded weights get the 1 added, in Float32 as torch does).
    package var normPlusOne = false
    /// Gemma: embeddings × √hidden (rounded to Float32).
    package var embedScale: Float? = nil
    package var activation = Activation.silu
    /// Qwen3, Gemma 3: RMSNorm of every head of q and k (`q_norm`, `k_norm`, width head_dim) before RoPE.
    package var qkNorm = false
    /// Gemma 2/3: the attention output normed before the residual (`post_attention_layernorm`), the MLP
    /// between `pre_feedforward_layernorm` and `post_feedforward_layernorm`.
    package var sandwichNorms = false
    /// Phi-3: q, k, v in one `qkv_proj` and gate, up in one `gate_up_proj`.
    package var fusedProjections = false
    /// Attention's score scale, soft-cap (per layer: window) and the final logits' soft-cap.
    package var attentionScale: Float? = nil
    package var attentionSoftcap: Float? = nil
    package var finalSoftcap: Float? = nil
    /// Per layer: the sliding window (nil: full causal attention).
    package var windows: [Int?]
    /// Rotary dimensions of each head (head_dim unless partial: Phi-3's partial_rotary_factor).
    package var rotaryDims: Int
    /// The distinct inverse-frequency tables and which one each layer uses (Gemma 3: global and local).
    package var invFreqs: [[Double]]
    package var layerRope: [Int]

    package func attention(layer i: Int) -> Kernels.AttentionOptions {
        Kernels.AttentionOptions(scale: attentionScale, softcap: attentionSoftcap, window: windows[i])
    }
}

/// RoPE inverse frequencies as transformers computes them (`ROPE_INIT_FUNCTIONS`), in Float32 like torch.
enum RopeFrequencies {
    /// inv_freq[i] = 1 / θ^(2i/dims) for i < dims/2, scaled by the rope type: default, linear (÷ factor),
    /// llama3 (transformers' `_compute_llama3_parameters`: wavelengths above original/low_freq_factor ÷
    /// factor, below original/high_freq_factor kept, smoothly interpolated between). Other types (yarn,
    /// dynamic, longrope) are refused naming the type.
    static func make(theta: Double, dims: Int, scaling: ModelConfig.RopeScaling?, path: String) throws -> [Double] {
        let base = stride(from: 0, to: dims, by: 2).map { Double(Float(1 / pow(theta, Double($0) / Double(dims)))) }
        let kind = scaling?.kind ?? "default"
        switch kind {
        case "default":
            return base
        case "linear":
            guard let f = scaling?.factor, f > 0 else { throw ModelError(path, "rope scaling 'linear' needs a positive factor") }
            return base.map { Double(Float($0 / f)) }
        case "llama3":
            guard let s = scaling, let f = s.factor, let lo = s.lowFreqFactor, let hi = s.highFreqFactor, let old = s.originalMaxPositionEmbeddings,
                f > 0, hi > lo, old > 0
            else {
                throw ModelError(path, "rope scaling 'llama3' needs factor, low_freq_factor < high_freq_factor and original_max_position_embeddings")
            }
            let lowWavelen = Double(Float(Double(old) / lo))
            let highWavelen = Double(Float(Double(old) / hi))
            return base.map { inv in
                let f32 = Float(inv)
                let wavelen = Float(2 * Float.pi) / f32
                var out = Double(f32)
                if Double(wavelen) > lowWavelen { out = Double(f32 / Float(f)) }
                if !(Double(wavelen) < highWavelen) && !(Double(wavelen) > lowWavelen) {
                    let smooth = (Float(old) / wavelen - Float(lo)) / Float(hi - lo)
                    out = Double((1 - smooth) * f32 / Float(f) + smooth * f32)
                }
                return out
            }
        default:
            throw ModelError(path, "rope scaling '\(kind)' is not supported (default, linear and llama3 are)")
        }
    }
}
