import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What one coto process cost: its wall and CPU time, and the GEMM work it did (`GemmCounter`), in all and
/// for its heaviest shapes. A command writes one into `COTO_COST_DIR` when it finishes (`make demo` does this
/// per stage); `coto-bench gemm-rate` measures the machine's sgemm at the shapes the records name, and the
/// report sets the stages' time against that floor.
public struct CostRecord: Codable, Sendable, Equatable {
    public struct ShapeTally: Codable, Sendable, Equatable {
        public var m: Int, n: Int, k: Int
        public var transA: Bool, transB: Bool
        public var calls: Int
        public var flops: Double
        public var seconds: Double

        enum CodingKeys: String, CodingKey {
            case m, n, k, calls, flops, seconds
            case transA = "trans_a"
            case transB = "trans_b"
        }

        public init(_ s: GemmCounter.Shape, _ t: GemmCounter.Tally) {
            (m, n, k, transA, transB) = (s.m, s.n, s.k, s.transA, s.transB)
            (calls, flops, seconds) = (t.calls, t.flops, t.seconds)
        }

        public var shape: GemmCounter.Shape { .init(m: m, n: n, k: k, transA: transA, transB: transB) }
        public var tally: GemmCounter.Tally { .init(calls: calls, flops: flops, seconds: seconds) }
    }

    public var tool: String
    public var arguments: [String]
    /// The cores the process was given (`COTO_CORES`, else the machine's).
    public var cores: Int
    public var wallSeconds: Double
    public var cpuSeconds: Double
    /// Every GEMM call: count, FLOPs (2·m·n·k) and thread-seconds inside OpenBLAS.
    public var gemmCalls: Int
    public var gemmFlops: Double
    public var gemmSeconds: Double
    /// The heaviest shapes by FLOPs (at most `keptShapes`); the rest is in the totals only.
    public var shapes: [ShapeTally]

    enum CodingKeys: String, CodingKey {
        case tool, arguments, cores, shapes
        case wallSeconds = "wall_seconds"
        case cpuSeconds = "cpu_seconds"
        case gemmCalls = "gemm_calls"
        case gemmFlops = "gemm_flops"
        case gemmSeconds = "gemm_seconds"
    }

    public static let keptShapes = 64

    /// The GEMM work per shape of several records (the shapes each kept).
    public static func shapes(of records: [CostRecord]) -> [GemmCounter.Shape: GemmCounter.Tally] {
        var out: [GemmCounter.Shape: GemmCounter.Tally] = [:]
        for r in records { for s in r.shapes { out[s.shape, default: .init()].add(s.tally) } }
        return out
    }
    /// The environment variable naming the directory records go to.
    public static let directoryVariable = "COTO_COST_DIR"

    /// This process's record so far (`started`: its start on `Clock`).
    public static func current(started: Double) -> CostRecord {
        let snap = GemmCounter.snapshot
        let total = GemmCounter.total(snap)
        let heaviest = snap.sorted { $0.value.flops != $1.value.flops ? $0.value.flops > $1.value.flops : $0.key < $1.key }
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        let cpu =
            Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) * 1e-6 + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) * 1e-6
        let args = CommandLine.arguments
        return CostRecord(
            tool: URL(fileURLWithPath: args.first ?? "coto").lastPathComponent, arguments: Array(args.dropFirst()),
            cores: min(Parallel.cores, Parallel.maxConcurrency), wallSeconds: Clock.now() - started, cpuSeconds: cpu, gemmCalls: total.calls,
            gemmFlops: total.flops, gemmSeconds: total.seconds, shapes: heaviest.prefix(keptShapes).map { ShapeTally($0.key, $0.value) })
    }
}
