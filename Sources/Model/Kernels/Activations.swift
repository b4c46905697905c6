import Numerics
#if canImport(Glibc)
import Glibc
#endif

// GELU (erf, as BERT), tanh (the pooler) and SwiGLU, forward beside backward.

extension Kernels {
    /// erf in Float32 by the rational approximation XLA/Eigen use (clamped to [-4, 4]; error within a few
    /// ulp of erff), branch-free so the loop vectorizes.
    @inline(__always)
    public static func erfApprox(_ v: Float) -> Float {
        let x = min(max(v, -4), 4)
        let x2 = x * x
        var p: Float = -2.72614225801306e-10
        p = p * x2 + 2.77068142495902e-08
        p = p * x2 - 2.10102402082508e-06
        p = p * x2 - 5.69250639462346e-05
        p = p * x2 - 7.34990630326855e-04
        p = p * x2 - 2.95459980854025e-03
        p = p * x2 - 1.60960333262415e-02
        var q: Float = -1.45660718464996e-05
        q = q * x2 - 2.13374055278905e-04
        q = q * x2 - 1.68282697438203e-03
        q = q * x2 - 7.37332916720468e-03
        q = q * x2 - 1.42647390514189e-02
        return x * p / q
    }

    /// e^v in Float32 for v ≤ 0 (clamped below at −87, where it is ~1.6e-38): v = n·ln2 + r with |r| ≤ ln2/2
    /// (Cody–Waite split of ln2), e^r by its degree-7 Taylor polynomial, times 2ⁿ built in the exponent
    /// bits; within about 1 ulp of expf (relative 1.5e-7), branch-free so the loop around it vectorizes (expf is a call).
    @inline(__always)
    public static func expNegApprox(_ v: Float) -> Float {
        let x = max(min(v, 0), -87)
        // n = round(x/ln2) by the 1.5·2²³ shift: t's low mantissa bits then hold n (no checked conversion).
        let t = x * 1.44269504088896341 + 12_582_912
        let n = t - 12_582_912
        let r = (x - n * 0.693359375) + n * 2.12194440e-4
        var p: Float = 1.0 / 5040
        p = p * r + 1.0 / 720
        p = p * r + 1.0 / 120
        p = p * r + 1.0 / 24
        p = p * r + 1.0 / 6
        p = p * r + 0.5
        p = p * r + 1
        p = p * r + 1
        return p * Float(bitPattern: (t.bitPattern &- 0x4B40_0000 &+ 127) << 23)
    }

    /// GELU in place: 0.5·x·(1 + erf(x/√2)).
    public static func geluForward(_ x: UnsafeMutablePointer<Float>, count: Int) {
        Parallel.forEach(count, minChunk: 4096) { r in
            for i in r {
                let v = x[i]
                x[i] = 0.5 * v * (1 + erfApprox(v * 0.70710678118654752))
            }
        }
    }

    /// dx = dy · GELU'(x), GELU'(x) = Φ(x) + x·φ(x) with the forward's erf; `x` is the forward's input.
    public static func geluBackward(_ dy: inout [Float], x: [Float]) {
        dy.withUnsafeMutableBufferPointer { pd in
            x.withUnsafeBufferPointer { px in
                for i in 0..<min(pd.count, px.count) {
                    let v = px[i]
                    pd[i] *= 0.5 * (1 + erfApprox(v * 0.70710678118654752)) + v * expNegApprox(-0.5 * v * v) * 0.3989422804014327
                }
            }
        }
    }

    public static func tanhForward(_ x: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { x[i] = tanhf(x[i]) }
    }

    /// gate ← silu(gate) ⊙ up.
    public static func swigluForward(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count: Int) {
        Parallel.forEach(count, minChunk: 4096) { r in
            for i in r {
                let g = gate[i]
                gate[i] = g / (1 + expf(-g)) * up[i]
            }
        }
    }

    /// The gradients of gate and up from d(silu(g) ⊙ u), with the forward's g and u.
    public static func swigluBackward(_ da: [Float], gate g: [Float], up u: [Float]) -> (dGate: [Float], dUp: [Float]) {
        var dg = da
        var du = da
        for i in da.indices {
            let sg = 1 / (1 + expf(-g[i]))
            du[i] = da[i] * g[i] * sg
            dg[i] = da[i] * u[i] * sg * (1 + g[i] * (1 - sg))
        }
        return (dg, du)
    }

    /// gate ← gelu_tanh(gate) ⊙ up (GeGLU, Gemma's `gelu_pytorch_tanh`): gelu_tanh(g) =
    /// ½·g·(1 + tanh(√(2/π)·(g + 0.044715·g³))), as torch computes it.
    public static func gegluTanhForward(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count: Int) {
        Parallel.forEach(count, minChunk: 4096) { r in
            for i in r {
                let g = gate[i]
                gate[i] = 0.5 * g * (1 + tanhf(0.7978845608028654 * (g + 0.044715 * g * g * g))) * up[i]
            }
        }
    }

    /// The gradients of gate and up from d(gelu_tanh(g) ⊙ u), with the forward's g and u.
    public static func gegluTanhBackward(_ da: [Float], gate g: [Float], up u: [Float]) -> (dGate: [Float], dUp: [Float]) {
        var dg = da
        var du = da
        for i in da.indices {
            let x = g[i]
            let inner = 0.7978845608028654 * (x + 0.044715 * x * x * x)
            let th = tanhf(inner)
            let gelu = 0.5 * x * (1 + th)
            let dInner = 0.7978845608028654 * (1 + 3 * 0.044715 * x * x)
            du[i] = da[i] * gelu
            dg[i] = da[i] * u[i] * (0.5 * (1 + th) + 0.5 * x * (1 - th * th) * dInner)
        }
        return (dg, du)
    }

    /// c·tanh(x/c) in place (Gemma's final logit soft-capping).
    public static func softcapForward(_ x: UnsafeMutablePointer<Float>, count: Int, cap c: Float) {
        for i in 0..<count { x[i] = c * tanhf(x[i] / c) }
    }

    /// dx = dy·(1 − tanh²(x/c)) in place, from the forward's capped output y = c·tanh(x/c).
    public static func softcapBackward(_ dy: UnsafeMutablePointer<Float>, capped y: UnsafePointer<Float>, count: Int, cap c: Float) {
        for i in 0..<count {
            let th = y[i] / c
            dy[i] *= 1 - th * th
        }
    }
}
