import Testing
import Foundation
import TestSupport
@testable import Checkpoint
import Numerics

/// llama.cpp LoRA adapters (GGUF) against the real SmolLM2 GGUF: the file is what llama.cpp's loader
/// accepts (names, ne rules), its effective per-module delta is ours (scaling folded, q/k rows permuted as
/// the base's), and it reads back to the same adapter.
@Suite struct GGUFLoRATests {
    static func tmp() throws -> String { try makeTempDir("coto-ggml-lora") }

    /// Mixed ranks, rsLoRA-like and pattern scalings, q/k (permuted), v, o, down and the token embedding.
    static func adapter() -> Adapter {
        var rng = SeededRNG(seed: 11)
        func t(_ r: Int, _ c: Int) -> Tensor { Tensor(shape: [r, c], data: (0..<(r * c)).map { _ in Float(rng.normal() * 0.05) }) }
        let H = 576
        let KV = 192
        let F = 1536
        let V = 49152
        let specs: [(String, Int, Int, Int, Double, Bool)] = [  // name, out, in, r, scaling, embedding
            ("model.layers.0.self_attn.q_proj", H, H, 8, 16 / 8.0.squareRoot(), false),
            ("model.layers.0.self_attn.k_proj", KV, H, 4, 16 / 4.0, false),
            ("model.layers.0.self_attn.v_proj", KV, H, 4, 3.0, false),
            ("model.layers.29.self_attn.o_proj", H, H, 2, 16 / 2.0, false),
            ("model.layers.29.mlp.down_proj", H, F, 6, 0.5, false),
            ("model.embed_tokens", H, V, 4, 16 / 4.0, true),
        ]
        var mods: [LoraModule] = []
        for (n, o, i, r, s, e) in specs {
            mods.append(
                LoraModule(
                    name: n, a: AdapterTensor(dtype: .f32, tensor: t(r, i)), b: AdapterTensor(dtype: .f32, tensor: t(o, r)),
                    isEmbedding: e, alpha: s * Double(r), scaling: s))
        }
        var c = LoraConfig()
        c.r = 4
        c.loraAlpha = 16
        c.fit(modules: mods.map { ($0.name, $0.rank, $0.alpha) })
        return Adapter(config: c, modules: mods, otherTensors: [], source: "test", configOrigin: "test")
    }

