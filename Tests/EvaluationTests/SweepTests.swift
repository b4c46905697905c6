import Testing
import Foundation
import CZlib
@testable import Evaluation
import Model
import Operators
import Checkpoint
import Numerics
import TestSupport

enum EFx {
    static func path(_ p: String) -> String { TestPaths.fixture(p) }

    /// A temporary directory removed by the caller.
    static func tempDir() throws -> String { try makeTempDir("coto-sweeps") }

    /// A 3-label classification file over tiny BERT's vocabulary (letters a–z).
    static func data(in dir: String, count: Int = 24) throws -> String {
        var rng = SeededRNG(seed: 7)
        var text = ""
        let letters = "abcdefghijklmnopqrstuvwxyz".map(String.init)
        for i in 0..<count {
            let n = 1 + Int(rng.next() % 6)
            let words = (0..<n).map { _ in letters[Int(rng.next() % 26)] }.joined(separator: " ")
            text += "{\"text\": \"\(words)\", \"label\": \"\(["x", "y", "z"][i % 3])\"}\n"
        }
        let p = dir + "/tiny-test.jsonl"
        try text.write(toFile: p, atomically: true, encoding: .utf8)
        return p
    }

    static func evaluator() throws -> SweepEvaluator {
        let dir = path("tiny-bert")
        let ev = SweepEvaluator(model: try ModelRegistry.load(dir), tokenizer: try TokenizerLoader.load(modelDir: dir))
        ev.batchSize = 5  // several batches, the last one partial
        return ev
    }

    static func points(_ r: SweepResult) -> [SweepPoint] { r.points ?? [] }

    /// PEFT's tiny-BERT LoRA adapter (with a classifier head) and a second one of the same shapes with
    /// other factors and another head, as two seeds of one task would be.
    static func pair() throws -> (Adapter, Adapter) {
        let a = try Adapter.load(path("peft/bert-lora"))
        var b = a
        var rng = SeededRNG(seed: 21)
        for i in b.modules.indices {
            b.modules[i].a.tensor.data = b.modules[i].a.tensor.data.map { -$0 + (rng.uniformFloat() - 0.5) * 0.2 }
            b.modules[i].b.tensor.data = b.modules[i].b.tensor.data.map { $0 * 1.5 + (rng.uniformFloat() - 0.5) * 0.2 }
        }
        for i in b.otherTensors.indices { b.otherTensors[i].1.tensor.data = b.otherTensors[i].1.tensor.data.map { $0 + (rng.uniformFloat() - 0.5) } }
        b.source = a.source + "#b"
        return (a, b)
    }
    static func acc(_ p: SweepPoint) -> Double { p.accuracy ?? .nan }
    static func loss(_ p: SweepPoint) -> Double { p.loss ?? .nan }
}

@Suite struct ShapleyEstimatorTests {
    @Test func additiveGameIsExact() {
        let c = [0.3, -0.1, 0.05, 0.2, 0.0]
        let plan = ShapleyPlan(players: c.count, samples: 20, grid: 5, seed: 3)
        let est = plan.estimate { s in zip(s, c).reduce(0) { $0 + ($1.0 ? $1.1 : 0) } }
        for i in c.indices {
            #expect(abs(est.values[i] - c[i]) < 1e-12)
            #expect(est.standardErrors[i] < 1e-12)
        }
        #expect(abs(est.sum - (est.full - est.empty)) < 1e-12)
    }

    @Test func efficiencyWithinTheEstimatorsError() {
        // A game with interactions: v(S) = (Σ w_i)^2 over S, plus a pairwise bonus.
        let w = [0.5, 0.2, 0.9, 0.1, 0.4, 0.3]
        func v(_ s: [Bool]) -> Double {
            let t = zip(s, w).reduce(0) { $0 + ($1.0 ? $1.1 : 0) }
            return t * t + (s[0] && s[2] ? 0.3 : 0)
        }
        let plan = ShapleyPlan(players: w.count, samples: 200, grid: 10, seed: 11)
        let est = plan.estimate(v)
        let se = est.standardErrors.reduce(0) { $0 + $1 * $1 }.squareRoot()
        #expect(se > 0)
        #expect(abs(est.sum - (est.full - est.empty)) <= 4 * se + 1e-9)
        // The exact Shapley values of this game: w_i·W (the square's) + 0.15 for players 0 and 2.
        let W = w.reduce(0, +)
        for i in w.indices {
            let exact = w[i] * W + (i == 0 || i == 2 ? 0.15 : 0)
            #expect(abs(est.values[i] - exact) <= 5 * est.standardErrors[i] + 1e-9, "player \(i): \(est.values[i]) vs \(exact)")
        }
    }

