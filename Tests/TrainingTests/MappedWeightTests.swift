import Foundation
import Testing
import TestSupport
import Checkpoint
import Model
import Numerics
@testable import Training

/// A model whose file is BF16 or F16 keeps those bytes (mapped, widened per GEMM block) and computes what
/// its Float32 decode computes: the same logits with and without an adapter, the same training gradients.
/// Each family model is written in the half dtype, and again as Float32 holding the rounded values.
@Suite struct MappedWeightTests {
    /// (half copy, Float32 copy of the same values) of a family fixture, in a temporary directory.
    static func copies(_ name: String, dtype: DType) throws -> (TempDir, String, String) {
        let tmp = try TempDir("coto-mapped")
        let src = FamTFx.path(name)
        let store = try openTensorStore(src)
        let config = try FileSystem.readFile(FileSystem.join(src, "config.json"))
        var half: [TensorEntry] = []
        var full: [TensorEntry] = []
        for n in store.tensorNames {
            let t = try store.loadTensor(n)
            let rounded = Storage.encode(t.data, dtype: dtype).withUnsafeBytes { Storage.decode($0, dtype: dtype) }
            half.append(TensorEntry(name: n, tensor: t, dtype: dtype))
            full.append(TensorEntry(name: n, tensor: Tensor(shape: t.shape, data: rounded)))
        }
        for (dir, entries) in [("half", half), ("full", full)] {
            try FileSystem.makeDirectory(tmp.file(dir))
            try AtomicFileWriter.write(config, to: tmp.file(dir + "/config.json"))
            try SafeTensorsWriter.write(entries, to: tmp.file(dir + "/model.safetensors"))
        }
        return (tmp, tmp.file("half"), tmp.file("full"))
    }

    @Test(arguments: [("gemma2", DType.bf16), ("phi3", .f16), ("qwen3", .bf16)])
    func halfWeightsComputeTheirFloat32Values(name: String, dtype: DType) throws {
        let (tmp, halfPath, fullPath) = try Self.copies(name, dtype: dtype)
        defer { _ = tmp }
        let half = try #require(try ModelRegistry.load(halfPath) as? LlamaModel)
        let full = try #require(try ModelRegistry.load(fullPath) as? LlamaModel)
        // Every matrix is the file's bytes in place: the half model holds half the Float32 bytes.
        for (n, l) in half.linears { #expect(l.weight.isMapped && l.weight.dtype == dtype, "\(n)") }
        for (n, l) in full.linears { #expect(l.weight.isMapped && l.weight.dtype == .f32, "\(n)") }
        let refs = try FamTFx.refs.get()
        let ids = try refs.tensor("ids")
        let mask = try refs.tensor("mask")
        let batch = Batch(
            ids: (0..<ids.rows).map { r in (0..<ids.cols).map { Int(ids[r, $0]) } },
            mask: (0..<ids.rows).map { r in (0..<ids.cols).map { Int(mask[r, $0]) } })
        let adapter = try Adapter.load(FamTFx.path(name + "-lora"))
        for attached in [false, true] {
            if attached {
                try half.attach(adapter)
                try full.attach(adapter)
            }
            let x = try half.forward(batch, outputLayers: false, head: .languageModel).logits
            let y = try full.forward(batch, outputLayers: false, head: .languageModel).logits
            #expect(x.count == y.count && relErr(x, y) <= 1e-6, "\(name) adapter \(attached): \(relErr(x, y))")
        }
        // Training: the adapter's gradients on the half base equal those on its Float32 values.
        func gradients(_ path: String) throws -> (Double, [String: [Float]]) {
            let model = try #require(try ModelRegistry.load(path) as? LlamaModel)
            var c = TrainConfig()
            c.rank = adapter.config.r
            c.alpha = adapter.config.loraAlpha
            guard case let .names(targets) = adapter.config.targetModules else { throw CheckpointError(name, .invalid("regex targets")) }
            c.targets = targets
            let t = try AdapterTrainer(causalLM: model, config: c)
            try t.load(adapter)
            let examples = batch.ids.indices.map { r -> Example in
                let seq = Array(batch.ids[r].prefix(batch.mask[r].filter { $0 != 0 }.count))
                return Example(ids: seq, targets: seq)
            }
            let loss = t.lossAndGradients(examples, train: false)
            var g: [String: [Float]] = [:]
            for m in adapter.modules {
                let key = m.name.hasPrefix("model.") ? String(m.name.dropFirst("model.".count)) : m.name
                g[key] = try #require(t.gradient(key + ".lora_A"), "\(key)")
            }
            return (loss, g)
        }
        let (lh, gh) = try gradients(halfPath)
        let (lf, gf) = try gradients(fullPath)
        #expect(abs(lh - lf) <= 1e-6 * max(1, lf))
        #expect(gh.count == adapter.modules.count && gh.count > 0)
        for (k, v) in gf { #expect(relErr(gh[k] ?? [], v) <= 1e-5, "\(name) \(k)") }
    }
}
