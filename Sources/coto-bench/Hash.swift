import ArgumentParser
import Checkpoint
import CotoCLI
import Foundation

extension Bench {
    /// `coto-bench hash FILE...`: the configuration hashes' SHA-256 over whole files, timed (the page cache
    /// warmed by a first untimed pass), so an implementation can be compared before and after.
    struct Hash: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Time SHA-256 of files (configuration hashes); median and range of the runs.")
        @Argument(help: "Files to hash.") var paths: [String]
        @Option(name: .customLong("repeat"), help: "Timed runs per file.") var repeatCount = 7

        func validate() throws { guard repeatCount >= 1 else { throw ValidationError("--repeat must be at least 1") } }

        func run() throws {
            for path in paths {
                let size = try MappedFile(path: path).size
                let digest = try SHA256.file(path)  // warms the page cache; not timed
                var times: [Double] = []
                for _ in 0..<repeatCount {
                    let t0 = Bench.now()
                    guard try SHA256.file(path) == digest else { throw CommandError(path, "the digest changed between runs") }
                    times.append(Bench.now() - t0)
                }
                times.sort()
                let median = times[times.count / 2]
                print(
                    "\(FileSystem.basename(of: path)): \(size) bytes, sha256 \(digest.prefix(16))…, median \(String(format: "%.4f", median)) s"
                        + " (\(String(format: "%.4f", times.first!))–\(String(format: "%.4f", times.last!)), \(repeatCount) runs)"
                        + " = \(String(format: "%.2f", Double(size) / median / 1e9)) GB/s")
            }
        }
    }
}
