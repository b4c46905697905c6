/// Decoding raw little-endian bytes of any dtype to Float32 and encoding Float32 back.
public enum Storage {
    /// Decodes `count` elements of `dtype` from `raw` (little-endian, any alignment) into Float32.
    /// 64-bit integers and doubles are rounded to the nearest Float.
    public static func decode(_ raw: UnsafeRawBufferPointer, dtype: DType) -> [Float] {
        let n = raw.count / dtype.size
        // No zero-fill pass: every element is written by decode(_:dtype:into:).
        return [Float](unsafeUninitializedCapacity: n) { dst, count in
            decode(raw, dtype: dtype, into: dst)
            count = n
        }
    }

    public static func decode(_ raw: UnsafeRawBufferPointer, dtype: DType, into dst: UnsafeMutableBufferPointer<Float>) {
        let n = Swift.min(raw.count / dtype.size, dst.count)
        @inline(__always) func load<T: FixedWidthInteger>(_ i: Int, _: T.Type) -> T {
            T(littleEndian: raw.loadUnaligned(fromByteOffset: i * MemoryLayout<T>.size, as: T.self))
        }
        switch dtype {
        case .f32:
            #if _endian(little)
            if n > 0, let src = raw.baseAddress, let d = dst.baseAddress {
                UnsafeMutableRawPointer(d).copyMemory(from: src, byteCount: n * 4)
            }
            #else
            for i in 0..<n { dst[i] = Float(bitPattern: load(i, UInt32.self)) }
            #endif
        case .f16:
            for i in 0..<n { dst[i] = Codec.f16ToFloat(load(i, UInt16.self)) }
        case .bf16:
            for i in 0..<n { dst[i] = Codec.bf16ToFloat(load(i, UInt16.self)) }
        case .f64:
            for i in 0..<n { dst[i] = Float(Double(bitPattern: load(i, UInt64.self))) }
        case .f8e4m3:
            for i in 0..<n { dst[i] = Codec.f8e4m3ToFloat(raw[i]) }
        case .f8e5m2:
            for i in 0..<n { dst[i] = Codec.f8e5m2ToFloat(raw[i]) }
        case .bool:
            for i in 0..<n { dst[i] = raw[i] != 0 ? 1 : 0 }
        case .u8:
            for i in 0..<n { dst[i] = Float(raw[i]) }
        case .i8:
            for i in 0..<n { dst[i] = Float(Int8(bitPattern: raw[i])) }
        case .i16:
            for i in 0..<n { dst[i] = Float(load(i, Int16.self)) }
        case .u16:
            for i in 0..<n { dst[i] = Float(load(i, UInt16.self)) }
        case .i32:
            for i in 0..<n { dst[i] = Float(load(i, Int32.self)) }
        case .u32:
            for i in 0..<n { dst[i] = Float(load(i, UInt32.self)) }
        case .i64:
            for i in 0..<n { dst[i] = Float(load(i, Int64.self)) }
        case .u64:
            for i in 0..<n { dst[i] = Float(load(i, UInt64.self)) }
        }
    }

    /// Encodes Float32 values as `dtype` bytes (little-endian). Floats round to nearest even;
    /// integer dtypes round to nearest and saturate at the type's range (NaN -> 0), BOOL is `v != 0`.
    public static func encode(_ values: [Float], dtype: DType) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: values.count * dtype.size)
        out.withUnsafeMutableBytes { dst in
            values.withUnsafeBufferPointer { src in encode(src, dtype: dtype, into: dst) }
        }
        return out
    }

    public static func encode(_ src: UnsafeBufferPointer<Float>, dtype: DType, into dst: UnsafeMutableRawBufferPointer) {
        @inline(__always) func store<T: FixedWidthInteger>(_ i: Int, _ v: T) {
            dst.storeBytes(of: v.littleEndian, toByteOffset: i * MemoryLayout<T>.size, as: T.self)
        }
        @inline(__always) func int<T: FixedWidthInteger>(_ v: Float, _: T.Type) -> T {
            if v.isNaN { return 0 }
            let r = Double(v).rounded(.toNearestOrEven)
            if r <= Double(T.min) { return T.min }
            if r >= Double(T.max) { return T.max }
            return T(r)
        }
        for i in 0..<src.count {
            let v = src[i]
            switch dtype {
            case .f32: store(i, v.bitPattern)
            case .f16: store(i, Codec.floatToF16(v))
            case .bf16: store(i, Codec.floatToBF16(v))
            case .f64: store(i, Double(v).bitPattern)
            case .f8e4m3: dst[i] = Codec.floatToF8e4m3(v)
            case .f8e5m2: dst[i] = Codec.floatToF8e5m2(v)
            case .bool: dst[i] = v != 0 ? 1 : 0
            case .u8: dst[i] = int(v, UInt8.self)
            case .i8: dst[i] = UInt8(bitPattern: int(v, Int8.self))
            case .i16: store(i, int(v, Int16.self))
            case .u16: store(i, int(v, UInt16.self))
            case .i32: store(i, int(v, Int32.self))
            case .u32: store(i, int(v, UInt32.self))
            case .i64: store(i, int(v, Int64.self))
            case .u64: store(i, int(v, UInt64.self))
            }
        }
    }
}

extension Storage {
    /// Whether every value is finite (no NaN, no ±Inf), by exponent bits in a loop the compiler vectorizes.
    public static func allFinite(_ values: UnsafeBufferPointer<Float>) -> Bool {
        var bad: UInt32 = 0
        for v in values { bad |= (v.bitPattern & 0x7f80_0000) == 0x7f80_0000 ? 1 : 0 }
        return bad == 0
    }

    public static func allFinite(_ values: [Float]) -> Bool { values.withUnsafeBufferPointer { allFinite($0) } }
}
