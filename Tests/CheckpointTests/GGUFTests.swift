import Testing
import Foundation
import TestSupport
import PropertyBased
@testable import Checkpoint
import Numerics

/// Builds GGUF bytes by hand for malformed-input tests.
struct GGUFBuilder {
    var bytes: [UInt8] = []
    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    mutating func str(_ s: String) {
        u64(UInt64(s.utf8.count))
        bytes += Array(s.utf8)
    }
    static func header(version: UInt32 = 3, tensors: UInt64, kvs: UInt64) -> GGUFBuilder {
        var b = GGUFBuilder()
        b.bytes = Array("GGUF".utf8)
        b.u32(version)
        b.u64(tensors)
        b.u64(kvs)
        return b
    }
    mutating func tensorInfo(_ name: String, dims: [UInt64], type: UInt32, offset: UInt64) {
        str(name)
        u32(UInt32(dims.count))
        for d in dims { u64(d) }
        u32(type)
        u64(offset)
    }
    mutating func align(_ a: Int = 32) { while bytes.count % a != 0 { bytes.append(0) } }
}

func ggufError(_ bytes: [UInt8]) -> String? {
    let dir = TempDir()
    writeBytes(bytes, dir.file("m.gguf"))
    do {
        _ = try GGUFFile(path: dir.file("m.gguf"))
        return nil
    } catch let e as CheckpointError { return e.message } catch { return "\(error)" }
}

