import Numerics

/// Converts a llama.cpp GGUF (the architectures of `GGUFArchitecture`) into a Hugging Face model directory:
/// config.json, model.safetensors (dequantized; sharded with a size limit), tokenizer.json,
/// tokenizer_config.json, generation_config.json. The result loads in transformers and gives the
/// logits transformers gives on the GGUF itself.
public struct GGUFConverter {
    public let gguf: GGUFFile
    public var dtype: DType = .f32
    public var maxShardSize: UInt64? = nil

    public init(gguf: GGUFFile) { self.gguf = gguf }

    public enum Event {
        case tensor(name: String, index: Int, total: Int)
        case wrote(file: String)
        case note(String)
    }

    public var architecture: String { gguf["general.architecture"]?.string ?? "unknown" }

    func meta(_ key: String) -> GGUFValue? { gguf["\(architecture).\(key)"] }

    func requireInt(_ key: String) throws -> Int {
        guard let v = meta(key)?.int, v > 0 else {
            throw CheckpointError(gguf.path, .invalid("GGUF metadata '\(architecture).\(key)' is missing or not a positive integer"))
        }
        return v
    }

    // MARK: tensors

    /// GGUF tensor name -> HF name for the llama architecture (`GGUFArchitecture.hfName` for the others).
    public static func hfName(_ g: String) -> String? { GGUFArchitecture.all["llama"]?.hfName(g) }

    /// Undo llama.cpp's q/k row permutation (Docs/formats.md, "GGUF"): HF row h*D + s*D/2 + i is
    /// GGUF row h*D + 2i + s. Works on [rows, cols] weights and on [rows] biases (cols = 1).
    public static func unpermute(_ t: Tensor, heads: Int) -> Tensor {
        let rows = t.shape[0]
        let cols = t.count / max(rows, 1)
        let d = rows / heads
        let half = d / 2
        var out = [Float](repeating: 0, count: t.count)
        t.data.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for h in 0..<heads {
                    for s in 0..<2 {
                        for i in 0..<half {
                            let hfRow = h * d + s * half + i
                            let gRow = h * d + 2 * i + s
                            for c in 0..<cols { dst[hfRow * cols + c] = src[gRow * cols + c] }
                        }
                    }
                }
            }
        }
        return Tensor(shape: t.shape, data: out)
    }

    /// The HF tensors as lazily-computed entries, in GGUF order.
    public func entries(progress: ((Event) -> Void)? = nil) throws -> [TensorEntry] {
        let store = try GGUFTensorStore(self, progress: progress)
        let dtype = self.dtype
        return store.tensorNames.enumerated().map { i, name in
            let info = store.tensorInfo(name)!
            return TensorEntry(
                name: name, dtype: dtype, shape: info.shape,
                source: .lazy {
                    progress?(.tensor(name: name, index: i, total: store.tensorNames.count))
                    let x = try store.loadTensor(name)
                    store.release(name)
                    return Storage.encode(x.data, dtype: dtype)
                })
        }
    }

    /// Writes the HF directory. Each file is written atomically; weights first, config.json last, so a
    /// directory with a config.json is complete.
    @discardableResult
    public func convert(to dir: String, progress: ((Event) -> Void)? = nil) throws -> [String] {
        let cfg = try config()
        var tokenizer: JSON? = nil
        do { tokenizer = try tokenizerJSON() } catch let e as CheckpointError {
            progress?(.note("tokenizer not converted: \(e.message)"))
        }
        try FileSystem.makeDirectory(dir)
        var written = try ShardedWriter.write(try entries(progress: progress), to: dir, maxShardSize: maxShardSize)
        for f in written { progress?(.wrote(file: f)) }
        var files: [(String, String)] = []
        if let t = tokenizer {
            files.append(("tokenizer.json", t.compact))
            files.append(("tokenizer_config.json", tokenizerConfigJSON().pretty + "\n"))
        }
        files.append(("generation_config.json", generationConfigJSON().pretty + "\n"))
        files.append(("config.json", cfg.pretty + "\n"))
        for (name, text) in files {
            try AtomicFileWriter.write(text, to: FileSystem.join(dir, name))
            progress?(.wrote(file: name))
            written.append(name)
        }
        return written
    }
}
