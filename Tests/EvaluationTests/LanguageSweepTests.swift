import Testing
import Foundation
@testable import Evaluation
import Model
import Checkpoint
import Numerics
import TestSupport

/// Sweeps on a decoder: perplexity and multiple-choice points equal coto-eval's own evaluation of the same
/// adapter, and LLaMA's prefix cache gives the full pass's numbers while reusing lower layers.
@Suite(.serialized) struct LanguageSweepTests {
    /// tiny LLaMA (64-token vocabulary, 2 layers) with a 60-word tokenizer, in `dir`.
    static func model(in dir: String) throws -> String {
        let m = dir + "/llama"
        try FileManager.default.createDirectory(atPath: m, withIntermediateDirectories: true)
        for f in ["config.json", "model.safetensors"] { try FileManager.default.copyItem(atPath: TestPaths.fixture("tiny-llama/" + f), toPath: m + "/" + f) }
        try (["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + (0..<56).map { "w\($0)" }).joined(separator: "\n").write(
            toFile: m + "/vocab.txt", atomically: true, encoding: .utf8)
        return m
    }

    static func words(_ rng: inout SeededRNG, _ n: Int) -> String { (0..<n).map { _ in "w\(rng.next() % 56)" }.joined(separator: " ") }

    /// Texts and prompt/completion pairs of several lengths, and multiple-choice questions.
    static func data(in dir: String) throws -> (ppl: String, mc: String) {
        var rng = SeededRNG(seed: 3)
        var ppl: [String] = []
        for i in 0..<9 {
            if i % 3 == 2 {
                ppl.append("{\"prompt\": \"\(words(&rng, 2 + i))\", \"completion\": \" \(words(&rng, 1 + i % 4))\"}")
            } else {
                ppl.append("{\"text\": \"\(words(&rng, 2 + 3 * i))\"}")
            }
        }
        var mc: [String] = []
        for i in 0..<7 {
            let choices = (0..<(2 + i % 3)).map { _ in "\" \(words(&rng, 1 + Int(rng.next() % 3)))\"" }
            mc.append("{\"context\": \"\(words(&rng, 3 + i))\", \"choices\": [\(choices.joined(separator: ", "))], \"label\": \(i % choices.count)}")
        }
        let (p, m) = (dir + "/lm-test.jsonl", dir + "/mc-test.jsonl")
        try (ppl.joined(separator: "\n") + "\n").write(toFile: p, atomically: true, encoding: .utf8)
        try (mc.joined(separator: "\n") + "\n").write(toFile: m, atomically: true, encoding: .utf8)
        return (p, m)
    }

    /// PEFT's tiny-LLaMA LoRA adapter and a second one of the same shapes.
    static func pair() throws -> (Adapter, Adapter) {
        let a = try Adapter.load(TestPaths.fixture("peft/llama-lora"))
        var b = a
        var rng = SeededRNG(seed: 5)
        for i in b.modules.indices {
            b.modules[i].b.tensor.data = b.modules[i].b.tensor.data.map { -2 * $0 + (rng.uniformFloat() - 0.5) * 0.5 }
        }
        b.source = a.source + "#b"
        return (a, b)
    }

    static func evaluator(_ dir: String) throws -> SweepEvaluator {
        let ev = SweepEvaluator(model: try ModelRegistry.load(dir), tokenizer: try TokenizerLoader.load(modelDir: dir))
        ev.batchSize = 4  // several batches of mixed lengths
        ev.maxLength = 24
        return ev
    }

    @Test func prefixCacheGivesTheFullPassAndReusesLowerLayers() throws {
        let t = TempDir()
        let dir = try Self.model(in: t.path)
        let model = try #require(try ModelRegistry.load(dir) as? LlamaModel)
        let (a, _) = try Self.pair()
        try model.attach(a)
        var rng = SeededRNG(seed: 9)
        let batch = Batch.padded((0..<3).map { i in (0..<(5 + 4 * i)).map { _ in 4 + Int(rng.next() % 56) } }, pad: 0)
        let cache = PrefixCache()
        // Every on/off pattern of the two layers, twice over, in an order that shares and breaks prefixes.
        let layerOf = { (key: String) in key.contains("layers.0.") ? 0 : 1 }
        for pattern in [[true, true], [true, false], [false, false], [false, true], [true, true], [true, false], [true, true]] {
            model.setActive(false)
            model.setActive(true) { pattern[layerOf($0)] }
            let cached = try model.forward(batch, outputLayers: true, head: .languageModel, cache: cache)
            let full = try model.forward(batch, outputLayers: true, head: .languageModel)
            #expect(cached.logits.count == full.logits.count && cached.layerStates.count == full.layerStates.count)
            let diff = zip(cached.logits, full.logits).map { abs($0 - $1) }.max() ?? .infinity
            #expect(diff <= 1e-6, "pattern \(pattern): logits differ by \(diff)")
            for (x, y) in zip(cached.layerStates, full.layerStates) { #expect(zip(x, y).allSatisfy { abs($0 - $1) <= 1e-6 }) }
        }
        // A pass reuses layer 0 when layer 0 is switched as in the pass before: [T,F] after [T,T], [F,T] after
        // [F,F], [T,F] after [T,T], [T,T] after [T,F]; never layer 1 (the last layer is always computed anew).
        #expect(cache.reused == 0 + 1 + 0 + 1 + 0 + 1 + 1 && cache.computed == 7 * 2 - cache.reused)
        // Another batch starts over.
        let other = Batch.padded([[5, 6, 7]], pad: 0)
        _ = try model.forward(other, head: .languageModel, cache: cache)
        #expect(cache.reused == 4)
    }

    @Test func perplexitySweepPointsEqualTheEvaluation() throws {
        let t = TempDir()
        let dir = try Self.model(in: t.path)
        let (ppl, _) = try Self.data(in: t.path)
        let ev = try Self.evaluator(dir)
        let (a, b) = try Self.pair()
        let data = try ev.prepare(ppl, task: .perplexity)
        #expect(data.task == .perplexity && data.lm!.batches.count > 1)
        let r = try Sweeps.interpolate(ev, a: a, b: b, data: data, grid: [0, 0.5, 1], name: "lora")
        #expect(r.settings.task == "perplexity" && r.points?.count == 3)
        var o = EvalOptions()
        o.maxLength = 24
        for (lambda, adapter) in [(0.0, a), (1.0, b)] {
            try ev.load(adapter)
            let direct = try Evaluator.perplexity(model: ev.model, tokenizer: ev.tokenizer, data: ppl, options: o)
            let p = try #require(r.points?.first { $0.lambda == lambda })
            let want = try #require(direct.json["loss"]?.doubleValue)
            #expect(abs(p.loss! - want) <= 1e-6 * abs(want), "λ=\(lambda): \(p.loss!) vs \(want)")
            #expect(abs(p.perplexity! - exp(want)) <= 1e-5 * exp(want))
            #expect(p.tokens == direct.json["tokens"]?.intValue && p.examples == 9)
            #expect(p.accuracy! >= 0 && p.accuracy! <= 1)
        }
        // The two ends differ (the test would pass on a constant otherwise).
        #expect(abs(r.points![0].loss! - r.points![2].loss!) > 1e-3)
        // Barrier on perplexity: the rise above the line between the ends.
        let m = Sweeps.metric(r)
        #expect(m.name == "perplexity" && !m.higherIsBetter)
        let ys = r.points!.map { $0.perplexity! }
        #expect(abs(Sweeps.barrier(r)! - max(0, ys[1] - (ys[0] + ys[2]) / 2)) < 1e-12)
    }

    @Test func multipleChoiceSweepPointsEqualTheEvaluation() throws {
        let t = TempDir()
        let dir = try Self.model(in: t.path)
        let (_, mc) = try Self.data(in: t.path)
        let ev = try Self.evaluator(dir)
        let (a, b) = try Self.pair()
        let data = try ev.prepare(mc, task: .multipleChoice)
        let r = try Sweeps.prune(
            ev, adapter: b, data: data,
            points: Sweeps.prunePoints(sparsities: [0, 0.5], scope: .tensor, layers: ["all"], modules: [], ranks: [], rankMethod: .svd), name: "lora")
        var o = EvalOptions()
        o.maxLength = 24
        for (i, adapter) in [(0, b), (2, nil as Adapter?)] {
            try ev.load(adapter)
            let direct = try Evaluator.multipleChoice(model: ev.model, tokenizer: ev.tokenizer, data: mc, options: o)
            let p = r.points![i]
            #expect(p.accuracy == direct.json["acc"]?.doubleValue && p.accNorm == direct.json["acc_norm"]?.doubleValue, "point \(i)")
            #expect(p.examples == 7)
        }
        #expect(Sweeps.metric(r).name == "acc")
        _ = a
    }

    @Test func shapleyOnADecoderScoresEveryCoalitionAndReusesLayers() throws {
        let t = TempDir()
        let dir = try Self.model(in: t.path)
        let (ppl, _) = try Self.data(in: t.path)
        let ev = try Self.evaluator(dir)
        let (a, _) = try Self.pair()
        let data = try ev.prepare(ppl, task: .perplexity)
        let plan = ShapleyPlan(players: 2, samples: 6, grid: 3, seed: 1)
        let r = try Sweeps.shapley(ev, adapter: a, data: data, group: "layer", plan: plan, name: "lora")
        #expect(r.values?.count == plan.coalitions.count && (r.layersReused ?? 0) > 0)
        try ev.load(a)
        let all = try ev.score(data, labels: [])
        #expect(abs(r.values!["11"]!.loss! - all.loss) <= 1e-9 * abs(all.loss))
        try ev.load(nil)
        let none = try ev.score(data, labels: [])
        #expect(abs(r.values!["00"]!.loss! - none.loss) <= 1e-9 * abs(none.loss))
        // v(S) of a perplexity sweep is the log-likelihood per token.
        let est = plan.estimate(scored: r.values!, value: Sweeps.metric(r).shapleyValue)
        #expect(est.full == -r.values!["11"]!.loss! && est.empty == -r.values!["00"]!.loss!)
    }

    @Test func languageTasksNeedADecoder() throws {
        let t = TempDir()
        let (ppl, _) = try Self.data(in: t.path)
        let ev = try EFx.evaluator()
        #expect(throws: EvalError.self) { try ev.prepare(ppl, task: .perplexity) }
    }
}
