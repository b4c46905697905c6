import Numerics

// Fused projections (Phi-3's qkv_proj and gate_up_proj): their output's column blocks split into separate
// buffers, and in the backward the blocks' gradients joined again.

extension Kernels {
    /// Rows of `src` [rows, Σ widths] cut into column blocks: block j goes to parts[j] [rows, widths[j]].
    public static func splitColumns(_ src: UnsafePointer<Float>, rows: Int, into parts: [(UnsafeMutablePointer<Float>, Int)]) {
        let total = parts.reduce(0) { $0 + $1.1 }
        for r in 0..<rows {
            var col = 0
            for (dst, w) in parts {
                (dst + r * w).update(from: src + r * total + col, count: w)
                col += w
            }
        }
    }

    /// The inverse of `splitColumns`: blocks [rows, w_j] side by side into one [rows, Σ w_j] array.
    public static func joinColumns(_ parts: [[Float]], widths: [Int], rows: Int) -> [Float] {
        let total = widths.reduce(0, +)
        var out = [Float](repeating: 0, count: rows * total)
        for r in 0..<rows {
            var col = 0
            for (p, w) in zip(parts, widths) {
                for j in 0..<w { out[r * total + col + j] = p[r * w + j] }
                col += w
            }
        }
        return out
    }

    /// `splitColumns` into new arrays (the training path, which keeps each block for its backward).
    public static func splitColumns(_ src: [Float], rows: Int, widths: [Int]) -> [[Float]] {
        var flat = [Float](repeating: 0, count: src.count)
        src.withUnsafeBufferPointer { ps in
            flat.withUnsafeMutableBufferPointer { pf in
                var offset = 0
                let parts = widths.map { w -> (UnsafeMutablePointer<Float>, Int) in
                    defer { offset += rows * w }
                    return (pf.baseAddress! + offset, w)
                }
                splitColumns(ps.baseAddress!, rows: rows, into: parts)
            }
        }
        var offset = 0
        return widths.map { w in
            defer { offset += rows * w }
            return Array(flat[offset..<(offset + rows * w)])
        }
    }
}
