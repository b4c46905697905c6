import Checkpoint
import Numerics

/// Options of `coto-fuse`.
public struct FuseOptions: Sendable {
    public var weights: [Double]? = nil
    public var maxShardSize: UInt64? = nil
    public var allowNonFinite = false
    public init() {}
}

/// What a fuse changed.
public struct FuseReport: Sendable {
    public var fusedModules: [String] = []
    public var replacedTensors: [String] = []
    public var addedTensors: [String] = []
    public var files: [String] = []
}

/// W' = W + Σ w_i s_i B_i A_i for every targeted module (transposed for fan_in_fan_out and embeddings;
/// HiRA: W ⊙ (1 + Σ w_i s_i B_i A_i); DoRA: m ⊙ (W+ΔW)/||W+ΔW||_row; lora_B bias added to the layer bias; modules_to_save tensors replace
/// the base's), streamed tensor by tensor from the (mapped, possibly sharded) base into a new directory
/// with the base's dtypes; every other file of the base directory is copied.
public enum Fuser {
    struct Target {
        var adapter: Int
        var module: LoraModule
        var fanInFanOut: Bool
        var hira = false
    }

    /// The base tensor an adapter module path refers to: `path`, or `path` without its first component
    /// (adapter trained on a task model, base is the bare encoder), or `<model_type>.path` (the reverse).
    static func resolve(_ path: String, suffix: String, in names: Set<String>, modelType: String) -> String? {
        let candidates = [path, path.split(separator: ".", maxSplits: 1).dropFirst().first.map(String.init), modelType + "." + path]
        for c in candidates.compactMap({ $0 }) where names.contains(c + suffix) { return c + suffix }
        return nil
    }

