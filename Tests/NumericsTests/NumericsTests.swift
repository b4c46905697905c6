import Dispatch
import Testing
import PropertyBased
@testable import Numerics

@Suite struct CodecTests {
    /// allFinite agrees with Float.isFinite on special values and on every exponent at every position.
    @Test func allFiniteFindsEveryNonFiniteValue() {
        let specials: [Float] = [.nan, -.nan, .infinity, -.infinity, Float(bitPattern: 0x7f80_0001), Float(bitPattern: 0xffc0_0000)]
        let finite: [Float] = [0, -0, 1, -1, .greatestFiniteMagnitude, -.greatestFiniteMagnitude, .leastNonzeroMagnitude, Float(bitPattern: 0x7f7f_ffff)]
        #expect(Storage.allFinite(finite) && Storage.allFinite([]))
        for x in specials {
            for pos in [0, 5, 16, 33] {
                var v = [Float](repeating: 1.5, count: 34)
                v[pos] = x
                #expect(!Storage.allFinite(v), "\(x) at \(pos)")
            }
        }
        for e in 0..<256 {
            let x = Float(bitPattern: UInt32(e) << 23 | 0x12345)
            #expect(Storage.allFinite([1, x, 2]) == x.isFinite, "exponent \(e)")
        }
    }

    @Test func f16RoundTripsEveryBitPattern() {
        for bits in 0...0xFFFF {
            let h = UInt16(bits)
            let f = Codec.f16ToFloat(h)
            if f.isNaN {
                #expect(Codec.floatToF16(f) & 0x7C00 == 0x7C00 && Codec.floatToF16(f) & 0x3FF != 0)
            } else {
                #expect(Codec.floatToF16(f) == h, "f16 \(h)")
            }
        }
    }

    @Test func bf16RoundTripsEveryBitPattern() {
        for bits in 0...0xFFFF {
            let h = UInt16(bits)
            let f = Codec.bf16ToFloat(h)
            if f.isNaN { #expect(Codec.floatToBF16(f) == 0xFFFF) } else { #expect(Codec.floatToBF16(f) == h) }
        }
    }

    @Test func bf16RoundsToNearestEven() {
        // 1 + 2^-8 is exactly between 1 and 1 + 2^-7: ties to even (1.0).
        #expect(Codec.floatToBF16(1 + 0x1p-8) == 0x3F80)
        // 1 + 3 * 2^-8 is between 1 + 2^-7 (odd) and 1 + 2^-6 (even): ties to even.
        #expect(Codec.floatToBF16(1 + 3 * 0x1p-8) == 0x3F82)
        #expect(Codec.floatToBF16(Float.greatestFiniteMagnitude) == 0x7F80)  // overflows to inf
    }

    @Test func f16EdgeCases() {
        #expect(Codec.floatToF16(65504) == 0x7BFF)
        #expect(Codec.floatToF16(65520) == 0x7C00)  // rounds up to inf
        #expect(Codec.floatToF16(0x1p-24) == 0x0001)  // smallest subnormal
        #expect(Codec.floatToF16(0x1p-25) == 0x0000)  // tie to even -> 0
        #expect(Codec.floatToF16(0x1.8p-25) == 0x0001)
        #expect(Codec.floatToF16(-0.0) == 0x8000)
    }

    @Test func f8DecodesKnownValues() {
        #expect(Codec.f8e4m3ToFloat(0x7E) == 448)
        #expect(Codec.f8e4m3ToFloat(0x7F).isNaN)
        #expect(Codec.f8e4m3ToFloat(0x01) == 0x1p-9)
        #expect(Codec.f8e5m2ToFloat(0x7B) == 57344)
        #expect(Codec.f8e5m2ToFloat(0x7C) == .infinity)
        for code in UInt8(0)...UInt8(0x7E) {
            #expect(Codec.floatToF8e4m3(Codec.f8e4m3ToFloat(code)) == code)
        }
    }

    @Test func storageRoundTripsEveryDType() async {
        await propertyCheck(input: Gen.int(in: -100...100).array(of: 1...40)) { ints in
            let values = ints.map(Float.init)
            for dtype in DType.allCases {
                let bytes = Storage.encode(values, dtype: dtype)
                #expect(bytes.count == values.count * dtype.size)
                let back = bytes.withUnsafeBytes { Storage.decode($0, dtype: dtype) }
                let expected: [Float]
                switch dtype {
                case .bool: expected = values.map { $0 != 0 ? 1 : 0 }
                case .u8, .u16, .u32, .u64: expected = values.map { max(0, $0) }
                case .f8e4m3, .f8e5m2:
                    expected = values.map { dtype == .f8e4m3 ? Codec.f8e4m3ToFloat(Codec.floatToF8e4m3($0)) : Codec.f8e5m2ToFloat(Codec.floatToF8e5m2($0)) }
                default: expected = values
                }
                #expect(back == expected, "\(dtype)")
            }
        }
    }
}

@Suite struct LinearAlgebraTests {
    func naive(_ a: Tensor, _ b: Tensor) -> Tensor {
        var out = Tensor(zeros: [a.rows, b.cols])
        for i in 0..<a.rows {
            for j in 0..<b.cols {
                var s: Double = 0
                for k in 0..<a.cols { s += Double(a[i, k]) * Double(b[k, j]) }
                out[i, j] = Float(s)
            }
        }
        return out
    }

