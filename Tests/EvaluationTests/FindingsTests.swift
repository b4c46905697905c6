import Testing
import Foundation
import PropertyBased
@testable import Evaluation
import Checkpoint
import TestSupport

/// The report's findings table: the verdict rule on known cases and its symmetry, and the table built from
/// sweep files whose numbers are set so each finding has a known verdict.
@Suite struct FindingsTests {
    @Test func theVerdictRuleOnKnownCases() {
        // d = 0.05, se = sqrt(0.01²/3 + 0.01²/3) = 0.00816: |d| > 2 se, the claimed way.
        let r = Report.verdict(coto: [0.85, 0.86, 0.84], plain: [0.80, 0.81, 0.79], cotoBetterWhenHigher: true)
        #expect(abs(r.difference - 0.05) < 1e-12 && abs(r.standardError - (2 * 0.0001 / 3).squareRoot()) < 1e-12)
        #expect(r.verdict == .reproduced)
        #expect(Report.verdict(coto: [0.85, 0.86, 0.84], plain: [0.80, 0.81, 0.79], cotoBetterWhenHigher: false).verdict == .notReproduced)
        // d = 0.01 against se = 0.0082: within noise (2 se = 0.0163).
        #expect(Report.verdict(coto: [0.81, 0.82, 0.80], plain: [0.80, 0.81, 0.79], cotoBetterWhenHigher: true).verdict == .withinNoise)
        // Just above and just below the 2 se line: both sides {x, x + 0.02}, s = 0.02/√2, se = sqrt(s²/2 + s²/2) = s.
        let plain = [0.0, 0.02]
        let se1 = 0.02 / 2.0.squareRoot()
        #expect(Report.verdict(coto: plain.map { $0 + 2 * se1 + 1e-9 }, plain: plain, cotoBetterWhenHigher: true).verdict == .reproduced)
        #expect(Report.verdict(coto: plain.map { $0 + 2 * se1 - 1e-9 }, plain: plain, cotoBetterWhenHigher: true).verdict == .withinNoise)
        // Seeds that agree to the example: se is floored at one example (1/80), so a one-example difference is
        // within noise and a three-example one is not.
        #expect(Report.verdict(coto: [0.7125, 0.7125], plain: [0.725, 0.725], cotoBetterWhenHigher: true).verdict == .notReproduced)
        #expect(Report.verdict(coto: [0.7125, 0.7125], plain: [0.725, 0.725], cotoBetterWhenHigher: true, resolution: 1.0 / 80).verdict == .withinNoise)
        #expect(Report.verdict(coto: [0.7625, 0.7625], plain: [0.725, 0.725], cotoBetterWhenHigher: true, resolution: 1.0 / 80).verdict == .reproduced)
        // One value on a side decides nothing, however large the difference.
        let one = Report.verdict(coto: [0.9], plain: [0.1, 0.2], cotoBetterWhenHigher: true)
        #expect(one.verdict == .undecided && abs(one.difference - 0.75) < 1e-12 && one.standardError.isNaN)
    }

    @Test func swappingTheSidesAndTheClaimGivesTheSameVerdict() async {
        await propertyCheck(count: 200, input: Gen.int(in: 0...100).array(of: 1...6), Gen.int(in: 0...100).array(of: 1...6), Gen.bool) { a, b, up in
            let x = a.map { Double($0) / 100 }
            let y = b.map { Double($0) / 100 }
            let one = Report.verdict(coto: x, plain: y, cotoBetterWhenHigher: up)
            let other = Report.verdict(coto: y, plain: x, cotoBetterWhenHigher: !up)
            #expect(one.verdict == other.verdict)
            #expect(abs(one.difference + other.difference) < 1e-12)
            // Shifting both sides by the same amount changes nothing.
            #expect(Report.verdict(coto: x.map { $0 + 3 }, plain: y.map { $0 + 3 }, cotoBetterWhenHigher: up).verdict == one.verdict)
        }
    }

    static func point(_ accuracy: Double) -> SweepPoint {
        SweepPoint(score: Score(accuracy: accuracy, macroF1: accuracy, loss: 1 - accuracy, examples: 100))
    }

    /// A prune sweep of one seed: sparsity 0 and 0.9, every other layer dropped.
    static func prune(_ name: String, seed: Int, test: Double, sparse: Double, half: Double) -> SweepResult {
        let pts = [("sparsity", "0", test), ("sparsity", "0.9", sparse), ("layers", "every-other", half)]
        var r = Sweeps.pruneHeader(
            adapter: "runs/noun8/\(name)-s\(seed)", data: "data/noun8-test.jsonl", points: pts.map { Sweeps.PrunePoint(kind: $0.0, value: $0.1) },
            name: name, shard: .whole)
        r.points = pts.map { k, v, a in
            var p = point(a)
            p.kind = k
            p.value = v
            return p
        }
        return r
    }

