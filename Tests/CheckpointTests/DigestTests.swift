import Testing
import Foundation
import TestSupport
@testable import Checkpoint

/// SHA-256 against FIPS 180-4's examples, streamed in any pieces; input digests see only what a loader reads;
/// configuration hashes move with content and options, not with paths.
@Suite struct DigestTests {
    @Test func fipsVectors() throws {
        #expect(SHA256.hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(
            SHA256.hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        // One million 'a' from a file (read in 4 MiB pieces, so the tail is a partial block).
        let t = TempDir()
        let p = t.path + "/a.bin"
        try Data(repeating: UInt8(ascii: "a"), count: 1_000_000).write(to: URL(fileURLWithPath: p))
        #expect(try SHA256.file(p) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
        #expect(throws: CheckpointError.self) { try SHA256.file(t.path + "/missing") }
    }

    @Test func fileDigestEqualsTheBytesDigestForEveryLengthAroundABlock() throws {
        let t = TempDir()
        for n in [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 128, 4 << 20, (4 << 20) + 1] {
            let bytes = (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
            let p = t.path + "/f\(n)"
            try Data(bytes).write(to: URL(fileURLWithPath: p))
            #expect(try SHA256.file(p) == SHA256.hex(bytes), "length \(n)")
        }
    }

    /// The real model files: the digests coreutils' sha256sum gives (so configuration hashes written before
    /// the move to swift-crypto still match), and a directory's digest is stable.
    @Test func realModelFilesHashAsSha256sum() throws {
        #expect(try SHA256.file(TestPaths.minilm + "/model.safetensors") == "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db")
        #expect(try SHA256.file(TestPaths.smollm2) == "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53")
        #expect(throws: CheckpointError.self) { try SHA256.file(TestPaths.minilm) }  // a directory
    }

    @Test func inputDigestsReadWhatTheLoaderReads() throws {
        let t = TempDir()
        let a = t.path + "/adapter"
        try FileManager.default.createDirectory(atPath: a, withIntermediateDirectories: true)
        for f in ["adapter_config.json", "adapter_model.safetensors"] {
            try FileManager.default.copyItem(atPath: TestPaths.root + "/Fixtures/peft/bert-lora/" + f, toPath: a + "/" + f)
        }
        let d0 = try InputDigest.adapter(a)
        // A training log or a sweep written beside the adapter does not change it; its weights do.
        try "{}".write(toFile: a + "/metrics.json", atomically: true, encoding: .utf8)
        try "x".write(toFile: a + "/interpolate-x.json", atomically: true, encoding: .utf8)
        #expect(try InputDigest.adapter(a) == d0)
        try "[\"x\", \"y\"]".write(toFile: a + "/coto_labels.json", atomically: true, encoding: .utf8)
        let d1 = try InputDigest.adapter(a)
        #expect(d1.sha256 != d0.sha256)
        var w = try Data(contentsOf: URL(fileURLWithPath: a + "/adapter_model.safetensors"))
        w[w.count - 1] ^= 1
        try w.write(to: URL(fileURLWithPath: a + "/adapter_model.safetensors"))
        #expect(try InputDigest.adapter(a).sha256 != d1.sha256)
        // A model directory: weights, configs and tokenizer files, not its README.
        let m = t.path + "/model"
        try FileManager.default.copyItem(atPath: TestPaths.root + "/Fixtures/tiny-bert", toPath: m)
        let m0 = try InputDigest.model(m)
        try "notes".write(toFile: m + "/README.md", atomically: true, encoding: .utf8)
        #expect(try InputDigest.model(m) == m0)
        try "{}".write(toFile: m + "/extra_config.json", atomically: true, encoding: .utf8)
        #expect(try InputDigest.model(m).sha256 != m0.sha256)
        #expect(throws: CheckpointError.self) { try InputDigest.model(t.path + "/nope") }
    }

    @Test func configurationHashesFollowContentAndOptionsNotPaths() {
        let i = [InputDigest(role: "model", path: "/a/m", sha256: "01"), InputDigest(role: "data", path: "/a/d.jsonl", sha256: "02")]
        let base = ConfigRecord(identity: "sweep", inputs: i, options: ["batch_size": "32"])
        var moved = i
        moved[0].path = "/elsewhere/m"
        #expect(ConfigRecord(identity: "sweep", inputs: moved, options: ["batch_size": "32"]).hash == base.hash)
        var changed = i
        changed[1].sha256 = "03"
        let c1 = ConfigRecord(identity: "sweep", inputs: changed, options: ["batch_size": "32"])
        #expect(c1.hash != base.hash && c1.differences(from: base) == ["data /a/d.jsonl has other content"])
        let c2 = ConfigRecord(identity: "sweep", inputs: i, options: ["batch_size": "8"])
        #expect(c2.hash != base.hash && c2.differences(from: base) == ["batch_size 32 → 8"])
        let c3 = ConfigRecord(identity: "other sweep", inputs: i, options: ["batch_size": "32"])
        #expect(c3.hash != base.hash && c3.differences(from: base).isEmpty)
        let c4 = ConfigRecord(identity: "sweep", inputs: i, options: ["batch_size": "32"], version: "0.0.1")
        #expect(c4.hash != base.hash && c4.differences(from: base) == ["coto version \(CotoVersion.string) → 0.0.1"])
        #expect(base.short.count == 12 && base.hash.count == 64)
    }
}
