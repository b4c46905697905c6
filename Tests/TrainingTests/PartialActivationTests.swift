import Testing
import Foundation
import TestSupport
@testable import Training
@testable import Model
@testable import Checkpoint
import Numerics

/// CoTo switches adapters off per step. With a subset active, the backward pass stops at the lowest layer
/// that has an active adapter; everything it computes must equal a full backward (down to layer 0) with the
/// same flags, inactive adapters must get exactly no gradient, and the optimizer must leave them alone.
@Suite struct PartialActivationTests {
    /// A copy of a tiny fixture model with `layers` layers (layer i repeats layer i mod 2, perturbed so the
    /// layers differ), so subsets can start above layer 0 and leave layers in between.
    static func deepModel(_ fixture: String, layers: Int, prefix: String) throws -> String {
        let dir = NSTemporaryDirectory() + "coto-deep-\(fixture)-\(layers)-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let src = try SafeTensorsFile(path: TestPaths.fixture(fixture + "/model.safetensors"))
        var entries: [TensorEntry] = []
        var rng = SeededRNG(seed: 77)
        for name in src.names {
            let t = try src.tensor(name)
            guard name.hasPrefix(prefix + "0.") else {
                if !name.hasPrefix(prefix) { entries.append(TensorEntry(name: name, tensor: t)) }
                continue
            }
            let rest = name.dropFirst((prefix + "0.").count)
            for l in 0..<layers {
                var copy = try src.tensor(prefix + "\(l % 2)." + rest)
                if l >= 2 { for i in copy.data.indices { copy.data[i] *= 1 + 0.2 * (rng.uniformFloat() - 0.5) } }
                entries.append(TensorEntry(name: prefix + "\(l)." + rest, tensor: copy))
            }
        }
        try SafeTensorsWriter.write(entries, metadata: [("format", "pt")], to: dir + "/model.safetensors")
        var cfg = try String(contentsOfFile: TestPaths.fixture(fixture + "/config.json"), encoding: .utf8)
        cfg = cfg.replacingOccurrences(of: "\"num_hidden_layers\": 2", with: "\"num_hidden_layers\": \(layers)")
        try cfg.write(toFile: dir + "/config.json", atomically: true, encoding: .utf8)
        return dir
    }

    static let bertDir = Result { try deepModel("tiny-bert", layers: 4, prefix: "bert.encoder.layer.") }
    static let llamaDir = Result { try deepModel("tiny-llama", layers: 4, prefix: "model.layers.") }

    /// "bert|llama-lora|dora|hira-layer|module": a trainer on the 4-layer model with every parameter drawn at
    /// a scale where the loss depends on it visibly (B is not zero), and a batch.
    static func trainer(_ tag: String, seed: UInt64 = 0, configure: (inout TrainConfig) -> Void = { _ in }) throws -> (AdapterTrainer, [Example]) {
        let parts = tag.split(separator: "-").map(String.init)
        var c = TrainConfig()
        c.rank = 3
        c.alpha = 6
        c.dora = parts[1] == "dora"
        c.variant = parts[1] == "hira" ? .hira : .lora
        c.group = parts[2] == "module" ? .module : .layer
        c.seed = seed
        configure(&c)
        let t: AdapterTrainer
        let batch: [Example]
        if parts[0] == "bert" {
            c.targets = ["query", "value", "dense"]
            let model = try ModelRegistry.load(try bertDir.get()) as! BertModel
            t = try AdapterTrainer(model: model, labels: ["0", "1", "2"], config: c)
            batch = [
                Example(ids: [2, 5, 9, 13, 7, 3], typeIds: [0, 0, 0, 0, 0, 0], label: 0), Example(ids: [2, 8, 4, 3], typeIds: [0, 0, 0, 0], label: 2),
                Example(ids: [2, 11, 12, 3], typeIds: [0, 0, 1, 1], label: 1),
            ]
        } else {
            c.targets = ["q_proj", "v_proj", "down_proj"]
            let model = try ModelRegistry.load(try llamaDir.get()) as! LlamaModel
            t = try AdapterTrainer(causalLM: model, config: c)
            batch = [Example(ids: [1, 5, 9, 13, 7, 3], targets: [-100, -100, 9, 13, 7, 3]), Example(ids: [1, 8, 4, 3], targets: [-100, 8, 4, 3])]
        }
        var rng = SeededRNG(seed: 100 + seed)
        for p in t.params {
            p.value =
                p.name.hasSuffix("magnitude_vector")
                ? p.value.map { $0 * (1.2 + 0.3 * rng.uniformFloat()) }
                : (0..<p.value.count).map { _ in 0.3 * (2 * rng.uniformFloat() - 1) }
        }
        for m in t.modules { t.linears[m]!.sync() }
        t.task.syncHead()
        return (t, batch)
    }

    static let tags = [
        "bert-lora-layer", "bert-lora-module", "bert-dora-layer", "bert-hira-module", "bert-hira-layer",
        "llama-lora-layer", "llama-dora-module", "llama-hira-layer", "llama-lora-module",
    ]

