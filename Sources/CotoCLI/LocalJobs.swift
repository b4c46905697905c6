import Foundation
import Numerics

/// `--jobs N`: a sharded command (a training grid, a sweep, a search) run as its shards 1/N … N/N in N local
/// processes side by side; the first to fail stops the others. Each child is this executable with the same
/// arguments, `--jobs` removed and `--shard k/N` added, and `COTO_CORES` = cores / N: its parallel regions run
/// the same pieces as on all cores, one after the other, so its results are those of one process. Children
/// inherit stdout and stderr.
public enum LocalJobs {
    /// The command line without `--jobs N` / `--jobs=N`.
    public static func argumentsWithoutJobs(_ arguments: [String]) -> [String] {
        var args = arguments
        var i = 0
        while i < args.count {
            if args[i] == "--jobs" {
                args.removeSubrange(i..<min(args.count, i + 2))
            } else if args[i].hasPrefix("--jobs=") {
                args.remove(at: i)
            } else {
                i += 1
            }
        }
        return args
    }

    /// Runs the shards and waits for all; throws naming every failed shard. Returns the cores each had.
    @discardableResult
    public static func run(jobs: Int, subject: String) throws -> Int {
        // This executable itself (argv[0] may be a bare name found through PATH).
        let exe =
            FileManager.default.fileExists(atPath: "/proc/self/exe")
            ? URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath() : URL(fileURLWithPath: CommandLine.arguments[0])
        let args = argumentsWithoutJobs(Array(CommandLine.arguments.dropFirst()))
        let cores = max(1, Parallel.cores / jobs)
        var children: [(Int, Process)] = []
        for k in 1...jobs {
            let p = Process()
            p.executableURL = exe
            p.arguments = args + ["--shard", "\(k)/\(jobs)"]
            p.environment = ProcessInfo.processInfo.environment.merging(["COTO_CORES": String(cores)]) { _, new in new }
            do { try p.run() } catch { throw CommandError(subject, "cannot start local job \(k)/\(jobs): \(error)") }
            children.append((k, p))
        }
        // The first failure stops the others: a shard may be waiting for the failed one's results.
        var failed: [String] = []
        var running = children
        while !running.isEmpty {
            Thread.sleep(forTimeInterval: 0.05)
            let ended = running.filter { !$0.1.isRunning }
            running.removeAll { !$0.1.isRunning }
            for (k, p) in ended where p.terminationStatus != 0 {
                failed.append("shard \(k)/\(jobs) exited \(p.terminationStatus)")
            }
            if !failed.isEmpty, !running.isEmpty {
                stop(running.map(\.1))
                failed.append("stopped shard\(running.count == 1 ? "" : "s") \(running.map { "\($0.0)/\(jobs)" }.joined(separator: ", "))")
                running = []
            }
        }
        guard failed.isEmpty else {
            throw CommandError(subject, failed.joined(separator: ", ") + "; rerun the same command to resume (finished parts are kept)")
        }
        return cores
    }

    /// SIGTERM, and SIGKILL for any still running 5 s later (a child may have inherited SIGTERM blocked).
    static func stop(_ processes: [Process]) {
        for p in processes { p.terminate() }
        let deadline = Date().addingTimeInterval(5)
        while processes.contains(where: \.isRunning), Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        for p in processes where p.isRunning { kill(p.processIdentifier, SIGKILL) }
        for p in processes { p.waitUntilExit() }
    }
}
