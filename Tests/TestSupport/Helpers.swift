import Foundation
import Numerics

/// ‖x − y‖₂ / max(‖y‖₂, 1e-30), in Double; arrays of different lengths are infinitely apart.
public func relErr(_ x: [Float], _ y: [Float]) -> Double {
    guard x.count == y.count else { return .infinity }
    var d = 0.0
    var n = 0.0
    for i in x.indices {
        let e = Double(x[i]) - Double(y[i])
        d += e * e
        n += Double(y[i]) * Double(y[i])
    }
    return (d / max(n, 1e-30)).squareRoot()
}

/// relErr of two tensors; tensors of different shapes are infinitely apart.
public func relErr(_ x: Tensor, _ y: Tensor) -> Double {
    x.shape == y.shape ? relErr(x.data, y.data) : .infinity
}

/// A fresh temporary directory, removed when this value is released.
public final class TempDir {
    public let path: String
    public init(_ prefix: String = "coto-test") {
        path = NSTemporaryDirectory() + prefix + "-" + UUID().uuidString
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
    public func file(_ name: String) -> String { path + "/" + name }
}

/// A fresh temporary directory the caller removes.
public func makeTempDir(_ prefix: String) throws -> String {
    let d = NSTemporaryDirectory() + prefix + "-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    return d
}
