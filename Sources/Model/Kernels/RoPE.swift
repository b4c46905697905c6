import Numerics
#if canImport(Glibc)
import Glibc
#endif

extension Kernels {
    /// Rotary position embedding in place over rows of `heads` heads of width d: each pair (i, i + r/2)
    /// of a head's first r = `rotary` dimensions (all d unless partial, as Phi-3's partial_rotary_factor)
    /// rotated by the row's angle (cos/sin tables [rows, r/2], LLaMA's rotate_half layout); the other d − r
    /// pass through.
    public static func ropeForward(
        _ x: UnsafeMutablePointer<Float>, rows: Int, heads: Int, headDim d: Int, rotary: Int? = nil, cos: [Float], sin: [Float]
    ) {
        rotate(x, rows: rows, heads: heads, headDim: d, rotary: rotary ?? d, cos: cos, sin: sin, sign: 1)
    }

    /// RoPE is a rotation: its backward rotates the gradient back (by the negative angle), in place.
    public static func ropeBackward(
        _ dx: UnsafeMutablePointer<Float>, rows: Int, heads: Int, headDim d: Int, rotary: Int? = nil, cos: [Float], sin: [Float]
    ) {
        rotate(dx, rows: rows, heads: heads, headDim: d, rotary: rotary ?? d, cos: cos, sin: sin, sign: -1)
    }

    static func rotate(
        _ x: UnsafeMutablePointer<Float>, rows: Int, heads: Int, headDim: Int, rotary: Int, cos: [Float], sin: [Float], sign: Float
    ) {
        let half = rotary / 2
        for r in 0..<rows {
            for i in 0..<half {
                let c = cos[r * half + i]
                let s = sign * sin[r * half + i]
                for h in 0..<heads {
                    let base = x + r * heads * headDim + h * headDim
                    let a = base[i]
                    let b = base[i + half]
                    base[i] = a * c - b * s
                    base[i + half] = b * c + a * s
                }
            }
        }
    }
}
