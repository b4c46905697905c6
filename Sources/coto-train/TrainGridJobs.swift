import ArgumentParser
import CotoCLI
import Foundation
import Numerics

// --grid --jobs N: the grid's shards 1/N … N/N as local processes side by side.

extension Train {
    /// Runs shard i/N of the grid in N child processes of this executable, the cores shared among them
    /// (`COTO_CORES`): each child keeps `--threads` (so the same batch split and the same chunks, hence
    /// byte-identical adapters) and runs its parallel pieces on its share. Children inherit stderr (one line
    /// per event, so their lines interleave whole). Fails if any child fails, naming it.
    func runGridLocally(_ gridPath: String) throws {
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var args = Array(CommandLine.arguments.dropFirst())
        // Drop --jobs (both spellings) and its value; each child gets its --shard.
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
        let cores = max(1, Parallel.cores / jobs)
        var children: [(Int, Process)] = []
        for k in 1...jobs {
            let p = Process()
            p.executableURL = exe
            p.arguments = args + ["--shard", "\(k)/\(jobs)"]
            p.environment = ProcessInfo.processInfo.environment.merging(["COTO_CORES": String(cores)]) { _, new in new }
            try p.run()
            children.append((k, p))
        }
        var failed: [String] = []
        for (k, p) in children {
            p.waitUntilExit()
            if p.terminationStatus != 0 { failed.append("shard \(k)/\(jobs) exited \(p.terminationStatus)") }
        }
        guard failed.isEmpty else {
            throw CommandError(gridPath, failed.joined(separator: ", ") + "; rerun the same command to resume (finished cells are kept)")
        }
        if !out.quiet { Console.writeErr("grid \(gridPath): \(jobs) local jobs finished, \(cores) core(s) each") }
    }
}
