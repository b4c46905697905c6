import Testing
import Foundation
import TestSupport
@testable import Training
@testable import Model
import Checkpoint
import Numerics

enum TFx {
    static func path(_ p: String) -> String { TestPaths.fixture(p) }
    static let grads = try! SafeTensorsFile(path: path("train/gradients.safetensors"))

    /// The tiny LLaMA with PEFT's LoRA fixture on q, v and down projections, and a batch with ignored targets.
    static func llamaTrainer() throws -> (AdapterTrainer, [Example]) {
        let model = try ModelRegistry.load(path("tiny-llama")) as! LlamaModel
        let adapter = try Adapter.load(path("peft/llama-lora"))
        var c = TrainConfig()
        c.rank = adapter.config.r
        c.alpha = adapter.config.loraAlpha
        c.targets = ["q_proj", "v_proj", "down_proj"]
        let t = try AdapterTrainer(causalLM: model, config: c)
        try t.load(adapter)
        return (t, [Example(ids: [1, 5, 9, 13, 7, 3], targets: [-100, -100, 9, 13, 7, 3]), Example(ids: [1, 8, 4, 3], targets: [-100, 8, 4, 3])])
    }

    /// The tiny BERT with the PEFT fixture adapter `tag` (its rank, alpha, rsLoRA and DoRA) on query and
    /// value, its parameters loaded from the fixture, and a batch of two.
    static func bertTrainer(_ tag: String, variant: AdaptedLinear.Variant = .lora) throws -> (AdapterTrainer, [Example]) {
        let adapter = try Adapter.load(path("peft/" + tag))
        let model = try ModelRegistry.load(path("tiny-bert")) as! BertModel
        var c = TrainConfig()
        c.rank = adapter.config.r
        c.alpha = adapter.config.loraAlpha
        c.rslora = adapter.config.useRslora
        c.dora = adapter.config.useDora
        c.variant = variant
        c.targets = ["query", "value"]
        let t = try AdapterTrainer(model: model, labels: ["0", "1", "2"], config: c)
        try t.load(adapter)
        return (t, [Example(ids: [2, 5, 9, 13, 7, 3], typeIds: [0, 0, 0, 0, 0, 0], label: 0), Example(ids: [2, 8, 4, 3], typeIds: [0, 0, 0, 0], label: 2)])
    }
}

@Suite struct GradientTests {
    /// A trainer set up like the PEFT fixture adapter, its parameters loaded from it.
    func trainer(_ tag: String, variant: AdaptedLinear.Variant = .lora) throws -> (AdapterTrainer, [Example]) {
        try TFx.bertTrainer(tag == "bert-hira" ? "bert-lora" : tag, variant: variant)
    }

    @Test(arguments: ["bert-lora", "bert-rslora", "bert-dora", "bert-hira"])
    func adapterAndHeadGradientsMatchPyTorch(tag: String) throws {
        let (t, batch) = try trainer(tag, variant: tag == "bert-hira" ? .hira : .lora)
        let loss = t.lossAndGradients(batch, train: false)
        #expect(abs(loss - Double(try TFx.grads.tensor("\(tag).loss").data[0])) < 1e-5)
        var compared = 0
        for name in TFx.grads.names where name.hasPrefix(tag + ".grad.") {
            let key = String(name.dropFirst((tag + ".grad.").count))
            var ours: [Float]?
            if key.hasPrefix("classifier.") {
                ours = t.gradient(key)
            } else {
                let module = String(
                    key.split(separator: ".").dropLast(key.hasSuffix("lora_magnitude_vector.weight") ? 2 : 2).joined(separator: ".").dropFirst(5))
                let part = key.contains("lora_A") ? ".lora_A" : key.contains("lora_B") ? ".lora_B" : ".lora_magnitude_vector"
                ours = t.gradient(module + part)
            }
            let want = try TFx.grads.tensor(name).data
            #expect(ours != nil, "\(key)")
            if let ours {
                #expect(relErr(ours, want) <= 1e-4, "\(tag) \(key): relative error \(relErr(ours, want))")
                compared += 1
            }
        }
        #expect(compared >= 8)
    }
}

