import Numerics

/// llama.cpp's LoRA adapter format (GGUF), both ways, checked against the base model's GGUF.
///
/// Written: `general.type = "adapter"`, `general.architecture` of the base, `adapter.type = "lora"`,
/// `adapter.lora.alpha` (FLOAT32); per adapted base tensor `<name>.weight.lora_a` and `.lora_b` in PEFT's
/// row-major layout (ggml ne = [in, r] and [r, out], what llama.cpp's loader checks: a.ne0 = W.ne0,
/// b.ne1 = W.ne1, a.ne1 = b.ne0). `token_embd` is stored as llama.cpp's embedding path reads it (a = Aᵀ
/// [vocab, r] whose rows `get_rows` picks, b = B [dim, r]). The rows of q and k `lora_b` are permuted as
/// llama.cpp's HF → GGUF conversion permutes the base q/k weights. llama.cpp scales every module by
/// alpha / rank; each module's exact PEFT scaling (rsLoRA, rank_pattern, alpha_pattern) is folded into its
/// `lora_b`, so the file's alpha is the adapter's lora_alpha.
public enum GGUFLoRA {
    public static let permutedKinds: Set<String> = ["attn_q", "attn_k"]

    /// Base GGUF tensor name (without `.weight`) for each HF module path the base has, with its shape.
    static func baseModules(_ base: GGUFFile) throws -> [String: (gguf: String, shape: [Int])] {
        let arch = try GGUFConverter(gguf: base).architectureSpec()
        var map: [String: (String, [Int])] = [:]
        for t in base.tensors where t.name.hasSuffix(".weight") && t.dims.count == 2 {
            guard let hf = arch.hfName(t.name) else { continue }
            map[String(hf.dropLast(".weight".count))] = (String(t.name.dropLast(".weight".count)), t.shape)
        }
        return map
    }

    static func heads(_ base: GGUFFile) throws -> (q: Int, kv: Int) {
        guard let arch = base["general.architecture"]?.string else { throw CheckpointError(base.path, .invalid("GGUF has no general.architecture")) }
        guard let q = base["\(arch).attention.head_count"]?.int, q > 0 else {
            throw CheckpointError(base.path, .invalid("GGUF has no \(arch).attention.head_count"))
        }
        return (q, base["\(arch).attention.head_count_kv"]?.int ?? q)
    }

    /// llama.cpp's q/k row permutation (Docs/formats.md, "GGUF"): GGUF row h·D + 2i + s is HF row
    /// h·D + s·D/2 + i. The inverse of `GGUFConverter.unpermute`.
    public static func permute(_ t: Tensor, heads: Int) -> Tensor {
        let rows = t.shape[0]
        let cols = t.count / max(rows, 1)
        let d = rows / heads
        let half = d / 2
        var out = [Float](repeating: 0, count: t.count)
        for h in 0..<heads {
            for s in 0..<2 {
                for i in 0..<half {
                    let hfRow = h * d + s * half + i
                    let gRow = h * d + 2 * i + s
                    for c in 0..<cols { out[gRow * cols + c] = t.data[hfRow * cols + c] }
                }
            }
        }
        return Tensor(shape: t.shape, data: out)
    }

    /// HF module path with the PEFT task prefix stripped as the base names it (`model.layers...`).
    static func resolve(_ name: String, in map: [String: (gguf: String, shape: [Int])]) -> String? {
        if map[name] != nil { return name }
        if map["model." + name] != nil { return "model." + name }
        let rest = name.split(separator: ".", maxSplits: 1).dropFirst().first.map(String.init)
        if let r = rest, map[r] != nil { return r }
        return nil
    }

