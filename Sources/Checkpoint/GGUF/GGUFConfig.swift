import Foundation
import Numerics

/// config.json from a GGUF's metadata, as llama.cpp's loader reads the file: where llama.cpp assumes a value
/// the GGUF does not hold (Gemma's query scale, Gemma 3's sliding pattern and local θ, Gemma 2's default
/// soft-caps), the config says what llama.cpp assumes, so coto computes what llama.cpp computes.
extension GGUFConverter {
    public func architectureSpec() throws -> GGUFArchitecture { try GGUFArchitecture.named(architecture, path: gguf.path) }

    public func config() throws -> JSON {
        let arch = try architectureSpec()
        let hidden = try requireInt("embedding_length")
        let layers = try requireInt("block_count")
        let heads = try requireInt("attention.head_count")
        let kvHeads = meta("attention.head_count_kv")?.int ?? heads
        guard kvHeads > 0, heads % kvHeads == 0 else {
            throw CheckpointError(gguf.path, .invalid("GGUF: head_count \(heads) / head_count_kv \(kvHeads) are inconsistent"))
        }
        let ropeDims = meta("rope.dimension_count")?.int
        // Phi-3's rope.dimension_count is its rotary part; its head is hidden / heads.
        let headDim = meta("attention.key_length")?.int ?? (arch.name == "phi3" ? nil : ropeDims) ?? hidden / heads
        guard headDim > 0, headDim % 2 == 0 else { throw CheckpointError(gguf.path, .invalid("GGUF: head dimension \(headDim) is not even")) }
        let ffn = try requireInt("feed_forward_length")
        let vocab = meta("vocab_size")?.int ?? vocabTokens()?.count ?? gguf.tensorInfo(named: "token_embd.weight")?.shape.first
        guard let vocabSize = vocab, vocabSize > 0 else {
            throw CheckpointError(gguf.path, .invalid("GGUF: no vocab_size, no tokenizer.ggml.tokens and no token_embd.weight"))
        }
        let theta = meta("rope.freq_base")?.double ?? 10000
        let tied = arch.name == "gemma2" || gguf.tensorInfo(named: "output.weight") == nil
        var pairs: [(String, JSON)] = [
            ("architectures", .array([.string(arch.hfClass)])),
            ("model_type", .string(arch.modelType)),
            ("hidden_size", .int(hidden)),
            ("intermediate_size", .int(ffn)),
            ("num_hidden_layers", .int(layers)),
            ("num_attention_heads", .int(heads)),
            ("num_key_value_heads", .int(kvHeads)),
            ("head_dim", .int(headDim)),
            ("max_position_embeddings", .int(meta("context_length")?.int ?? 2048)),
            ("rms_norm_eps", .double(meta("attention.layer_norm_rms_epsilon")?.double ?? 1e-6)),
            ("rope_theta", .double(theta)),
            ("tie_word_embeddings", .bool(tied)),
            ("vocab_size", .int(vocabSize)),
            ("torch_dtype", .string(dtype == .f32 ? "float32" : dtype == .f16 ? "float16" : "bfloat16")),
            ("use_cache", .bool(true)),
            ("hidden_act", .string(arch.normsPlusOne ? "gelu_pytorch_tanh" : "silu")),
        ]
        for (key, gkey) in [("bos_token_id", "bos_token_id"), ("eos_token_id", "eos_token_id"), ("pad_token_id", "padding_token_id")] {
            if let v = gguf["tokenizer.ggml.\(gkey)"]?.int { pairs.append((key, .int(v))) }
        }
        switch arch.name {
        case "llama", "qwen3":
            pairs += [("attention_bias", .bool(gguf.tensorInfo(named: "blk.0.attn_q.bias") != nil)), ("mlp_bias", .bool(false))]
            pairs.append(("rope_scaling", try ropeScaling(headDim: headDim, theta: theta)))
            if arch.name == "qwen3" { pairs.append(("use_sliding_window", .bool(false))) }
        case "qwen2":
            pairs += [("use_sliding_window", .bool(false)), ("rope_scaling", try ropeScaling(headDim: headDim, theta: theta))]
        case "gemma2", "gemma3":
            pairs += try gemma(arch: arch.name, layers: layers, hidden: hidden, heads: heads, headDim: headDim)
        case "phi3":
            if gguf.tensorInfo(named: "rope_factors_long.weight") != nil {
                throw CheckpointError(gguf.path, .invalid("GGUF: Phi-3 long-context RoPE factors (rope_factors_long) are not supported"))
            }
            let rotary = ropeDims ?? headDim
            pairs += [
                ("partial_rotary_factor", .double(Double(rotary) / Double(headDim))),
                ("sliding_window", .null),  // llama.cpp runs Phi-3 without its window
                ("original_max_position_embeddings", .int(meta("rope.scaling.original_context_length")?.int ?? meta("context_length")?.int ?? 2048)),
            ]
        default: break
        }
        return .object(pairs)
    }