    @Test func writesWhatLlamaCppLoadsWithOurDeltasAndReadsBack() throws {
        #expect(FileManager.default.fileExists(atPath: TestPaths.smollm2), "run make setup")
        let base = try GGUFFile(path: TestPaths.smollm2)
        let dir = try Self.tmp()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let a = Self.adapter()
        try GGUFLoRA.write(a, base: base, to: dir + "/a.gguf")
        let f = try GGUFFile(path: dir + "/a.gguf")
        #expect(f["general.type"]?.string == "adapter" && f["adapter.type"]?.string == "lora")
        #expect(f["general.architecture"]?.string == base["general.architecture"]?.string)
        guard case .f32(let alpha)? = f["adapter.lora.alpha"] else {
            Issue.record("adapter.lora.alpha is not FLOAT32")
            return
        }
        #expect(alpha == 16)
        #expect(f.tensors.count == 2 * a.modules.count)
        let names: [String: String] = [
            "model.layers.0.self_attn.q_proj": "blk.0.attn_q", "model.layers.0.self_attn.k_proj": "blk.0.attn_k",
            "model.layers.0.self_attn.v_proj": "blk.0.attn_v", "model.layers.29.self_attn.o_proj": "blk.29.attn_output",
            "model.layers.29.mlp.down_proj": "blk.29.ffn_down", "model.embed_tokens": "token_embd",
        ]
        for m in a.modules {
            let g = try #require(names[m.name])
            let w = try #require(base.tensorInfo(named: g + ".weight"))
            let ta = try #require(f.tensorInfo(named: g + ".weight.lora_a"))
            let tb = try #require(f.tensorInfo(named: g + ".weight.lora_b"))
            // llama.cpp's loader checks (llama-adapter.cpp), on ggml ne.
            if m.isEmbedding {
                #expect(w.dims[0] == tb.dims[1] && w.dims[1] == ta.dims[1], "\(g)")
            } else {
                #expect(w.dims[0] == ta.dims[0] && w.dims[1] == tb.dims[1] && ta.dims[1] == tb.dims[0], "\(g)")
            }
            // What llama.cpp adds (alpha / r · B·A, in its row order) is our s·B·A (rows permuted for q/k). For the
            // embedding, llama.cpp adds alpha / r · B·a[token] to token rows: compared on the first 64 tokens.
            let A = try f.dequantize(g + ".weight.lora_a")
            let B = try f.dequantize(g + ".weight.lora_b")
            let llama: Tensor
            let ours: Tensor
            if m.isEmbedding {
                let r = A.cols
                let aRows = Tensor(shape: [64, r], data: Array(A.data.prefix(64 * r)))  // a[token], tokens 0..<64
                var aCols = Tensor(zeros: [r, 64])
                for i in 0..<r { for j in 0..<64 { aCols[i, j] = m.a.tensor[i, j] } }
                llama = Float(Double(alpha) / Double(r)) * BLAS.matmul(B, aRows, transB: true)  // [dim, 64]
                ours = Float(m.scaling) * BLAS.matmul(m.b.tensor, aCols)
            } else {
                llama = Float(Double(alpha) / Double(A.rows)) * BLAS.matmul(B, A)
                var d = m.delta()
                if g.hasSuffix("attn_q") { d = GGUFLoRA.permute(d, heads: 9) }
                if g.hasSuffix("attn_k") { d = GGUFLoRA.permute(d, heads: 3) }
                ours = d
            }
            #expect(llama.maxAbsDiff(ours) <= 1e-6 * max(1, ours.data.map(abs).max() ?? 1), "\(g): \(llama.maxAbsDiff(ours))")
        }
        // And back: the same deltas under the same names (F16 output rounds once).
        let back = try GGUFLoRA.read(dir + "/a.gguf", base: base)
        #expect(back.modules.map(\.name) == a.modules.map(\.name))
        // Factors: A as written, s·B the same (the scaling folded on the way out is alpha / r on the way in).
        for (x, y) in zip(back.modules, a.modules) {
            #expect(x.a.tensor == y.a.tensor, "\(x.name)")
            #expect((Float(x.scaling) * x.b.tensor).maxAbsDiff(Float(y.scaling) * y.b.tensor) <= 1e-6, "\(x.name)")
            #expect(x.isEmbedding == y.isEmbedding)
        }
        try back.save(to: dir + "/peft")
        #expect(try Adapter.load(dir + "/peft").modules.map(\.rank) == a.modules.map(\.rank))
        try GGUFLoRA.write(a, base: base, to: dir + "/h.gguf", dtype: .f16)
        let half = try GGUFLoRA.read(dir + "/h.gguf", base: base)
        for (x, y) in zip(half.modules, a.modules) {
            let want = Float(y.scaling) * y.b.tensor
            let err = (Float(x.scaling) * x.b.tensor).maxAbsDiff(want) / (want.data.map(abs).max() ?? 1)
            #expect(err <= 1e-3 && x.a.tensor.maxAbsDiff(y.a.tensor) <= 1e-3, "\(x.name): f16 relative error \(err)")
        }
    }

    /// The q/k row permutation is llama.cpp's: undoing it on the base's own attn_q/attn_k (what our GGUF
    /// conversion does, checked against transformers) and redoing it gives the base's tensors back exactly.
    @Test func permutationIsTheBaseModelsOwn() throws {
        let base = try GGUFFile(path: TestPaths.smollm2)
        for (name, heads) in [("blk.0.attn_q.weight", 9), ("blk.7.attn_k.weight", 3)] {
            let w = try base.dequantize(name)
            let hf = GGUFConverter.unpermute(w, heads: heads)
            #expect(hf != w)
            #expect(GGUFLoRA.permute(hf, heads: heads) == w, "\(name)")
        }
    }

    @Test func formsLlamaCppCannotHoldAreRefused() throws {
        let base = try GGUFFile(path: TestPaths.smollm2)
        let dir = try Self.tmp()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var h = Self.adapter()
        h.modules.removeLast()  // the embedding (HiRA refuses embeddings at load; here the variant alone)
        h.variant = .hira
        for (adapter, needle) in [
            (h, "HiRA"),
            (
                {
                    var x = Self.adapter()
                    x.otherTensors = [("base_model.model.score.weight", AdapterTensor(dtype: .f32, tensor: Tensor(zeros: [2, 576])))]
                    return x
                }(), "full tensors"
            ),
            (
                {
                    var x = Self.adapter()
                    x.modules[0].magnitude = AdapterTensor(dtype: .f32, tensor: Tensor(zeros: [576]))
                    x.variant = .dora
                    return x
                }(), "DoRA"
            ),
            (
                {
                    var x = Self.adapter()
                    x.modules[0].name = "model.layers.99.self_attn.q_proj"
                    return x
                }(), "no tensor in the base"
            ),
        ] {
            do {
                try GGUFLoRA.write(adapter, base: base, to: dir + "/x.gguf")
                Issue.record("accepted: \(needle)")
            } catch let e as CheckpointError { #expect(e.message.contains(needle), "\(e)") }
            #expect(!FileManager.default.fileExists(atPath: dir + "/x.gguf"))
        }
        // A model GGUF is not an adapter.
        #expect(throws: CheckpointError.self) { try GGUFLoRA.read(TestPaths.smollm2, base: base) }
    }
}
