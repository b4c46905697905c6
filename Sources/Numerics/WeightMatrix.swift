/// A frozen weight matrix [rows, cols], row-major, that a model reads and never writes: Float32 it owns, or a
/// checkpoint's bytes used where they lie (F32, BF16 or F16 in a mapped file). Half-precision weights are
/// widened to Float32 one block at a time inside each product, so a bf16 model holds its file's bytes, not
/// twice them; the arithmetic is Float32 BLAS on exactly the values a full decode would give.
public final class WeightMatrix: @unchecked Sendable {
    public let rows: Int
    public let cols: Int
    /// `.f32`, `.bf16` or `.f16`.
    public let dtype: DType
    private let base: UnsafeRawPointer
    /// What keeps `base` valid: the file mapping, or nil when this value owns (and frees) the storage.
    private let owner: AnyObject?

    /// Owned Float32 values (copied).
    public convenience init(_ values: [Float], rows: Int, cols: Int) {
        let p = UnsafeMutablePointer<Float>.allocate(capacity: max(1, rows * cols))
        values.withUnsafeBufferPointer { v in
            if let b = v.baseAddress { p.update(from: b, count: min(v.count, rows * cols)) }
        }
        self.init(owned: p, rows: rows, cols: cols)
    }

    /// Owned Float32 decoded from raw bytes of any dtype (one pass, no intermediate array).
    public convenience init(decoding raw: UnsafeRawBufferPointer, dtype: DType, rows: Int, cols: Int) {
        let p = UnsafeMutablePointer<Float>.allocate(capacity: max(1, rows * cols))
        p.initialize(repeating: 0, count: rows * cols)
        Storage.decode(raw, dtype: dtype, into: UnsafeMutableBufferPointer(start: p, count: rows * cols))
        self.init(owned: p, rows: rows, cols: cols)
    }

    private init(owned p: UnsafeMutablePointer<Float>, rows: Int, cols: Int) {
        base = UnsafeRawPointer(p)
        self.rows = rows
        self.cols = cols
        dtype = .f32
        owner = nil
    }

    /// The bytes in place (`owner` keeps them valid), or nil where they cannot be used so: a dtype other
    /// than F32/BF16/F16, a size that does not match, or an address not aligned to the element.
    public init?(mapped raw: UnsafeRawBufferPointer, dtype: DType, rows: Int, cols: Int, owner: AnyObject) {
        guard dtype == .f32 || dtype == .bf16 || dtype == .f16, raw.count == rows * cols * dtype.size, let b = raw.baseAddress,
            Int(bitPattern: b) % dtype.size == 0
        else { return nil }
        #if !_endian(little)
        return nil
        #endif
        base = b
        self.rows = rows
        self.cols = cols
        self.dtype = dtype
        self.owner = owner
    }

    deinit {
        if owner == nil { UnsafeMutableRawPointer(mutating: base).assumingMemoryBound(to: Float.self).deallocate() }
    }

    /// Whether the values are the file's bytes in place (not a Float32 copy).
    public var isMapped: Bool { owner != nil }
    /// Bytes of the values as held.
    public var byteCount: Int { rows * cols * dtype.size }

    private var f32: UnsafePointer<Float> { base.assumingMemoryBound(to: Float.self) }
    private var u16: UnsafePointer<UInt16> { base.assumingMemoryBound(to: UInt16.self) }

    /// Rows `range` as Float32 into `dst` [range.count, cols].
    public func widen(rows range: Range<Int>, into dst: UnsafeMutablePointer<Float>) {
        let start = range.lowerBound * cols
        let n = range.count * cols
        switch dtype {
        case .bf16:
            let s = u16 + start
            for i in 0..<n { dst[i] = Float(bitPattern: UInt32(s[i]) << 16) }
        case .f16:
            let s = u16 + start
            for i in 0..<n { dst[i] = Float(Float16(bitPattern: s[i])) }
        default:
            dst.update(from: f32 + start, count: n)
        }
    }

    /// Columns `range` of every row as Float32 into `dst` [rows, range.count].
    func widen(columns range: Range<Int>, into dst: UnsafeMutablePointer<Float>) {
        let w = range.count
        for r in 0..<rows {
            let o = r * cols + range.lowerBound
            let d = dst + r * w
            switch dtype {
            case .bf16: for i in 0..<w { d[i] = Float(bitPattern: UInt32(u16[o + i]) << 16) }
            case .f16: for i in 0..<w { d[i] = Float(Float16(bitPattern: u16[o + i])) }
            default: d.update(from: f32 + o, count: w)
            }
        }
    }

    /// Row `i` as Float32 into `dst` [cols].
    public func row(_ i: Int, into dst: UnsafeMutablePointer<Float>) { widen(rows: i..<(i + 1), into: dst) }