    /// Gemma 2 / Gemma 3: llama.cpp's query scale (hidden / heads for the 27B layer counts, else head_dim),
    /// soft-caps (Gemma 2's defaults 50 / 30 where absent), the window and which layers slide (the GGUF's
    /// pattern, else llama.cpp's: every other layer for Gemma 2, five of six for Gemma 3), Gemma 3's local θ.
    func gemma(arch: String, layers: Int, hidden: Int, heads: Int, headDim: Int) throws -> [(String, JSON)] {
        let is27B = arch == "gemma2" ? layers == 46 : layers == 62
        var out: [(String, JSON)] = [
            ("hidden_activation", .string("gelu_pytorch_tanh")),
            ("query_pre_attn_scalar", .int(is27B ? hidden / heads : headDim)),
            ("attention_bias", .bool(false)),
        ]
        let window = meta("attention.sliding_window")?.int ?? (arch == "gemma2" ? 4096 : 0)
        let n = arch == "gemma2" ? 2 : 6
        var sliding: [Bool] = (0..<layers).map { window > 0 && $0 % n < n - 1 }
        switch meta("attention.sliding_window_pattern") {
        case .array(let a)?:
            let flags = a.values.compactMap(\.bool)
            guard flags.count == layers else {
                throw CheckpointError(gguf.path, .invalid("GGUF: sliding_window_pattern has \(flags.count) entries for \(layers) layers"))
            }
            sliding = flags.map { $0 && window > 0 }
        case let v?:
            guard let p = v.int, p > 0 else { throw CheckpointError(gguf.path, .invalid("GGUF: sliding_window_pattern is not a positive integer")) }
            sliding = (0..<layers).map { window > 0 && $0 % p < p - 1 }
        case nil: break
        }
        out.append(("sliding_window", window > 0 ? .int(window) : .null))
        out.append(("layer_types", .array(sliding.map { .string($0 ? "sliding_attention" : "full_attention") })))
        if arch == "gemma2" {
            out.append(("attn_logit_softcapping", .double(meta("attn_logit_softcapping")?.double ?? 50)))
            out.append(("final_logit_softcapping", .double(meta("final_logit_softcapping")?.double ?? 30)))
        } else {
            out.append(("attn_logit_softcapping", .null))
            out.append(("final_logit_softcapping", meta("final_logit_softcapping")?.double.map(JSON.double) ?? .null))
            out.append(("rope_local_base_freq", .double(meta("rope.freq_base_swa")?.double ?? 10000)))
            out.append(("rope_scaling", try ropeScaling(headDim: headDim, theta: meta("rope.freq_base")?.double ?? 10000)))
        }
        return out
    }

    /// rope_scaling: linear from the metadata, Llama 3's bands from the `rope_freqs` tensor, else none.
    func ropeScaling(headDim: Int, theta: Double) throws -> JSON {
        if let type = meta("rope.scaling.type")?.string, type != "none" {
            guard type == "linear", let f = meta("rope.scaling.factor")?.double else {
                throw CheckpointError(gguf.path, .invalid("GGUF: rope scaling '\(type)' is not supported (none, linear and Llama 3's rope_freqs are)"))
            }
            return .object([("factor", .double(f)), ("rope_type", .string("linear")), ("type", .string("linear"))])
        }
        if let f = meta("rope.scale_linear")?.double, f != 1 {
            return .object([("factor", .double(f)), ("rope_type", .string("linear")), ("type", .string("linear"))])
        }
        if gguf.tensorInfo(named: "rope_freqs.weight") != nil {
            return try llama3Rope(try gguf.dequantize("rope_freqs.weight").data, headDim: headDim, theta: theta)
        }
        return .null
    }