    public static func fuse(
        base: HFModelDir, adapters: [Adapter], options o: FuseOptions, to outDir: String,
        progress: ((OperatorProgress) -> Void)? = nil
    ) throws -> FuseReport {
        guard !adapters.isEmpty else { throw MergeError(nil, "no adapter to fuse") }
        let weights = o.weights ?? [Double](repeating: 1, count: adapters.count)
        guard weights.count == adapters.count else { throw MergeError(nil, "\(weights.count) weights for \(adapters.count) adapters") }
        if let w = weights.first(where: { !$0.isFinite }) { throw MergeError(nil, "weight \(w) is not finite") }
        if !o.allowNonFinite { for a in adapters { try MergeSupport.checkFinite(a, where: a.source) } }
        try MergeSupport.checkVariants(adapters)
        let outNorm = FileSystem.dirname(of: outDir) + "/" + FileSystem.basename(of: outDir)
        let baseNorm = FileSystem.dirname(of: base.path) + "/" + FileSystem.basename(of: base.path)
        if outNorm == baseNorm || FileSystem.sameFile(outDir, base.path) || (outNorm + "/").hasPrefix(baseNorm + "/") {
            throw MergeError(outDir, "output directory is the base model's directory (or inside it); choose another")
        }
        let store = base.weights
        let names = Set(store.tensorNames)
        let modelType = base.config.modelType

        // Plan: which base tensor each module and head changes.
        var weightTargets: [String: [Target]] = [:]
        var biasTargets: [String: [Target]] = [:]
        var replacements: [String: AdapterTensor] = [:]
        var additions: [(String, AdapterTensor)] = []
        var report = FuseReport()
        for (ai, a) in adapters.enumerated() {
            for m in a.modules {
                guard let w = resolve(m.name, suffix: ".weight", in: names, modelType: modelType) else {
                    throw MergeError(a.source, "module '\(m.name)' has no weight in the base model \(base.path) (adapter for another base?)")
                }
                guard let info = store.tensorInfo(w) else { throw MergeError(base.path, "cannot read '\(w)'") }
                let expected = m.isEmbedding || a.config.fanInFanOut ? [m.inFeatures, m.outFeatures] : [m.outFeatures, m.inFeatures]
                guard info.shape == expected else {
                    throw MergeError(a.source, "module '\(m.name)': delta is \(expected) but the base weight '\(w)' is \(info.shape)")
                }
                if m.isDora && (adapters.count > 1 || weights[ai] != 1) {
                    throw MergeError(a.source, "module '\(m.name)' is DoRA: it can only be fused alone with weight 1")
                }
                if m.isDora && m.isEmbedding { throw MergeError(a.source, "module '\(m.name)': DoRA embeddings cannot be fused") }
                if a.variant == .hira && (m.isEmbedding || m.bias != nil) {
                    throw MergeError(a.source, "module '\(m.name)': HiRA adapts linear weights only (no embeddings, no lora_B.bias)")
                }
                weightTargets[w, default: []].append(Target(adapter: ai, module: m, fanInFanOut: a.config.fanInFanOut, hira: a.variant == .hira))
                if m.bias != nil {
                    guard let b = resolve(m.name, suffix: ".bias", in: names, modelType: modelType) else {
                        throw MergeError(a.source, "module '\(m.name)' has lora_B.bias but the base layer has no bias (PEFT cannot merge it either)")
                    }
                    biasTargets[b, default: []].append(Target(adapter: ai, module: m, fanInFanOut: a.config.fanInFanOut))
                }
                report.fusedModules.append(m.name)
            }
            for (key, t) in a.otherTensors {
                let path = key.hasPrefix(Adapter.keyPrefix) ? String(key.dropFirst(Adapter.keyPrefix.count)) : key
                let (module, suffix) = path.lastIndex(of: ".").map { (String(path[..<$0]), String(path[$0...])) } ?? (path, "")
                if let target = resolve(module, suffix: suffix, in: names, modelType: modelType) {
                    guard store.tensorInfo(target)?.shape == t.tensor.shape else {
                        throw MergeError(
                            a.source, "tensor '\(key)' is \(t.tensor.shape) but the base's '\(target)' is \(store.tensorInfo(target)?.shape ?? [])")
                    }
                    if replacements[target] != nil { throw MergeError(a.source, "tensor '\(target)' is replaced by more than one adapter") }
                    replacements[target] = t
                    report.replacedTensors.append(target)
                } else {
                    additions.append((path, t))
                    report.addedTensors.append(path)
                }
            }
        }

        // Stream: one lazily computed entry per base tensor.
        var entries: [TensorEntry] = []
        let total = store.tensorNames.count
        for (idx, name) in store.tensorNames.enumerated() {
            guard let info = store.tensorInfo(name) else { continue }
            if let r = replacements[name] {
                entries.append(TensorEntry(name: name, tensor: r.tensor, dtype: info.dtype))
                continue
            }
            let wt = weightTargets[name]
            let bt = biasTargets[name]
            if wt == nil && bt == nil {
                entries.append(try store.entry(name))
                continue
            }
            let allowNonFinite = o.allowNonFinite
            entries.append(
                TensorEntry(
                    name: name, dtype: info.dtype, shape: info.shape,
                    source: .lazy {
                        progress?(.tensor(name: name, index: idx, total: total))
                        if bt == nil, let targets = wt,
                            let bytes = try fuseF32InPlace(
                                store, name, targets: targets, weights: weights,
                                allowNonFinite: allowNonFinite)
                        {
                            return bytes
                        }
                        if bt == nil, let targets = wt,
                            let bytes = try fuseHalfInPlace(store, name, targets: targets, weights: weights, allowNonFinite: allowNonFinite)
                        {
                            return bytes
                        }
                        var w = try store.loadTensor(name)
                        store.release(name)
                        if let targets = wt {
                            if info.dtype == .f32 && w.shape.count == 2 && !targets.contains(where: { $0.hira || $0.module.isDora }) {
                                let (rows, cols) = (w.rows, w.cols)
                                w.data.withUnsafeMutableBufferPointer {
                                    addDeltas(into: $0.baseAddress!, rows: rows, cols: cols, targets: targets, weights: weights)
                                }
                            } else {
                                w = fuseWeight(w, targets: targets, weights: weights)
                            }
                        }
                        if let targets = bt {
                            var sum = [Double](repeating: 0, count: w.count)
                            for t in targets {
                                let s = weights[t.adapter] * t.module.scaling
                                for (j, v) in t.module.bias!.tensor.data.enumerated() { sum[j] += s * Double(v) }
                            }
                            for j in w.data.indices { w.data[j] = Float(Double(w.data[j]) + sum[j]) }
                        }
                        if !allowNonFinite, !Storage.allFinite(w.data) {
                            throw MergeError(nil, "fusing into '\(name)' produced NaN or Inf (--allow-nonfinite to write it anyway)")
                        }
                        return Storage.encode(w.data, dtype: info.dtype)
                    }))
        }
        for (path, t) in additions { entries.append(TensorEntry(name: path, tensor: t.tensor, dtype: t.dtype)) }

        // Default: shard like the base (its largest shard is the limit), or one file.
        var limit = o.maxShardSize
        if limit == nil, let sharded = store as? ShardedCheckpoint {
            limit = sharded.shardFiles.compactMap { FileSystem.fileSize(FileSystem.join(sharded.directory, $0)) }.max().map { UInt64($0) }
        }
        try FileSystem.makeDirectory(outDir)
        // Fused tensors are computed on a second thread, two ahead of the writer; BLAS runs single-threaded
        // meanwhile (rank-r updates are memory-bound, and idle OpenBLAS threads would spin on the cores).
        let blasThreads = BLAS.threads
        BLAS.setThreads(1)
        defer { BLAS.setThreads(blasThreads) }
        report.files = try ShardedWriter.write(entries, to: outDir, maxShardSize: limit, prefetch: 2)
        // The label list of the (first) adapter with one travels with the fused classifier.
        if !report.replacedTensors.isEmpty || !report.addedTensors.isEmpty, let labels = adapters.compactMap(\.labels).first {
            try AtomicFileWriter.write(JSON.array(labels.map { .string($0) }).pretty + "\n", to: FileSystem.join(outDir, Adapter.labelsFile))
            report.files.append(Adapter.labelsFile)
        }
        for f in base.otherFiles + ["config.json"] where f != Adapter.labelsFile || adapters.allSatisfy({ $0.labels == nil }) {
            try AtomicFileWriter.write(try FileSystem.readFile(FileSystem.join(base.path, f)), to: FileSystem.join(outDir, f))
            report.files.append(f)
        }
        return report
    }

