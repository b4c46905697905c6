import Numerics

/// A GGUF model read as the transformers model it converts to: HF tensor names, PyTorch shapes, every
/// tensor dequantized to Float32 on demand (llama's q/k rows un-permuted, Gemma's stored 1 + w norms back
/// to w). Lets the operators (coto-fuse) and the inference core take a GGUF base without converting it.
public final class GGUFTensorStore: TensorStore {
    public let gguf: GGUFFile
    public let tensorNames: [String]
    private let infos: [String: (GGUFTensorInfo, Int?)]
    private let arch: GGUFArchitecture

    public init(_ conv: GGUFConverter, progress: ((GGUFConverter.Event) -> Void)? = nil) throws {
        gguf = conv.gguf
        arch = try conv.architectureSpec()
        let cfg = try ModelConfig.decode(Array(try conv.config().compact.utf8), path: gguf.path)
        let heads = cfg.numAttentionHeads ?? 1
        let kvHeads = cfg.numKeyValueHeads ?? heads
        var names: [String] = []
        var infos: [String: (GGUFTensorInfo, Int?)] = [:]
        for t in gguf.tensors {
            guard let name = arch.hfName(t.name) else {
                progress?(.note("skipped tensor '\(t.name)' (not part of the transformers model)"))
                continue
            }
            guard t.type.canDequantize else {
                throw CheckpointError(
                    gguf.path, .invalid("tensor '\(t.name)': \(t.type.refusal)"))
            }
            let permuteHeads = arch.permutedHeads(t.name, heads: heads, kvHeads: kvHeads)
            if let h = permuteHeads, t.shape[0] % (2 * h) != 0 {
                throw CheckpointError(gguf.path, .invalid("tensor '\(t.name)': \(t.shape[0]) rows do not split into \(h) heads"))
            }
            names.append(name)
            infos[name] = (t, permuteHeads)
        }
        tensorNames = names
        self.infos = infos
    }

    public var location: String { gguf.path }

    public func tensorInfo(_ name: String) -> TensorInfo? {
        guard let (t, _) = infos[name] else { return nil }
        return TensorInfo(name: name, dtype: .f32, shape: t.shape, begin: 0, end: UInt64(t.elementCount * 4))
    }

    public func loadTensor(_ name: String) throws -> Tensor {
        guard let (t, heads) = infos[name] else { throw CheckpointError(gguf.path, .tensorNotFound(name)) }
        var x = try gguf.dequantize(t.name)
        if arch.isShiftedNorm(t.name) { x = Tensor(shape: x.shape, data: x.data.map { $0 - 1 }) }
        return heads.map { GGUFConverter.unpermute(x, heads: $0) } ?? x
    }

    public func entry(_ name: String) throws -> TensorEntry {
        guard let info = tensorInfo(name) else { throw CheckpointError(gguf.path, .tensorNotFound(name)) }
        return TensorEntry(
            name: name, dtype: .f32, shape: info.shape,
            source: .lazy { [self] in
                let x = try self.loadTensor(name)
                self.release(name)
                return Storage.encode(x.data, dtype: .f32)
            })
    }

    public func release(_ name: String) {
        guard let (t, _) = infos[name] else { return }
        gguf.file.release(offset: gguf.dataOffset + Int(t.offset), length: t.byteCount)
    }
}