@Suite struct SchedulerTests {
    @Test func pSequenceFollowsTheSeedCallback() {
        let s = CoToScheduler(totalSteps: 10)
        #expect(s.end == 8)  // ceil(10 * 0.75)
        let ps = (0..<10).map { s.p(step: $0) }
        for k in 0..<8 { #expect(abs(ps[k] - (0.1 + 0.9 * Double(k) / 8)) < 1e-12) }
        #expect(ps[8] == 1 && ps[9] == 1)
        #expect(CoToScheduler(totalSteps: 10, enabled: false).p(step: 0) == 1)
    }

    @Test func drawsNeverLeaveEveryGroupOffAndPZeroPicksOne() {
        var rng = SeededRNG(seed: 5)
        let s = CoToScheduler(totalSteps: 100, initialP: 0.01)
        for k in 0..<50 { #expect(s.draw(step: k, groups: 6, rng: &rng).contains(true)) }
        let zero = CoToScheduler(totalSteps: 100, initialP: 0, finalP: 0)
        for k in 0..<20 { #expect(zero.draw(step: k, groups: 4, rng: &rng).filter { $0 }.count == 1) }
        // Statistically, the active fraction is p.
        let half = CoToScheduler(totalSteps: 100, initialP: 0.5, finalP: 0.5)
        var on = 0
        for k in 0..<2000 { on += half.draw(step: k, groups: 10, rng: &rng).filter { $0 }.count }
        #expect(abs(Double(on) / 20000 - 0.5) < 0.03)
    }

    @Test func inactiveParametersAndTheirAdamStateAreUntouched() throws {
        let model = try ModelRegistry.load(TFx.path("tiny-bert")) as! BertModel
        var c = TrainConfig()
        c.rank = 2
        c.coto = true
        c.initialP = 0
        c.finalP = 0
        c.stage1Ratio = 1
        c.steps = 6
        c.batchSize = 2
        c.lr = 1e-2
        let t = try AdapterTrainer(model: model, labels: ["0", "1", "2"], config: c)
        let before = t.modules.map { (t.linears[$0]!.pA!.value, t.linears[$0]!.pA!.state.2) }
        let data = [Example(ids: [2, 5, 9, 3], typeIds: [0, 0, 0, 0], label: 0), Example(ids: [2, 8, 3], typeIds: [0, 0, 0], label: 1)]
        try t.train(data, eval: nil)
        // p = 0: exactly one group per step; groups never drawn keep their values and step count 0.
        for (i, m) in t.modules.enumerated() {
            let p = t.linears[m]!.pA!
            let drawn = t.log.contains { $0.activeGroups.contains(t.groupOf[m]!) }
            if !drawn {
                #expect(p.value == before[i].0 && p.state.2 == 0)
            } else {
                #expect(p.state.2 == t.log.filter { $0.activeGroups.contains(t.groupOf[m]!) }.count)
            }
        }
        #expect(t.log.allSatisfy { $0.activeGroups.count == 1 })
    }
}

@Suite struct OptimizerTests {
    @Test func adamWMatchesTorchsFormula() {
        // Two steps by hand (torch.optim.AdamW, lr 0.1, wd 0.01).
        let p = Param(name: "w", value: [1, -2])
        let opt = AdamW(weightDecay: 0.01)
        p.grad = [0.5, -1]
        opt.update(p, lr: 0.1)
        // step 1: m = 0.1 g, v = 0.001 g², m̂ = g, v̂ = g²: p = p(1 - 0.001) - 0.1 · g / (|g| + 1e-8)
        #expect(abs(p.value[0] - (0.999 - 0.1 * 0.5 / (0.5 + 1e-8))) < 1e-6)
        #expect(abs(p.value[1] - (-1.998 + 0.1 * 1 / (1 + 1e-8))) < 1e-6)
        #expect(p.state.2 == 1)
    }

    @Test func schedulesAndClipping() {
        #expect(Schedule.linear.factor(step: 0, total: 10, warmup: 2) == 0)
        #expect(Schedule.linear.factor(step: 1, total: 10, warmup: 2) == 0.5)
        #expect(Schedule.linear.factor(step: 6, total: 10, warmup: 2) == 0.5)
        #expect(abs(Schedule.cosine.factor(step: 6, total: 10, warmup: 2) - 0.5) < 1e-6)
        #expect(Schedule.constant.factor(step: 9, total: 10, warmup: 2) == 1)
        let p = Param(name: "g", value: [0, 0])
        p.grad = [3, 4]
        let n = clipGradNorm([p], maxNorm: 1)
        #expect(n == 5 && abs(p.grad[0] - 0.6) < 1e-5 && abs(p.grad[1] - 0.8) < 1e-5)
    }
}

@Suite struct ResumeTests {
    struct Crash: Error {}

    func make(_ seed: UInt64, workers: Int = 1) throws -> AdapterTrainer {
        let model = try ModelRegistry.load(TFx.path("tiny-bert")) as! BertModel
        var c = TrainConfig()
        c.rank = 2
        c.steps = 12
        c.batchSize = 2
        c.lr = 5e-3
        c.seed = seed
        c.saveEvery = 5
        c.loraDropout = 0.1
        c.warmupRatio = 0.2
        c.workers = workers
        return try AdapterTrainer(model: model, labels: ["0", "1", "2"], config: c)
    }

    let data = (0..<7).map { i in Example(ids: [2, 5 + i, 9, 13 - i, 3], typeIds: [0, 0, 0, 0, 0], label: i % 3) }

    @Test(arguments: [1, 2]) func resumedRunEqualsUninterruptedRun(workers: Int) throws {
        let make = { (seed: UInt64) in try self.make(seed, workers: workers) }
        let full = try make(3)
        try full.train(data, eval: nil)
        let dir = NSTemporaryDirectory() + "coto-ckpt-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let crashed = try make(3)
        #expect(throws: Crash.self) {
            try crashed.train(
                data, eval: nil,
                checkpoint: { t in
                    try t.saveCheckpoint(to: dir, baseModel: "tiny")
                    throw Crash()
                })
        }
        #expect(crashed.step == 5)
        let resumed = try make(3)
        try resumed.loadCheckpoint(from: dir)
        #expect(resumed.step == 5)
        try resumed.train(data, eval: nil)
        #expect(resumed.step == 12)
        let a = full.adapter(baseModel: "x")
        let b = resumed.adapter(baseModel: "x")
        #expect(a.modules == b.modules)
        #expect(a.otherTensors.map(\.1) == b.otherTensors.map(\.1))
        #expect(full.log.map(\.activeGroups) == resumed.log.map(\.activeGroups))
        #expect(full.log.map(\.loss) == resumed.log.map(\.loss))
    }

    /// The time breakdown adds up: the workers' phases over the parallel part, the merge, the optimizer and
    /// the rest make the steps' wall time; the adapters' share is inside forward + backward; one worker never
    /// idles or merges. Then it survives metrics.json.
    @Test(arguments: [1, 2]) func timeBreakdownAddsUp(workers: Int) throws {
        let t = try make(4, workers: workers)
        try t.train(data, eval: nil)
        let b = t.time
        #expect(b.workers == workers)
        #expect(abs(b.steps - t.log.map(\.seconds).reduce(0, +)) <= 1e-9 * max(1, b.steps))
        #expect(b.forward > 0 && b.backward > 0 && b.adapter > 0 && b.optimizer > 0 && b.other >= 0)
        #expect(b.adapter < b.forward + b.backward)
        let parts = (b.forward + b.backward + b.idle) / Double(workers) + b.merge + b.optimizer + b.other
        #expect(abs(parts - b.steps) <= 1e-6 + 1e-3 * b.steps, "parts \(parts) vs steps \(b.steps)")
        if workers == 1 { #expect(b.idle == 0 && b.merge == 0) } else { #expect(b.merge > 0) }
        var m = RunMetrics(
            task: "classification", steps: t.step, coto: false, variant: "lora", labels: ["0", "1", "2"], finalLoss: 1, data: "d", evalData: nil,
            seed: 4, rank: 2, targets: "query,value", threads: workers, trainSeconds: b.steps, tokensPerSecond: 1)
        m.time = b
        let text = try RunRecords.metricsJSON(m)
        #expect(text.contains("\"time\"") && text.contains("\"adapter\""))
        #expect(try JSONDecoder().decode(RunMetrics.self, from: Data(text.utf8)).time == b)
    }

    @Test(arguments: [1, 2]) func sameSeedSameBytes(workers: Int) throws {
        let make = { (seed: UInt64) in try self.make(seed, workers: workers) }
        let x = try make(9)
        let y = try make(9)
        try x.train(data, eval: nil)
        try y.train(data, eval: nil)
        #expect(x.adapter(baseModel: "m").modules == y.adapter(baseModel: "m").modules)
        let z = try make(10)
        try z.train(data, eval: nil)
        #expect(x.adapter(baseModel: "m").modules != z.adapter(baseModel: "m").modules)
    }
}

@Suite struct RealTrainingTests {
    @Test func miniLMLearnsTheWordNetNounTaskWithCoTo() throws {
        let dir = TestPaths.minilm
        #expect(FileManager.default.fileExists(atPath: dir), "run make setup")
        let model = try ModelRegistry.load(dir) as! BertModel
        let tok = try TokenizerLoader.load(modelDir: dir)
        func read(_ p: String) throws -> [(String, String)] {
            try String(contentsOfFile: TFx.path(p), encoding: .utf8).split(separator: "\n").map {
                let j = try JSON.parse(string: String($0))
                return (j["text"]!.stringValue!, j["label"]!.stringValue!)
            }
        }
        let train = Array(try read("wordnet/noun8-train.jsonl").prefix(400))
        let test = try read("wordnet/noun8-test.jsonl")
        let labels = Array(Set(train.map(\.1))).sorted()
        func ex(_ rows: [(String, String)]) -> [Example] {
            rows.map {
                let e = tok.encode($0.0, pair: nil, addSpecialTokens: true, maxLength: 32)
                return Example(ids: e.ids, typeIds: e.typeIds, label: labels.firstIndex(of: $0.1)!)
            }
        }
        var c = TrainConfig()
        c.steps = 30
        c.batchSize = 16
        c.lr = 3e-3
        c.rank = 8
        c.alpha = 16
        c.seed = 1
        let t = try AdapterTrainer(model: model, labels: labels, config: c)
        try t.train(ex(train), eval: nil)
        let (acc, _) = try t.evaluate(ex(test))
        // Chance is 1/8; the CoTo schedule had p rise from 0.1 over the first 23 steps.
        #expect(acc > 0.35, "dev accuracy \(acc)")
        #expect(t.log.first!.p == 0.1 && t.log.last!.p == 1)
    }
}

@Suite struct LlamaGradientTests {
    @Test func causalLMAdapterGradientsMatchPyTorch() throws {
        let (t, batch) = try TFx.llamaTrainer()
        let loss = t.lossAndGradients(batch, train: false)
        #expect(abs(loss - Double(try TFx.grads.tensor("llama-lora.loss").data[0])) < 1e-5)
        var compared = 0
        for name in TFx.grads.names where name.hasPrefix("llama-lora.grad.") {
            let key = String(name.dropFirst("llama-lora.grad.model.".count))
            let module = key.replacingOccurrences(of: ".lora_A.weight", with: ".lora_A").replacingOccurrences(of: ".lora_B.weight", with: ".lora_B")
            let ours = try #require(t.gradient(module), "\(module)")
            let want = try TFx.grads.tensor(name).data
            #expect(relErr(ours, want) <= 1e-4, "\(module): \(relErr(ours, want))")
            compared += 1
        }
        #expect(compared == 12)
    }

    @Test func causalLMTrainingLowersTheLossWithCoTo() throws {
        let model = try ModelRegistry.load(TFx.path("tiny-llama")) as! LlamaModel
        var c = TrainConfig()
        c.rank = 8
        c.targets = ["all-linear"]
        c.steps = 60
        c.batchSize = 2
        c.lr = 3e-2
        c.weightDecay = 0
        let t = try AdapterTrainer(causalLM: model, config: c)
        let data = (0..<4).map { i in Example(ids: [1, 10 + i, 20 + i, 30 + i, 40 + i], targets: [-100, 10 + i, 20 + i, 30 + i, 40 + i]) }
        let (_, before) = try t.evaluate(data)
        try t.train(data, eval: nil)
        let (_, after) = try t.evaluate(data)
        // The tiny model's frozen, tied head has 0.02-scale embeddings, so its logits can move little:
        // ln 64 = 4.16 at the start; adapters on every linear layer still take a clear bite out of it.
        #expect(after < before - 0.1, "loss \(before) -> \(after)")
        let a = t.adapter(baseModel: "tiny-llama")
        #expect(a.config.taskType == "CAUSAL_LM" && a.modules.first!.name.hasPrefix("model.layers."))
    }
}

@Suite struct DropoutTests {
    /// The mask holds only 0 and 1/(1 − p); the kept fraction is 1 − p within 5 binomial standard deviations
    /// over 200,001 entries (an odd count: the last draw fills one entry); p = 0 keeps all, the same seed gives
    /// the same mask, and both 24-bit halves of a draw are used (neighbours are not copies of each other).
    @Test(arguments: [Float(0.1), 0.5, 0.9])
    func maskKeepsOneMinusPScaled(p: Float) {
        let n = 200_001
        var rng = SeededRNG(seed: 3)
        let m = Dropout.mask(n, p: p, rng: &rng)
        #expect(m.count == n)
        let value = 1 / (1 - p)
        #expect(m.allSatisfy { $0 == 0 || $0 == value })
        let kept = Double(m.filter { $0 != 0 }.count)
        let sd = (Double(n) * Double(p) * Double(1 - p)).squareRoot()
        #expect(abs(kept - Double(n) * Double(1 - p)) <= 5 * sd, "kept \(kept) of \(n) at p = \(p)")
        var again = SeededRNG(seed: 3)
        #expect(Dropout.mask(n, p: p, rng: &again) == m)
        let pairsEqual = stride(from: 0, to: n - 1, by: 2).filter { m[$0] == m[$0 + 1] }.count
        let expected = Double(n / 2) * Double(p * p + (1 - p) * (1 - p))
        #expect(abs(Double(pairsEqual) - expected) <= 5 * (Double(n / 2) * 0.25).squareRoot(), "pairs equal \(pairsEqual)")
        var r0 = SeededRNG(seed: 4)
        #expect(Dropout.mask(1000, p: 0, rng: &r0).allSatisfy { $0 == 1 })
    }
}
