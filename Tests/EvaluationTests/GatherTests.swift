import Testing
import Foundation
@testable import Evaluation
import Checkpoint
import TestSupport

/// `coto-eval gather` on shards built in memory: a complete set joins in unsharded order; every failure
/// (missing, duplicated, mismatched configuration, no configuration, mixed counts, a shard short of points)
/// is named; the status of a shard file before a rerun (run, done, refuse).
@Suite struct GatherTests {
    static let config = ConfigRecord(identity: "x", inputs: [InputDigest(role: "model", path: "m", sha256: "aa")], options: ["batch_size": "32"])
    static let grid = [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1]

    /// Shard i of n of an 11-point interpolation sweep, each point's accuracy = its λ.
    static func shard(_ i: Int, of n: Int, config: ConfigRecord? = GatherTests.config) -> SweepResult {
        let s = Shard(index: i, count: n)
        var r = Sweeps.interpolateHeader(a: "runs/a", b: "runs/b", data: "noun8-test.jsonl", grid: grid, name: "lora", shard: s)
        r.points = grid.indices.filter(s.owns).map { k in
            var p = SweepPoint(score: Score(accuracy: grid[k], macroF1: grid[k], loss: 1 - grid[k], examples: 10))
            p.lambda = grid[k]
            return p
        }
        r.config = config
        return r
    }

    static func files(_ rs: [SweepResult], dir: String = "sweeps") -> [(path: String, result: SweepResult)] {
        rs.map { ("\(dir)/\(Sweeps.fileName($0))", $0) }
    }

    @Test func completeShardsJoinInUnshardedOrder() throws {
        for n in 1...5 {
            let (c, skipped) = Gather.sweeps(Self.files((1...n).reversed().map { Self.shard($0, of: n) }))
            #expect(skipped.isEmpty && c.count == 1)
            let s = try #require(c.first)
            #expect(s.problems.isEmpty, "\(s.problems)")
            #expect(s.points == Self.shard(1, of: 1).points, "n = \(n)")
            #expect(s.covered == Array(1...n) && s.count == n && s.config == Self.config && s.header.shard == [1, 1])
        }
    }

    @Test func aMissingShardIsNamed() throws {
        let s = try #require(Gather.sweeps(Self.files([Self.shard(1, of: 4), Self.shard(3, of: 4)])).sweeps.first)
        #expect(s.problems == ["missing shards 2/4, 4/4 of 4"])
        #expect(s.points.map(\.lambda) == [0, 0.2, 0.4, 0.6, 0.8, 1].map { Optional($0) })
        #expect(s.found == 6 && s.expected == 11)
    }

    @Test func aDuplicatedShardIsNamedWithBothFiles() throws {
        let fs = Self.files([Self.shard(1, of: 2), Self.shard(2, of: 2)]) + Self.files([Self.shard(2, of: 2)], dir: "copy")
        let s = try #require(Gather.sweeps(fs).sweeps.first)
        #expect(s.problems.count == 1 && s.problems[0].hasPrefix("shard 2/2 is there twice: copy/") && s.problems[0].contains(" and sweeps/"))
        #expect(s.points.count == 11)
    }

    @Test func aShardOfAnotherConfigurationIsNamedWithWhatDiffers() throws {
        let other = ConfigRecord(identity: "x", inputs: [InputDigest(role: "model", path: "m", sha256: "aa")], options: ["batch_size": "8"])
        let s = try #require(Gather.sweeps(Self.files([Self.shard(1, of: 2), Self.shard(2, of: 2, config: other)])).sweeps.first)
        #expect(s.problems.count == 2, "\(s.problems)")
        #expect(s.problems[0].contains("shard-2-of-2.json: configuration \(other.short) differs") && s.problems[0].contains("batch_size 32 → 8"))
        #expect(s.problems[1] == "missing shard 2/2 of 2")
        #expect(s.points.count == 6)  // the mismatched shard is not joined
    }

    @Test func theConfigurationMostShardsCarryIsTheReference() throws {
        let other = ConfigRecord(identity: "x", inputs: [InputDigest(role: "model", path: "m", sha256: "ab")], options: ["batch_size": "32"])
        let s = try #require(Gather.sweeps(Self.files([Self.shard(1, of: 3, config: other), Self.shard(2, of: 3), Self.shard(3, of: 3)])).sweeps.first)
        #expect(s.config == Self.config && s.covered == [2, 3])
        #expect(s.problems.first?.contains("shard-1-of-3.json: configuration \(other.short) differs") == true, "\(s.problems)")
        #expect(s.problems.first?.contains("model m has other content") == true)
    }

    @Test func shardsWithoutAConfigurationAreNamed() throws {
        let s = try #require(Gather.sweeps(Self.files([Self.shard(1, of: 2, config: nil), Self.shard(2, of: 2, config: nil)])).sweeps.first)
        #expect(s.problems.count == 2 && s.problems.allSatisfy { $0.contains("carries no configuration hash") })
        // An unsharded file from before configurations is fine: there is nothing to join.
        let w = try #require(Gather.sweeps(Self.files([Self.shard(1, of: 1, config: nil)])).sweeps.first)
        #expect(w.problems.isEmpty && w.points.count == 11)
    }

