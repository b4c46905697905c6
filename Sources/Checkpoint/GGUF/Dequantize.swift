import Numerics

// Dequantization of GGUF tensor data to Float32, block by block, as ggml does.

extension GGUFFile {
    /// Dequantizes `count` elements (a whole number of blocks, checked by the parser).
    public static func dequantize(_ raw: UnsafeRawBufferPointer, type: GGMLType, count: Int) -> [Float] {
        var out = [Float](repeating: 0, count: count)
        out.withUnsafeMutableBufferPointer { y in
            @inline(__always) func f16(_ off: Int) -> Float {
                Codec.f16ToFloat(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: off, as: UInt16.self)))
            }
            switch type {
            case .f32: Storage.decode(raw, dtype: .f32, into: y)
            case .f16: Storage.decode(raw, dtype: .f16, into: y)
            case .bf16: Storage.decode(raw, dtype: .bf16, into: y)
            case .q8_0:
                for b in 0..<(count / 32) {
                    let base = b * 34
                    let d = f16(base)
                    for j in 0..<32 { y[b * 32 + j] = Float(Int8(bitPattern: raw[base + 2 + j])) * d }
                }
            case .q4_0:
                for b in 0..<(count / 32) {
                    let base = b * 18
                    let d = f16(base)
                    for j in 0..<16 {
                        let q = raw[base + 2 + j]
                        y[b * 32 + j] = Float(Int(q & 0xF) - 8) * d
                        y[b * 32 + j + 16] = Float(Int(q >> 4) - 8) * d
                    }
                }
            case .q4_1:
                for b in 0..<(count / 32) {
                    let base = b * 20
                    let d = f16(base)
                    let m = f16(base + 2)
                    for j in 0..<16 {
                        let q = raw[base + 4 + j]
                        y[b * 32 + j] = Float(q & 0xF) * d + m
                        y[b * 32 + j + 16] = Float(q >> 4) * d + m
                    }
                }
            default: break
            }
        }
        return out
    }
}
