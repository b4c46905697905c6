import Foundation
import Testing
import TestSupport
import Checkpoint
import Numerics
@testable import Model

/// A model that cannot fit is refused before loading, naming what it needs and what the machine has.
@Suite struct MemoryCheckTests {
    @Test func neededAvailableAndTheRefusal() throws {
        #expect(try #require(MemoryCheck.availableNow()) > 64 << 20)  // this machine's /proc/meminfo is read
        #expect(MemoryCheck.needed(weightBytes: 4_000_000) == 4_000_000 + 400_000 + (256 << 20))
        let meminfo = "MemTotal:       24576000 kB\nMemFree:         1000000 kB\nMemAvailable:   20000000 kB\nBuffers: 1 kB\n"
        #expect(MemoryCheck.available(meminfo: meminfo) == 20_000_000 * 1024)
        #expect(MemoryCheck.available(meminfo: "MemTotal: 5 kB\n") == nil)
        try MemoryCheck.check(parameters: 1_000_000_000, weightBytes: 4_000_000_000, available: 8 << 30, path: "m")  // 4.4 GiB of 8: fits
        try MemoryCheck.check(parameters: 1 << 40, weightBytes: 1 << 42, available: nil, path: "m")  // unknown: not refused
        // 8B parameters: in bf16 (16 GB held in place) they fit 20 GiB, as Float32 they do not.
        try MemoryCheck.check(parameters: 8_000_000_000, weightBytes: 16_000_000_000, available: 20 << 30, path: "m/")
        do {
            try MemoryCheck.check(parameters: 8_000_000_000, weightBytes: 32_000_000_000, available: 20 << 30, path: "m/")
            Issue.record("an 8B model fitted in 20 GiB as Float32")
        } catch let e as ModelError {
            #expect(e.subject == "m/")
            #expect(e.message.contains("needs about 33.0 GiB") && e.message.contains("20.0 GiB is available"), "\(e.message)")
            #expect(e.message.contains("29.8 GiB of weights as held"), "\(e.message)")
            #expect(e.message.contains("COTO_MEMORY_CHECK=0"))
        }
    }

    /// Bytes held: a bf16 matrix in place (2 per value), a bf16 vector and an I8 matrix as Float32.
    @Test func heldBytesFollowWhatIsMapped() throws {
        let t = TempDir()
        let entries = [
            TensorEntry(name: "w", tensor: Tensor(shape: [3, 5], data: [Float](repeating: 1, count: 15)), dtype: .bf16),
            TensorEntry(name: "v", tensor: Tensor(shape: [5], data: [Float](repeating: 1, count: 5)), dtype: .bf16),
            TensorEntry(name: "q", tensor: Tensor(shape: [2, 4], data: [Float](repeating: 1, count: 8)), dtype: .i8),
        ]
        try FileManager.default.createDirectory(atPath: t.path + "/m", withIntermediateDirectories: true)
        try #"{"model_type": "llama"}"#.write(toFile: t.path + "/m/config.json", atomically: true, encoding: .utf8)
        try SafeTensorsWriter.write(entries, to: t.path + "/m/model.safetensors")
        #expect(MemoryCheck.heldBytes(try HFModelDir(path: t.path + "/m")) == 15 * 2 + 5 * 4 + 8 * 4)
    }

    /// A real directory whose (sparse) weights file declares 250 billion Float32 values: the registry
    /// refuses it from the header, without reading a byte of the weights.
    @Test func aModelTooLargeIsRefusedBeforeLoading() throws {
        let t = TempDir()
        let d = t.path + "/huge"
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        let cfg =
            #"{"model_type": "llama", "hidden_size": 1000, "num_hidden_layers": 1, "num_attention_heads": 8, "intermediate_size": 8, "vocab_size": 250000000}"#
        try cfg.write(toFile: d + "/config.json", atomically: true, encoding: .utf8)
        let n: UInt64 = 250_000_000 * 1000 * 4
        var header = #"{"model.embed_tokens.weight":{"dtype":"F32","shape":[250000000,1000],"data_offsets":[0,\#(n)]}}"#
        while (header.utf8.count + 8) % 8 != 0 { header += " " }
        var bytes = withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { Array($0) }
        bytes += Array(header.utf8)
        let path = d + "/model.safetensors"
        FileManager.default.createFile(atPath: path, contents: Data(bytes))
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try h.truncate(atOffset: UInt64(bytes.count) + n)  // sparse: no disk used
        try h.close()
        do {
            _ = try ModelRegistry.load(d)
            Issue.record("loaded a 1 TB model")
        } catch let e as ModelError {
            #expect(e.message.contains("the model needs about") && e.message.contains("250000000000 parameters"), "\(e.message)")
        }
    }
}
