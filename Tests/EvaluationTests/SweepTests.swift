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
enum PNGCheck {
    struct Image {
        var width: Int
        var height: Int
        var rows: [[UInt8]]
    }
    struct Failure: Error { let why: String }

    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            c ^= UInt32(b)
            for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ 0xEDB8_8320 : c >> 1 }
        }
        return c ^ 0xFFFF_FFFF
    }

    static func decode(_ d: [UInt8]) throws -> Image {
        guard d.count > 8, Array(d[0..<8]) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] else { throw Failure(why: "signature") }
        func be(_ i: Int) -> Int { Int(d[i]) << 24 | Int(d[i + 1]) << 16 | Int(d[i + 2]) << 8 | Int(d[i + 3]) }
        var i = 8
        var w = 0
        var h = 0
        var idat: [UInt8] = []
        var types: [String] = []
        while i + 12 <= d.count {
            let n = be(i)
            let type = String(decoding: d[(i + 4)..<(i + 8)], as: UTF8.self)
            guard i + 12 + n <= d.count else { throw Failure(why: "chunk past end") }
            let body = Array(d[(i + 4)..<(i + 8 + n)])
            guard UInt32(be(i + 8 + n)) == crc32(body) else { throw Failure(why: "CRC of \(type)") }
            let data = Array(body.dropFirst(4))
            if type == "IHDR" {
                guard data.count == 13, data[8] == 8, data[9] == 2, data[10] == 0, data[11] == 0, data[12] == 0 else { throw Failure(why: "IHDR") }
                w = Int(data[0]) << 24 | Int(data[1]) << 16 | Int(data[2]) << 8 | Int(data[3])
                h = Int(data[4]) << 24 | Int(data[5]) << 16 | Int(data[6]) << 8 | Int(data[7])
            }
            if type == "IDAT" { idat += data }
            types.append(type)
            i += 12 + n
        }
        guard types.first == "IHDR", types.last == "IEND", i == d.count else { throw Failure(why: "chunk order \(types)") }
        var outLen = uLong(h * (w * 3 + 1))
        var raw = [UInt8](repeating: 0, count: Int(outLen))
        let rc = raw.withUnsafeMutableBufferPointer { r in
            idat.withUnsafeBufferPointer { z in uncompress(r.baseAddress!, &outLen, z.baseAddress!, uLong(idat.count)) }
        }
        guard rc == Z_OK, Int(outLen) == h * (w * 3 + 1) else { throw Failure(why: "inflate (\(rc))") }
        var rows: [[UInt8]] = []
        for y in 0..<h {
            let s = y * (w * 3 + 1)
            guard raw[s] == 0 else { throw Failure(why: "filter type \(raw[s])") }
            rows.append(Array(raw[(s + 1)..<(s + 1 + w * 3)]))
        }
        return Image(width: w, height: h, rows: rows)
    }
}

