import ArgumentParser
import Checkpoint
import CotoCLI
import Numerics
import Operators
import Model
#if canImport(Glibc)
import Glibc
#endif

/// Benchmarks run side by side with the Python peer by scripts/bench-*.sh (see Docs/performance.md).
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coto-bench",
        abstract: "Measure coto's checkpoint I/O (used by scripts/bench-read.sh against Python safetensors).",
        discussion: """
            Examples:
              coto-bench read model.safetensors --repeat 5
              coto-bench write-synthetic big.safetensors --gib 2
            """,
        subcommands: [
            Read.self, WriteSynthetic.self, BlasInfo.self, Forward.self, Hash.self, SyntheticModel.self, HalfGemm.self, GemmRate.self,
        ])

    static func now() -> Double { Clock.now() }

    struct Read: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Open, validate and read every tensor of a safetensors file.")
        @Argument var path: String
        @Option(name: .customLong("repeat"), help: "Runs; the best is reported.") var repeatCount = 5
        @Flag(help: "Decode every tensor to Float32 (otherwise: checksum the raw bytes through the mapping).")
        var decode = false

        func run() throws {
            var best = Double.infinity
            var bytes = 0
            var checksum: UInt64 = 0
            for _ in 0..<repeatCount {
                let t0 = Bench.now()
                let f = try SafeTensorsFile(path: path)
                bytes = 0
                checksum = 0
                for info in f.tensors {
                    let v = f.view(info)
                    if decode {
                        let t = v.toTensor()
                        checksum &+= UInt64(t.count)
                    } else {
                        checksum &+= v.withBytes { raw -> UInt64 in
                            var s: UInt64 = 0
                            var i = 0
                            // Touch every 8-byte word: forces every page in, like a copy would.
                            while i + 8 <= raw.count {
                                s &+= raw.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                                i += 8
                            }
                            return s
                        }
                    }
                    bytes += info.byteCount
                }
                best = min(best, Bench.now() - t0)
            }
            print(
                "coto read: \(bytes) bytes in \(String(format: "%.4f", best)) s = \(String(format: "%.2f", Double(bytes) / best / 1e9)) GB/s (best of \(repeatCount), \(decode ? "decoded to Float32" : "raw bytes touched"), checksum \(checksum % 1000))"
            )
        }
    }

    struct Forward: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Time the forward pass on a random batch; print sequences/s and GFLOP/s against a plain sgemm.")
        @Option var model: String
        @Option var batch = 8
        @Option var length = 64
        @Option(name: .customLong("repeat")) var repeatCount = 5
        @Option var threads = 2

        func run() throws {
            Parallel.configure(threads: threads)
            let m = try ModelRegistry.load(model)
            let V = m.config.vocabSize ?? 1000
            var rng = SeededRNG(seed: 1)
            let ids = (0..<batch).map { _ in (0..<length).map { _ in 5 + rng.int(below: max(1, min(V, 30000) - 5)) } }
            let b = Batch(ids: ids)
            let head: Head = m is LlamaModel ? .languageModel : .none
            _ = try m.forward(b, outputLayers: false, head: head)  // warm-up
            var times: [Double] = []
            for _ in 0..<repeatCount {
                let t0 = Bench.now()
                _ = try m.forward(b, outputLayers: false, head: head)
                times.append(Bench.now() - t0)
            }
            times.sort()
            let best = times[times.count / 2]  // the median (named `best` below for the GFLOP/s figures)
            // FLOPs: 2·tokens·(linear weights) + attention (2·2·T²·hidden per sequence and layer) + LM head.
            let tokens = Double(batch * length)
            let linearParams = m.linears.values.reduce(0.0) { $0 + Double($1.inFeatures * $1.outFeatures) }
            let H = Double(m.config.hiddenSize ?? 0)
            let L = Double(m.config.numHiddenLayers ?? 0)
            var flops = 2 * tokens * linearParams + 4 * Double(batch) * Double(length * length) * H * L
            if head == .languageModel { flops += 2 * tokens * H * Double(V) }
            // Plain sgemm of the model's most common shape for reference.
            let (mm, nn, kk) = (batch * length, Int(H) * 4 > 0 ? Int(m.config.intermediateSize ?? Int(H)) : 512, Int(H))
            let a = [Float](repeating: 0.5, count: mm * kk)
            let w = [Float](repeating: 0.25, count: nn * kk)
            var c = [Float](repeating: 0, count: mm * nn)
            var sbest = Double.infinity
            BLAS.setThreads(threads)  // the reference sgemm gets OpenBLAS's own threading
            defer { Parallel.configure(threads: threads) }
            for _ in 0..<repeatCount {
                let t0 = Bench.now()
                a.withUnsafeBufferPointer { pa in
                    w.withUnsafeBufferPointer { pw in
                        c.withUnsafeMutableBufferPointer { pc in
                            BLAS.sgemm(
                                transA: false, transB: true, m: mm, n: nn, k: kk, a: pa.baseAddress!, lda: kk, b: pw.baseAddress!, ldb: kk, c: pc.baseAddress!,
                                ldc: nn)
                        }
                    }
                }
                sbest = min(sbest, Bench.now() - t0)
            }
            let sgemmGF = 2 * Double(mm * nn * kk) / sbest / 1e9
            print(
                String(
                    format:
                        "coto forward: %@ batch %d x %d tokens: %.4f s = %.1f sequences/s, %.1f GFLOP/s (plain sgemm %dx%dx%d: %.1f GFLOP/s; %.0f%%); median of %d, min %.4f, max %.4f",
                    m.modelType, batch, length, best, Double(batch) / best, flops / best / 1e9, mm, nn, kk, sgemmGF, 100 * flops / best / 1e9 / sgemmGF,
                    times.count, times.first!, times.last!))
        }
    }

    struct BlasInfo: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "blas-info", abstract: "Print the OpenBLAS build and the kernel it runs.")
        func run() {
            Parallel.configure(threads: 2)
            print("coto OpenBLAS: \(BLAS.config); coto runs \(Parallel.threads) threads, BLAS single-threaded inside each")
        }
    }

    struct WriteSynthetic: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "write-synthetic", abstract: "Write a large F32 safetensors file (streamed).")
        @Argument var path: String
        @Option var gib: Double = 1
        func run() throws {
            let tensorElems = 16 << 20  // 64 MiB per tensor
            let n = max(1, Int(gib * Double(1 << 30)) / (tensorElems * 4))
            let entries = (0..<n).map { i in
                TensorEntry(
                    name: "layer.\(i).weight", dtype: .f32, shape: [4096, tensorElems / 4096],
                    source: .lazy {
                        var rng = SeededRNG(seed: UInt64(i))
                        return Storage.encode((0..<tensorElems).map { _ in rng.uniformFloat() }, dtype: .f32)
                    })
            }
            let t0 = Bench.now()
            try SafeTensorsWriter.write(entries, to: path)
            let dt = Bench.now() - t0
            let bytes = n * tensorElems * 4
            print(
                "coto write: \(bytes) bytes in \(String(format: "%.3f", dt)) s = \(String(format: "%.2f", Double(bytes) / dt / 1e9)) GB/s (including generation and fsync)"
            )
        }
    }
}

Bench.main()
