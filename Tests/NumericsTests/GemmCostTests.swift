import Testing
@testable import Numerics

/// The GEMM counter and the compute floor: calls counted with their FLOPs, the floor of known work at known
/// rates by hand, the dominant shapes, and a measured rate that is a rate.
@Suite struct GemmCostTests {
    @Test func theCounterCountsEveryCallOfAShapeWithItsFlops() {
        GemmCounter.enable()
        // A shape no other test uses (tests run side by side and share the counter).
        let shape = GemmCounter.Shape(m: 7, n: 13, k: 29, transA: true, transB: false)
        let before = GemmCounter.snapshot[shape] ?? .init()
        let a = [Float](repeating: 1, count: 29 * 7)
        let b = [Float](repeating: 2, count: 29 * 13)
        var c = [Float](repeating: 0, count: 7 * 13)
        for _ in 0..<3 {
            BLAS.sgemm(transA: true, transB: false, m: 7, n: 13, k: 29, a: a, lda: 7, b: b, ldb: 13, c: &c, ldc: 13)
        }
        let after = GemmCounter.snapshot[shape] ?? .init()
        #expect(after.calls - before.calls == 3)
        #expect(after.flops - before.flops == 3 * 2 * 7 * 13 * 29)
        #expect(after.seconds > before.seconds)
        #expect(c.allSatisfy { $0 == 58 })
        // The record carries the totals and the shape.
        let r = CostRecord.current(started: Clock.now() - 1)
        #expect(r.gemmFlops >= after.flops && r.wallSeconds >= 1 && r.cpuSeconds > 0)
        #expect(r.shapes.count <= CostRecord.keptShapes)
    }

    @Test func theFloorOfKnownWorkAtKnownRates() {
        let big = GemmCounter.Shape(m: 256, n: 384, k: 384, transA: false, transB: true)
        let small = GemmCounter.Shape(m: 16, n: 16, k: 32, transA: false, transB: true)
        let other = GemmCounter.Shape(m: 3, n: 3, k: 3, transA: false, transB: false)
        let rates = GemmRates(
            cpu: "test", avx512: false, blas: "none", cores: 2,
            rates: [
                .init(m: 256, n: 384, k: 384, transA: false, transB: true, share: 0.75, oneCore: 50, blasThreads: 90, everyCore: 100),
                .init(m: 16, n: 16, k: 32, transA: false, transB: true, share: 0.25, oneCore: 5, blasThreads: 4, everyCore: 10),
            ])
        // Mean rate: FLOP-weighted harmonic, 1 / (0.75/100 + 0.25/10) = 30.77 GFLOP/s.
        #expect(abs(rates.effectiveRate - 1 / (0.75 / 100 + 0.25 / 10)) < 1e-9)
        // 300 GFLOP at 100, 100 GFLOP at 10, and 40 GFLOP of an unmeasured shape at the mean rate.
        let work: [GemmCounter.Shape: GemmCounter.Tally] = [
            big: .init(calls: 1, flops: 300e9), small: .init(calls: 1, flops: 100e9), other: .init(calls: 1, flops: 40e9),
        ]
        let floor = rates.floorSeconds(shapes: work, totalFlops: 440e9)
        #expect(abs(floor - (3 + 10 + 40 / rates.effectiveRate)) < 1e-9)
        // FLOPs a record did not keep per shape count at the mean rate too.
        #expect(abs(rates.floorSeconds(shapes: work, totalFlops: 500e9) - floor - 60 / rates.effectiveRate) < 1e-9)
    }

    @Test func theDominantShapesCoverTheFlopsHeaviestFirst() {
        var work: [GemmCounter.Shape: GemmCounter.Tally] = [:]
        for (i, f) in [50.0, 30, 15, 4, 1, 0].enumerated() {
            work[.init(m: i + 1, n: 1, k: 1, transA: false, transB: false)] = .init(calls: 1, flops: f)
        }
        let d = GemmRates.dominant(work, coverage: 0.95)
        #expect(d.map(\.0.m) == [1, 2, 3])
        #expect(abs(d.map(\.1).reduce(0, +) - 0.95) < 1e-12)
        #expect(GemmRates.dominant(work, coverage: 0.99).count == 4)
        #expect(GemmRates.dominant(work, coverage: 1, limit: 2).count == 2)
        #expect(GemmRates.dominant([:]).isEmpty)
    }

    @Test func aMeasuredRateIsAPositiveRate() {
        let s = GemmCounter.Shape(m: 64, n: 64, k: 64, transA: false, transB: true)
        let one = GemmRates.measure(s, repeats: 3, minSeconds: 0.002)
        let two = GemmRates.measure(s, parallelCopies: 2, repeats: 3, minSeconds: 0.002)
        // Any CPU this runs on does 64³ GEMMs between 0.1 and 10,000 GFLOP/s.
        #expect(one > 0.1 && one < 10_000 && two > 0.1 && two < 10_000)
        #expect(GemmRates.measure(.init(m: 0, n: 4, k: 4, transA: false, transB: false)) == 0)
    }
}
