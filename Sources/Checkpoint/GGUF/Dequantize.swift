import Numerics

// Dequantization of GGUF tensor data to Float32, block by block, as ggml's reference (`dequantize_row_*` in
// ggml-quants.c) and gguf-py's `quants.py` compute it, with the same Float32 operations in the same order
// (bit-exact against gguf-py: `KQuantTests`). Blocks are independent, so a tensor's blocks are split over
// every core (`Parallel.cores`; inline inside a parallel region).

extension GGUFFile {
    /// Dequantizes `count` elements (a whole number of blocks, checked by the parser) of a type that
    /// `canDequantize`.
    public static func dequantize(_ raw: UnsafeRawBufferPointer, type: GGMLType, count: Int) -> [Float] {
        var out = [Float](repeating: 0, count: count)
        out.withUnsafeMutableBufferPointer { y in
            switch type {
            case .f32: Storage.decode(raw, dtype: .f32, into: y)
            case .f16: Storage.decode(raw, dtype: .f16, into: y)
            case .bf16: Storage.decode(raw, dtype: .bf16, into: y)
            default:
                guard let block = blockDecoder(type) else { return }
                let (n, bytes) = type.block
                let base = raw.baseAddress!
                let dst = y.baseAddress!
                Parallel.forEach(count / n, minChunk: 64, threads: Parallel.cores) { range in
                    for b in range { block(base + b * bytes, dst + b * n) }
                }
            }
        }
        return out
    }

    /// The decoder of one block of a quantized type: its bytes in, its n values out.
    static func blockDecoder(_ type: GGMLType) -> ((UnsafeRawPointer, UnsafeMutablePointer<Float>) -> Void)? {
        switch type {
        case .q8_0: return Quants.q8_0
        case .q4_0: return Quants.q4_0
        case .q4_1: return Quants.q4_1
        case .q5_0: return Quants.q5_0
        case .q5_1: return Quants.q5_1
        case .q2_k: return Quants.q2K
        case .q3_k: return Quants.q3K
        case .q4_k: return Quants.q4K
        case .q5_k: return Quants.q5K
        case .q6_k: return Quants.q6K
        case .q8_k: return Quants.q8K
        default: return nil
        }
    }
}

/// One function per block type; `x` is the block's bytes, `y` its values. Layouts as ggml's `block_*` structs.
enum Quants {
    @inline(__always) static func f16(_ x: UnsafeRawPointer, _ off: Int) -> Float {
        Codec.f16ToFloat(UInt16(littleEndian: x.loadUnaligned(fromByteOffset: off, as: UInt16.self)))
    }
    @inline(__always) static func u8(_ x: UnsafeRawPointer, _ off: Int) -> UInt8 { x.load(fromByteOffset: off, as: UInt8.self) }

    /// block_q8_0 {d: f16, qs: [32] i8}: d·q.
    static func q8_0(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = f16(x, 0)
        for j in 0..<32 { y[j] = Float(Int8(bitPattern: u8(x, 2 + j))) * d }
    }

    /// block_q4_0 {d: f16, qs: [16] u8}: d·(q − 8), low nibbles first.
    static func q4_0(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = f16(x, 0)
        for j in 0..<16 {
            let q = u8(x, 2 + j)
            y[j] = Float(Int(q & 0xF) - 8) * d
            y[j + 16] = Float(Int(q >> 4) - 8) * d
        }
    }

    /// block_q4_1 {d, m: f16, qs: [16] u8}: d·q + m.
    static func q4_1(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = f16(x, 0)
        let m = f16(x, 2)
        for j in 0..<16 {
            let q = u8(x, 4 + j)
            y[j] = Float(q & 0xF) * d + m
            y[j + 16] = Float(q >> 4) * d + m
        }
    }

    /// The 5-bit quants of block_q5_0/q5_1: value j's low 4 bits from qs (low nibbles first), bit 4 from qh.
    @inline(__always) static func q5(_ qs: UInt8, _ qh: UInt32, _ j: Int) -> Int {
        let low = j < 16 ? Int(qs & 0xF) : Int(qs >> 4)
        return low | Int((qh >> UInt32(j)) & 1) << 4
    }

    /// block_q5_0 {d: f16, qh: u32, qs: [16] u8}: d·(q − 16).
    static func q5_0(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = f16(x, 0)
        let qh = UInt32(littleEndian: x.loadUnaligned(fromByteOffset: 2, as: UInt32.self))
        for j in 0..<32 { y[j] = d * Float(q5(u8(x, 6 + j % 16), qh, j) - 16) }
    }