    /// Every value as Float32 (a copy).
    public func toArray() -> [Float] {
        [Float](unsafeUninitializedCapacity: rows * cols) { buf, count in
            if let d = buf.baseAddress { widen(rows: 0..<rows, into: d) }
            count = rows * cols
        }
    }

    /// Calls `body` with the values as Float32: in place for F32, else a widened copy.
    public func withFloat32<R>(_ body: (UnsafePointer<Float>) throws -> R) rethrows -> R {
        if dtype == .f32 { return try body(f32) }
        let copy = toArray()
        return try copy.withUnsafeBufferPointer { try body($0.baseAddress!) }
    }

    /// Float32 values widened per block for a product with `n` input rows: small blocks (256 KiB, in L2)
    /// when the product is bandwidth-bound (few rows), larger ones (4 MiB) when it is compute-bound, so that
    /// BLAS packs the inputs fewer times. Measured: `coto-bench half-gemm` (Docs/performance.md).
    static func blockElements(rows n: Int) -> Int { n >= 256 ? 1 << 20 : n >= 32 ? 1 << 18 : 1 << 16 }

    /// Rows (or columns) per block: `elements / width`, a multiple of 16, at least 16, at most `count`.
    static func block(count: Int, width: Int, elements: Int) -> Int { max(16, min(count, (elements / max(1, width)) / 16 * 16)) }

    /// y [n, rows] = x [n, cols] · Wᵀ + beta·y, on `Parallel.threads`. Float32 weights: the x rows are split
    /// across threads (one row: the outputs are); half weights: blocks of W's rows are, each widened once.
    public func multiplyTransposed(_ x: UnsafePointer<Float>, rows n: Int, into y: UnsafeMutablePointer<Float>, beta: Float = 0) {
        let (k, m) = (cols, rows)
        guard n > 0, m > 0 else { return }
        if dtype == .f32 && n > 1 {
            let w = f32
            Parallel.forEach(n, minChunk: 8) { r in
                BLAS.sgemm(
                    transA: false, transB: true, m: r.count, n: m, k: k, a: x + r.lowerBound * k, lda: k, b: w, ldb: k, beta: beta,
                    c: y + r.lowerBound * m, ldc: m)
            }
            return
        }
        if dtype == .f32 {
            let w = f32
            Parallel.forEach(m, minChunk: 1024) { r in
                BLAS.sgemm(
                    transA: false, transB: true, m: 1, n: r.count, k: k, a: x, lda: k, b: w + r.lowerBound * k, ldb: k, beta: beta,
                    c: y + r.lowerBound, ldc: m)
            }
            return
        }
        Self.widenedBlocks(count: m, width: k, productRows: n) { range, scratch in
            widen(rows: range, into: scratch)
            BLAS.sgemm(
                transA: false, transB: true, m: n, n: range.count, k: k, a: x, lda: k, b: scratch, ldb: k, beta: beta, c: y + range.lowerBound,
                ldc: m)
        }
    }

    /// Blocks of `count` rows or columns (each `width` long) on `Parallel.threads`, each thread with one
    /// Float32 scratch of a block, sized for a product with `productRows` input rows.
    static func widenedBlocks(count: Int, width: Int, productRows n: Int, _ body: (Range<Int>, UnsafeMutablePointer<Float>) -> Void) {
        let bs = block(count: count, width: width, elements: blockElements(rows: n))
        Parallel.forEach((count + bs - 1) / bs) { br in
            let scratch = UnsafeMutablePointer<Float>.allocate(capacity: bs * width)
            defer { scratch.deallocate() }
            for blk in br { body((blk * bs)..<min(count, blk * bs + bs), scratch) }
        }
    }

    /// dx [n, cols] = dy [n, rows] · W + beta·dx (a linear layer's input gradient). Float32 weights: one
    /// BLAS call (BLAS's own threads); half weights: blocks of W's columns on `Parallel.threads`, each
    /// widened once.
    public func multiply(_ dy: UnsafePointer<Float>, rows n: Int, into dx: UnsafeMutablePointer<Float>, beta: Float = 0) {
        let (k, c) = (rows, cols)
        guard n > 0, c > 0 else { return }
        if dtype == .f32 {
            BLAS.sgemm(transA: false, transB: false, m: n, n: c, k: k, a: dy, lda: k, b: f32, ldb: c, beta: beta, c: dx, ldc: c)
            return
        }
        Self.widenedBlocks(count: c, width: k, productRows: n) { range, scratch in
            widen(columns: range, into: scratch)
            BLAS.sgemm(
                transA: false, transB: false, m: n, n: range.count, k: k, a: dy, lda: k, b: scratch, ldb: range.count, beta: beta,
                c: dx + range.lowerBound, ldc: c)
        }
    }
}