    /// Random active subsets whose lowest active layer is above 0 (drawn per group, as CoTo groups them).
    static func subsets(_ t: AdapterTrainer, count: Int, seed: UInt64) -> [[Bool]] {
        var rng = SeededRNG(seed: seed)
        var out: [[Bool]] = []
        while out.count < count {
            var active = (0..<t.groupCount).map { _ in rng.uniformFloat() < 0.5 }
            for m in t.modules where LoraModule.layerIndex(of: m) == 0 { active[t.groupOf[m]!] = false }
            if active.contains(true) { out.append(active) }
        }
        return out
    }

    func grads(_ t: AdapterTrainer, _ run: () -> Double) -> (Double, [String: [Float]]) {
        for p in t.params { p.zeroGrad() }
        let loss = run()
        return (loss, Dictionary(uniqueKeysWithValues: t.params.map { ($0.name, $0.grad) }))
    }

    @Test(arguments: tags)
    func earlyStoppedBackwardEqualsTheFullOneAndInactiveAdaptersGetNothing(tag: String) throws {
        let (t, batch) = try Self.trainer(tag)
        #expect(t.task.layerCount == 4)
        var lowestSeen = Set<Int>()
        for active in Self.subsets(t, count: 4, seed: 5) {
            for m in t.modules { t.model.linears[m]!.active = active[t.groupOf[m]!] }
            let lowest = t.modules.filter { active[t.groupOf[$0]!] }.compactMap { LoraModule.layerIndex(of: $0) }.min()!
            lowestSeen.insert(lowest)
            let (l1, stopped) = grads(t) { t.lossAndGradients(batch, train: false) }
            var rng = SeededRNG(seed: 1)
            let (l2, full) = grads(t) { t.task.lossAndGradients(batch, train: false, scale: 1, lowest: 0, rng: &rng) }
            #expect(l1 == l2)
            var nonzeroAtLowest = false
            for p in t.params {
                let module = t.modules.first { p.name.hasPrefix($0 + ".lora_") }
                let isActive = module.map { active[t.groupOf[$0]!] } ?? true  // heads are always active
                if isActive {
                    let d = zip(stopped[p.name]!, full[p.name]!).map { abs($0 - $1) }.max() ?? 0
                    let scale = full[p.name]!.map(abs).max() ?? 0
                    #expect(d <= 1e-6 * max(scale, 1e-6), "\(tag) \(p.name): early-stopped vs full differ by \(d) (scale \(scale))")
                    if let m = module, LoraModule.layerIndex(of: m) == lowest, scale > 0 { nonzeroAtLowest = true }
                } else {
                    #expect(stopped[p.name]!.allSatisfy { $0 == 0 }, "\(tag) \(p.name): inactive adapter has a gradient")
                    #expect(full[p.name]!.allSatisfy { $0 == 0 }, "\(tag) \(p.name): inactive adapter has a gradient in the full pass")
                }
            }
            #expect(nonzeroAtLowest, "\(tag): no gradient reached the lowest active layer \(lowest)")
            // The comparison is sharp: stopping one layer too high loses the lowest layer's gradients.
            var rng2 = SeededRNG(seed: 1)
            let (_, tooHigh) = grads(t) { t.task.lossAndGradients(batch, train: false, scale: 1, lowest: lowest + 1, rng: &rng2) }
            let lost = t.params.contains { p in
                t.modules.contains { p.name.hasPrefix($0 + ".lora_") && LoraModule.layerIndex(of: $0) == lowest && active[t.groupOf[$0]!] }
                    && tooHigh[p.name]! != full[p.name]!
            }
            #expect(lost, "\(tag): a backward stopped at layer \(lowest + 1) is not told apart")
        }
        #expect(!lowestSeen.isEmpty && !lowestSeen.contains(0))
        t.model.setActive(true)
    }

    /// One optimizer step with CoTo: the inactive groups' values, AdamW moments and step counts do not move
    /// (no weight decay either); the active ones do.
    @Test(arguments: ["bert-lora-layer", "bert-dora-module", "llama-hira-layer"])
    func inactiveAdaptersAreNotUpdated(tag: String) throws {
        var checked = false
        for seed in UInt64(0)..<30 where !checked {
            // p = 0.3 at step 0: most draws leave some groups off.
            let (t, batch) = try Self.trainer(tag, seed: seed) {
                $0.initialP = 0.3
                $0.steps = 1
                $0.batchSize = 8
            }
            let before = Dictionary(uniqueKeysWithValues: t.params.map { ($0.name, $0.value) })
            try t.train(batch, eval: nil)
            let on = Set(t.log[0].activeGroups)
            guard on.count < t.groupCount else { continue }
            checked = true
            for m in t.modules {
                let params = t.params.filter { $0.name.hasPrefix(m + ".lora_") }
                #expect(!params.isEmpty)
                for p in params {
                    let (mom, v, step) = p.state
                    if on.contains(t.groupOf[m]!) {
                        #expect(step == 1 && p.value != before[p.name]!, "\(tag) \(p.name): active but not updated")
                    } else {
                        #expect(
                            step == 0 && p.value == before[p.name]! && mom.allSatisfy { $0 == 0 } && v.allSatisfy { $0 == 0 },
                            "\(tag) \(p.name): inactive but touched")
                    }
                }
            }
        }
        #expect(checked, "\(tag): no seed gave a partial draw")
    }
}
