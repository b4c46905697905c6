import Numerics
#if canImport(Glibc)
import Glibc
#endif

// LayerNorm (BERT) and RMSNorm (the llama family), forward beside backward.

extension Kernels {
    /// y = (x − mean)·rstd·w + b over rows of width d, in place (biased variance, as torch). With `xhat`
    /// and `rstd` the normalized rows [rows, d] and 1/σ [rows] are kept for the backward.
    public static func layerNormForward(
        _ x: UnsafeMutablePointer<Float>, rows: Int, d: Int, weight: [Float], bias: [Float], eps: Float,
        xhat: UnsafeMutablePointer<Float>? = nil, rstd: UnsafeMutablePointer<Float>? = nil
    ) {
        weight.withUnsafeBufferPointer { w in
            bias.withUnsafeBufferPointer { b in
                Parallel.forEach(rows, minChunk: 16) { range in
                    for r in range {
                        let row = x + r * d
                        var mean: Float = 0
                        for j in 0..<d { mean += row[j] }
                        mean /= Float(d)
                        var v: Float = 0
                        for j in 0..<d {
                            let c = row[j] - mean
                            v += c * c
                        }
                        v /= Float(d)
                        let inv = 1 / (v + eps).squareRoot()
                        rstd?[r] = inv
                        for j in 0..<d {
                            let h = (row[j] - mean) * inv
                            xhat?[r * d + j] = h
                            row[j] = h * w[j] + b[j]
                        }
                    }
                }
            }
        }
    }

    /// dx = rstd · (g − mean(g) − x̂·mean(g·x̂)) with g = dy ⊙ w, from the forward's x̂ and rstd.
    public static func layerNormBackward(_ dy: [Float], xhat: [Float], rstd: [Float], weight w: [Float], rows: Int, d: Int) -> [Float] {
        var dx = [Float](repeating: 0, count: rows * d)
        for r in 0..<rows {
            var m1: Float = 0
            var m2: Float = 0
            for j in 0..<d {
                let g = dy[r * d + j] * w[j]
                m1 += g
                m2 += g * xhat[r * d + j]
            }
            m1 /= Float(d)
            m2 /= Float(d)
            for j in 0..<d {
                let g = dy[r * d + j] * w[j]
                dx[r * d + j] = rstd[r] * (g - m1 - xhat[r * d + j] * m2)
            }
        }
        return dx
    }

    /// out[r] = w ⊙ x[r]·rms, rms = (mean(x[r]²) + eps)^-½ (LLaMA RMSNorm, in Float32 as transformers).
    /// With `rms` the factor [rows] is kept for the backward.
    public static func rmsNormForward(
        _ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, rows: Int, d: Int, weight: [Float], eps: Float,
        rms: UnsafeMutablePointer<Float>? = nil
    ) {
        weight.withUnsafeBufferPointer { w in
            Parallel.forEach(rows, minChunk: 16) { range in
                for r in range {
                    let row = x + r * d
                    let o = out + r * d
                    var ss: Float = 0
                    for j in 0..<d { ss += row[j] * row[j] }
                    let inv = 1 / (ss / Float(d) + eps).squareRoot()
                    rms?[r] = inv
                    for j in 0..<d { o[j] = w[j] * (row[j] * inv) }
                }
            }
        }
    }

    /// dx = r·g − x·r³·(Σ g·x)/d with g = w ⊙ dy, from the forward's input x and factor r.
    public static func rmsNormBackward(_ dy: [Float], x: [Float], rms r: [Float], weight w: [Float], rows: Int, d: Int) -> [Float] {
        var dx = [Float](repeating: 0, count: rows * d)
        for i in 0..<rows {
            var dot: Float = 0
            for j in 0..<d { dot += w[j] * dy[i * d + j] * x[i * d + j] }
            let r3 = r[i] * r[i] * r[i] / Float(d)
            for j in 0..<d { dx[i * d + j] = r[i] * w[j] * dy[i * d + j] - x[i * d + j] * r3 * dot }
        }
        return dx
    }
}
