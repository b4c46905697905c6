import Testing
import Foundation
import Checkpoint
#if canImport(Glibc)
import Glibc
#endif

/// Kills writers with SIGKILL at random moments: every output file holds its previous content or the
/// complete new one, no temp file survives the next run, inputs are untouched.
@Suite(.serialized) struct CrashSafetyTests {
    struct Job {
        let tool: String
        let args: (String) -> [String]     // output path -> arguments
        let old: (String) -> [String]      // a different, earlier run into the same output
        let output: String                 // file name or directory name under the temp dir
    }

    static func files(under path: String) -> [String: Data] {
        var out: [String: Data] = [:]
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else { return out }
        if !isDir.boolValue { out[""] = FileManager.default.contents(atPath: path); return out }
        for name in (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [] {
            out[name] = FileManager.default.contents(atPath: path + "/" + name)
        }
        return out
    }

    static func digest(_ paths: [String]) -> [String: Data] {
        var d: [String: Data] = [:]
        for p in paths { for (k, v) in files(under: p) { d[p + "/" + k] = v } }
        return d
    }

    /// Starts a process, kills it after `delay` seconds (if still running), waits.
    static func runAndKill(_ tool: String, _ args: [String], after delay: Double) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: CLI.binary(tool))
        p.arguments = args
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        usleep(useconds_t(delay * 1_000_000))
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
    }

    @Test func sigkillAtRandomMomentsNeverLeavesAPartialFile() throws {
        let t = Tmp()
        let A = CLI.fixture("peft/merge-a"), B = CLI.fixture("peft/merge-b"), P = CLI.fixture("peft/bert-patterns")
        let bert = CLI.fixture("tiny-bert"), sharded = CLI.fixture("tiny-bert-sharded")
        let jobs: [Job] = [
            Job(tool: "coto-merge", args: { [A, B, "--method", "svd", "-q", "-o", $0] }, old: { [A, B, "--method", "task-arithmetic", "--weights", "0.3,0.7", "-q", "-o", $0] }, output: "merged.safetensors"),
            Job(tool: "coto-merge", args: { [A, B, "--method", "ties", "--density", "0.5", "-q", "-o", $0] }, old: { [A, B, "--method", "linear", "-q", "-o", $0] }, output: "merged-dir"),
            Job(tool: "coto-prune", args: { [P, "--rank", "2", "--sparsity", "0.3", "-q", "-o", $0] }, old: { [P, "--sparsity", "0.9", "-q", "-o", $0] }, output: "pruned"),
            Job(tool: "coto-fuse", args: { ["--model", bert, "--adapter", CLI.fixture("peft/bert-dora"), "-q", "-o", $0] }, old: { ["--model", bert, "--adapter", CLI.fixture("peft/bert-lora"), "-q", "-o", $0] }, output: "fused"),
            Job(tool: "coto-convert", args: { [sharded, "--dtype", "bf16", "--max-shard-size", "10KB", "-q", "-o", $0] }, old: { [sharded, "--max-shard-size", "10KB", "-q", "-o", $0] }, output: "converted"),
        ]
        let inputs = [A, B, P, bert, sharded, CLI.fixture("peft/bert-dora"), CLI.fixture("peft/bert-lora")]
        let inputsBefore = Self.digest(inputs)
        var trials = 0, killedMidway = 0
        var rng = SystemRandomNumberGenerator()
        for job in jobs {
            // The complete new output, for reference, and the run time it takes.
            let ref = t.path + "/ref-" + job.output
            let t0 = Date()
            #expect(try CLI.run(job.tool, job.args(ref)).status == 0)
            let runtime = Date().timeIntervalSince(t0)
            let newFiles = Self.files(under: ref)
            let target = t.path + "/" + job.output
            for _ in 0..<24 {
                // Previous content: the old run's output.
                try? FileManager.default.removeItem(atPath: target)
                #expect(try CLI.run(job.tool, job.old(target)).status == 0)
                let oldFiles = Self.files(under: target)
                try Self.runAndKill(job.tool, job.args(target), after: Double.random(in: 0...(runtime * 1.2), using: &rng))
                trials += 1
                let now = Self.files(under: target)
                var changed = false
                for (name, data) in now where !name.contains(".coto-tmp-") {
                    let ok = data == oldFiles[name] || data == newFiles[name]
                    #expect(ok, "\(job.tool) \(job.output)/\(name): neither the previous nor the new content")
                    if data != oldFiles[name] { changed = true }
                }
                if changed && now.keys.filter({ !$0.contains(".coto-tmp-") }).contains(where: { now[$0] != newFiles[$0] }) { killedMidway += 1 }
                // The next run completes and leaves no temp file behind.
                #expect(try CLI.run(job.tool, job.args(target)).status == 0)
                let after = Self.files(under: target)
                #expect(!after.keys.contains { $0.contains(".coto-tmp-") }, "temp files left: \(after.keys.sorted())")
                for (name, data) in newFiles { #expect(after[name] == data, "\(name) differs after a clean rerun") }
            }
        }
        #expect(trials >= 100)
        #expect(Self.digest(inputs) == inputsBefore, "an input changed")
        _ = killedMidway
    }

    @Test func diskFullIsAClearErrorWithNothingWritten() throws {
        let t = Tmp()
        let mnt = t.path + "/small"
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        guard getuid() == 0 else {
            // Mounting a small tmpfs needs root; without it this case cannot be staged.
            print("skipped: disk-full case needs root to mount a tmpfs")
            return
        }
        let m = Process()
        m.executableURL = URL(fileURLWithPath: "/bin/mount")
        m.arguments = ["-t", "tmpfs", "-o", "size=16k", "tmpfs", mnt]
        try m.run(); m.waitUntilExit()
        guard m.terminationStatus == 0 else {
            print("skipped: mount -t tmpfs is not permitted in this environment (status \(m.terminationStatus))")
            return
        }
        defer {
            let u = Process(); u.executableURL = URL(fileURLWithPath: "/bin/umount"); u.arguments = [mnt]
            try? u.run(); u.waitUntilExit()
        }
        let r = try CLI.run("coto-convert", [CLI.fixture("tiny-bert"), "--dtype", "f32", "-o", mnt + "/out"])
        #expect(r.status == 1)
        #expect(r.err.hasPrefix("error: ") && r.err.contains("No space left on device"), "\(r.err)")
        let left = (try? FileManager.default.contentsOfDirectory(atPath: mnt + "/out")) ?? []
        #expect(!left.contains("model.safetensors") && !left.contains { $0.contains(".coto-tmp-") }, "\(left)")
    }
}