    /// An interpolation sweep between seeds `pair`: end points 0.8, the midpoint `mid`.
    static func interpolate(_ name: String, pair: (Int, Int), mid: Double) -> SweepResult {
        var r = Sweeps.interpolateHeader(
            a: "runs/noun8/\(name)-s\(pair.0)", b: "runs/noun8/\(name)-s\(pair.1)", data: "data/noun8-test.jsonl", grid: [0, 0.5, 1], name: name, shard: .whole)
        r.points = [(0.0, 0.8), (0.5, mid), (1.0, 0.8)].map { l, a in
            var p = point(a)
            p.lambda = l
            return p
        }
        return r
    }

    @Test func theTableGivesEachFindingItsVerdict() throws {
        let dir = try EFx.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var rs: [SweepResult] = []
        // Single task: CoTo clearly higher (reproduced). Sparsity 0.9: CoTo clearly lower (not reproduced).
        // Every other layer: the same means on both sides (within noise).
        for (seed, e) in [0.0, 0.01, -0.01].enumerated() {
            rs.append(Self.prune("lora", seed: seed, test: 0.80 + e, sparse: 0.70 + e, half: 0.50 + e))
            rs.append(Self.prune("coto", seed: seed, test: 0.85 + e, sparse: 0.60 + e, half: 0.50 - e))
        }
        // Interpolation: CoTo's midpoints 0.78 ± 0.01, LoRA's 0.60 ± 0.01: barrier 0.02 vs 0.2 (reproduced both).
        for (k, pair) in [(0, 1), (1, 2), (0, 2)].enumerated() {
            let e = [0.0, 0.01, -0.01][k]
            rs.append(Self.interpolate("lora", pair: pair, mid: 0.60 + e))
            rs.append(Self.interpolate("coto", pair: pair, mid: 0.78 + e))
        }
        for r in rs { try AtomicFileWriter.write(try r.encoded(), to: dir + "/" + Sweeps.fileName(r)) }
        let out = try Report.build([dir])
        let rows = try #require(out.results["findings"]?.arrayValue)
        func verdict(_ finding: String) -> String? {
            rows.first { $0["finding"]?.stringValue == finding }?["verdict"]?.stringValue
        }
        #expect(rows.count == 5, "\(rows)")
        #expect(verdict("single-task accuracy") == "reproduced")
        #expect(verdict("magnitude pruning, sparsity 0.9") == "not reproduced")
        #expect(verdict("every other layer dropped") == "within noise")
        #expect(verdict("interpolation λ=0.5") == "reproduced")
        #expect(verdict("interpolation barrier") == "reproduced")
        let single = try #require(rows.first { $0["finding"]?.stringValue == "single-task accuracy" })
        #expect(abs((single["difference"]?.doubleValue ?? 0) - 0.05) < 1e-9)
        #expect(single["coto_values"]?["values"]?.arrayValue?.compactMap(\.doubleValue).sorted() == [0.84, 0.85, 0.86])
        #expect(single["plain_values"]?["n"]?.intValue == 3)
        // The markdown states the rule, shows the table ahead of the summary and counts the verdicts.
        let md = out.markdown
        let findingsAt = try #require(md.range(of: "## What reproduces"))
        let summaryAt = try #require(md.range(of: "## Summary"))
        #expect(findingsAt.lowerBound < summaryAt.lowerBound)
        #expect(md.contains("|d| ≤ 2·se is **within noise**") && md.contains("for accuracies at least one test example (1/n)"))
        #expect(md.contains("Of 5 comparisons: 3 reproduced, 1 not reproduced, 1 within noise."))
        #expect(md.contains("Not measured: LoRA-LEGO merging"))
    }

    /// A merge sweep of one seed: `ties` and `ties-searched` (a `--merged` row) on two tasks.
    static func merge(_ name: String, seed: Int, ties: Double, searched: Double) -> SweepResult {
        var r = Sweeps.mergeHeader(
            adapters: ["runs/a-\(name)-s\(seed)", "runs/b-\(name)-s\(seed)"], data: ["data/a-test.jsonl", "data/b-test.jsonl"], methods: ["ties"],
            weights: nil, density: 0.5, seed: 0, name: name, shard: .whole, merged: ["ties-searched=search/\(name)-s\(seed)/best"])
        r.points = [("individual", 0.9), ("ties", ties), ("ties-searched", searched)].flatMap { m, a in
            ["a", "b"].map { t in
                var p = point(a)
                (p.method, p.task) = (m, t)
                return p
            }
        }
        return r
    }