    @Test func coalitionsAreDistinctSortedAndDeterministic() {
        let plan = ShapleyPlan(players: 4, samples: 12, grid: 3, seed: 5)
        let c = plan.coalitions
        #expect(Set(c).count == c.count)
        #expect(c.first == [false, false, false, false] && c.last == [true, true, true, true])
        for (a, b) in zip(c, c.dropFirst()) { #expect(ShapleyPlan.key(a) < ShapleyPlan.key(b)) }
        #expect(ShapleyPlan(players: 4, samples: 12, grid: 3, seed: 5).subsets == plan.subsets)
        #expect(ShapleyPlan(players: 4, samples: 12, grid: 3, seed: 6).subsets != plan.subsets)
    }
}

@Suite struct SweepTests {
    @Test func interpolationEndPointsEqualSingleEvaluations() throws {
        let dir = try EFx.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let ev = try EFx.evaluator()
        let data = try ev.prepare(try EFx.data(in: dir))
        let (a, b) = try EFx.pair()
        let r = try Sweeps.interpolate(ev, a: a, b: b, data: data, grid: Sweeps.parseGrid("0:1:0.25")!, name: "t")
        let pts = EFx.points(r)
        #expect(pts.map { $0.lambda! } == [0, 0.25, 0.5, 0.75, 1])
        try ev.load(a)
        let sa = try ev.score(data, labels: data.dataLabels)
        try ev.load(b)
        let sb = try ev.score(data, labels: data.dataLabels)
        #expect(EFx.acc(pts[0]) == sa.accuracy && abs(EFx.loss(pts[0]) - sa.loss) < 1e-9)
        #expect(EFx.acc(pts[4]) == sb.accuracy && abs(EFx.loss(pts[4]) - sb.loss) < 1e-9)
        // The midpoint differs from both ends (the path is really walked).
        #expect(EFx.loss(pts[2]) != EFx.loss(pts[0]) && EFx.loss(pts[2]) != EFx.loss(pts[4]))
        // Same numbers as the stand-alone evaluator on the file.
        try ev.load(a)
        let direct = try Evaluator.classification(model: ev.model, tokenizer: ev.tokenizer, data: data.path, labels: nil, options: EvalOptions())
        #expect(abs(direct.json["loss"]!.doubleValue! - sa.loss) < 1e-6)
        #expect(abs(Sweeps.barrier([(0, 0.8), (0.5, 0.6), (1, 0.9)])! - 0.25) < 1e-12)
        #expect(Sweeps.barrier([(0, 0.8), (0.5, 0.9), (1, 0.8)])! == 0)
        #expect(Sweeps.parseGrid("0:1:0.1")!.count == 11 && Sweeps.parseGrid("0,0.5,1") == [0, 0.5, 1] && Sweeps.parseGrid("1:0:0.1") == nil)
    }

    /// HiRA inputs: every interior point of the path runs as HiRA (the merged adapter keeps the variant), so
    /// the midpoint equals evaluating the interpolated factors attached as HiRA, not as LoRA.
    @Test func interpolationOfHiRAAdaptersRunsEveryPointAsHiRA() throws {
        let dir = try EFx.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let ev = try EFx.evaluator()
        let data = try ev.prepare(try EFx.data(in: dir))
        var (a, b) = try EFx.pair()
        for i in a.modules.indices {
            a.modules[i].b.tensor = 30 * a.modules[i].b.tensor
            b.modules[i].b.tensor = 30 * b.modules[i].b.tensor
        }
        a.variant = .hira
        b.variant = .hira
        let r = try Sweeps.interpolate(ev, a: a, b: b, data: data, grid: [0, 0.5, 1], name: "t")
        let mid = EFx.points(r)[1]
        let merged = try Interpolate().merge([a, b], options: MergeOptions(weights: [0.5, 0.5]), progress: nil)
        #expect(merged.variant == .hira)
        try ev.load(merged)
        let asHiRA = try ev.score(data, labels: data.dataLabels)
        var lora = merged
        lora.variant = .lora
        try ev.load(lora)
        let asLoRA = try ev.score(data, labels: data.dataLabels)
        #expect(abs(EFx.loss(mid) - asHiRA.loss) < 1e-9)
        #expect(abs(asHiRA.loss - asLoRA.loss) > 1e-4, "the variant does not change the loss here: the test cannot tell them apart")
    }

