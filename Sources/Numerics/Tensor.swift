/// A dense row-major Float32 tensor.
public struct Tensor: Equatable, Sendable {
    public var shape: [Int]
    public var data: [Float]

    public init(shape: [Int], data: [Float]) {
        precondition(shape.reduce(1, *) == data.count, "Tensor: shape \(shape) does not match \(data.count) elements")
        self.shape = shape
        self.data = data
    }

    public init(zeros shape: [Int]) {
        self.shape = shape
        self.data = [Float](repeating: 0, count: shape.reduce(1, *))
    }

    public var count: Int { data.count }
    public var rank: Int { shape.count }

    /// Rows and columns of a 2-D tensor (a 1-D tensor is one row).
    public var rows: Int { shape.count >= 2 ? shape[0] : 1 }
    public var cols: Int { shape.count >= 2 ? shape.dropFirst().reduce(1, *) : (shape.first ?? 1) }

    public subscript(_ i: Int, _ j: Int) -> Float {
        get { data[i * cols + j] }
        set { data[i * cols + j] = newValue }
    }

    /// Transpose of a 2-D tensor.
    public func transposed() -> Tensor {
        let r = rows
        let c = cols
        var out = [Float](repeating: 0, count: r * c)
        data.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for i in 0..<r { for j in 0..<c { dst[j * r + i] = src[i * c + j] } }
            }
        }
        return Tensor(shape: [c, r], data: out)
    }

    public func reshaped(_ newShape: [Int]) -> Tensor { Tensor(shape: newShape, data: data) }

    public static func * (s: Float, t: Tensor) -> Tensor { Tensor(shape: t.shape, data: t.data.map { s * $0 }) }

    public static func + (a: Tensor, b: Tensor) -> Tensor {
        precondition(a.shape == b.shape)
        var out = a.data
        for i in out.indices { out[i] += b.data[i] }
        return Tensor(shape: a.shape, data: out)
    }

    public static func - (a: Tensor, b: Tensor) -> Tensor {
        precondition(a.shape == b.shape)
        var out = a.data
        for i in out.indices { out[i] -= b.data[i] }
        return Tensor(shape: a.shape, data: out)
    }

    /// Frobenius norm, accumulated in Double.
    public var frobeniusNorm: Double {
        var s = 0.0
        for v in data { s += Double(v) * Double(v) }
        return s.squareRoot()
    }

    /// Largest absolute elementwise difference (NaN if shapes differ or any NaN is met).
    public func maxAbsDiff(_ other: Tensor) -> Float {
        guard shape == other.shape else { return .nan }
        var m: Float = 0
        for i in data.indices {
            let d = abs(data[i] - other.data[i])
            if d.isNaN { return .nan }
            m = max(m, d)
        }
        return m
    }
}

/// Summary statistics of a tensor's values (accumulated in Double), NaN and Inf counted apart.
public struct TensorStats: Codable, Sendable, Equatable {
    public var count: Int
    public var min: Double?
    public var max: Double?
    public var mean: Double?
    public var std: Double?
    public var nanCount: Int
    public var infCount: Int

    enum CodingKeys: String, CodingKey {
        case count, min, max, mean, std
        case nanCount = "nan_count"
        case infCount = "inf_count"
    }

    /// Welford accumulation over finite values.
    public init<S: Sequence>(values: S) where S.Element == Float {
        var acc = TensorStatsAccumulator()
        acc.add(values)
        self = acc.result
    }

    init(count: Int, nanCount: Int, infCount: Int) {
        self.count = count
        self.nanCount = nanCount
        self.infCount = infCount
    }
}

/// Streaming Welford accumulator, so statistics of a large tensor need no full Float copy.
public struct TensorStatsAccumulator {
    var n = 0, nan = 0, inf = 0
    var mean = 0.0, m2 = 0.0
    var lo = Double.infinity, hi = -Double.infinity
    public init() {}

    public mutating func add<S: Sequence>(_ values: S) where S.Element == Float {
        for v in values {
            if v.isNaN {
                nan += 1
                continue
            }
            if v.isInfinite {
                inf += 1
                continue
            }
            let x = Double(v)
            n += 1
            let d = x - mean
            mean += d / Double(n)
            m2 += d * (x - mean)
            if x < lo { lo = x }
            if x > hi { hi = x }
        }
    }

    public var result: TensorStats {
        var s = TensorStats(count: n + nan + inf, nanCount: nan, infCount: inf)
        if n > 0 {
            s.min = lo
            s.max = hi
            s.mean = mean
            s.std = n > 1 ? (m2 / Double(n - 1)).squareRoot() : 0
        }
        return s
    }
}