    @Test func mixedShardCountsAreNamed() throws {
        let s = try #require(Gather.sweeps(Self.files([Self.shard(1, of: 2), Self.shard(2, of: 2), Self.shard(1, of: 1)])).sweeps.first)
        #expect(s.problems.count == 1 && s.problems[0].hasPrefix("mixed shard counts 1, 2:"))
    }

    @Test func aShardShortOfPointsIsNamed() throws {
        var short = Self.shard(2, of: 3)
        short.points!.removeLast()
        let s = try #require(Gather.sweeps(Self.files([Self.shard(1, of: 3), short, Self.shard(3, of: 3)])).sweeps.first)
        #expect(s.problems.count == 1 && s.problems[0].hasSuffix("shard 2/3 holds 3 of its 4 points"), "\(s.problems)")
        #expect(s.points.count == 7)
    }

    @Test func malformedAndUnknownFilesAreSkippedNotJoined() {
        var bad = Self.shard(1, of: 2)
        bad.shard = [3, 2]
        var unknown = Self.shard(1, of: 1)
        unknown.sweep = "dance"
        let (c, skipped) = Gather.sweeps(Self.files([bad, unknown]))
        #expect(c.isEmpty && skipped.count == 2)
    }

    @Test func aShardFileIsRunDoneOrRefused() throws {
        let t = TempDir()
        let p = t.path + "/s.json"
        #expect(try Sweeps.shardStatus(at: p, config: Self.config, overwrite: false) == .run)
        try AtomicFileWriter.write(try Self.shard(1, of: 2).encoded(), to: p)
        #expect(try Sweeps.shardStatus(at: p, config: Self.config, overwrite: false) == .done)
        #expect(try Sweeps.shardStatus(at: p, config: Self.config, overwrite: true) == .run)
        let other = ConfigRecord(identity: "x", inputs: [InputDigest(role: "model", path: "m", sha256: "bb")], options: ["batch_size": "32"])
        do {
            _ = try Sweeps.shardStatus(at: p, config: other, overwrite: false)
            Issue.record("another configuration must be refused")
        } catch let e as EvalError {
            #expect(e.subject == p && e.message.contains("model m has other content") && e.message.contains("--overwrite"))
        }
        #expect(try Sweeps.shardStatus(at: p, config: other, overwrite: true) == .run)
        try AtomicFileWriter.write(try Self.shard(1, of: 2, config: nil).encoded(), to: p)
        #expect(throws: EvalError.self) { try Sweeps.shardStatus(at: p, config: Self.config, overwrite: false) }
        try AtomicFileWriter.write("not json", to: p)
        #expect(throws: EvalError.self) { try Sweeps.shardStatus(at: p, config: Self.config, overwrite: false) }
        #expect(try Sweeps.shardStatus(at: p, config: Self.config, overwrite: true) == .run)
    }

    @Test func ownedCountsAddUpToTheWhole() {
        for total in 0...23 {
            for n in 1...6 {
                let counts = (1...n).map { Shard(index: $0, count: n).ownedCount(of: total) }
                #expect(counts.reduce(0, +) == total)
                for i in 1...n { #expect(counts[i - 1] == (0..<total).filter(Shard(index: i, count: n).owns).count) }
            }
        }
    }
}

/// `gather` on a training grid's manifest: finished, unfinished (with and without a checkpoint), trained from
/// another configuration, without a configuration, unreadable metrics, an unreadable manifest.
@Suite struct GridGatherTests {
    static func metrics(config: ConfigRecord?) -> RunMetrics {
        RunMetrics(
            task: "classification", steps: 2, coto: true, variant: "lora", labels: ["x"], finalLoss: 1, data: "d.jsonl", evalData: nil, seed: 0,
            rank: 8, targets: "query,value", threads: 1, trainSeconds: 1, tokensPerSecond: 1, config: config)
    }

