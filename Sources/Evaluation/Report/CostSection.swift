import Checkpoint
import Foundation
import Numerics

// The cost section: each stage's wall time against its compute floor (its GEMM FLOPs at this machine's
// sgemm rate at the shapes it ran, every core busy), and where the time went.

extension Report {
    /// A stage's figures: wall time, GEMM work, the floor and the ratio (nil floor without rates).
    struct StageCost {
        var name: String
        var wall: Double
        var processes: Int
        var flops: Double
        var gemmSeconds: Double
        var cpuSeconds: Double
        var floor: Double?
        var ratio: Double? { floor.flatMap { $0 > 0 ? wall / $0 : nil } }
    }

    static func stageCosts(_ log: CostLog) -> [StageCost] {
        log.stages.map { st in
            StageCost(
                name: st.name, wall: st.wallSeconds, processes: st.records.count, flops: st.gemmFlops, gemmSeconds: st.gemmSeconds,
                cpuSeconds: st.cpuSeconds, floor: log.rates.map { $0.floorSeconds(shapes: st.shapes, totalFlops: st.gemmFlops) })
        }
    }

    /// The whole run: wall, FLOPs, floor and ratio over every stage.
    static func totalCost(_ costs: [StageCost]) -> StageCost {
        let floors = costs.compactMap(\.floor)
        return StageCost(
            name: "all stages", wall: costs.reduce(0) { $0 + $1.wall }, processes: costs.reduce(0) { $0 + $1.processes },
            flops: costs.reduce(0) { $0 + $1.flops }, gemmSeconds: costs.reduce(0) { $0 + $1.gemmSeconds },
            cpuSeconds: costs.reduce(0) { $0 + $1.cpuSeconds }, floor: floors.count == costs.count ? floors.reduce(0, +) : nil)
    }

    /// One line: the run's time, its floor and the ratio (the demo prints it last).
    public static func costSummary(_ log: CostLog) -> String {
        let t = totalCost(stageCosts(log))
        let machine = log.rates.map { " on \($0.cores) cores of \($0.cpu) (\($0.avx512 ? "AVX-512" : "no AVX-512"))" } ?? ""
        guard let floor = t.floor, let ratio = t.ratio else {
            return String(format: "%.0f s, %@ of GEMM (no rates.json: no floor)", t.wall, flopsText(t.flops))
        }
        return String(
            format: "%.0f s against a compute floor of %.0f s (%@ of GEMM at this machine's sgemm rate%@): %.2f× the floor", t.wall, floor,
            flopsText(t.flops), machine, ratio)
    }

    static func flopsText(_ f: Double) -> String {
        f >= 1e12 ? String(format: "%.1f TFLOP", f / 1e12) : f >= 1e9 ? String(format: "%.1f GFLOP", f / 1e9) : String(format: "%.1f MFLOP", f / 1e6)
    }

    static func costSection(_ log: CostLog, into b: inout Builder) {
        guard !log.stages.isEmpty else { return }
        let costs = stageCosts(log)
        let total = totalCost(costs)
        b.md += "## Cost against the compute floor\n\n"
        b.md += "Each stage's wall time beside its floor: the GEMM FLOPs its coto processes ran (2·m·n·k of every sgemm call, counted as "
        b.md += "they ran), each shape at this machine's sgemm rate for it with every core busy (the best of OpenBLAS threaded over the "
        b.md += "cores and one GEMM per core side by side, `coto-bench gemm-rate`, measured in the same run; shapes outside the "
        b.md += "measured ones at the mean rate). GEMM thread-s is the time spent inside OpenBLAS summed over threads; the rest of "
        b.md += "the CPU time is coto's own code (attention, norms, tokenization, I/O). Goal: the whole run within 1.5× the floor.\n\n"
        if let r = log.rates {
            b.md += "Machine: \(r.cpu), \(r.avx512 ? "AVX-512" : "AVX2 only (no AVX-512)"), \(r.cores) cores; OpenBLAS \(r.blas). "
            b.md += String(format: "Mean sgemm rate at the measured shapes: %.0f GFLOP/s.\n\n", r.effectiveRate)
        } else {
            b.md += "No rates.json: no floor (run `coto-bench gemm-rate` on the cost directory).\n\n"
        }
        func f(_ v: Double?, _ fmt: String) -> String { v.map { String(format: fmt, $0) } ?? "–" }
        let rows = (costs + [total]).map { c in
            [
                c.name == total.name ? "**\(c.name)**" : c.name, f(c.wall, "%.1f"), String(c.processes), f(c.flops / 1e9, "%.1f"), f(c.gemmSeconds, "%.1f"),
                f(c.cpuSeconds, "%.1f"), f(c.floor, "%.1f"), f(c.ratio, "%.2f×"),
            ]
        }
        b.md += mdTable(["stage", "wall s", "processes", "GEMM GFLOP", "GEMM thread-s", "CPU s", "floor s", "wall / floor"], rows)
        b.md += "\n**\(costSummary(log))**\n\n"
        if let r = log.rates, !r.rates.isEmpty {
            b.md += "The measured shapes (op(A) m×k times op(B) k×n), heaviest first:\n\n"
            let shapeRows = r.rates.prefix(12).map { x in
                [
                    "\(x.m)×\(x.k)\(x.transA ? "ᵀ" : "") · \(x.k)×\(x.n)\(x.transB ? "ᵀ" : "")", String(format: "%.1f%%", 100 * x.share),
                    String(format: "%.0f", x.oneCore), String(format: "%.0f", x.blasThreads), String(format: "%.0f", x.everyCore),
                ]
            }
            b.md += mdTable(["shape", "FLOP share", "GFLOP/s one core", "OpenBLAS threaded", "one per core"], Array(shapeRows)) + "\n"
        }
        let stageJSON: [JSON] = (costs + [total]).map { c in
            .object([
                ("stage", .string(c.name)), ("wall_seconds", .double(c.wall)), ("processes", .int(c.processes)), ("gemm_flops", .double(c.flops)),
                ("gemm_thread_seconds", .double(c.gemmSeconds)), ("cpu_seconds", .double(c.cpuSeconds)),
                ("floor_seconds", c.floor.map(JSON.double) ?? .null), ("ratio", c.ratio.map(JSON.double) ?? .null),
            ])
        }
        var fields: [(String, JSON)] = [("stages", .array(stageJSON)), ("summary", .string(costSummary(log)))]
        if let r = log.rates {
            fields += [
                ("cpu", .string(r.cpu)), ("avx512", .bool(r.avx512)), ("blas", .string(r.blas)), ("cores", .int(r.cores)),
                ("mean_gflops", .double(r.effectiveRate)),
            ]
        }
        b.results.append(("cost", .object(fields)))
    }
}
