import Testing
import Foundation
import TestSupport
@testable import Training
@testable import Model
import Checkpoint
import Numerics

/// coto-train's CoTo against the seed's callback written into a PEFT training loop (Fixtures/generate.py
/// `coto-trajectory`): the tiny BERT with bert-lora's adapter and head, 8 optimizer steps of 3 examples, AdamW
/// with weight decay, linear decay, clipping, dropout off, and the callback's on/off plan (layer 1 off for two
/// steps, layer 0 off for one, then both on) replayed here. Every parameter after every step must be PEFT's.
@Suite struct CoToTrajectoryTests {
    struct Fixture: Decodable {
        struct Row: Decodable {
            let ids: [Int]
            let label: Int
        }
        let steps, batch: Int
        let lr, weight_decay, max_grad_norm: Float
        let examples: [Row]
        let plan: [[Bool]]
        let p, loss, grad_norm: [Double]
    }

    static let fixture = Result {
        try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: URL(fileURLWithPath: TestPaths.fixture("train/coto-trajectory.json"))))
    }
    static let after = Result { try SafeTensorsFile(path: TestPaths.fixture("train/coto-trajectory.safetensors")) }

    /// tiny-bert with its dropouts at 0 (the fixture trains without dropout; coto-train reads them from config.json).
    static let noDropout = Result { () throws -> String in
        let dir = try makeTempDir("coto-nodrop")
        var cfg = try String(contentsOfFile: TestPaths.fixture("tiny-bert/config.json"), encoding: .utf8)
        for key in ["attention_probs_dropout_prob", "hidden_dropout_prob"] {
            let before = cfg
            cfg = cfg.replacingOccurrences(of: "\"\(key)\": 0.1", with: "\"\(key)\": 0.0")
            guard cfg != before else { throw TrainError("tiny-bert/config.json", "no \(key) of 0.1 to turn off") }
        }
        try cfg.write(toFile: dir + "/config.json", atomically: true, encoding: .utf8)
        for f in ["model.safetensors", "vocab.txt"] {
            try FileManager.default.copyItem(atPath: TestPaths.fixture("tiny-bert/" + f), toPath: dir + "/" + f)
        }
        return dir
    }

    static func trainer(workers: Int) throws -> (AdapterTrainer, [Example], Fixture) {
        let fx = try fixture.get()
        let model = try ModelRegistry.load(try noDropout.get()) as! BertModel
        let adapter = try Adapter.load(TestPaths.fixture("peft/bert-lora"))
        var c = TrainConfig()
        c.rank = adapter.config.r
        c.alpha = adapter.config.loraAlpha
        c.targets = ["query", "value"]
        c.coto = true
        c.batchSize = fx.batch
        c.epochs = 1
        c.shuffle = false
        c.lr = fx.lr
        c.weightDecay = fx.weight_decay
        c.maxGradNorm = fx.max_grad_norm
        c.schedule = .linear
        c.workers = workers
        let t = try AdapterTrainer(model: model, labels: ["0", "1", "2"], config: c)
        try t.load(adapter)
        let data = fx.examples.map { Example(ids: $0.ids, typeIds: [Int](repeating: 0, count: $0.ids.count), label: $0.label) }
        return (t, data, fx)
    }

    /// PEFT's name of one of our parameters (`encoder.layer.0.attention.self.query.lora_A` ->
    /// `bert.encoder.layer.0.attention.self.query.lora_A.weight`; the head keeps its name).
    static func peftName(_ ours: String) -> String { ours.hasPrefix("classifier.") ? ours : "bert." + ours + ".weight" }

    @Test(arguments: [1, 2])
    func everyStepMatchesPEFTWithTheSeedCallback(workers: Int) throws {
        let (t, data, fx) = try Self.trainer(workers: workers)
        let after = try Self.after.get()
        #expect(t.groupCount == 2 && fx.plan.count == fx.steps && data.count == fx.steps * fx.batch)
        t.activityPlan = fx.plan
        let initial = Dictionary(uniqueKeysWithValues: t.params.map { ($0.name, $0.value) })
        var compared = 0
        var untouched = 0
        var failures: [String] = []
        try t.train(data, eval: nil) { event in
            guard case .step(let entry, _) = event else { return }
            let k = entry.step
            for p in t.params {
                let want: [Float]
                do { want = try after.tensor("step\(k).\(Self.peftName(p.name))").data } catch {
                    failures.append("step \(k) \(p.name): \(error)")
                    continue
                }
                let e = relErr(p.value, want)
                if e > 1e-4 { failures.append("step \(k) \(p.name): relative error \(e)") }
                compared += 1
                // A layer that has been off since the start is exactly where it began: no update, no weight decay.
                let layer = LoraModule.layerIndex(of: p.name)
                if let layer, fx.plan[0..<k].allSatisfy({ !$0[layer] }) {
                    if p.value != initial[p.name] { failures.append("step \(k) \(p.name): changed while off") }
                    untouched += 1
                }
            }
        }
        #expect(failures.count == 0, "\(failures.prefix(5))")
        #expect(compared == fx.steps * t.params.count)
        #expect(untouched == 8)  // layer 1's query and value, A and B, after steps 1 and 2
        for (k, entry) in t.log.enumerated() {
            #expect(abs(entry.loss - fx.loss[k]) <= 1e-5 * max(1, abs(fx.loss[k])), "step \(k + 1) loss \(entry.loss) vs \(fx.loss[k])")
            #expect(abs(entry.p - fx.p[k]) < 1e-12, "step \(k + 1) p")
            #expect(entry.activeGroups == (0..<2).filter { fx.plan[k][$0] }, "step \(k + 1) active groups")
        }
        // The fixture exercises both sides of clipping (it asserts that when it is generated).
        #expect(fx.grad_norm.contains { $0 > Double(fx.max_grad_norm) } && fx.grad_norm.contains { $0 < Double(fx.max_grad_norm) })
    }

    @Test func aPlanThatDoesNotFitTheRunIsRefused() throws {
        let (t, data, fx) = try Self.trainer(workers: 1)
        t.activityPlan = Array(fx.plan.prefix(fx.steps - 1))
        #expect(throws: TrainError("activity plan", "has 7 steps for a run of 8")) { try t.train(data, eval: nil) }
        t.activityPlan = fx.plan.map { $0 + [true] }
        #expect(throws: TrainError("activity plan", "step 1 has 3 flags for 2 groups")) { try t.train(data, eval: nil) }
        t.activityPlan = fx.plan.enumerated().map { $0.offset == 4 ? [false, false] : $0.element }
        #expect(throws: TrainError("activity plan", "step 5 switches every group off")) { try t.train(data, eval: nil) }
        #expect(t.step == 0)
    }
}
