import Foundation
import Testing
import TestSupport
import Checkpoint
@testable import Model
import Numerics
import Operators

/// A llama GGUF whose weights are Q2_K/Q3_K/Q4_K/Q5_K/Q6_K/Q5_0/Q8_0 blocks (Fixtures/kquants.py): converted, it
/// gives the logits transformers computes on the GGUF itself; fused with an adapter straight from the GGUF, it
/// equals the conversion with the adapter attached.
@Suite struct KQuantModelTests {
    static let gguf = TestPaths.fixture("gguf/kquant-llama.gguf")
    static let refs = Result { try SafeTensorsFile(path: TestPaths.fixture("gguf/kquant-llama-refs.safetensors")) }

    static func ids(_ name: String) throws -> [[Int]] {
        let t = try refs.get().tensor(name)
        return (0..<t.rows).map { r in (0..<t.cols).map { Int(t[r, $0]) } }
    }

    @Test func convertedKQuantModelGivesTransformersLogits() throws {
        let t = TempDir()
        let g = try GGUFFile(path: Self.gguf)
        #expect(Set(g.tensors.map(\.type.name)).isSuperset(of: ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q5_0", "Q8_0"]))
        try GGUFConverter(gguf: g).convert(to: t.path + "/m")
        let model = try ModelRegistry.load(t.path + "/m")
        let mask = try Self.ids("mask")
        let logits = try model.forward(Batch(ids: try Self.ids("ids"), mask: mask), outputLayers: false, head: .languageModel).logits
        let want = try Self.refs.get().tensor("logits").data
        #expect(maskedMaxDiff(logits, want, mask: mask, width: 32) <= 1e-4, "\(maskedMaxDiff(logits, want, mask: mask, width: 32))")
    }

    @Test func fusingOntoTheKQuantGGUFEqualsTheAdapterOnItsConversion() throws {
        let t = TempDir()
        var rng = SeededRNG(seed: 5)
        func w(_ r: Int, _ c: Int) -> Tensor { Tensor(shape: [r, c], data: (0..<(r * c)).map { _ in Float(rng.normal() * 0.05) }) }
        let mods = [("self_attn.q_proj", 256, 256), ("self_attn.k_proj", 128, 256), ("mlp.down_proj", 256, 256)].map { n, out, inF in
            LoraModule(
                name: "model.layers.0." + n, a: AdapterTensor(dtype: .f32, tensor: w(4, inF)), b: AdapterTensor(dtype: .f32, tensor: w(out, 4)),
                alpha: 8, scaling: 2)
        }
        var c = LoraConfig()
        c.r = 4
        c.loraAlpha = 8
        let adapter = Adapter(config: c, modules: mods, otherTensors: [], source: "test", configOrigin: "test")
        let report = try Fuser.fuse(base: try HFModelDir.open(Self.gguf), adapters: [adapter], options: FuseOptions(), to: t.path + "/fused")
        #expect(report.fusedModules.count == 3)
        try GGUFConverter(gguf: try GGUFFile(path: Self.gguf)).convert(to: t.path + "/m")
        let withAdapter = try ModelRegistry.load(t.path + "/m")
        try withAdapter.attach(adapter)
        let fused = try ModelRegistry.load(t.path + "/fused")
        let mask = try Self.ids("mask")
        let batch = Batch(ids: try Self.ids("ids"), mask: mask)
        let a = try withAdapter.forward(batch, outputLayers: false, head: .languageModel).logits
        let b = try fused.forward(batch, outputLayers: false, head: .languageModel).logits
        #expect(maskedMaxDiff(a, b, mask: mask, width: 32) <= 1e-4)
        // The adapter moves the logits: the comparison sees a fuse that dropped it.
        #expect(maskedMaxDiff(a, try Self.refs.get().tensor("logits").data, mask: mask, width: 32) > 1e-3)
    }
}