    /// The fast path of a plain LoRA fuse into a Float32 safetensors weight: the mapped bytes copied once
    /// into the output buffer and W += w_i s_i B_i A_i applied in place by one sgemm per adapter (beta 1),
    /// so each fused tensor is touched twice instead of through a decoded copy, a dense delta and an
    /// encoded copy. nil where it does not apply (another dtype or store, HiRA, DoRA); the general path
    /// computes the same sums.
    static func fuseF32InPlace(
        _ store: TensorStore, _ name: String, targets: [Target], weights: [Double],
        allowNonFinite: Bool
    ) throws -> [UInt8]? {
        #if _endian(big)
        return nil  // the stored bytes are little-endian
        #endif
        guard !targets.contains(where: { $0.hira || $0.module.isDora }), case let .view(view) = try store.entry(name).source,
            view.dtype == .f32, view.shape.count == 2
        else { return nil }
        let (rows, cols) = (view.shape[0], view.shape[1])
        var bytes = view.readBytes()
        view.release()
        var finite = true
        try bytes.withUnsafeMutableBufferPointer { raw in
            // The little-endian Float32 bytes seen as Floats for the duration of the update
            // ([UInt8] storage is 16-byte aligned).
            try raw.withMemoryRebound(to: Float.self) { f in
                guard let c = f.baseAddress, f.count == rows * cols else {
                    throw MergeError(store.location, "tensor '\(name)': \(f.count) values where its shape needs \(rows * cols)")
                }
                addDeltas(into: c, rows: rows, cols: cols, targets: targets, weights: weights)
                if !allowNonFinite { finite = Storage.allFinite(UnsafeBufferPointer(f)) }
            }
        }
        guard finite else { throw MergeError(nil, "fusing into '\(name)' produced NaN or Inf (--allow-nonfinite to write it anyway)") }
        return bytes
    }