    func random(_ shape: [Int], seed: UInt64) -> Tensor {
        var rng = SeededRNG(seed: seed)
        return Tensor(shape: shape, data: (0..<shape.reduce(1, *)).map { _ in Float(rng.normal()) })
    }

    @Test func matmulVariantsMatchNaive() {
        let a = random([5, 7], seed: 1)
        let b = random([7, 3], seed: 2)
        let ref = naive(a, b)
        #expect(BLAS.matmul(a, b).maxAbsDiff(ref) < 1e-5)
        #expect(BLAS.matmul(a.transposed(), b, transA: true).maxAbsDiff(ref) < 1e-5)
        #expect(BLAS.matmul(a, b.transposed(), transB: true).maxAbsDiff(ref) < 1e-5)
        #expect(BLAS.matmul(a.transposed(), b.transposed(), transA: true, transB: true).maxAbsDiff(ref) < 1e-5)
        #expect(BLAS.matmul(a, b, alpha: 2).maxAbsDiff(2 * ref) < 1e-5)
    }

    @Test func batchedMatmul() {
        let a = random([3, 4, 5], seed: 3)
        let b = random([3, 5, 2], seed: 4)
        let out = BLAS.batchedMatmul(a, b)
        for i in 0..<3 {
            let ai = Tensor(shape: [4, 5], data: Array(a.data[(i * 20)..<((i + 1) * 20)]))
            let bi = Tensor(shape: [5, 2], data: Array(b.data[(i * 10)..<((i + 1) * 10)]))
            let oi = Tensor(shape: [4, 2], data: Array(out.data[(i * 8)..<((i + 1) * 8)]))
            #expect(oi.maxAbsDiff(naive(ai, bi)) < 1e-5)
        }
    }

    @Test func svdReconstructsAndIsOrdered() throws {
        for (m, n) in [(6, 4), (4, 6), (5, 5), (1, 3)] {
            let a = random([m, n], seed: UInt64(m * 10 + n))
            let (u, s, vt) = try LAPACK.svd(a)
            #expect(zip(s, s.dropFirst()).allSatisfy { $0 >= $1 })
            var us = u
            for i in 0..<u.rows { for j in 0..<s.count { us[i, j] *= s[j] } }
            #expect(BLAS.matmul(us, vt).maxAbsDiff(a) < 1e-4)
        }
    }

