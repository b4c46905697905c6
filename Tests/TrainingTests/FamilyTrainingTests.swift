import Foundation
import Testing
import TestSupport
import Checkpoint
import Model
import Numerics
@testable import Training

/// Training on the decoder families (Fixtures/families.py): the adapter's gradients of the causal-LM loss
/// equal PyTorch + PEFT's for Qwen3 (q/k norms, sliding layers), Gemma 2 (soft-caps, sandwich norms, GeGLU,
/// (1 + w) norms, scaled embeddings) and Phi-3 (fused qkv_proj / gate_up_proj, partial rotary); CoTo steps
/// lower the loss on each.
enum FamTFx {
    static func path(_ p: String) -> String { TestPaths.fixture("families/" + p) }
    static let refs = Result { try SafeTensorsFile(path: path("refs.safetensors")) }

    /// The family's model with its fixture adapter loaded into a trainer, and the fixture's two sequences
    /// (the padded one cut to its 8 real tokens: packed training has no padding).
    static func trainer(_ name: String, coto: Bool = false) throws -> (AdapterTrainer, [Example]) {
        let model = try #require(try ModelRegistry.load(path(name)) as? LlamaModel)
        let adapter = try Adapter.load(path(name + "-lora"))
        var c = TrainConfig()
        c.rank = adapter.config.r
        c.alpha = adapter.config.loraAlpha
        guard case let .names(targets) = adapter.config.targetModules else { throw CheckpointError(name, .invalid("regex targets")) }
        c.targets = targets
        c.coto = coto
        let t = try AdapterTrainer(causalLM: model, config: c)
        try t.load(adapter)
        let ids = try refs.get().tensor("ids")
        let mask = try refs.get().tensor("mask")
        let batch = (0..<ids.rows).map { r -> Example in
            let n = (0..<ids.cols).filter { mask[r, $0] != 0 }.count
            let seq = (0..<n).map { Int(ids[r, $0]) }
            return Example(ids: seq, targets: seq)
        }
        return (t, batch)
    }
}

@Suite struct FamilyTrainingTests {
    @Test(arguments: ["qwen3", "gemma2", "phi3"])
    func adapterGradientsMatchPEFT(name: String) throws {
        let (t, batch) = try FamTFx.trainer(name)
        let refs = try FamTFx.refs.get()
        let loss = t.lossAndGradients(batch, train: false)
        let want = Double(try refs.tensor("\(name).lora.nll").data[0])
        #expect(abs(loss - want) < 1e-5 * max(1, want), "\(name) loss \(loss) vs \(want)")
        var compared = 0
        for n in refs.names where n.hasPrefix("\(name).grad.") {
            let key = String(n.dropFirst("\(name).grad.model.".count))
            let module = key.replacingOccurrences(of: ".lora_A.weight", with: ".lora_A").replacingOccurrences(of: ".lora_B.weight", with: ".lora_B")
            let ours = try #require(t.gradient(module), "\(module)")
            let theirs = try refs.tensor(n).data
            #expect(relErr(ours, theirs) <= 1e-4, "\(name) \(module): \(relErr(ours, theirs))")
            compared += 1
        }
        // Every adapted linear of 3 layers, A and B (Phi-3: 4 linears per layer, the others 7).
        #expect(compared == 2 * 3 * (name == "phi3" ? 4 : 7))
    }

    /// A few CoTo steps (p rising from 0.1, layers switched off at random) on every family: the loss falls,
    /// and the same seed gives the same adapter.
    @Test(arguments: ["llama3", "mistral", "qwen3", "gemma2", "gemma3", "phi3"])
    func cotoStepsLowerTheLoss(name: String) throws {
        func run() throws -> (first: Double, last: Double, adapter: [Float]) {
            let model = try #require(try ModelRegistry.load(FamTFx.path(name)) as? LlamaModel)
            var c = TrainConfig()
            c.rank = 4
            c.alpha = 8
            c.targets = ["all-linear"]
            c.coto = true
            c.steps = 24
            c.batchSize = 2
            c.lr = 2e-2
            c.seed = 3
            let t = try AdapterTrainer(causalLM: model, config: c)
            let ex = [[1, 5, 9, 13, 7, 3, 22, 41, 17, 30, 8, 2], [1, 8, 4, 3, 50, 61, 12, 9]].map { Example(ids: $0, targets: $0) }
            let before = t.lossAndGradients(ex, train: false)
            try t.train(ex, eval: nil)
            let after = t.lossAndGradients(ex, train: false)
            let a = t.adapter(baseModel: "m")
            return (before, after, a.modules.flatMap { $0.a.tensor.data + $0.b.tensor.data })
        }
        let r1 = try run()
        #expect(r1.last < r1.first - 0.3, "\(name): \(r1.first) -> \(r1.last)")
        let r2 = try run()
        #expect(r1.adapter == r2.adapter)
    }
}