    /// W[rows, cols] += Σ w_i s_i B_i A_i in place, one sgemm (beta 1) per plain LoRA target (transposed
    /// for fan_in_fan_out layers and embeddings, which store W as [in, out]).
    static func addDeltas(into c: UnsafeMutablePointer<Float>, rows: Int, cols: Int, targets: [Target], weights: [Double]) {
        for t in targets {
            let m = t.module
            let alpha = Float(weights[t.adapter] * m.scaling)
            let r = m.rank
            m.a.tensor.data.withUnsafeBufferPointer { a in
                m.b.tensor.data.withUnsafeBufferPointer { b in
                    if t.fanInFanOut || m.isEmbedding {
                        BLAS.sgemm(
                            transA: true, transB: true, m: rows, n: cols, k: r, alpha: alpha,
                            a: a.baseAddress!, lda: rows, b: b.baseAddress!, ldb: r, beta: 1, c: c, ldc: cols)
                    } else {
                        BLAS.sgemm(
                            transA: false, transB: false, m: rows, n: cols, k: r, alpha: alpha,
                            a: b.baseAddress!, lda: r, b: a.baseAddress!, ldb: cols, beta: 1, c: c, ldc: cols)
                    }
                }
            }
        }
    }

    /// The fused weight in Float32; the caller's encoder rounds it once to the base dtype, which is what
    /// PEFT's merge_and_unload produces for a bf16/f16 base (checked bit for bit in the tests: the delta is
    /// formed and added as PEFT does). Float32 outputs of plain LoRA take `addDeltas` in place instead.
    static func fuseWeight(_ w: Tensor, targets: [Target], weights: [Double]) -> Tensor {
        var delta = Tensor(zeros: w.shape)
        for t in targets {
            // Embeddings and fan_in_fan_out layers store W transposed with respect to B·A.
            let d = t.module.delta(fanInFanOut: t.fanInFanOut || t.module.isEmbedding)
            let s = Float(weights[t.adapter])
            for j in delta.data.indices { delta.data[j] += s * d.data[j] }
        }
        if targets.contains(where: \.hira) {
            // HiRA: W ⊙ (1 + ΔW), the same W_eff as the unmerged forward (inputs are all HiRA: checked).
            var out = w
            for j in out.data.indices { out.data[j] += w.data[j] * delta.data[j] }
            return out
        }
        if let dora = targets.first(where: { $0.module.isDora }) {
            // m ⊙ (W + ΔW) / ||W + ΔW|| over each output row (columns with fan_in_fan_out).
            var sum = w + delta
            let m = dora.module.magnitude!.tensor.data
            let rowsAreOutputs = !dora.fanInFanOut
            let (rows, cols) = (sum.rows, sum.cols)
            let outs = rowsAreOutputs ? rows : cols
            for o in 0..<outs {
                var ss = 0.0
                for i in 0..<(rowsAreOutputs ? cols : rows) {
                    let v = Double(rowsAreOutputs ? sum[o, i] : sum[i, o])
                    ss += v * v
                }
                let f = Float(Double(m[o]) / ss.squareRoot())
                for i in 0..<(rowsAreOutputs ? cols : rows) {
                    if rowsAreOutputs { sum[o, i] *= f } else { sum[i, o] *= f }
                }
            }
            return sum
        }
        return w + delta
    }
}