    /// Whether CoTo's merge advantage holds, grows, shrinks, vanishes or reverses once weights are searched.
    @Test func theSearchedMergeRowSaysWhatSearchingDidToTheAdvantage() throws {
        // d at default 0.05 ± 0.008; searched: the same (holds), 0.15 (grows), 0.003 (vanishes), −0.10 (reverses).
        for (searchedCoto, want) in [(0.85, "holds"), (0.95, "grows"), (0.803, "vanishes"), (0.70, "reverses")] {
            let dir = try EFx.tempDir()
            defer { try? FileManager.default.removeItem(atPath: dir) }
            for (seed, e) in [0.0, 0.01, -0.01].enumerated() {
                for r in [
                    Self.merge("lora", seed: seed, ties: 0.60 + e, searched: 0.80 + e),
                    Self.merge("coto", seed: seed, ties: 0.65 + e, searched: searchedCoto + e),
                ] {
                    try AtomicFileWriter.write(try r.encoded(), to: dir + "/" + Sweeps.fileName(r))
                }
            }
            let out = try Report.build([dir])
            let rows = try #require(out.results["findings"]?.arrayValue)
            let row = try #require(rows.first { $0["finding"]?.stringValue == "merge advantage once weights are searched" })
            #expect(row["verdict"]?.stringValue == want, "\(searchedCoto): \(row)")
            #expect(abs((row["default_difference"]?.doubleValue ?? 0) - 0.05) < 1e-9)
            // The row is outside the paper's tallies: two merge findings (ties, ties-searched) are counted.
            #expect(out.markdown.contains("Of 2 comparisons:") && out.markdown.contains("merge advantage, ties → searched"))
        }
        #expect(Report.searchedOutcome(default: (0.001, 0.01), searched: (0.08, 0.01)) == "grows")
        // No measurable change (Δ = −0.034 against 2·se_Δ = 0.045), the searched d within noise.
        #expect(Report.searchedOutcome(default: (0.064, 0.01), searched: (0.03, 0.02)) == "within noise once searched")
        // This demo's case: d +0.064 ± 0.043 (within noise) → +0.077 ± 0.031 (beyond): Δ within noise, so it holds.
        #expect(Report.searchedOutcome(default: (0.064, 0.043), searched: (0.077, 0.031)) == "holds")
        #expect(Report.searchedOutcome(default: (0.001, 0.01), searched: (0.002, 0.01)) == "absent either way")
        #expect(Report.searchedOutcome(default: (0.1, 0.01), searched: (0.05, 0.01)) == "shrinks")
        #expect(Report.searchedOutcome(default: (-0.1, 0.01), searched: (-0.1, 0.01)) == "holds, for the plain series")
        #expect(Report.searchedOutcome(default: (0.1, .nan), searched: (0.1, 0.01)).hasPrefix("undecided"))
    }

    @Test func trainingTimeIsTheStepsTimeWithoutDevEvaluations() throws {
        let dir = try EFx.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Three seeds a side; the loop's time (100 s) includes dev evaluations, the steps' own time is 10 s (LoRA)
        // and 8 s (CoTo) with a little spread.
        for (name, coto, perStep) in [("lora", false, 1.0), ("coto", true, 0.8)] {
            for seed in 0..<3 {
                let run = dir + "/noun8/\(name)-s\(seed)"
                try FileManager.default.createDirectory(atPath: run, withIntermediateDirectories: true)
                let m = RunMetrics(
                    task: "classification", steps: 10, coto: coto, variant: "lora", labels: ["x"], finalLoss: 1, data: "data/noun8-train.jsonl",
                    evalData: nil, seed: UInt64(seed), rank: 8, targets: "query,value", threads: 2, trainSeconds: 100, tokensPerSecond: 1)
                let log = (1...10).map {
                    StepLog(step: $0, loss: 1, lr: 1e-3, p: 1, activeGroups: [0], tokensPerSecond: 1, seconds: perStep + 0.01 * Double(seed))
                }
                try AtomicFileWriter.write(try RunRecords.metricsJSON(m), to: run + "/" + RunRecords.metricsFile)
                try AtomicFileWriter.write(try RunRecords.logLines(log), to: run + "/" + RunRecords.logFile)
            }
        }
        let out = try Report.build([dir])
        let row = try #require(out.results["findings"]?.arrayValue?.first { $0["finding"]?.stringValue == "training steps' time (s)" })
        #expect(abs((row["plain_values"]?["mean"]?.doubleValue ?? 0) - 10.1) < 1e-9)
        #expect(abs((row["coto_values"]?["mean"]?.doubleValue ?? 0) - 8.1) < 1e-9)
        #expect(row["verdict"]?.stringValue == "reproduced")
    }

    @Test func aCoToSeriesWithoutItsPlainCounterpartHasNoFindings() throws {
        let dir = try EFx.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for seed in 0..<2 {
            let r = Self.prune("coto", seed: seed, test: 0.8, sparse: 0.7, half: 0.5)
            try AtomicFileWriter.write(try r.encoded(), to: dir + "/" + Sweeps.fileName(r))
        }
        let out = try Report.build([dir])
        #expect(!out.markdown.contains("## What reproduces"))
        #expect(out.results["findings"] == JSON.null)
        #expect(Report.plainCounterpart("coto-dora") == "dora" && Report.plainCounterpart("coto") == "lora" && Report.plainCounterpart("lora") == nil)
    }
}
