import Testing
@testable import Numerics

/// Bytes at a fixed address for as long as the test holds them (a stand-in for a file mapping).
private final class Bytes {
    let p: UnsafeMutableRawPointer
    let count: Int
    let offset: Int
    init(_ b: [UInt8], offset: Int = 0) {
        count = b.count
        self.offset = offset
        p = UnsafeMutableRawPointer.allocate(byteCount: b.count + offset, alignment: 16)
        (p + offset).copyMemory(from: b, byteCount: b.count)
    }
    var buffer: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: p + offset, count: count) }
    deinit { p.deallocate() }
}

/// `WeightMatrix`: BF16 / F16 bytes used in place give the products of their Float32 decode, whatever the
/// block split (rows not a multiple of the block, one row or many, every thread count).
@Suite(.serialized) struct WeightMatrixTests {
    func random(_ n: Int, seed: UInt64) -> [Float] {
        var rng = SeededRNG(seed: seed)
        return (0..<n).map { _ in rng.uniformFloat() * 2 - 1 }
    }

    func reference(_ x: [Float], _ w: [Float], n: Int, rows: Int, cols: Int, transposed: Bool) -> [Float] {
        // Double accumulation: the tolerance covers Float32 BLAS's rounding only.
        let outW = transposed ? rows : cols
        var y = [Float](repeating: 0, count: n * outW)
        for i in 0..<n {
            for o in 0..<outW {
                var s = 0.0
                if transposed {
                    for k in 0..<cols { s += Double(x[i * cols + k]) * Double(w[o * cols + k]) }
                } else {
                    for k in 0..<rows { s += Double(x[i * rows + k]) * Double(w[k * cols + o]) }
                }
                y[i * outW + o] = Float(s)
            }
        }
        return y
    }

    @Test(arguments: [DType.bf16, .f16, .f32], [1, 2])
    func productsEqualTheDecodedMatrix(dtype: DType, threads: Int) throws {
        Parallel.configure(threads: threads)
        defer { Parallel.configure(threads: 1) }
        // 70 rows: not a multiple of the block (cols 1000 → 64-row blocks); 9 and 1 input rows.
        for (rows, cols) in [(70, 1000), (300, 48), (5, 7)] {
            let bytes = Storage.encode(random(rows * cols, seed: UInt64(rows)), dtype: dtype)
            let decoded = bytes.withUnsafeBytes { Storage.decode($0, dtype: dtype) }
            let held = Bytes(bytes)
            let w = try #require(WeightMatrix(mapped: held.buffer, dtype: dtype, rows: rows, cols: cols, owner: held))
            #expect(w.isMapped && w.dtype == dtype && w.byteCount == bytes.count)
            #expect(w.toArray() == decoded)
            var r = [Float](repeating: 0, count: cols)
            r.withUnsafeMutableBufferPointer { w.row(rows - 1, into: $0.baseAddress!) }
            #expect(r == Array(decoded[((rows - 1) * cols)...]))
            for n in [1, 9] {
                let x = random(n * cols, seed: 7)
                var y = [Float](repeating: 0, count: n * rows)
                x.withUnsafeBufferPointer { px in y.withUnsafeMutableBufferPointer { w.multiplyTransposed(px.baseAddress!, rows: n, into: $0.baseAddress!) } }
                let want = reference(x, decoded, n: n, rows: rows, cols: cols, transposed: true)
                #expect(relErrF(y, want) < 1e-6, "\(dtype) \(rows)x\(cols) n=\(n): \(relErrF(y, want))")
                // beta = 1 adds to what y held.
                let before = y
                x.withUnsafeBufferPointer { px in
                    y.withUnsafeMutableBufferPointer { w.multiplyTransposed(px.baseAddress!, rows: n, into: $0.baseAddress!, beta: 1) }
                }
                #expect(relErrF(y, before.map { 2 * $0 }) < 1e-6)
                let dy = random(n * rows, seed: 8)
                var dx = [Float](repeating: 0, count: n * cols)
                dy.withUnsafeBufferPointer { pd in dx.withUnsafeMutableBufferPointer { w.multiply(pd.baseAddress!, rows: n, into: $0.baseAddress!) } }
                let wantDx = reference(dy, decoded, n: n, rows: rows, cols: cols, transposed: false)
                #expect(relErrF(dx, wantDx) < 1e-6, "\(dtype) \(rows)x\(cols) n=\(n) dx: \(relErrF(dx, wantDx))")
            }
        }
    }

    @Test func refusesWhatCannotBeUsedInPlace() {
        let bf = Bytes(Storage.encode([1, 2, 3, 4, 5, 6], dtype: .bf16), offset: 1)
        #expect(WeightMatrix(mapped: bf.buffer, dtype: .bf16, rows: 2, cols: 3, owner: bf) == nil)  // odd address
        let ok = Bytes(Storage.encode([1, 2, 3, 4, 5, 6], dtype: .bf16))
        #expect(WeightMatrix(mapped: ok.buffer, dtype: .bf16, rows: 3, cols: 3, owner: ok) == nil)  // size
        let i8 = Bytes([1, 2, 3, 4, 5, 6])
        #expect(WeightMatrix(mapped: i8.buffer, dtype: .i8, rows: 2, cols: 3, owner: i8) == nil)  // dtype
        // Decoding instead gives owned Float32 of the same values.
        let owned = WeightMatrix(decoding: i8.buffer, dtype: .i8, rows: 2, cols: 3)
        #expect(!owned.isMapped && owned.dtype == .f32 && owned.toArray() == [1, 2, 3, 4, 5, 6])
    }
}

private func relErrF(_ a: [Float], _ b: [Float]) -> Double {
    var num = 0.0
    var den = 0.0
    for (x, y) in zip(a, b) {
        num += Double(x - y) * Double(x - y)
        den += Double(y) * Double(y)
    }
    return (num / max(den, 1e-30)).squareRoot()
}