@Suite struct GGUFTests {
    @Test func readsEveryMetadataTypeAndDequantizes() throws {
        let g = try GGUFFile(path: Paths.fixture("gguf/tiny.gguf"))
        #expect(g.version == 3)
        #expect(g["test.u8"] == .u8(200) && g["test.i8"] == .i8(-5) && g["test.u16"] == .u16(60000))
        #expect(g["test.i16"] == .i16(-300) && g["test.u32"] == .u32(4_000_000_000) && g["test.i32"] == .i32(-7))
        #expect(g["test.f32"] == .f32(1.5) && g["test.u64"] == .u64((1 << 40) + 3) && g["test.i64"] == .i64(-(1 << 40)))
        #expect(g["test.f64"] == .f64(2.25) && g["test.bool"] == .bool(true) && g["test.str"] == .string("héllo"))
        if case let .array(a)? = g["test.arr_i32"] { #expect(a.values == [.i32(1), .i32(-2), .i32(3)]) } else { Issue.record("array") }
        if case let .array(a)? = g["test.arr_str"] { #expect(a.values == [.string("a"), .string("bc")]) } else { Issue.record("array") }
        let expected = try SafeTensorsFile(path: Paths.fixture("gguf/tiny_expected.safetensors"))
        for name in ["t.f32", "t.f16", "t.q8_0", "t.q4_0", "t.q4_1"] {
            let ours = try g.dequantize(name)
            let ref = try expected.tensor(name)
            #expect(ours.shape == ref.shape, "\(name)")
            #expect(ours.maxAbsDiff(ref) == 0, "\(name) differs from gguf-py's dequantize")
        }
    }

    @Test func malformedFilesAreRefused() {
        #expect(ggufError(Array("GGML".utf8) + [UInt8](repeating: 0, count: 20))?.contains("magic") == true)
        #expect(ggufError(GGUFBuilder.header(version: 1, tensors: 0, kvs: 0).bytes)?.contains("version 1") == true)
        #expect(ggufError(Array("GGUF".utf8) + [3, 0])?.contains("truncated") == true)
        // Counts larger than the file can hold are refused before any allocation.
        #expect(ggufError(GGUFBuilder.header(tensors: 0, kvs: UInt64.max).bytes)?.contains("larger than the file") == true)
        #expect(ggufError(GGUFBuilder.header(tensors: 1 << 60, kvs: 0).bytes)?.contains("larger than the file") == true)
        // A string length past the end.
        var b = GGUFBuilder.header(tensors: 0, kvs: 1)
        b.u64(1 << 62)
        b.bytes += [UInt8](repeating: 0x61, count: 16)
        #expect(ggufError(b.bytes)?.contains("runs past the end") == true)
        // An array claiming 2^61 elements.
        b = GGUFBuilder.header(tensors: 0, kvs: 1)
        b.str("k")
        b.u32(9)
        b.u32(4)
        b.u64(1 << 61)
        #expect(ggufError(b.bytes)?.contains("runs past the end") == true)
        // Nested arrays and unknown types.
        b = GGUFBuilder.header(tensors: 0, kvs: 1)
        b.str("k")
        b.u32(9)
        b.u32(9)
        b.u64(1)
        #expect(ggufError(b.bytes)?.contains("nested array") == true)
        b = GGUFBuilder.header(tensors: 0, kvs: 1)
        b.str("k")
        b.u32(13)
        b.u64(0)
        #expect(ggufError(b.bytes)?.contains("unknown metadata value type") == true)
        // Duplicate keys.
        b = GGUFBuilder.header(tensors: 0, kvs: 2)
        b.str("k")
        b.u32(4)
        b.u32(1)
        b.str("k")
        b.u32(4)
        b.u32(2)
        #expect(ggufError(b.bytes)?.contains("appears twice") == true)
        // Bad alignment value.
        b = GGUFBuilder.header(tensors: 0, kvs: 1)
        b.str("general.alignment")
        b.u32(4)
        b.u32(3)
        #expect(ggufError(b.bytes)?.contains("power of two") == true)
    }

    func oneTensor(dims: [UInt64], type: UInt32 = 0, offset: UInt64 = 0, data: Int, second: (String, UInt64)? = nil) -> [UInt8] {
        var b = GGUFBuilder.header(tensors: second == nil ? 1 : 2, kvs: 0)
        b.tensorInfo("w", dims: dims, type: type, offset: offset)
        if let (n, off) = second { b.tensorInfo(n, dims: dims, type: type, offset: off) }
        b.align()
        b.bytes += [UInt8](repeating: 0, count: data)
        return b.bytes
    }

    @Test func malformedTensorInfosAreRefused() {
        #expect(ggufError(oneTensor(dims: [4], data: 16)) == nil)
        #expect(ggufError(oneTensor(dims: [4], data: 8))?.contains("runs past the end") == true)
        #expect(ggufError(oneTensor(dims: [4], offset: 8, data: 64))?.contains("not aligned") == true)
        #expect(ggufError(oneTensor(dims: [1, 1, 1, 1, 1], data: 4))?.contains("dimensions") == true)
        #expect(ggufError(oneTensor(dims: [1 << 32, 1 << 32], data: 4))?.contains("overflows") == true)
        #expect(ggufError(oneTensor(dims: [4], type: 99, data: 16))?.contains("unknown ggml type") == true)
        #expect(ggufError(oneTensor(dims: [30], type: 8, data: 64))?.contains("block size") == true)
        #expect(ggufError(oneTensor(dims: [4], data: 64, second: ("v", 0)))?.contains("overlaps") == true)
        #expect(ggufError(oneTensor(dims: [4], data: 64, second: ("w", 32)))?.contains("appears twice") == true)
        // Found by the fuzzer: a zero dimension followed by one above Int.max trapped on conversion.
        #expect(ggufError(oneTensor(dims: [0, UInt64.max - 5], data: 16))?.contains("too large") == true)
    }

    /// llama.cpp's converter permute (convert_hf_to_gguf.py), written independently of ours.
    func permute(_ t: Tensor, heads: Int) -> Tensor {
        let rows = t.shape[0]
        let cols = t.count / rows
        let d = rows / heads
        let half = d / 2
        var out = t.data
        // reshape(heads, 2, half, cols).swapaxes(1, 2): out[h, i, s] = in[h, s, i]
        for h in 0..<heads {
            for i in 0..<half {
                for s in 0..<2 {
                    for c in 0..<cols {
                        out[((h * half + i) * 2 + s) * cols + c] = t.data[((h * 2 + s) * half + i) * cols + c]
                    }
                }
            }
        }
        return Tensor(shape: t.shape, data: out)
    }

    @Test func unpermuteInvertsLlamaCppPermute() async {
        await propertyCheck(input: Gen.int(in: 1...4), Gen.int(in: 1...4), Gen.int(in: 1...3)) { heads, half, cols in
            let rows = heads * half * 2
            let t = Tensor(shape: [rows, cols], data: (0..<(rows * cols)).map(Float.init))
            #expect(GGUFConverter.unpermute(permute(t, heads: heads), heads: heads) == t)
        }
    }

    @Test func realSmolLM2ConvertsLikeTransformers() throws {
        #expect(FileSystem.exists(Paths.smollm2), "run `make setup` first: \(Paths.smollm2) is missing")
        let g = try GGUFFile(path: Paths.smollm2)
        #expect(g.tensors.count == 272)
        let ref = try SafeTensorsFile(path: Paths.fixture("smollm2/reference.safetensors"))
        let dir = TempDir()
        let conv = GGUFConverter(gguf: g)
        let files = try conv.convert(to: dir.path)
        #expect(files.contains("model.safetensors") && files.contains("tokenizer.json") && files.last == "config.json")
        let out = try SafeTensorsFile(path: dir.file("model.safetensors"))
        #expect(out.names.count == 272)
        for name in ref.names where name.hasPrefix("slice:") {
            let hf = String(name.dropFirst(6))
            let ours = try out.tensor(hf)
            let want = try ref.tensor(name)
            let cols = ours.count / ours.shape[0]  // the reference reshaped to [shape[0], -1]
            var maxDiff: Float = 0
            for i in 0..<want.rows { for j in 0..<want.cols { maxDiff = max(maxDiff, abs(ours.data[i * cols + j] - want[i, j])) } }
            #expect(maxDiff <= 1e-6, "\(hf): max diff \(maxDiff)")
            let sums = try ref.tensor("sum:" + hf).data
            let s = ours.data.reduce(0.0) { $0 + Double($1) }
            let sa = ours.data.reduce(0.0) { $0 + abs(Double($1)) }
            #expect(abs(s - Double(sums[0])) <= 1e-3 * max(1, abs(Double(sums[1]))), "\(hf) sum")
            #expect(abs(sa - Double(sums[1])) <= 1e-5 * Double(sums[1]), "\(hf) abs sum")
        }
        // config.json carries what transformers derives from the GGUF.
        let want = try JSON.parse(string: ref.metadataValue("config")!)
        let cfg = try JSON.parse(readBytes(dir.file("config.json")))
        for k in [
            "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
            "vocab_size", "max_position_embeddings", "tie_word_embeddings", "bos_token_id", "eos_token_id", "head_dim",
        ] {
            #expect(cfg[k] == want[k], "\(k)")
        }
        #expect(cfg["rms_norm_eps"]?.doubleValue == want["rms_norm_eps"]?.doubleValue)
        #expect(cfg["rope_theta"]?.doubleValue == want["rope_parameters"]?["rope_theta"]?.doubleValue)
        let tok = try JSON.parse(readBytes(dir.file("tokenizer.json")))
        #expect(tok["model"]?["vocab"]?.objectPairs?.count == 49152)
        #expect(tok["model"]?["merges"]?.arrayValue?.count == 48900)
        #expect(tok["added_tokens"]?.arrayValue?.count == 17)
        #expect(tok["model"]?["vocab"]?["Ġthe"] != nil)
        // Logits of the converted weights (a plain reference forward) match transformers on the GGUF.
        let ids = try ref.tensor("logits:ids").data.map { Int($0) }
        let wantLogits = try ref.tensor("logits:last_rows")
        let logits = try ReferenceLlama(dir: dir.path).logits(ids)
        var worst: Float = 0
        for t in 0..<wantLogits.rows { for j in 0..<wantLogits.cols { worst = max(worst, abs(logits[t, j] - wantLogits[t, j])) } }
        #expect(worst <= 1e-4, "max |logit diff| \(worst) over \(ids.count) tokens x \(wantLogits.cols) logits")
        // The converted directory loads back as a model dir.
        let m = try HFModelDir(path: dir.path)
        #expect(m.config.modelType == "llama" && m.parameterCount == 134_515_008)
    }
}
