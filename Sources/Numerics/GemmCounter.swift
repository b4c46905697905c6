import Foundation

/// Counts the GEMM work a process does: every `BLAS.sgemm` call's FLOPs (2·m·n·k), its thread-seconds
/// inside OpenBLAS, and the same per shape, so a run can be set against this machine's sgemm rate at the
/// shapes it actually ran (its compute floor, `coto-bench gemm-rate`). Off unless `enable()` is called (the
/// commands do when `COTO_COST_DIR` is set): then each call pays two clock reads and a lock.
public enum GemmCounter {
    /// One GEMM shape: op(A) m x k times op(B) k x n.
    public struct Shape: Hashable, Sendable, Comparable {
        public var m: Int, n: Int, k: Int, transA: Bool, transB: Bool
        public init(m: Int, n: Int, k: Int, transA: Bool, transB: Bool) {
            (self.m, self.n, self.k, self.transA, self.transB) = (m, n, k, transA, transB)
        }
        public var flops: Double { 2 * Double(m) * Double(n) * Double(k) }
        public static func < (a: Shape, b: Shape) -> Bool {
            (a.m, a.n, a.k, a.transA ? 1 : 0, a.transB ? 1 : 0) < (b.m, b.n, b.k, b.transA ? 1 : 0, b.transB ? 1 : 0)
        }
    }

    /// What was counted for one shape (or in all).
    public struct Tally: Sendable, Equatable {
        public var calls = 0
        public var flops = 0.0
        public var seconds = 0.0
        public init(calls: Int = 0, flops: Double = 0, seconds: Double = 0) { (self.calls, self.flops, self.seconds) = (calls, flops, seconds) }
        public mutating func add(_ o: Tally) {
            calls += o.calls
            flops += o.flops
            seconds += o.seconds
        }
    }

    nonisolated(unsafe) public private(set) static var enabled = false
    nonisolated(unsafe) private static var shapes: [Shape: Tally] = [:]
    private static let lock = NSLock()

    public static func enable() { enabled = true }

    static func record(_ shape: Shape, seconds: Double) {
        lock.lock()
        shapes[shape, default: Tally()].add(Tally(calls: 1, flops: shape.flops, seconds: seconds))
        lock.unlock()
    }

    /// Everything counted so far, per shape.
    public static var snapshot: [Shape: Tally] {
        lock.lock()
        defer { lock.unlock() }
        return shapes
    }

    /// The sum over shapes.
    public static func total(_ s: [Shape: Tally]) -> Tally {
        var t = Tally()
        for v in s.values { t.add(v) }
        return t
    }
}