    /// block_q5_1 {d, m: f16, qh: u32, qs: [16] u8}: d·q + m.
    static func q5_1(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = f16(x, 0)
        let m = f16(x, 2)
        let qh = UInt32(littleEndian: x.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
        for j in 0..<32 { y[j] = d * Float(q5(u8(x, 8 + j % 16), qh, j)) + m }
    }

    /// block_q2_K {scales: [16] u8 (4-bit scale, 4-bit min), qs: [64] u8 (2-bit), d, dmin: f16}:
    /// (d·scale)·q − dmin·min per 16 values; value v's 2 bits at qs[(v/128)·32 + v%32] >> 2·((v%128)/32).
    static func q2K(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = f16(x, 80)
        let dmin = f16(x, 82)
        for v in 0..<256 {
            let sc = u8(x, v / 16)
            let dl = d * Float(sc & 0xF)
            let ml = dmin * Float(sc >> 4)
            let q = (u8(x, 16 + (v / 128) * 32 + v % 32) >> UInt8(2 * ((v % 128) / 32))) & 3
            y[v] = dl * Float(q) - ml
        }
    }

    /// block_q3_K {hmask: [32] u8, qs: [64] u8, scales: [12] u8 (6-bit, offset 32), d: f16}: (d·scale)·q,
    /// q = low 2 bits − 4 where the hmask bit is 0.
    static func q3K(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = f16(x, 108)
        for i in 0..<16 {
            let low = i < 8 ? u8(x, 96 + i) & 0xF : u8(x, 96 + i - 8) >> 4
            let high = (u8(x, 104 + i % 4) >> UInt8(2 * (i / 4))) & 3
            let dl = d * Float(Int(Int8(bitPattern: low | high << 4)) - 32)
            for v in (i * 16)..<(i * 16 + 16) {
                let ql = Int((u8(x, 32 + (v / 128) * 32 + v % 32) >> UInt8(2 * ((v % 128) / 32))) & 3)
                let hbit = Int((u8(x, v % 32) >> UInt8(v / 32)) & 1)
                y[v] = dl * Float(ql - ((hbit ^ 1) << 2))
            }
        }
    }

    /// The 6-bit scales and mins of block_q4_K/q5_K's 12 bytes (ggml's `get_scale_min_k4`), for sub-block j.
    @inline(__always) static func scaleMin(_ x: UnsafeRawPointer, _ off: Int, _ j: Int) -> (UInt8, UInt8) {
        if j < 4 { return (u8(x, off + j) & 63, u8(x, off + j + 4) & 63) }
        let sc = (u8(x, off + j + 4) & 0xF) | ((u8(x, off + j - 4) >> 2) & 0x30)
        let m = (u8(x, off + j + 4) >> 4) | ((u8(x, off + j) >> 2) & 0x30)
        return (sc, m)
    }

    /// block_q4_K {d, dmin: f16, scales: [12] u8, qs: [128] u8}: (d·scale)·q − dmin·min per 32 values; value v
    /// is nibble (v%64)/32 of qs[(v/64)·32 + v%32].
    static func q4K(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) { q45K(x, y, qs: 16, qh: nil) }

    /// block_q5_K {d, dmin: f16, scales: [12] u8, qh: [32] u8, qs: [128] u8}: as q4_K with bit 4 of value v
    /// from bit v/32 of qh[v%32].
    static func q5K(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) { q45K(x, y, qs: 48, qh: 16) }

    /// Q4_K and Q5_K: their quants start at byte `qs`, Q5_K's fifth bits at byte `qh`.
    @inline(__always) static func q45K(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, qs: Int, qh: Int?) {
        let d = f16(x, 0)
        let dmin = f16(x, 2)
        for j in 0..<8 {
            let (sc, m) = scaleMin(x, 4, j)
            let dl = d * Float(sc)
            let ml = dmin * Float(m)
            for i in 0..<32 {
                let v = j * 32 + i
                let low = (u8(x, qs + (v / 64) * 32 + i) >> UInt8(4 * (j % 2))) & 0xF
                let high = qh.map { (u8(x, $0 + i) >> UInt8(j)) & 1 } ?? 0
                y[v] = dl * Float(low | high << 4) - ml
            }
        }
    }

    /// block_q6_K {ql: [128] u8, qh: [64] u8, scales: [16] i8, d: f16}: (d·scale)·(q − 32) per 16 values.
    static func q6K(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = f16(x, 208)
        for v in 0..<256 {
            let (g, r) = (v / 128, v % 128)
            let low = (u8(x, g * 64 + r % 64) >> UInt8(4 * (r / 64))) & 0xF
            let high = (u8(x, 128 + g * 32 + r % 32) >> UInt8(2 * (r / 32))) & 3
            let q = Int(Int8(bitPattern: low | high << 4)) - 32
            let scale = Float(Int8(bitPattern: u8(x, 192 + v / 16)))
            y[v] = (d * scale) * Float(q)
        }
    }

    /// block_q8_K {d: f32, qs: [256] i8, bsums: [16] i16}: d·q (the sums are for dot products only).
    static func q8K(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = Float(bitPattern: UInt32(littleEndian: x.loadUnaligned(fromByteOffset: 0, as: UInt32.self)))
        for v in 0..<256 { y[v] = d * Float(Int8(bitPattern: u8(x, 4 + v))) }
    }
}
