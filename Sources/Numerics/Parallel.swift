import Dispatch
import Foundation
import CSys
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

    /// Calls `body` on disjoint subranges covering 0..<n (at least `minChunk` items each). Inside another
    /// parallel region (`forEach` or `run` bodies) it runs inline: the cores are already taken.
    public static func forEach(_ n: Int, minChunk: Int = 1, _ body: (Range<Int>) -> Void) {
        forEach(n, minChunk: minChunk, threads: threads, body)
    }

    /// The CPUs online: for work that is not BLAS and runs outside the model's parallel regions (decoding
    /// a GGUF tensor's blocks while a model loads or a fuse streams), whatever `threads` is.
    public static let cores = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))

    /// `forEach` over `t` threads instead of `threads` (inline inside another parallel region, as always).
    public static func forEach(_ n: Int, minChunk: Int = 1, threads t: Int, _ body: (Range<Int>) -> Void) {
        let chunks = coto_in_parallel() != 0 ? 1 : min(t, max(1, n / max(1, minChunk)))
        if chunks <= 1 || n <= 1 {
            if n > 0 { body(0..<n) }
            return
        }
        concurrently(chunks) { c in
            let lo = n * c / chunks
            let hi = n * (c + 1) / chunks
            if lo < hi { marked { body(lo..<hi) } }
        }
    }

    /// Runs `body(0)`, …, `body(count − 1)` at once, one thread each (a worker per core; nested `forEach`
    /// calls inside run inline).
    public static func run(_ count: Int, _ body: (Int) -> Void) {
        concurrently(count) { i in marked { body(i) } }
    }

    /// The cores this process may keep busy: `COTO_CORES` (a local grid runner gives each of its jobs a
    /// share), else no limit. With 1, parallel regions run their pieces one after the other on the calling
    /// thread: the same pieces, so the same results as on more cores, without oversubscribing the machine.
    public static let maxConcurrency: Int = {
        guard let v = ProcessInfo.processInfo.environment["COTO_CORES"], let n = Int(v), n >= 1 else { return Int.max }
        return n
    }()

    static func concurrently(_ count: Int, _ body: (Int) -> Void) {
        if maxConcurrency <= 1 {
            for i in 0..<count { body(i) }
        } else {
            DispatchQueue.concurrentPerform(iterations: count, execute: body)
        }
    }

    static func marked(_ body: () -> Void) {
        let outer = coto_in_parallel()
        coto_set_in_parallel(1)
        body()
        coto_set_in_parallel(outer)
    }
}

/// Two-stage pipeline: `produce(i)` runs on a background thread at most `depth` items ahead of
/// `consume(i, item)`, which runs on the calling thread in order 0..<count. The first error (from either
/// stage) stops both and is rethrown; the producer has finished when this returns. With depth 0 both run
/// inline, one after the other.
public enum Pipeline {
    public static func run<T>(count: Int, depth: Int, produce: @escaping (Int) throws -> T, consume: (Int, T) throws -> Void) throws {
        guard count > 0 else { return }
        guard depth > 0 else {
            for i in 0..<count { try consume(i, try produce(i)) }
            return
        }
        let slots = PipelineSlots<T>(count: count)
        // Created at 0 and signalled up to `depth`: libdispatch traps when a semaphore is released below the
        // value it was created with, which a stopped pipeline may leave.
        let space = DispatchSemaphore(value: 0)
        let ready = DispatchSemaphore(value: 0)
        for _ in 0..<depth { space.signal() }
        let group = DispatchGroup()
        DispatchQueue.global(qos: .userInitiated).async(group: group) {
            for i in 0..<count {
                space.wait()
                if slots.stopped { break }
                let r = Result { try produce(i) }
                slots.put(i, r)
                ready.signal()
                if case .failure = r { break }
            }
        }
        defer {
            slots.stop()
            space.signal()  // a producer waiting for space sees the stop
            group.wait()
        }
        for i in 0..<count {
            ready.wait()
            let item = try slots.take(i).get()
            space.signal()
            try consume(i, item)
        }
    }
}

final class PipelineSlots<T>: @unchecked Sendable {
    private var items: [Int: Result<T, Error>] = [:]
    private var isStopped = false
    private let queue = DispatchQueue(label: "coto.pipeline")
    init(count: Int) { items.reserveCapacity(2) }
    func put(_ i: Int, _ r: Result<T, Error>) { queue.sync { items[i] = r } }
    func take(_ i: Int) -> Result<T, Error> { queue.sync { items.removeValue(forKey: i)! } }
    var stopped: Bool { queue.sync { isStopped } }
    func stop() { queue.sync { isStopped = true } }
}