@Suite struct PlotTests {
    @Test func fontGlyphsAreFiveBySeven() {
        for (c, rows) in Font5x7.table {
            #expect(rows.count == 7, "glyph \(c)")
            #expect(rows.allSatisfy { $0 < 32 }, "glyph \(c)")
        }
        for c in " 0123456789.,-+()%:/=abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZλ" { #expect(Font5x7.glyph(c) != nil, "glyph \(c)") }
    }

    @Test func pngRoundTripsThePixels() throws {
        var c = Canvas(width: 7, height: 5)
        c.line(0, 0, 6, 4, .black)
        c.set(6, 0, .init(1, 2, 3))
        let img = try PNGCheck.decode(try c.png())
        #expect(img.width == 7 && img.height == 5)
        #expect(Array(img.rows[0][18..<21]) == [1, 2, 3])
        #expect(Array(img.rows[0][0..<3]) == [0, 0, 0] && Array(img.rows[4][18..<21]) == [0, 0, 0])
        #expect(Array(img.rows[4][0..<3]) == [255, 255, 255])
    }

    @Test func figureDrawsSeriesTextAndAxes() throws {
        var f = Figure(title: "T", xLabel: "x", yLabel: "y")
        f.series = [
            .init(name: "lora", x: [0, 0.5, 1], y: [0.8, 0.6, 0.9]), .init(name: "coto", x: [0, 0.5, 1], y: [0.8, 0.78, 0.85], err: [0.01, 0.02, 0.01]),
        ]
        let c = f.render()
        var colours = Set<[UInt8]>()
        for y in 0..<c.height {
            for x in 0..<c.width {
                let p = c.get(x, y)
                colours.insert([p.r, p.g, p.b])
            }
        }
        let p0 = Canvas.RGB.palette[0]
        let p1 = Canvas.RGB.palette[1]
        #expect(colours.contains([p0.r, p0.g, p0.b]) && colours.contains([p1.r, p1.g, p1.b]) && colours.contains([0, 0, 0]))
        #expect(Figure.ticks(0, 1) == [0, 0.2, 0.4, 0.6000000000000001, 0.8, 1] || Figure.ticks(0, 1).count == 6)
        #expect(Figure.ticks(0.74, 0.82).allSatisfy { $0 >= 0.74 - 1e-12 && $0 <= 0.82 + 1e-12 })
        // Labels have the step's decimals: 0.725, 0.750, ... never print alike.
        let t = Figure.ticks(0.72, 0.84)
        let labels = t.map { Figure.label($0, step: t[1] - t[0]) }
        #expect(Set(labels).count == labels.count, "\(labels)")
        #expect(Figure.label(0.825, step: 0.025) == "0.825" && Figure.label(0.5, step: 0.1) == "0.5" && Figure.label(20, step: 5) == "20")
    }
}

extension PlotTests {
    /// A legend wider than the figure wraps onto more rows (it crashed the report with six seeds' dev curves);
    /// every series' swatch is drawn inside the canvas, and a rectangle outside the canvas draws nothing.
    @Test func aLongLegendWrapsAndStaysInside() throws {
        var f = Figure(title: "Dev accuracy: verb15", xLabel: "optimizer step", yLabel: "dev accuracy")
        let n = min(6, Canvas.RGB.palette.count)
        f.series = (0..<n).map { i in .init(name: "coto s\(i) (not converged) with a long name", x: [0, 1], y: [0.1 * Double(i), 0.5]) }
        let c = f.render()
        // The swatches: a 14 x 5 block of the series' colour at the legend rows below the x label.
        for i in 0..<n {
            let col = Canvas.RGB.palette[i]
            var found = false
            for y in (c.height - 14 * n - 4)..<c.height {
                for x in 0..<(c.width - 14) where (0..<14).allSatisfy({ c.get(x + $0, y) == col }) { found = true }
            }
            #expect(found, "series \(i)'s legend swatch is missing")
        }
        var blank = Canvas(width: 10, height: 10)
        blank.fill(x: 20, y: 2, w: 5, h: 5, .black)
        blank.fill(x: 2, y: -9, w: 5, h: 5, .black)
        #expect((0..<10).allSatisfy { y in (0..<10).allSatisfy { blank.get($0, y) == .white } })
    }
}

@Suite struct DatasetTests {
    @Test func wordNetTasksFromTheDebianCorpus() throws {
        #expect(FileManager.default.fileExists(atPath: "/usr/share/wordnet/data.noun"), "run make setup (wordnet-base)")
        var total = 0
        for f in ["noun", "verb", "adj", "adv"] { total += try WordNet.read("/usr/share/wordnet/data." + f).count }
        #expect(total == 117_659)  // WordNet 3.0's synsets (SPEC section 5)
        let tasks = try WordNet.tasks(cap: [.train: 30, .dev: 10, .test: 10])
        #expect(tasks.map(\.name) == ["noun8", "pos4", "verb15"])
        #expect(tasks[0].labels == WordNet.nounClasses.sorted() && tasks[1].labels.count == 4 && tasks[2].labels.count == 15)
        for t in tasks {
            for (split, rows) in t.examples {
                #expect(rows.allSatisfy { DatasetTask.splitOf($0.id) == split })
                var counts: [String: Int] = [:]
                for r in rows { counts[r.label, default: 0] += 1 }
                #expect(counts.values.allSatisfy { $0 <= (split == .train ? 30 : 10) })
            }
        }
        // The same synset lands in the same split of every task; "dog" (n02084071) is an animal.
        let dog = tasks[0].examples.values.flatMap { $0 }.first { $0.id == "n02084071" }
        let dogPos = tasks[1].examples.values.flatMap { $0 }.first { $0.id == "n02084071" }
        if let dog { #expect(dog.label == "animal" && dog.text.hasPrefix("dog: ")) }
        if let dogPos { #expect(dogPos.label == "noun") }
        // Deterministic: a second build gives identical files.
        let again = try WordNet.tasks(cap: [.train: 30, .dev: 10, .test: 10])
        #expect(again[2].examples[.test]!.map(\.id) == tasks[2].examples[.test]!.map(\.id))
    }

    @Test func wordNetLanguageTasksFollowNoun8() throws {
        let cap: [Split: Int] = [.train: 20, .dev: 8, .test: 8]
        let noun8 = try #require(try WordNet.tasks(cap: cap).first { $0.name == "noun8" })
        let tasks = try WordNetLM.tasks(cap: cap, choices: 4)
        #expect(tasks.map(\.name) == ["define", "word-choice"])
        let define = tasks[0]
        let choice = tasks[1]
        for split in Split.allCases {
            // define: noun8's synsets in noun8's order, "word:" + " gloss" = noun8's "word: gloss".
            let rows = try #require(define.rows[split])
            let n8 = noun8.examples[split] ?? []
            #expect(rows.map { $0["id"]?.stringValue } == n8.map(\.id))
            #expect(zip(rows, n8).allSatisfy { ($0["prompt"]?.stringValue ?? "") + ($0["completion"]?.stringValue ?? "") == $1.text })
            #expect(rows.allSatisfy { $0["prompt"]?.stringValue?.hasSuffix(":") == true && $0["completion"]?.stringValue?.hasPrefix(" ") == true })
        }
        #expect(choice.rows[.train] == nil)
        for split in [Split.dev, .test] {
            let rows = try #require(choice.rows[split])
            let words = Dictionary(
                uniqueKeysWithValues: (define.rows[split] ?? []).map { ($0["id"]!.stringValue!, String($0["prompt"]!.stringValue!.dropLast())) })
            #expect(rows.count == words.count && rows.count > 40)
            var placed = [0, 0, 0, 0]
            for r in rows {
                let choices = (r["choices"]?.arrayValue ?? []).compactMap(\.stringValue)
                let label = try #require(r["label"]?.intValue)
                let id = try #require(r["id"]?.stringValue)
                // Four distinct words, the labelled one the synset's own; the others are words of this split.
                #expect(choices.count == 4 && Set(choices.map { $0.lowercased() }).count == 4)
                #expect(choices[label] == " " + words[id]!)
                #expect(choices.allSatisfy { c in words.values.contains { " " + $0 == c } })
                #expect(r["context"]?.stringValue?.hasPrefix("Definition: ") == true && r["context"]?.stringValue?.hasSuffix("\nWord:") == true)
                placed[label] += 1
            }
            // The answer's place is spread by the hash, not always first.
            #expect(placed.allSatisfy { $0 > 0 }, "\(placed)")
        }
        #expect(throws: EvalError.self) { try WordNetLM.tasks(cap: cap, choices: 1) }
    }

    @Test func parseErrorsNameFileAndLine() throws {
        let dir = try EFx.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let p = dir + "/data.noun"
        try "  1 licence line\n00001740 03 n 01 entity 0 000 | that which exists\nbroken line without gloss\n".write(
            toFile: p, atomically: true, encoding: .utf8)
        do {
            _ = try WordNet.read(p)
            Issue.record("accepted")
        } catch let e as EvalError { #expect(e.subject == p + ":3") }
        try "  1 licence line\n00001740 03 n 01 entity 0 000 | that which exists\n".write(toFile: p, atomically: true, encoding: .utf8)
        let s = try WordNet.read(p)
        #expect(s.count == 1 && s[0].id == "n00001740" && s[0].text == "entity: that which exists" && s[0].lexfile == 3)
    }

    @Test func fortunesCategories() throws {
        #expect(FileManager.default.fileExists(atPath: Fortunes.defaultDirectory), "run make setup (fortunes)")
        let t = try Fortunes.task(minPerClass: 200, cap: [.train: 20, .dev: 5, .test: 5])
        #expect(t.labels.count >= 10 && t.labels.contains("computers"))
        #expect(t.examples[.train]!.allSatisfy { !$0.text.contains("\n") && $0.text.count <= 400 })
    }
}

/// Sweep result files are typed both ways; files written before the typed records still decode.
@Suite struct SweepRecordTests {
    @Test func olderFilesDecodeAndRoundTrip() throws {
        let old = """
            {"sweep": "merge", "name": "lora", "adapters": ["a", "b"], "data": ["x-test.jsonl", "y-test.jsonl"], "task": "x+y",
             "shard": [1, 1], "settings": {"methods": ["ties"], "weights": "default", "density": 0.5, "seed": 0},
             "points": [{"method": "ties", "task": "x", "adapter": "a", "accuracy": null, "macro_f1": 0.5, "loss": 1.25, "examples": 4}]}
            """
        let r = try JSONDecoder().decode(SweepResult.self, from: Data(old.utf8))
        #expect(r.settings.weights == nil && r.settings.methods == ["ties"] && r.shard == [1, 1])
        #expect(r.points?.first?.accuracy == nil && r.points?.first?.loss == 1.25 && r.points?.first?.method == "ties")
        var p = SweepPoint(score: Score(accuracy: .nan, macroF1: 0.25, loss: 2, examples: 3))
        p.lambda = 0.5
        var again = r
        again.points = [p]
        let back = try JSONDecoder().decode(SweepResult.self, from: Data(try again.encoded().utf8))
        #expect(back.points?.first?.accuracy == nil && back.points?.first?.lambda == 0.5 && back.settings == r.settings)
        #expect(Sweeps.fileName(back) == Sweeps.fileName(r))  // the results are not part of the identity
    }
}

/// `--shard auto`: the shard from Slurm job arrays, Kubernetes Indexed Jobs and RANK/WORLD_SIZE.
@Suite struct ShardEnvironmentTests {
    func shard(_ env: [String: String], _ n: Int? = nil) throws -> Shard { try Shard.fromEnvironment(env, numShards: n) }

    @Test func slurmArrays() throws {
        // --array=0-3: ids 0…3 are shards 1…4 of 4.
        #expect(
            try shard(["SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "3"])
                == Shard(index: 1, count: 4))
        #expect(try shard(["SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "0"]) == Shard(index: 4, count: 4))
        // --array=1-4 and a MIN/MAX-only environment; --array=0-10:5 (ids 0, 5, 10).
        #expect(try shard(["SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "4"]) == Shard(index: 2, count: 4))
        #expect(
            try shard(["SLURM_ARRAY_TASK_ID": "10", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "10", "SLURM_ARRAY_TASK_STEP": "5"])
                == Shard(index: 3, count: 3))
        // Only the id: --num-shards gives the count; it must agree with Slurm's when both are there.
        #expect(try shard(["SLURM_ARRAY_TASK_ID": "1"], 2) == Shard(index: 2, count: 2))
        #expect(throws: EvalError.self) { try shard(["SLURM_ARRAY_TASK_ID": "1"]) }
        // With --num-shards the task id is the shard index from 0, whatever part of the array was submitted
        // (a resubmitted `--array=2` of a 4-way sweep is shard 3 of 4).
        #expect(
            try shard(["SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "1", "SLURM_ARRAY_TASK_MIN": "2", "SLURM_ARRAY_TASK_MAX": "2"], 4)
                == Shard(index: 3, count: 4))
        #expect(try shard(["SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "1", "SLURM_ARRAY_TASK_MIN": "2"]) == Shard(index: 1, count: 1))
        #expect(throws: EvalError.self) { try shard(["SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "1"], 4) }
        #expect(throws: EvalError.self) { try shard(["SLURM_ARRAY_TASK_ID": "-1"], 4) }
        #expect(throws: EvalError.self) { try shard(["SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_COUNT": "4"]) }
        #expect(throws: EvalError.self) {
            try shard(["SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_STEP": "2", "SLURM_ARRAY_TASK_MAX": "4"])
        }
        #expect(throws: EvalError.self) { try shard(["SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "4"]) }
        // Slurm wins over the others.
        #expect(try shard(["SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "2", "RANK": "1", "WORLD_SIZE": "2"]) == Shard(index: 1, count: 2))
    }

    @Test func kubernetesRankAndNothing() throws {
        #expect(try shard(["JOB_COMPLETION_INDEX": "0"], 3) == Shard(index: 1, count: 3))
        #expect(try shard(["JOB_COMPLETION_INDEX": "2"], 3) == Shard(index: 3, count: 3))
        #expect(throws: EvalError.self) { try shard(["JOB_COMPLETION_INDEX": "3"], 3) }
        #expect(throws: EvalError.self) { try shard(["JOB_COMPLETION_INDEX": "0"]) }
        #expect(try shard(["RANK": "1", "WORLD_SIZE": "2"]) == Shard(index: 2, count: 2))
        #expect(throws: EvalError.self) { try shard(["RANK": "1"]) }
        do {
            _ = try shard(["PATH": "/usr/bin"])
            Issue.record("accepted")
        } catch let e as EvalError { #expect(e.subject == "--shard auto" && e.message.contains("SLURM_ARRAY_TASK_ID")) }
    }

    /// Every point is in exactly one shard, for any n: the shards of one sweep partition its grid.
    @Test func shardsPartitionThePoints() {
        for n in 1...5 {
            let owners = (0..<17).map { k in (1...n).filter { Shard(index: $0, count: n).owns(k) } }
            #expect(owners.allSatisfy { $0.count == 1 })
        }
    }
}
