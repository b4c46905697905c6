import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// Monotonic seconds, for progress, throughput and benchmarks.
public enum Clock {
    public static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }
}

/// Data parallelism over row ranges. With `threads > 1`, work is split into that many contiguous chunks
/// run concurrently and BLAS runs single-threaded inside each (no oversubscription, no OpenBLAS thread
/// start-up on the many small matrices of attention). With 1 thread, bodies run inline.
public enum Parallel {
    nonisolated(unsafe) public private(set) static var threads = 1

    /// Use `n` threads for coto's own parallel loops (and single-threaded BLAS inside them).
    public static func configure(threads n: Int) {
        threads = max(1, n)
        BLAS.setThreads(1)
    }

    /// Calls `body` on disjoint subranges covering 0..<n (at least `minChunk` items each).
    public static func forEach(_ n: Int, minChunk: Int = 1, _ body: (Range<Int>) -> Void) {
        let chunks = min(threads, max(1, n / max(1, minChunk)))
        if chunks <= 1 || n <= 1 { if n > 0 { body(0..<n) }; return }
        DispatchQueue.concurrentPerform(iterations: chunks) { c in
            let lo = n * c / chunks, hi = n * (c + 1) / chunks
            if lo < hi { body(lo..<hi) }
        }
    }
}