    @Test func everyCellIsCheckedAgainstTheManifest() throws {
        let t = TempDir()
        let good = ConfigRecord(identity: "coto-train", inputs: [], options: ["lr": "0.001"])
        let other = ConfigRecord(identity: "coto-train", inputs: [], options: ["lr": "0.002"])
        let names = ["a-coto-s0", "a-coto-s1", "a-lora-s0", "a-lora-s1", "b-coto-s0", "b-coto-s1"]
        let manifest = GridManifest(
            grid: "grid.json", gridSHA256: "00", version: CotoVersion.string, cells: names.map { .init(name: $0, dir: $0, config: good.hash) }, shards: 4)
        try AtomicFileWriter.write(try manifest.encoded(), to: t.path + "/" + RunRecords.gridFile)
        func write(_ cell: String, _ text: String) throws {
            try FileManager.default.createDirectory(atPath: t.path + "/" + cell, withIntermediateDirectories: true)
            try AtomicFileWriter.write(text, to: t.path + "/\(cell)/metrics.json")
        }
        try write("a-coto-s0", try RunRecords.metricsJSON(Self.metrics(config: good)))
        try write("a-coto-s1", try RunRecords.metricsJSON(Self.metrics(config: other)))
        try write("a-lora-s0", try RunRecords.metricsJSON(Self.metrics(config: nil)))
        try write("a-lora-s1", "{\"steps\": \"x\"}")
        try FileManager.default.createDirectory(atPath: t.path + "/b-coto-s0/checkpoint", withIntermediateDirectories: true)
        try "x".write(toFile: t.path + "/b-coto-s0/checkpoint/optimizer.safetensors", atomically: true, encoding: .utf8)
        // An interrupted checkpoint (no optimizer state) is not offered for resuming.
        try FileManager.default.createDirectory(atPath: t.path + "/b-coto-s1/checkpoint/adapter", withIntermediateDirectories: true)
        let g = Gather.grid(t.path + "/" + RunRecords.gridFile)
        #expect(g.finished == ["a-coto-s0"])
        #expect(g.problems.count == 5, "\(g.problems)")
        #expect(g.problems[0].hasPrefix("cell a-coto-s1: ") && g.problems[0].contains("another configuration (\(other.short)"))
        #expect(g.problems[1].hasPrefix("cell a-lora-s0: ") && g.problems[1].hasSuffix("carries no configuration hash"))
        #expect(g.problems[2].hasPrefix("cell a-lora-s1: ") && g.problems[2].hasSuffix("is not a coto-train metrics file"))
        // Cell 4 of a 4-way grid is in shard 1, cell 5 in shard 2.
        #expect(g.problems[3].hasPrefix("cell b-coto-s0 (shard 1/4) is not finished") && g.problems[3].contains("a checkpoint is there"))
        #expect(g.problems[4].hasPrefix("cell b-coto-s1 (shard 2/4) is not finished") && !g.problems[4].contains("checkpoint"))
        // Found under a directory by gather's scan; an unreadable manifest is a problem, not a crash.
        let outcome = try Gather.run([t.path])
        #expect(outcome.grids.count == 1 && outcome.problems.count == 5 && outcome.sweeps.isEmpty)
        try AtomicFileWriter.write("[]", to: t.path + "/" + RunRecords.gridFile)
        #expect(Gather.grid(t.path + "/" + RunRecords.gridFile).problems.count == 1)
    }
}

/// The report's convergence rule and dev curves from the training log.
@Suite struct ConvergenceTests {
    static func log(_ devs: [(Int, Double)], steps: Int) -> [StepLog] {
        (1...steps).map { s in
            var e = StepLog(step: s, loss: 1, lr: 1e-3, p: 1, activeGroups: [], tokensPerSecond: 1)
            if let d = devs.first(where: { $0.0 == s }) { (e.devAccuracy, e.devLoss) = (d.1, 1 - d.1) }
            return e
        }
    }

    @Test func theRuleReadsTheLastFifthOfTheSteps() {
        // Plateau within a point of the best over the last 20%: converged.
        #expect(Report.converged(Self.log([(20, 0.5), (40, 0.7), (60, 0.8), (80, 0.805), (90, 0.80), (100, 0.798)], steps: 100), steps: 100) == true)
        // Still rising in the last 20%: not converged (the window's best, 0.8, is 10 points above the best before it).
        #expect(Report.converged(Self.log([(20, 0.5), (80, 0.7), (90, 0.75), (100, 0.8)], steps: 100), steps: 100) == false)
        // Fell off after an early best: converged (more steps cannot help), 5 points past its peak.
        #expect(Report.converged(Self.log([(20, 0.9), (100, 0.85)], steps: 100), steps: 100) == true)
        #expect(abs((Report.pastPeak(Self.log([(20, 0.9), (100, 0.85)], steps: 100)) ?? 0) - 0.05) < 1e-12)
        #expect(Report.pastPeak(Self.log([(20, 0.5), (100, 0.8)], steps: 100)) == 0)
        #expect(Report.pastPeak([]) == nil)
        // A late best within a point of the earlier best: converged; more than a point above: still rising.
        #expect(Report.converged(Self.log([(40, 0.80), (60, 0.81), (90, 0.819)], steps: 100), steps: 100) == true)
        #expect(Report.converged(Self.log([(40, 0.80), (60, 0.81), (90, 0.821)], steps: 100), steps: 100) == false)
        // Nothing before the window: cannot tell.
        #expect(Report.converged(Self.log([(90, 0.8), (100, 0.8)], steps: 100), steps: 100) == nil)
        // No evaluation in the window, or none at all: unknown.
        #expect(Report.converged(Self.log([(20, 0.9), (60, 0.9)], steps: 100), steps: 100) == nil)
        #expect(Report.converged(Self.log([], steps: 10), steps: 10) == nil)
    }

    @Test func devEvaluationsRoundTripThroughTheLog() throws {
        let l = Self.log([(2, 0.25)], steps: 3)
        let back = try RunRecords.logLines(l).split(separator: "\n").map { try JSONDecoder().decode(StepLog.self, from: Data($0.utf8)) }
        #expect(back == l && back[1].devAccuracy == 0.25 && back[0].devAccuracy == nil)
        #expect(!(try RunRecords.logLines([l[0]])).contains("dev_"))
    }
}
