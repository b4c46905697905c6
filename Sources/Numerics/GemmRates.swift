import Foundation

/// This machine's sgemm rate at given shapes, and the compute floor it sets for GEMM work: the time the same
/// GEMMs would take run back to back at that rate on every core. Measured by `coto-bench gemm-rate` into
/// rates.json; the report divides the time a stage took by its floor.
public struct GemmRates: Codable, Sendable, Equatable {
    public struct Rate: Codable, Sendable, Equatable {
        public var m: Int, n: Int, k: Int
        public var transA: Bool, transB: Bool
        /// This shape's part of the FLOPs the rates were measured for.
        public var share: Double
        /// GFLOP/s: one core; OpenBLAS threaded over every core; one GEMM per core side by side (independent
        /// jobs); the best of the last two is the machine's rate at the shape.
        public var oneCore: Double
        public var blasThreads: Double
        public var everyCore: Double

        enum CodingKeys: String, CodingKey {
            case m, n, k, share
            case transA = "trans_a"
            case transB = "trans_b"
            case oneCore = "gflops_one_core"
            case blasThreads = "gflops_blas_threads"
            case everyCore = "gflops_every_core"
        }

        public init(m: Int, n: Int, k: Int, transA: Bool, transB: Bool, share: Double, oneCore: Double, blasThreads: Double, everyCore: Double) {
            (self.m, self.n, self.k, self.transA, self.transB) = (m, n, k, transA, transB)
            (self.share, self.oneCore, self.blasThreads, self.everyCore) = (share, oneCore, blasThreads, everyCore)
        }

        public var shape: GemmCounter.Shape { .init(m: m, n: n, k: k, transA: transA, transB: transB) }
        public var best: Double { max(blasThreads, everyCore) }
    }

    public var cpu: String
    public var avx512: Bool
    public var blas: String
    public var cores: Int
    public var rates: [Rate]

    enum CodingKeys: String, CodingKey {
        case cpu, blas, cores, rates
        case avx512 = "avx512"
    }

    public init(cpu: String, avx512: Bool, blas: String, cores: Int, rates: [Rate]) {
        (self.cpu, self.avx512, self.blas, self.cores, self.rates) = (cpu, avx512, blas, cores, rates)
    }

    /// The FLOP-weighted rate over the measured shapes (GFLOP/s): FLOPs / the floor's seconds.
    public var effectiveRate: Double {
        let s = rates.reduce(0.0) { $0 + $1.share / $1.best }
        return s > 0 ? rates.reduce(0.0) { $0 + $1.share } / s : 0
    }

    /// The floor (seconds) of GEMM work given per shape (with `totalFlops` in all): each measured shape at its
    /// rate, the rest at the effective rate.
    public func floorSeconds(shapes: [GemmCounter.Shape: GemmCounter.Tally], totalFlops: Double) -> Double {
        var seconds = 0.0
        var covered = 0.0
        for r in rates {
            guard let t = shapes[r.shape], r.best > 0 else { continue }
            seconds += t.flops / (r.best * 1e9)
            covered += t.flops
        }
        let rest = max(0, totalFlops - covered)
        let eff = effectiveRate
        return seconds + (eff > 0 ? rest / (eff * 1e9) : 0)
    }

    /// The heaviest shapes covering `coverage` of the FLOPs (at most `limit`), with their shares.
    public static func dominant(_ shapes: [GemmCounter.Shape: GemmCounter.Tally], coverage: Double = 0.95, limit: Int = 24) -> [(
        GemmCounter.Shape, Double
    )] {
        let total = shapes.values.reduce(0.0) { $0 + $1.flops }
        guard total > 0 else { return [] }
        var out: [(GemmCounter.Shape, Double)] = []
        var sum = 0.0
        for (s, t) in shapes.filter({ $0.value.flops > 0 }).sorted(by: { $0.value.flops != $1.value.flops ? $0.value.flops > $1.value.flops : $0.key < $1.key })
        {
            if sum >= coverage * total || out.count >= limit { break }
            out.append((s, t.flops / total))
            sum += t.flops
        }
        return out
    }

    /// GFLOP/s of `shape`: median of `repeats` timings, each of enough calls to take about `minSeconds`.
    /// `parallelCopies` > 1 runs that many independent GEMMs side by side (one core each); else OpenBLAS
    /// runs one GEMM on `blasThreads` threads.
    public static func measure(
        _ shape: GemmCounter.Shape, blasThreads: Int = 1, parallelCopies: Int = 1, repeats: Int = 5, minSeconds: Double = 0.02
    ) -> Double {
        let (m, n, k) = (shape.m, shape.n, shape.k)
        guard m > 0, n > 0, k > 0 else { return 0 }
        var rng = SeededRNG(seed: 11)
        let copies = max(1, parallelCopies)
        let a = (0..<(m * k)).map { _ in rng.uniformFloat() - 0.5 }
        let b = (0..<(k * n)).map { _ in rng.uniformFloat() - 0.5 }
        let c = UnsafeMutablePointer<Float>.allocate(capacity: copies * m * n)
        c.initialize(repeating: 0, count: copies * m * n)
        defer { c.deallocate() }
        let (lda, ldb) = (shape.transA ? m : k, shape.transB ? k : n)
        func calls(_ count: Int) -> Double {
            let t0 = Clock.now()
            a.withUnsafeBufferPointer { pa in
                b.withUnsafeBufferPointer { pb in
                    guard let ba = pa.baseAddress, let bb = pb.baseAddress else { return }
                    func run(_ out: UnsafeMutablePointer<Float>) {
                        for _ in 0..<count {
                            BLAS.sgemm(transA: shape.transA, transB: shape.transB, m: m, n: n, k: k, a: ba, lda: lda, b: bb, ldb: ldb, c: out, ldc: n)
                        }
                    }
                    if copies == 1 {
                        BLAS.setThreads(blasThreads)
                        run(c)
                    } else {
                        BLAS.setThreads(1)
                        DispatchQueue.concurrentPerform(iterations: copies) { j in run(c + j * m * n) }
                    }
                }
            }
            return Clock.now() - t0
        }
        // Calls per timing: enough for `minSeconds`.
        var count = 1
        while true {
            let t = calls(count)
            if t >= minSeconds || count >= 1 << 24 { break }
            count = t <= 0 ? count * 16 : min(count * 16, max(count * 2, Int((minSeconds / t * Double(count)).rounded(.up))))
        }
        var times = (0..<max(1, repeats)).map { _ in calls(count) }
        times.sort()
        let median = times[times.count / 2]
        return median > 0 ? shape.flops * Double(count * copies) / median / 1e9 : 0
    }
}

/// The CPU this runs on: model name and whether it has AVX-512 (for every timing's label).
public enum MachineInfo {
    public static var cpuModel: String {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return "unknown CPU" }
        for line in text.split(separator: "\n") where line.hasPrefix("model name") {
            if let i = line.firstIndex(of: ":") { return line[line.index(after: i)...].trimmingCharacters(in: .whitespaces) }
        }
        return "unknown CPU"
    }

    public static var hasAVX512: Bool {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return false }
        return text.split(separator: "\n").first { $0.hasPrefix("flags") }.map { $0.split(separator: " ").contains("avx512f") } ?? false
    }
}
