import Testing
import Foundation
import TestSupport
import Checkpoint
#if canImport(Glibc)
import Glibc
#endif

/// coto-train's success path on the real MiniLM, as a user runs it: the adapter, its labels, the log and
/// metrics.json; the same seed gives the same bytes; a run killed after its checkpoint and resumed gives the
/// bytes of the uninterrupted run; one and two threads both work and are recorded.
@Suite(.serialized) struct TrainCLITests {
    static func lines(_ path: String) throws -> [String] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map(String.init)
    }

    static func json(_ path: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
    }

    /// Every 10th training line (all eight classes) and 24 dev lines.
    static func data(_ t: TempDir) throws -> (String, String) {
        let train = try lines(CLI.fixture("wordnet/noun8-train.jsonl")).enumerated().filter { $0.offset % 10 == 0 }.map(\.element)
        let dev = Array(try lines(CLI.fixture("wordnet/noun8-test.jsonl")).prefix(24))
        try (train.joined(separator: "\n") + "\n").write(toFile: t.path + "/train.jsonl", atomically: true, encoding: .utf8)
        try (dev.joined(separator: "\n") + "\n").write(toFile: t.path + "/dev.jsonl", atomically: true, encoding: .utf8)
        return (t.path + "/train.jsonl", t.path + "/dev.jsonl")
    }

    static func args(_ train: String, _ dev: String, out: String, threads: Int, extra: [String] = []) -> [String] {
        [
            "--model", TestPaths.minilm, "--data", train, "--eval-data", dev, "--task", "classification", "--steps", "6",
            "--batch-size", "8", "--max-length", "32", "--threads", "\(threads)", "--seed", "3", "--eval-every", "3", "-q", "-o", out,
        ] + extra
    }

    @Test func trainsMiniLMWritesItsRecordsAndResumesToIdenticalBytes() throws {
        #expect(FileManager.default.fileExists(atPath: TestPaths.minilm), "run make setup")
        let t = TempDir()
        let (train, dev) = try Self.data(t)
        let a = t.path + "/a"
        let r = try CLI.run("coto-train", Self.args(train, dev, out: a, threads: 2))
        try #require(r.status == 0, "coto-train failed: \(r.err)")
        // The adapter PEFT loads, with our label list beside it.
        for f in ["adapter_config.json", "adapter_model.safetensors", "coto_labels.json", "train_log.jsonl", "metrics.json"] {
            #expect(FileManager.default.fileExists(atPath: a + "/" + f), "\(f) missing")
        }
        #expect(!FileManager.default.fileExists(atPath: a + "/checkpoint"), "the checkpoint must go once the outputs are written")
        let adapter = try Adapter.load(a)
        #expect(adapter.modules.count == 12)  // query and value in six layers
        let trainLabels = Set(
            try Self.lines(train).compactMap { l in
                (try? JSONSerialization.jsonObject(with: Data(l.utf8)) as? [String: Any])?["label"] as? String
            })
        #expect(adapter.labels == trainLabels.sorted() && trainLabels.count == 8)
        // metrics.json.
        let m = try Self.json(a + "/metrics.json")
        #expect(m["steps"] as? Int == 6 && m["coto"] as? Bool == true && m["threads"] as? Int == 2 && m["variant"] as? String == "lora")
        #expect((m["labels"] as? [String]) == trainLabels.sorted())
        #expect(m["dev_step"] as? Int == 6)
        let acc = try #require(m["dev_accuracy"] as? Double)
        #expect(acc >= 0 && acc <= 1)
        #expect((m["final_loss"] as? Double).map { $0.isFinite && $0 > 0 } == true)
        #expect((m["train_seconds"] as? Double).map { $0 > 0 } == true)
        // train_log.jsonl: one row per optimizer step, CoTo's p as the seed callback computes it
        // (end = ceil(6 * 0.75) = 5: p_k = min(0.1 + 0.9 k / 5, 1)).
        let log = try Self.lines(a + "/train_log.jsonl").map { try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
        #expect(log.count == 6)
        for (k, row) in log.enumerated() {
            #expect(row["step"] as? Int == k + 1)
            let p = try #require(row["p"] as? Double)
            #expect(abs(p - min(0.1 + 0.9 * Double(k) / 5, 1)) < 1e-12, "step \(k + 1): p \(p)")
            let groups = try #require(row["active_groups"] as? [Int])
            #expect(!groups.isEmpty && groups.allSatisfy { (0..<6).contains($0) })
            if k == 5 { #expect(groups == Array(0..<6)) }  // p = 1
            #expect((row["loss"] as? Double).map(\.isFinite) == true)
            // The dev evaluations (--eval-every 3) are in the log at steps 3 and 6, the last one metrics.json's.
            #expect((row["dev_accuracy"] != nil) == (k == 2 || k == 5), "step \(k + 1)")
            if k == 5 { #expect(row["dev_accuracy"] as? Double == acc && row["dev_loss"] as? Double == m["dev_loss"] as? Double) }
        }

        // The same seed gives the same bytes.
        let b = t.path + "/b"
        #expect(try CLI.run("coto-train", Self.args(train, dev, out: b, threads: 2)).status == 0)
        let bytesA = try Data(contentsOf: URL(fileURLWithPath: a + "/adapter_model.safetensors"))
        #expect(try Data(contentsOf: URL(fileURLWithPath: b + "/adapter_model.safetensors")) == bytesA)

        // Killed right after its step-3 checkpoint, then resumed: the bytes of the uninterrupted run.
        let c = t.path + "/c"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: CLI.binary("coto-train"))
        p.arguments = Self.args(train, dev, out: c, threads: 2, extra: ["--save-every", "3"])
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        let ckpt = c + "/checkpoint/optimizer.safetensors"
        while p.isRunning && !FileManager.default.fileExists(atPath: ckpt) { usleep(500) }
        let killed = p.isRunning
        if killed { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
        try #require(killed && FileManager.default.fileExists(atPath: ckpt), "the run ended before it could be killed after its checkpoint")
        #expect(!FileManager.default.fileExists(atPath: c + "/adapter_model.safetensors"))
        let resumed = try CLI.run("coto-train", Self.args(train, dev, out: c, threads: 2, extra: ["--save-every", "3", "--resume"]))
        try #require(resumed.status == 0, "resume failed: \(resumed.err)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: c + "/adapter_model.safetensors")) == bytesA, "resumed run differs from the uninterrupted one")
        let logC = try Self.lines(c + "/train_log.jsonl").map { try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
        #expect(logC.count == 6)
        for (x, y) in zip(log, logC) {
            #expect(x["loss"] as? Double == y["loss"] as? Double && x["active_groups"] as? [Int] == y["active_groups"] as? [Int])
        }

        // One thread: a different worker split (the dropout streams are per worker), recorded as such,
        // deterministic in its turn.
        let d1 = t.path + "/d1"
        let d2 = t.path + "/d2"
        #expect(try CLI.run("coto-train", Self.args(train, dev, out: d1, threads: 1)).status == 0)
        #expect(try CLI.run("coto-train", Self.args(train, dev, out: d2, threads: 1)).status == 0)
        #expect(try Self.json(d1 + "/metrics.json")["threads"] as? Int == 1)
        #expect(
            try Data(contentsOf: URL(fileURLWithPath: d1 + "/adapter_model.safetensors"))
                == Data(contentsOf: URL(fileURLWithPath: d2 + "/adapter_model.safetensors")))
    }
}
