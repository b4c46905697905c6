/// Scalar conversions between storage dtypes and Float32.
///
/// Rounding: Float32 -> BF16 and Float32 -> F16 round to nearest, ties to even, exactly as
/// torch's `.to(torch.bfloat16)` (round_to_nearest_even; every NaN -> 0xFFFF as torch's CPU kernel writes) and numpy's
/// `astype(np.float16)` (overflow to +-inf, subnormals kept).
public enum Codec {
    // MARK: bfloat16

    @inline(__always)
    public static func bf16ToFloat(_ bits: UInt16) -> Float {
        Float(bitPattern: UInt32(bits) << 16)
    }

    @inline(__always)
    public static func floatToBF16(_ value: Float) -> UInt16 {
        if value.isNaN { return 0xFFFF }  // what torch (CPU) writes for every NaN
        let u = value.bitPattern
        let bias = ((u >> 16) & 1) &+ 0x7FFF
        return UInt16(truncatingIfNeeded: (u &+ bias) >> 16)
    }

    // MARK: float16 (IEEE binary16), implemented in integer arithmetic so it is the same on every platform

    public static func f16ToFloat(_ h: UInt16) -> Float {
        let sign = UInt32(h & 0x8000) << 16
        let exp = Int((h >> 10) & 0x1F)
        let mant = UInt32(h & 0x3FF)
        if exp == 0 {
            if mant == 0 { return Float(bitPattern: sign) }
            // Subnormal: mant * 2^-24.
            let v = Float(mant) * Float(bitPattern: 0x3380_0000)  // 2^-24
            return sign != 0 ? -v : v
        }
        if exp == 31 {
            if mant == 0 { return Float(bitPattern: sign | 0x7F80_0000) }
            return Float(bitPattern: sign | 0x7FC0_0000 | (mant << 13))
        }
        return Float(bitPattern: sign | UInt32(exp - 15 + 127) << 23 | mant << 13)
    }

    public static func floatToF16(_ f: Float) -> UInt16 {
        let u = f.bitPattern
        let sign = UInt16((u >> 16) & 0x8000)
        let exp = Int((u >> 23) & 0xFF)
        var mant = u & 0x7F_FFFF
        if exp == 0xFF {
            if mant == 0 { return sign | 0x7C00 }
            return sign | 0x7E00 | UInt16(mant >> 13)  // quiet NaN keeping payload bits
        }
        let e = exp - 127 + 15
        if e >= 31 { return sign | 0x7C00 }  // overflow to inf
        if e <= 0 {
            // Subnormal or zero in half precision.
            if e < -10 { return sign }  // below half of the smallest subnormal: rounds to zero
            mant |= 0x80_0000  // implicit bit
            let shift = UInt32(14 - e)  // 14..24
            let half = UInt32(1) << (shift - 1)
            var r = mant >> shift
            let rem = mant & ((UInt32(1) << shift) - 1)
            if rem > half || (rem == half && (r & 1) == 1) { r += 1 }
            return sign | UInt16(r)
        }
        var r = UInt32(e) << 10 | (mant >> 13)
        let rem = mant & 0x1FFF
        if rem > 0x1000 || (rem == 0x1000 && (r & 1) == 1) { r += 1 }  // may carry into exponent / inf: correct
        return sign | UInt16(r)
    }

    // MARK: float8

    /// F8_E4M3 ("e4m3fn": bias 7, no infinities, S.1111.111 is NaN).
    public static func f8e4m3ToFloat(_ b: UInt8) -> Float {
        let sign: Float = (b & 0x80) != 0 ? -1 : 1
        let exp = Int((b >> 3) & 0xF)
        let mant = Int(b & 0x7)
        if exp == 15 && mant == 7 { return .nan }
        if exp == 0 { return sign * Float(mant) * 0x1p-9 }  // subnormal: mant/8 * 2^-6
        return sign * (1 + Float(mant) / 8) * Float(sign: .plus, exponent: exp - 7, significand: 1)
    }

    /// F8_E5M2 (bias 15, IEEE-like with inf and NaN).
    public static func f8e5m2ToFloat(_ b: UInt8) -> Float {
        f16ToFloat(UInt16(b) << 8)
    }

    /// Float32 -> F8_E5M2, round to nearest even through f16 (exact: e5m2 is the top byte of f16).
    public static func floatToF8e5m2(_ f: Float) -> UInt8 {
        let h = floatToF16(f)
        if (h & 0x7C00) == 0x7C00 && (h & 0x3FF) != 0 { return UInt8(h >> 8) | 0x02 }  // NaN stays NaN
        let low = h & 0xFF
        var hi = h >> 8
        if low > 0x80 || (low == 0x80 && (hi & 1) == 1) { hi += 1 }
        return UInt8(truncatingIfNeeded: hi)
    }

    /// Float32 -> F8_E4M3 (fn), round to nearest even, saturating to NaN beyond the range like torch.
    public static func floatToF8e4m3(_ f: Float) -> UInt8 {
        if f.isNaN { return 0x7F }
        let sign: UInt8 = f.sign == .minus ? 0x80 : 0
        let a = abs(f)
        // Largest finite 448; values that round above it become NaN (torch's float8_e4m3fn behaviour).
        if a >= 464 { return sign | 0x7F }
        // Search the 127 non-negative finite codes for the nearest, ties to even code.
        var best: UInt8 = 0
        var bestErr = Float.infinity
        for code in UInt8(0)...UInt8(0x7E) {
            let v = f8e4m3ToFloat(code)
            let err = abs(v - a)
            if err < bestErr || (err == bestErr && (code & 1) == 0) {
                best = code
                bestErr = err
            }
        }
        return sign | best
    }
}