    /// Writes `adapter` as a llama.cpp LoRA GGUF for `base`. DoRA, HiRA, lora_B biases, fan_in_fan_out and
    /// full tensors (modules_to_save) have no place in the format and are refused with what to do instead.
    public static func write(_ adapter: Adapter, base: GGUFFile, to path: String, dtype: DType = .f32) throws {
        let src = adapter.source
        guard dtype == .f32 || dtype == .f16 else { throw CheckpointError(path, .invalid("GGUF LoRA output is F32 or F16, not \(dtype)")) }
        switch adapter.variant {
        case .dora:
            throw CheckpointError(
                src, .invalid("DoRA adapters have no llama.cpp form; convert first (coto-convert --to-lora --base MODEL) or fuse (coto-fuse)"))
        case .hira:
            throw CheckpointError(
                src, .invalid("HiRA adapters have no llama.cpp form; convert first (coto-convert --to-lora --base MODEL) or fuse (coto-fuse)"))
        case .lora: break
        }
        if !adapter.otherTensors.isEmpty {
            throw CheckpointError(
                src,
                .invalid(
                    "the adapter carries full tensors (\(adapter.otherTensors.map(\.0).prefix(3).joined(separator: ", "))): llama.cpp LoRA files hold only lora_a/lora_b; fuse them (coto-fuse) or drop the heads (coto-merge --heads drop)"
                ))
        }
        if adapter.config.fanInFanOut { throw CheckpointError(src, .invalid("fan_in_fan_out adapters (Conv1D layers) have no llama.cpp form")) }
        if let m = adapter.modules.first(where: { $0.bias != nil }) {
            throw CheckpointError(src, .invalid("module '\(m.name)' has a lora_B.bias, which llama.cpp LoRA files cannot hold; fuse it (coto-fuse)"))
        }
        guard let arch = base["general.architecture"]?.string else { throw CheckpointError(base.path, .invalid("GGUF has no general.architecture")) }
        let map = try baseModules(base)
        let permutes = try GGUFConverter(gguf: base).architectureSpec().permutesQK
        let (hq, hkv) = try heads(base)
        let alpha = adapter.config.loraAlpha
        guard alpha > 0, alpha.isFinite else {
            throw CheckpointError(src, .invalid("lora_alpha \(alpha) cannot be written (llama.cpp reads alpha 0 as 'no scaling')"))
        }
        var tensors: [(String, Tensor)] = []
        for m in adapter.modules {
            guard let key = resolve(m.name, in: map), let (g, shape) = map[key] else {
                throw CheckpointError(src, .invalid("module '\(m.name)' has no tensor in the base \(base.path) (adapter for another model?)"))
            }
            let want = m.isEmbedding ? [m.inFeatures, m.outFeatures] : [m.outFeatures, m.inFeatures]
            guard shape == want else {
                throw CheckpointError(src, .invalid("module '\(m.name)' is \(m.outFeatures)x\(m.inFeatures) but the base's '\(g).weight' is \(shape)"))
            }
            // llama.cpp applies alpha / r; the module's own scaling is folded into B.
            let fold = Float(m.scaling / (alpha / Double(m.rank)))
            var b = fold == 1 ? m.b.tensor : fold * m.b.tensor
            var a = m.a.tensor
            let kind = String(g.split(separator: ".").last ?? "")
            if permutes && permutedKinds.contains(kind) {
                let h = kind == "attn_q" ? hq : hkv
                guard b.rows % (2 * h) == 0 else { throw CheckpointError(src, .invalid("module '\(m.name)': \(b.rows) rows do not split into \(h) heads")) }
                b = permute(b, heads: h)
            }
            if m.isEmbedding { a = a.transposed() }  // [vocab, r]: the rows llama.cpp's get_rows picks
            tensors.append((g + ".weight.lora_a", a))
            tensors.append((g + ".weight.lora_b", b))
        }
        let meta: [(String, GGUFValue)] = [
            ("general.type", .string("adapter")), ("general.architecture", .string(arch)),
            ("adapter.type", .string("lora")), ("adapter.lora.alpha", .f32(Float(alpha))),
            ("general.name", .string("coto LoRA adapter")),
        ]
        try AtomicFileWriter.write(GGUFWriter.encode(metadata: meta, tensors: tensors, dtype: dtype), to: path)
    }

    /// Reads a llama.cpp LoRA GGUF back into a PEFT adapter (module names as transformers names them for
    /// `base`'s architecture; q/k `lora_b` rows un-permuted; one scaling alpha / r per module).
    public static func read(_ path: String, base: GGUFFile) throws -> Adapter {
        try read(try GGUFFile(path: path), base: base)
    }