    @Test func pruneAtSparsityZeroEqualsTheUnprunedAdapter() throws {
        let dir = try EFx.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let ev = try EFx.evaluator()
        let data = try ev.prepare(try EFx.data(in: dir))
        let a = try Adapter.load(EFx.path("peft/bert-lora"))
        let pts = Sweeps.prunePoints(sparsities: [0, 0.5, 0.9], scope: .tensor, layers: ["all", "low", "1"], modules: ["query"], ranks: [1], rankMethod: .svd)
        let r = try Sweeps.prune(ev, adapter: a, data: data, points: pts, name: "t")
        let p = EFx.points(r)
        #expect(p.count == 8)
        try ev.load(a)
        let s = try ev.score(data, labels: data.dataLabels)
        #expect(EFx.acc(p[0]) == s.accuracy && abs(EFx.loss(p[0]) - s.loss) < 1e-9)
        #expect(p[0].normFractionKept == 1)
        #expect(p[1].normFractionKept! < 1 && p[1].zeroed! > 0)
        // Dropping every adapter layer is the base model with the adapter's head.
        var headOnly = a
        headOnly.modules = []
        try ev.load(headOnly)
        let base = try ev.score(data, labels: data.dataLabels)
        #expect(abs(EFx.loss(p[3]) - base.loss) < 1e-9 && p[3].normFractionKept == 0)
    }

    @Test func mergeIndividualRowsAndEachTasksOwnHead() throws {
        let dir = try EFx.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let ev = try EFx.evaluator()
        let path = try EFx.data(in: dir)
        let d = try ev.prepare(path)
        let (a, b) = try EFx.pair()
        let r = try Sweeps.merge(ev, adapters: [a, b], data: [d, d], methods: ["interpolate", "ties"], weights: nil, density: 0.5, seed: 0, name: "t")
        let p = EFx.points(r)
        #expect(p.count == 6)
        try ev.load(a)
        let sa = try ev.score(d, labels: d.dataLabels)
        try ev.load(b)
        let sb = try ev.score(d, labels: d.dataLabels)
        #expect(p[0].method == "individual" && abs(EFx.loss(p[0]) - sa.loss) < 1e-9)
        #expect(abs(EFx.loss(p[1]) - sb.loss) < 1e-9)
        // The merged adapter is scored with a's head on task 0 and with b's on task 1, so the rows differ;
        // an adapter without a head is scored with the model's own head.
        #expect(p[2].method == "interpolate" && EFx.loss(p[2]) != EFx.loss(p[3]))
        let noHead = try Adapter.load(EFx.path("peft/merge-a"))
        let r2 = try Sweeps.merge(ev, adapters: [a, noHead], data: [d, d], methods: ["ties"], weights: nil, density: 0.5, seed: 0, name: "t")
        try ev.load(noHead)
        let sn = try ev.score(d, labels: d.dataLabels)
        let base = SweepEvaluator(model: try ModelRegistry.load(EFx.path("tiny-bert")), tokenizer: ev.tokenizer)
        try base.model.attach(noHead)
        let baseLoss = try base.score(d, labels: d.dataLabels).loss
        #expect(abs(EFx.loss(EFx.points(r2)[1]) - sn.loss) < 1e-9 && abs(baseLoss - sn.loss) < 1e-9)
        #expect(throws: EvalError.self) {
            try Sweeps.merge(ev, adapters: [a, b], data: [d], methods: ["ties"], weights: nil, density: 0.5, seed: 0, name: "t")
        }
    }

    @Test func shapleyPrefixReuseGivesTheSameValuesAsFullPasses() throws {
        let dir = try EFx.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let ev = try EFx.evaluator()
        let data = try ev.prepare(try EFx.data(in: dir))
        let a = try Adapter.load(EFx.path("peft/bert-lora"))
        let players = Sweeps.players(of: a, group: "module")
        #expect(players.count == 4)
        let plan = ShapleyPlan(players: players.count, samples: 8, grid: 4, seed: 1)
        let r = try Sweeps.shapley(ev, adapter: a, data: data, group: "module", plan: plan, name: "t")
        #expect(r.layersReused! > 0)
        let values = r.values!.sorted { $0.key < $1.key }
        #expect(values.count == plan.coalitions.count)
        // Each coalition again, without the cache, switching modules by name.
        for (key, v) in values {
            try ev.load(a)
            let on = Set(zip(key, players).filter { $0.0 == "1" }.flatMap { $0.1.modules })
            ev.model.setActive(false)
            ev.model.setActive(true) { k in on.contains { $0.hasSuffix("." + k) || $0 == k } }
            let s = try ev.score(data, labels: data.dataLabels)
            #expect(abs(v.loss! - s.loss) < 1e-9, "coalition \(key)")
        }
        // All on = the adapter; all off = the base model with the adapter's head.
        try ev.load(a)
        let full = try ev.score(data, labels: data.dataLabels)
        #expect(abs(r.values!["1111"]!.loss! - full.loss) < 1e-9)
        var headOnly = a
        headOnly.modules = []
        try ev.load(headOnly)
        let none = try ev.score(data, labels: data.dataLabels)
        #expect(abs(r.values!["0000"]!.loss! - none.loss) < 1e-9)
        #expect(Sweeps.players(of: a, group: "layer").map(\.name) == ["layer 0", "layer 1"])
    }