    /// Llama 3's rope_scaling recovered from llama.cpp's per-frequency factors (convert_hf_to_gguf.py,
    /// `generate_extra_tensors`): factor = the largest; the two band edges only enter as wavelength limits
    /// original/high and original/low, so original_max_position_embeddings is fixed and the edges found from
    /// the in-band factors (or the gaps between bands). Refused unless the parameters reproduce every factor.
    package func llama3Rope(_ factors: [Float], headDim: Int, theta: Double) throws -> JSON {
        let half = headDim / 2
        guard factors.count == half, let factor = factors.max(), factor >= 1 else {
            throw CheckpointError(gguf.path, .invalid("GGUF: rope_freqs has \(factors.count) values for head dimension \(headDim)"))
        }
        let inv = (0..<half).map { 1 / pow(theta, Double(2 * $0) / Double(headDim)) }
        let wave = inv.map { 2 * Double.pi / $0 }
        let original = 8192.0
        func reproduce(low: Double, high: Double) -> Bool {
            let lowW = original / low
            let highW = original / high
            for i in 0..<half {
                let want: Double
                if wave[i] < highW {
                    want = 1
                } else if wave[i] > lowW {
                    want = Double(factor)
                } else {
                    let smooth = (original / wave[i] - low) / (high - low)
                    want = 1 / ((1 - smooth) / Double(factor) + smooth)
                }
                if abs(Double(Float(want)) - Double(factors[i])) > 1e-6 * max(1, Double(factors[i])) { return false }
            }
            return true
        }
        var candidates: [(Double, Double)] = []
        // In-band factors: smooth = a / wavelength + b with a = original/(high−low), b = −low/(high−low).
        let band = (0..<half).filter { factors[$0] > 1 && factors[$0] < factor }
        func smooth(_ k: Int) -> Double { (Double(factor) / Double(factors[k]) - 1) / (Double(factor) - 1) }
        if band.count >= 2, let i = band.first, let j = band.last {
            let a = (smooth(i) - smooth(j)) / (1 / wave[i] - 1 / wave[j])
            let b = smooth(i) - a / wave[i]
            if a != 0 { candidates.append((-b * original / a, (1 - b) * original / a)) }
        } else if band.count == 1, let i = band.first {
            // One in-band factor: the high edge between it and the wavelength below, the low edge from it.
            let below = i > 0 ? wave[i - 1] : wave[i] / 4
            for highW in [(below * wave[i]).squareRoot(), (below + wave[i]) / 2, below * 1.001, wave[i] * 0.999] {
                let high = original / highW
                let s = smooth(i)
                candidates.append(((original / wave[i] - s * high) / (1 - s), high))
            }
        }
        // Edges between the neighbouring wavelengths of the bands (no or one in-band factor).
        let lastOne = (0..<half).last { factors[$0] == 1 }
        let firstFull = (0..<half).first { factors[$0] == factor }
        if let l = lastOne, let f = firstFull, l + 1 < half, f > 0 {
            let highW = (wave[l] + wave[min(l + 1, half - 1)]) / 2
            let lowW = (wave[f - 1] + wave[f]) / 2
            candidates.append((original / lowW, original / highW))
        }
        candidates.append((1, 4))  // Llama 3.1 / 3.2
        for (low, high) in candidates where low > 0 && high > low && reproduce(low: low, high: high) {
            return .object([
                ("factor", .double(Double(factor))), ("high_freq_factor", .double(high)), ("low_freq_factor", .double(low)),
                ("original_max_position_embeddings", .int(Int(original))), ("rope_type", .string("llama3")),
            ])
        }
        throw CheckpointError(gguf.path, .invalid("GGUF: rope_freqs is not a Llama 3 RoPE scaling coto can express (factor \(factor))"))
    }
}
