import Testing
import Foundation
@testable import Evaluation
@testable import Numerics
import Checkpoint
import TestSupport

/// The cost directory the demo writes and the report's cost section: stages timed by stages.jsonl, their
/// records' GEMM work set against rates.json, figures checked by hand; malformed files are one-line errors.
@Suite struct CostTests {
    static func record(_ flops: Double, shape: GemmCounter.Shape, cpu: Double) -> CostRecord {
        CostRecord(
            tool: "coto-eval", arguments: [], cores: 2, wallSeconds: 1, cpuSeconds: cpu, gemmCalls: 1, gemmFlops: flops, gemmSeconds: cpu / 2,
            shapes: [.init(shape, .init(calls: 1, flops: flops, seconds: cpu / 2))])
    }

    static func write(_ r: CostRecord, _ path: String) throws {
        try JSONEncoder().encode(r).write(to: URL(fileURLWithPath: path))
    }

    @Test func stagesAgainstTheirFloorByHand() throws {
        let t = TempDir()
        let big = GemmCounter.Shape(m: 256, n: 384, k: 384, transA: false, transB: true)
        for s in ["training", "pruning"] { try FileManager.default.createDirectory(atPath: "\(t.path)/stages/\(s)", withIntermediateDirectories: true) }
        try Self.write(Self.record(100e9, shape: big, cpu: 3), "\(t.path)/stages/training/a.json")
        try Self.write(Self.record(100e9, shape: big, cpu: 3), "\(t.path)/stages/training/b.json")
        try Self.write(Self.record(50e9, shape: big, cpu: 2), "\(t.path)/stages/pruning/c.json")
        // training timed twice (a resumed run): the last time counts; "floor" has no records.
        try """
        {"stage": "training", "seconds": 9.5}
        {"stage": "pruning", "seconds": 1.0}
        {"stage": "training", "seconds": 4.0}
        {"stage": "floor", "seconds": 0.5}

        """.write(toFile: "\(t.path)/stages.jsonl", atomically: true, encoding: .utf8)
        let rates = GemmRates(
            cpu: "Test CPU", avx512: true, blas: "OpenBLAS test", cores: 2,
            rates: [.init(m: 256, n: 384, k: 384, transA: false, transB: true, share: 1, oneCore: 40, blasThreads: 70, everyCore: 80)])
        try JSONEncoder().encode(rates).write(to: URL(fileURLWithPath: "\(t.path)/rates.json"))
        let log = try CostLog.load(t.path)
        #expect(log.stages.map(\.name) == ["training", "pruning", "floor"])
        let costs = Report.stageCosts(log)
        // 200 GFLOP at 80 GFLOP/s = 2.5 s of floor against 4 s; 50 at 80 = 0.625 s against 1 s.
        #expect(abs((costs[0].floor ?? 0) - 2.5) < 1e-9 && abs((costs[0].ratio ?? 0) - 1.6) < 1e-9)
        #expect(abs((costs[1].floor ?? 0) - 0.625) < 1e-9 && costs[1].processes == 1 && costs[1].cpuSeconds == 2)
        #expect(costs[2].floor == 0 && costs[2].ratio == nil)
        let total = Report.totalCost(costs)
        #expect(abs(total.wall - 5.5) < 1e-9 && abs((total.floor ?? 0) - 3.125) < 1e-9 && abs((total.ratio ?? 0) - 5.5 / 3.125) < 1e-9)
        #expect(Report.costSummary(log).contains("1.76× the floor"), "\(Report.costSummary(log))")
        var b = Report.Builder(md: "")
        Report.costSection(log, into: &b)
        #expect(b.md.contains("## Cost against the compute floor") && b.md.contains("| training | 4.0 | 2 | 200.0 | 3.0 | 6.0 | 2.5 | 1.60× |"), "\(b.md)")
        #expect(b.md.contains("Test CPU, AVX-512, 2 cores"))
        // Without rates: times and FLOPs, no floor.
        try FileManager.default.removeItem(atPath: "\(t.path)/rates.json")
        let bare = try CostLog.load(t.path)
        #expect(Report.stageCosts(bare)[0].floor == nil && Report.costSummary(bare).contains("no floor"))
    }

    @Test func malformedCostFilesAreOneLineErrorsNamingTheFile() throws {
        let t = TempDir()
        #expect(throws: EvalError.self) { try CostLog.load(t.path + "/absent") }
        try "{\"stage\": \"training\"}\n".write(toFile: "\(t.path)/stages.jsonl", atomically: true, encoding: .utf8)
        do {
            _ = try CostLog.load(t.path)
            Issue.record("a line without seconds was accepted")
        } catch let e as EvalError {
            #expect(e.subject == "\(t.path)/stages.jsonl" && e.message.contains("line 1"))
        }
        try "".write(toFile: "\(t.path)/stages.jsonl", atomically: true, encoding: .utf8)
        try FileManager.default.createDirectory(atPath: "\(t.path)/stages/x", withIntermediateDirectories: true)
        try "{}".write(toFile: "\(t.path)/stages/x/r.json", atomically: true, encoding: .utf8)
        #expect(throws: EvalError.self) { try CostLog.records(t.path) }
    }
}
