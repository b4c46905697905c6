import ArgumentParser
import Checkpoint
import CotoCLI
import Evaluation
import Foundation
import Numerics

extension Bench {
    /// `coto-bench gemm-rate DIR`: this machine's sgemm rate at the shapes a run actually ran. Reads the cost
    /// records under DIR (`COTO_COST_DIR` of each stage, as `make demo` writes them), takes the heaviest shapes
    /// (95% of the FLOPs, at most 24) and times each on one core, with OpenBLAS threaded over every core, and as
    /// one GEMM per core side by side; writes DIR/rates.json, which the report's floor uses.
    struct GemmRate: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "gemm-rate", abstract: "Measure sgemm at the dominant shapes of a cost directory's records into its rates.json.")
        @Argument(help: "A cost directory (DEMO_OUT/cost).") var dir: String
        @Option(help: "Cores to use (default: every core online).") var cores: Int?
        @Option(help: "Timings per shape and mode (the median is kept).") var repeats = 5
        @Flag(name: .shortAndLong, help: "No per-shape lines.") var quiet = false

        func run() throws {
            let n = cores ?? Parallel.cores
            guard n >= 1 else { throw ValidationError("--cores must be at least 1") }
            let recs = try CostLog.records(dir)
            let dominant = GemmRates.dominant(CostRecord.shapes(of: recs.flatMap(\.1)))
            guard !dominant.isEmpty else { throw CommandError(dir, "holds no cost records with GEMM work (run the stages with COTO_COST_DIR set)") }
            var rates: [GemmRates.Rate] = []
            for (s, share) in dominant {
                let one = GemmRates.measure(s, repeats: repeats)
                let threaded = GemmRates.measure(s, blasThreads: n, repeats: repeats)
                let every = n > 1 ? GemmRates.measure(s, parallelCopies: n, repeats: repeats) : one
                rates.append(
                    .init(m: s.m, n: s.n, k: s.k, transA: s.transA, transB: s.transB, share: share, oneCore: one, blasThreads: threaded, everyCore: every))
                if !quiet {
                    Console.writeErr(
                        String(
                            format: "  %d x %d x %d%@%@: %.1f%% of the FLOPs, %.0f GFLOP/s one core, %.0f threaded, %.0f one per core", s.m, s.n, s.k,
                            s.transA ? " Aᵀ" : "", s.transB ? " Bᵀ" : "", 100 * share, one, threaded, every))
                }
            }
            let r = GemmRates(cpu: MachineInfo.cpuModel, avx512: MachineInfo.hasAVX512, blas: BLAS.config, cores: n, rates: rates)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
            try AtomicFileWriter.write(String(decoding: try encoder.encode(r), as: UTF8.self) + "\n", to: FileSystem.join(dir, CostLog.ratesFile))
            if !quiet {
                Console.writeOut(
                    String(
                        format: "%@: %d shapes, mean %.0f GFLOP/s on %d cores (%@)", FileSystem.join(dir, CostLog.ratesFile), rates.count, r.effectiveRate, n,
                        r.cpu))
            }
        }
    }
}