    public static func read(_ f: GGUFFile, base: GGUFFile) throws -> Adapter {
        let path = f.path
        guard f["general.type"]?.string == "adapter", f["adapter.type"]?.string == "lora" else {
            throw CheckpointError(path, .invalid("not a llama.cpp LoRA adapter (general.type = adapter, adapter.type = lora)"))
        }
        if let a1 = f["general.architecture"]?.string, let a2 = base["general.architecture"]?.string, a1 != a2 {
            throw CheckpointError(path, .invalid("adapter for architecture '\(a1)', base \(base.path) is '\(a2)'"))
        }
        guard let alpha = f["adapter.lora.alpha"]?.double, alpha > 0 else {
            throw CheckpointError(path, .invalid("adapter.lora.alpha is missing or 0 (scaling 1 per module is not representable as PEFT lora_alpha here)"))
        }
        var byBase: [String: (gguf: String, hf: String, shape: [Int])] = [:]
        for (hf, v) in try baseModules(base) { byBase[v.gguf] = (v.gguf, hf, v.shape) }
        let permutes = try GGUFConverter(gguf: base).architectureSpec().permutesQK
        let (hq, hkv) = try heads(base)
        var modules: [LoraModule] = []
        let names = Set(f.tensors.map(\.name))
        for t in f.tensors where t.name.hasSuffix(".weight.lora_a") {
            let g = String(t.name.dropLast(".weight.lora_a".count))
            guard names.contains(g + ".weight.lora_b") else { throw CheckpointError(path, .invalid("'\(t.name)' has no lora_b")) }
            guard let (_, hf, shape) = byBase[g] else { throw CheckpointError(path, .invalid("'\(g).weight' is not a 2-D tensor of the base \(base.path)")) }
            var a = try f.dequantize(t.name)
            var b = try f.dequantize(g + ".weight.lora_b")
            let embedding = g == "token_embd"
            if embedding { a = a.transposed() }
            guard a.rank == 2, b.rank == 2, a.rows == b.cols, a.rows > 0 else {
                throw CheckpointError(path, .invalid("'\(g)': lora_a \(a.shape) and lora_b \(b.shape) do not pair"))
            }
            let want = embedding ? [a.cols, b.rows] : [b.rows, a.cols]
            guard want == shape else { throw CheckpointError(path, .invalid("'\(g)': the adapter is \(want) but the base tensor is \(shape)")) }
            let kind = String(g.split(separator: ".").last ?? "")
            if permutes && permutedKinds.contains(kind) {
                let h = kind == "attn_q" ? hq : hkv
                guard b.rows % (2 * h) == 0 else { throw CheckpointError(path, .invalid("'\(g)': \(b.rows) rows do not split into \(h) heads")) }
                b = GGUFConverter.unpermute(b, heads: h)
            }
            let r = a.rows
            let dt: DType = t.type == .f16 ? .f16 : .f32
            modules.append(
                LoraModule(
                    name: hf, a: AdapterTensor(dtype: dt, tensor: a), b: AdapterTensor(dtype: dt, tensor: b), isEmbedding: embedding,
                    alpha: alpha, scaling: alpha / Double(r)))
        }
        for t in f.tensors where t.name.hasSuffix(".weight.lora_b") && !names.contains(String(t.name.dropLast(1)) + "a") {
            throw CheckpointError(path, .invalid("'\(t.name)' has no lora_a"))
        }
        guard !modules.isEmpty else { throw CheckpointError(path, .invalid("no lora_a/lora_b tensor pairs")) }
        var c = LoraConfig()
        c.taskType = "CAUSAL_LM"
        c.targetModules = .names(Array(Set(modules.map(\.kind))).sorted())
        c.fit(modules: modules.map { ($0.name, $0.rank, $0.alpha) })
        return Adapter(config: c, modules: modules, otherTensors: [], source: path, configOrigin: "llama.cpp GGUF adapter")
    }
}

/// A GGUF v3 file from metadata and 2-D F32/F16 tensors (alignment 32, data offsets aligned).
enum GGUFWriter {
    static func encode(metadata: [(String, GGUFValue)], tensors: [(String, Tensor)], dtype: DType) throws -> [UInt8] {
        var out: [UInt8] = []
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func str(_ s: String) {
            u64(UInt64(s.utf8.count))
            out.append(contentsOf: Array(s.utf8))
        }
        out.append(contentsOf: Array("GGUF".utf8))
        u32(3)
        u64(UInt64(tensors.count))
        u64(UInt64(metadata.count))
        for (k, v) in metadata {
            str(k)
            switch v {
            case let .string(s):
                u32(8)
                str(s)
            case let .f32(x):
                u32(6)
                u32(x.bitPattern)
            case let .u32(x):
                u32(4)
                u32(x)
            default: throw CheckpointError(k, .invalid("GGUF writer: metadata type \(v.typeName) not written"))
            }
        }
        let elementSize = dtype == .f16 ? 2 : 4
        var offset = 0
        var offsets: [Int] = []
        for (name, t) in tensors {
            str(name)
            u32(2)
            u64(UInt64(t.cols))
            u64(UInt64(t.rows))  // ne0 = columns (fastest)
            u32(dtype == .f16 ? 1 : 0)
            u64(UInt64(offset))
            offsets.append(offset)
            offset += (t.count * elementSize + 31) / 32 * 32
        }
        while out.count % 32 != 0 { out.append(0) }
        let start = out.count
        for ((_, t), off) in zip(tensors, offsets) {
            while out.count < start + off { out.append(0) }
            out.append(contentsOf: Storage.encode(t.data, dtype: dtype))
        }
        while (out.count - start) % 32 != 0 { out.append(0) }
        return out
    }
}
