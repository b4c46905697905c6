import Foundation
import Testing
import TestSupport
import Checkpoint
@testable import Model
import Numerics

/// The decoder families as llama.cpp writes them (Fixtures/gguf_families.py: llama.cpp's own
/// convert_hf_to_gguf.py and convert_lora_to_gguf.py on tiny transformers models whose settings llama.cpp
/// represents): read from the GGUF, each gives transformers' logits with and without its PEFT adapter; our
/// LoRA GGUF of that adapter holds llama.cpp's converter's tensors, and llama.cpp's file reads back to it.
@Suite struct GGUFFamilyTests {
    static let archs = ["llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3", "phi3"]
    static func path(_ p: String) -> String { TestPaths.fixture("gguf-families/" + p) }
    static let refs = Result { try SafeTensorsFile(path: path("refs.safetensors")) }

    static func batch() throws -> Batch {
        let refs = try Self.refs.get()
        let ids = try refs.tensor("ids")
        let mask = try refs.tensor("mask")
        return Batch(
            ids: (0..<ids.rows).map { r in (0..<ids.cols).map { Int(ids[r, $0]) } },
            mask: (0..<ids.rows).map { r in (0..<ids.cols).map { Int(mask[r, $0]) } })
    }

    /// Logits at the real (unpadded) positions.
    static func real(_ logits: [Float], _ b: Batch, vocab: Int) -> [Float] {
        var out: [Float] = []
        for s in 0..<b.count {
            for t in 0..<b.length where b.mask[s][t] == 1 {
                out += logits[((s * b.length + t) * vocab)..<((s * b.length + t + 1) * vocab)]
            }
        }
        return out
    }

    @Test(arguments: archs)
    func logitsMatchTransformersWithAndWithoutTheAdapter(arch: String) throws {
        let model = try ModelRegistry.load(Self.path(arch + ".gguf"))
        let refs = try Self.refs.get()
        let b = try Self.batch()
        let vocab = try #require(model.config.vocabSize)
        for stage in ["base", "lora"] {
            if stage == "lora" { try model.attach(try Adapter.load(Self.path(arch + "-lora"))) }
            let ours = Self.real(try model.forward(b, outputLayers: false, head: .languageModel).logits, b, vocab: vocab)
            let theirs = Self.real(try refs.tensor("\(arch).\(stage).logits").data, b, vocab: vocab)
            #expect(ours.count == theirs.count && relErr(ours, theirs) <= 1e-4, "\(arch) \(stage): \(relErr(ours, theirs))")
        }
    }

    @Test(arguments: archs)
    func loraGGUFEqualsLlamaCppsConverter(arch: String) throws {
        let base = try GGUFFile(path: Self.path(arch + ".gguf"))
        let adapter = try Adapter.load(Self.path(arch + "-lora"))
        let tmp = TempDir("coto-gguf-fam")
        try GGUFLoRA.write(adapter, base: base, to: tmp.file("ours.gguf"))
        let ours = try GGUFFile(path: tmp.file("ours.gguf"))
        let theirs = try GGUFFile(path: Self.path(arch + "-lora.gguf"))
        #expect(Set(ours.tensors.map(\.name)) == Set(theirs.tensors.map(\.name)))
        #expect(ours.tensors.count == 2 * adapter.modules.count)
        #expect(ours["adapter.lora.alpha"]?.double == theirs["adapter.lora.alpha"]?.double)
        #expect(ours["general.architecture"]?.string == theirs["general.architecture"]?.string)
        for t in theirs.tensors {
            let x = try ours.dequantize(t.name)
            let y = try theirs.dequantize(t.name)
            #expect(x.shape == y.shape && x.maxAbsDiff(y) <= 1e-6, "\(arch) \(t.name)")
        }
        // llama.cpp's file reads back to the PEFT adapter's deltas.
        let back = try GGUFLoRA.read(Self.path(arch + "-lora.gguf"), base: base)
        #expect(back.modules.count == adapter.modules.count)
        for m in adapter.modules {
            let key = m.name.hasPrefix("model.") ? m.name : "model." + m.name
            let r = try #require(back.modules.first { $0.name == key || $0.name == m.name }, "\(m.name)")
            #expect(r.delta().maxAbsDiff(m.delta()) <= 1e-6, "\(arch) \(m.name)")
        }
    }

    /// What llama.cpp assumes and the GGUF does not say, written into the config: Gemma's query scale and
    /// soft-caps, Gemma 3's pattern and local θ, Llama 3's RoPE bands recovered from rope_freqs.
    @Test func configsSayWhatLlamaCppAssumes() throws {
        func config(_ arch: String) throws -> ModelConfig {
            try ModelConfig.decode(Array(try GGUFConverter(gguf: GGUFFile(path: Self.path(arch + ".gguf"))).config().compact.utf8), path: arch)
        }
        let llama = try config("llama")
        #expect(llama.ropeScaling?.ropeType == "llama3" && llama.ropeScaling?.factor == 8)
        let g3 = try GGUFConverter(gguf: GGUFFile(path: Self.path("gemma3.gguf"))).config()
        #expect(g3["layer_types"] == .array((0..<6).map { .string($0 == 5 ? "full_attention" : "sliding_attention") }))
        #expect(g3["rope_local_base_freq"]?.doubleValue == 100)
        #expect(g3["query_pre_attn_scalar"]?.intValue == 8)
        let g2 = try GGUFConverter(gguf: GGUFFile(path: Self.path("gemma2.gguf"))).config()
        #expect(g2["attn_logit_softcapping"]?.doubleValue == 2 && g2["final_logit_softcapping"]?.doubleValue == 3)
        #expect(g2["model_type"] == .string("gemma2") && g2["tie_word_embeddings"] == .bool(true))
        let phi = try GGUFConverter(gguf: GGUFFile(path: Self.path("phi3.gguf"))).config()
        #expect(phi["partial_rotary_factor"]?.doubleValue == 0.5 && phi["head_dim"]?.intValue == 8)
    }

    /// Llama 3.1's own factors (head_dim 128, θ 500000, factor 8, bands 1 / 4 over 8192 positions, computed as
    /// llama.cpp's converter does in Float32) give its rope_scaling back; factors no llama3 scaling makes are refused.
    @Test func llama31RopeFactorsGiveItsScalingBack() throws {
        let conv = GGUFConverter(gguf: try GGUFFile(path: Self.path("llama.gguf")))
        let factors: [Float] = (0..<64).map { i in
            let freq = Double(1 / pow(Float(500000), Float(2 * i) / 128))
            let wave = 2 * Double.pi / freq
            if wave < 8192 / 4 { return 1 }
            if wave > 8192 / 1 { return 8 }
            let smooth = (8192 / wave - 1) / (4 - 1)
            return Float(1 / ((1 - smooth) / 8 + smooth))
        }
        let r = try conv.llama3Rope(factors, headDim: 128, theta: 500000)
        #expect(r["factor"]?.doubleValue == 8 && r["original_max_position_embeddings"]?.intValue == 8192)
        #expect(abs((r["low_freq_factor"]?.doubleValue ?? 0) - 1) < 1e-3 && abs((r["high_freq_factor"]?.doubleValue ?? 0) - 4) < 1e-3, "\(r)")
        var bad = factors
        bad[10] = 3
        #expect(throws: CheckpointError.self) { try conv.llama3Rope(bad, headDim: 128, theta: 500000) }
    }
}
