/// The mean Gram matrix G = XᵀX / n of a linear layer's inputs X (n tokens x dim), in Float64: what
/// RegMean weighs each adapter's delta by.
public struct InputGram: Sendable, Equatable {
    public var dim: Int
    /// Row-major dim x dim.
    public var values: [Double]
    /// The tokens it is the mean over.
    public var tokens: Int

    public init(dim: Int, values: [Double], tokens: Int) {
        (self.dim, self.values, self.tokens) = (dim, values, tokens)
    }

    /// G̃ = a·G + (1 − a)·diag(G): RegMean's shrinking of the off-diagonal toward the diagonal.
    public func shrunk(_ a: Double) -> [Double] {
        if a == 1 { return values }
        var out = values
        for i in 0..<dim { for j in 0..<dim where i != j { out[i * dim + j] *= a } }
        return out
    }
}

/// Sums XᵀX over the rows a linear layer sees (attach it to the layer, run forwards, read `gram`).
public final class GramAccumulator: @unchecked Sendable {
    public let dim: Int
    var sum: [Double]
    var scratch: [Float]
    public private(set) var tokens = 0

    public init(dim: Int) {
        self.dim = dim
        sum = [Double](repeating: 0, count: dim * dim)
        scratch = [Float](repeating: 0, count: dim * dim)
    }

    /// Adds the rows of x [rows, dim] (each row a token).
    public func add(_ x: UnsafePointer<Float>, rows: Int) {
        guard rows > 0 else { return }
        let d = dim
        scratch.withUnsafeMutableBufferPointer { ps in
            BLAS.sgemm(transA: true, transB: false, m: d, n: d, k: rows, a: x, lda: d, b: x, ldb: d, c: ps.baseAddress!, ldc: d)
        }
        for i in 0..<(d * d) { sum[i] += Double(scratch[i]) }
        tokens += rows
    }

    /// The mean Gram so far (zero before any token).
    public var gram: InputGram {
        let n = Double(max(1, tokens))
        return InputGram(dim: dim, values: sum.map { $0 / n }, tokens: tokens)
    }
}
