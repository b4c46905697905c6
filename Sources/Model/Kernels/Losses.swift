import Numerics
#if canImport(Glibc)
import Glibc
#endif

extension Kernels {
    /// −log softmax(logits)[target] for one row of n logits (in Double: max-shifted sum of exponentials),
    /// and, with `dlogits`, its gradient (softmax − onehot) / divisor · scale written there (divisor: the
    /// number of rows the loss is averaged over).
    public static func crossEntropy(
        _ logits: UnsafePointer<Float>, n: Int, target: Int, dlogits: UnsafeMutablePointer<Float>? = nil,
        divisor: Double = 1, scale: Float = 1
    ) -> Double {
        var m = -Float.infinity
        for j in 0..<n { m = max(m, logits[j]) }
        var z = 0.0
        for j in 0..<n { z += exp(Double(logits[j] - m)) }
        if let dl = dlogits {
            for j in 0..<n {
                let p = exp(Double(logits[j] - m)) / z
                dl[j] = Float((p - (j == target ? 1 : 0)) / divisor) * scale
            }
        }
        return Glibc.log(z) + Double(m) - Double(logits[target])
    }

    /// −log softmax(row)[target] of one row of logits.
    public static func crossEntropy(_ row: ArraySlice<Float>, target: Int) -> Double {
        row.withUnsafeBufferPointer { crossEntropy($0.baseAddress!, n: $0.count, target: target) }
    }
}