    @Test func qrIsOrthonormalAndReconstructs() throws {
        let a = random([7, 3], seed: 9)
        let (q, r) = try LAPACK.qr(a)
        #expect(BLAS.matmul(q, r).maxAbsDiff(a) < 1e-5)
        let qtq = BLAS.matmul(q, q, transA: true)
        for i in 0..<3 { for j in 0..<3 { #expect(abs(qtq[i, j] - (i == j ? 1 : 0)) < 1e-5) } }
        for i in 1..<3 { for j in 0..<i { #expect(r[i, j] == 0) } }
    }
}

@Suite struct RNGTests {
    @Test func streamIsFixed() {
        // The stream is part of our reproducibility contract: these values must never change.
        var rng = SeededRNG(seed: 42)
        let first = (0..<3).map { _ in rng.next() }
        var again = SeededRNG(seed: 42)
        #expect(first == (0..<3).map { _ in again.next() })
        // Computed independently from the published SplitMix64 + xoshiro256** algorithms.
        #expect(first == [0x1578_0B2E_0C2E_C716, 0x6104_D986_6D11_3A7E, 0xAE17_5332_39E4_99A1])
    }

    @Test func uniformAndBoundedInts() async {
        await propertyCheck(input: Gen.uint64(in: 0...UInt64.max), Gen.int(in: 1...1000)) { seed, n in
            var rng = SeededRNG(seed: seed)
            for _ in 0..<50 {
                let u = rng.uniformFloat()
                #expect(u >= 0 && u < 1)
                let i = rng.int(below: n)
                #expect(i >= 0 && i < n)
            }
        }
    }

    @Test func shuffleIsAPermutation() {
        var rng = SeededRNG(seed: 7)
        var a = Array(0..<100)
        rng.shuffle(&a)
        #expect(a.sorted() == Array(0..<100))
        #expect(a != Array(0..<100))
    }

    @Test func normalHasUnitMoments() {
        var rng = SeededRNG(seed: 3)
        let xs = (0..<20000).map { _ in rng.normal() }
        let mean = xs.reduce(0, +) / Double(xs.count)
        let v = xs.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(xs.count - 1)
        #expect(abs(mean) < 0.03 && abs(v - 1) < 0.05)
    }
}

@Suite struct PipelineTests {
    struct Boom: Error, Equatable { let at: Int }

    /// Items arrive in order, each produced once, never more than `depth` ahead of the consumer.
    @Test(arguments: [0, 1, 2, 5])
    func deliversInOrderWithBoundedLookahead(depth: Int) throws {
        let produced = Counter()
        var seen: [Int] = []
        try Pipeline.run(
            count: 50, depth: depth,
            produce: { i -> Int in
                produced.add()
                return i * i
            },
            consume: { i, v in
                #expect(v == i * i)
                #expect(produced.value <= i + 1 + depth, "produced \(produced.value) while consuming \(i)")
                seen.append(i)
            })
        #expect(seen == Array(0..<50) && produced.value == 50)
    }

    /// A producer error reaches the caller after the items before it; a consumer error stops the producer.
    @Test func errorsFromEitherSideStopBoth() throws {
        var consumed: [Int] = []
        #expect(throws: Boom(at: 7)) {
            try Pipeline.run(
                count: 20, depth: 2,
                produce: { i -> Int in
                    if i == 7 { throw Boom(at: 7) }
                    return i
                }, consume: { i, _ in consumed.append(i) })
        }
        #expect(consumed == Array(0..<7))
        let produced = Counter()
        #expect(throws: Boom(at: 3)) {
            try Pipeline.run(
                count: 1000, depth: 2,
                produce: { i -> Int in
                    produced.add()
                    return i
                },
                consume: { i, _ in if i == 3 { throw Boom(at: 3) } })
        }
        #expect(produced.value <= 3 + 1 + 2 + 1)  // stopped right after, not run to the end
    }
}

final class Counter: @unchecked Sendable {
    private var n = 0
    private let q = DispatchQueue(label: "counter")
    func add() { q.sync { n += 1 } }
    var value: Int { q.sync { n } }
}