    @Test func shardsJoinToTheWholeSweepInTheReport() throws {
        let dir = try EFx.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let ev = try EFx.evaluator()
        let data = try ev.prepare(try EFx.data(in: dir))
        let (a, b) = try EFx.pair()
        let plan = ShapleyPlan(players: 2, samples: 6, grid: 3, seed: 0)
        var whole: [SweepResult] = []
        for shard in [Shard(index: 1, count: 3), Shard(index: 2, count: 3), Shard(index: 3, count: 3), .whole] {
            let dirFor = shard == .whole ? dir + "/whole" : dir + "/parts"
            try FileManager.default.createDirectory(atPath: dirFor, withIntermediateDirectories: true)
            let results = [
                try Sweeps.interpolate(ev, a: a, b: b, data: data, grid: [0, 0.5, 1], name: "lora", shard: shard),
                try Sweeps.shapley(ev, adapter: a, data: data, group: "layer", plan: plan, name: "lora", shard: shard),
            ]
            for r in results { try AtomicFileWriter.write(try r.encoded(), to: dirFor + "/" + Sweeps.fileName(r)) }
            if shard == .whole { whole = results }
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir + "/parts").count == 6)
        let joined = try Report.collect([dir + "/parts"]).sweeps
        #expect(joined.count == 2 && joined.allSatisfy(\.complete))
        let interp = joined.first { $0.sweep == "interpolate" }!
        let wantPts = EFx.points(whole[0])
        #expect(interp.points.count == 3)
        for p in wantPts {
            let l = p.lambda!
            #expect(interp.points.first { $0.lambda! == l }.map(EFx.loss) == EFx.loss(p))
        }
        let shap = joined.first { $0.sweep == "shapley" }!
        #expect(Set(shap.values.keys) == Set(whole[1].values!.keys))
        // A missing shard is reported, not silently averaged.
        try FileManager.default.removeItem(
            atPath: dir + "/parts/"
                + Sweeps.fileName(try Sweeps.interpolate(ev, a: a, b: b, data: data, grid: [0, 0.5, 1], name: "lora", shard: Shard(index: 2, count: 3))))
        let (partial, _, warnings) = try Report.collect([dir + "/parts"])
        #expect(partial.contains { !$0.complete } && warnings.contains { $0.contains("2 of 3 points") || $0.contains("of 3 points") })
    }

    @Test func reportLinksEveryPlotAndThePlotsArePNG() throws {
        let dir = try EFx.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let ev = try EFx.evaluator()
        let data = try ev.prepare(try EFx.data(in: dir))
        let (a, b) = try EFx.pair()
        try FileManager.default.createDirectory(atPath: dir + "/runs", withIntermediateDirectories: true)
        for name in ["lora", "coto"] {
            let rs = [
                try Sweeps.interpolate(ev, a: a, b: b, data: data, grid: [0, 0.5, 1], name: name),
                try Sweeps.prune(
                    ev, adapter: a, data: data,
                    points: Sweeps.prunePoints(sparsities: [0, 0.5], scope: .tensor, layers: ["all"], modules: [], ranks: [2, 1], rankMethod: .svd), name: name),
                try Sweeps.shapley(ev, adapter: a, data: data, group: "layer", plan: ShapleyPlan(players: 2, samples: 4, grid: 2, seed: 0), name: name),
                try Sweeps.merge(ev, adapters: [a, b], data: [data, data], methods: ["interpolate"], weights: nil, density: 0.5, seed: 0, name: name),
            ]
            for r in rs { try AtomicFileWriter.write(try r.encoded(), to: dir + "/runs/" + Sweeps.fileName(r)) }
        }
        let out = try Report.build([dir + "/runs"])
        try Report.write(out, to: dir + "/report")
        let md = try String(contentsOfFile: dir + "/report/report.md", encoding: .utf8)
        let files = try FileManager.default.contentsOfDirectory(atPath: dir + "/report/plots")
        #expect(files.count == out.plots.count && files.count >= 5)
        for f in files {
            #expect(md.contains("(plots/\(f))"), "report.md does not link \(f)")
            let png = try PNGCheck.decode([UInt8](Data(contentsOf: URL(fileURLWithPath: dir + "/report/plots/" + f))))
            #expect(png.width == 640 && png.height == 420)
        }
        #expect(md.contains("## Interpolation") && md.contains("## Pruning") && md.contains("## Shapley values") && md.contains("## Multi-task merging"))
        let results = try JSON.parse(try FileSystem.readFile(dir + "/report/results.json"))
        #expect(results["interpolation"]?.arrayValue?.count == 2 && results["shapley"]?.arrayValue?.count == 2)
    }
}

/// An independent PNG reader for the tests: signature, chunk CRCs (bitwise CRC-32, not zlib's),
/// IHDR, and the inflated image data.
