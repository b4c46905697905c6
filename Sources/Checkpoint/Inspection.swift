import Numerics

/// What `coto-inspect` reports about any checkpoint: its kind, tensors, adapter modules or model
/// summary, and the faults found. Produced as JSON (rendered as text by the CLI).
public struct Inspection {
    public enum Kind: String { case safetensors, sharded, adapter, model, gguf }

    public var path: String
    public var kind: Kind
    public var report: [(String, JSON)] = []
    /// Problems found (with --validate, any fault means exit 1).
    public var faults: [String] = []

    public struct Options {
        public var stats = false
        public var validate = false
        public init(stats: Bool = false, validate: Bool = false) {
            self.stats = stats
            self.validate = validate
        }
    }

    public var json: JSON {
        .object([("path", .string(path)), ("kind", .string(kind.rawValue))] + report + [("faults", .array(faults.map { .string($0) }))])
    }

    /// Inspects a path: adapter dir or file, HF model dir, sharded index, safetensors file, GGUF file.
    public static func inspect(_ path: String, options: Options = Options(), progress: ((Int, Int) -> Void)? = nil) throws -> Inspection {
        guard FileSystem.exists(path) else { throw CheckpointError(path, .notFound) }
        if FileSystem.isDirectory(path) {
            if FileSystem.exists(FileSystem.join(path, Adapter.configFile)) {
                return try adapter(path, options: options, progress: progress)
            }
            if FileSystem.exists(FileSystem.join(path, "config.json")) {
                return try model(path, options: options, progress: progress)
            }
            let store = try openTensorStore(path)
            return try tensors(store, kind: store is ShardedCheckpoint ? .sharded : .safetensors, options: options, progress: progress)
        }
        if isGGUF(path) { return try gguf(path, options: options, progress: progress) }
        if path.hasSuffix(".index.json") {
            return try tensors(ShardedCheckpoint(indexPath: path), kind: .sharded, options: options, progress: progress)
        }
        let file: SafeTensorsFile
        do { file = try SafeTensorsFile(path: path) } catch let e as CheckpointError where !path.hasSuffix(".safetensors") {
            throw CheckpointError(path, .invalid("not a safetensors, GGUF or index file (as safetensors: \(e.message))"))
        }
        if Adapter.isAdapter(file: file) {
            return try adapter(path, options: options, progress: progress)
        }
        return try tensors(file, kind: .safetensors, options: options, progress: progress)
    }

    public static func isGGUF(_ path: String) -> Bool {
        guard let f = try? MappedFile(path: path), f.size >= 4 else { return false }
        return f.withBytes { $0[0] == 0x47 && $0[1] == 0x47 && $0[2] == 0x55 && $0[3] == 0x46 }
    }

    static func statsJSON(_ s: TensorStats) -> JSON {
        .object([
            ("min", s.min.map(JSON.double) ?? .null), ("max", s.max.map(JSON.double) ?? .null),
            ("mean", s.mean.map(JSON.double) ?? .null), ("std", s.std.map(JSON.double) ?? .null),
            ("nan", .int(s.nanCount)), ("inf", .int(s.infCount)),
        ])
    }

    /// Tensor table of any store; with stats or validate, every tensor's values are read.
    static func tensorList(_ store: TensorStore, options: Options, faults: inout [String], progress: ((Int, Int) -> Void)?) throws -> (JSON, Int, [String: Int])
    {
        var rows: [JSON] = []
        var totalBytes = 0
        var dtypes: [String: Int] = [:]
        let names = store.tensorNames
        for (i, name) in names.enumerated() {
            guard let info = store.tensorInfo(name) else {
                // Sharded: surface the shard's own error.
                _ = try store.loadTensor(name)
                continue
            }
            totalBytes += info.byteCount
            dtypes[info.dtype.rawValue, default: 0] += info.elementCount
            var pairs: [(String, JSON)] = [
                ("name", .string(name)), ("dtype", .string(info.dtype.rawValue)),
                ("shape", .array(info.shape.map { JSON.int($0) })), ("bytes", .int(info.byteCount)),
            ]
            if options.stats || options.validate {
                let s = try stats(store, name)
                if options.stats { pairs.append(("stats", statsJSON(s))) }
                if s.nanCount > 0 || s.infCount > 0 {
                    faults.append("tensor '\(name)': \(s.nanCount) NaN and \(s.infCount) Inf values")
                }
            }
            rows.append(.object(pairs))
            progress?(i + 1, names.count)
        }
        return (.array(rows), totalBytes, dtypes)
    }

    static func stats(_ store: TensorStore, _ name: String) throws -> TensorStats {
        if let f = store as? SafeTensorsFile { return try f.view(name).stats() }
        if let s = store as? ShardedCheckpoint { return try s.view(name).stats() }
        return TensorStats(values: try store.loadTensor(name).data)
    }

    static func tensors(_ store: TensorStore, kind: Kind, options: Options, progress: ((Int, Int) -> Void)?) throws -> Inspection {
        var ins = Inspection(path: store.location, kind: kind)
        if options.validate, let s = store as? ShardedCheckpoint {
            do { try s.validateAll() } catch let e as CheckpointError { ins.faults.append(e.description) }
        }
        let (list, bytes, dtypes) = try tensorList(store, options: options, faults: &ins.faults, progress: progress)
        ins.report.append(("tensor_count", .int(store.tensorNames.count)))
        ins.report.append(("total_bytes", .int(bytes)))
        ins.report.append(("elements_by_dtype", .object(dtypes.sorted { $0.key < $1.key }.map { ($0.key, .int($0.value)) })))
        if let s = store as? ShardedCheckpoint {
            ins.report.append(("shards", .array(s.shardFiles.map { .string($0) })))
            if let t = s.declaredTotalSize { ins.report.append(("declared_total_size", .uint(t))) }
        }
        if let f = store as? SafeTensorsFile, let m = f.metadata {
            ins.report.append(("metadata", .object(m.map { ($0.0, .string($0.1)) })))
        }
        ins.report.append(("tensors", list))
        return ins
    }

    static func adapter(_ path: String, options: Options, progress: ((Int, Int) -> Void)?) throws -> Inspection {
        let a = try Adapter.load(path)
        var ins = Inspection(path: path, kind: .adapter)
        let c = a.config
        ins.report.append(("config_origin", .string(a.configOrigin)))
        ins.report.append(("base_model", c.baseModelNameOrPath.map(JSON.string) ?? .null))
        ins.report.append(("task_type", c.taskType.map(JSON.string) ?? .null))
        ins.report.append(("r", .int(c.r)))
        ins.report.append(("lora_alpha", .double(c.loraAlpha)))
        ins.report.append(("use_rslora", .bool(c.useRslora)))
        ins.report.append(("use_dora", .bool(c.useDora)))
        ins.report.append(("variant", .string(a.variant.rawValue)))
        ins.report.append(("labels", a.labels.map { .array($0.map(JSON.string)) } ?? .null))
        ins.report.append(("fan_in_fan_out", .bool(c.fanInFanOut)))
        ins.report.append(("module_count", .int(a.modules.count)))
        ins.report.append(("parameter_count", .int(a.parameterCount)))
        ins.report.append(("layers", .array(a.layers.map { JSON.int($0) })))
        var mods: [JSON] = []
        for m in a.modules {
            let norm = m.deltaNorm
            if !norm.isFinite { ins.faults.append("module '\(m.name)': ||s·BA||_F is not finite (NaN/Inf in the factors)") }
            var pairs: [(String, JSON)] = [
                ("name", .string(m.name)), ("layer", m.layer.map(JSON.int) ?? .null), ("kind", .string(m.kind)),
                ("r", .int(m.rank)), ("alpha", .double(m.alpha)), ("scaling", .double(m.scaling)),
                ("in_features", .int(m.inFeatures)), ("out_features", .int(m.outFeatures)),
                ("delta_norm", .double(norm)), ("dora", .bool(m.isDora)), ("lora_bias", .bool(m.bias != nil)),
                ("embedding", .bool(m.isEmbedding)), ("dtype", .string(m.a.dtype.rawValue)),
            ]
            if options.stats {
                pairs.append(("stats_A", statsJSON(TensorStats(values: m.a.tensor.data))))
                pairs.append(("stats_B", statsJSON(TensorStats(values: m.b.tensor.data))))
            }
            mods.append(.object(pairs))
        }
        ins.report.append(("modules", .array(mods)))
        let headKeys = Set(a.heads.map(\.0))
        ins.report.append(
            (
                "heads",
                .array(
                    a.heads.map { k, t in
                        .object([("name", .string(k)), ("shape", .array(t.tensor.shape.map { JSON.int($0) })), ("dtype", .string(t.dtype.rawValue))])
                    })
            ))
        let others = a.otherTensors.filter { !headKeys.contains($0.0) }
        if !others.isEmpty {
            ins.report.append(("other_tensors", .array(others.map { .string($0.0) })))
        }
        if options.validate {
            for (k, t) in a.otherTensors {
                let s = TensorStats(values: t.tensor.data)
                if s.nanCount + s.infCount > 0 { ins.faults.append("tensor '\(k)': \(s.nanCount) NaN and \(s.infCount) Inf values") }
            }
            for m in a.modules {
                for (part, t) in [("lora_A", m.a), ("lora_B", m.b)] {
                    let s = TensorStats(values: t.tensor.data)
                    if s.nanCount + s.infCount > 0 { ins.faults.append("module '\(m.name)' \(part): \(s.nanCount) NaN and \(s.infCount) Inf values") }
                }
            }
        }
        progress?(1, 1)
        return ins
    }

    static func model(_ path: String, options: Options, progress: ((Int, Int) -> Void)?) throws -> Inspection {
        let m = try HFModelDir(path: path)
        var ins = Inspection(path: path, kind: .model)
        let c = m.config
        if options.validate, let s = m.weights as? ShardedCheckpoint {
            do { try s.validateAll() } catch let e as CheckpointError { ins.faults.append(e.description) }
        }
        ins.report.append(("model_type", .string(c.modelType)))
        ins.report.append(("architectures", .array((c.architectures ?? []).map { .string($0) })))
        ins.report.append(("parameter_count", .int(m.parameterCount)))
        ins.report.append(("hidden_size", c.hiddenSize.map(JSON.int) ?? .null))
        ins.report.append(("num_hidden_layers", c.numHiddenLayers.map(JSON.int) ?? .null))
        ins.report.append(("num_attention_heads", c.numAttentionHeads.map(JSON.int) ?? .null))
        ins.report.append(("num_key_value_heads", c.numKeyValueHeads.map(JSON.int) ?? .null))
        ins.report.append(("vocab_size", c.vocabSize.map(JSON.int) ?? .null))
        ins.report.append(("weight_files", .array(m.weightFiles.map { .string($0) })))
        ins.report.append(("tokenizer_files", .array(m.tokenizerFiles.map { .string($0) })))
        ins.report.append(("other_files", .array(m.otherFiles.map { .string($0) })))
        let (list, bytes, dtypes) = try tensorList(m.weights, options: options, faults: &ins.faults, progress: progress)
        ins.report.append(("tensor_count", .int(m.weights.tensorNames.count)))
        ins.report.append(("total_bytes", .int(bytes)))
        ins.report.append(("elements_by_dtype", .object(dtypes.sorted { $0.key < $1.key }.map { ($0.key, .int($0.value)) })))
        ins.report.append(("tensors", list))
        return ins
    }

    static func gguf(_ path: String, options: Options, progress: ((Int, Int) -> Void)?) throws -> Inspection {
        let g = try GGUFFile(path: path)
        var ins = Inspection(path: path, kind: .gguf)
        ins.report.append(("version", .int(Int(g.version))))
        ins.report.append(("alignment", .int(g.alignment)))
        ins.report.append(
            (
                "metadata",
                .object(
                    g.metadata.map { k, v in
                        switch v {
                        case let .string(s): return (k, .string(s))
                        case let .array(a): return (k, .string("[\(a.count) × \(a.elementType)]"))
                        case .f32, .f64: return (k, .double(v.double ?? .nan))
                        case let .bool(b): return (k, .bool(b))
                        default: return (k, v.int.map(JSON.int) ?? .null)
                        }
                    })
            ))
        var types: [String: Int] = [:]
        var rows: [JSON] = []
        var total = 0
        let arch = try? GGUFConverter(gguf: g).architectureSpec()
        for (i, t) in g.tensors.enumerated() {
            types[t.type.name, default: 0] += 1
            total += t.byteCount
            var pairs: [(String, JSON)] = [
                ("name", .string(t.name)), ("type", .string(t.type.name)),
                ("shape", .array(t.shape.map { JSON.int($0) })), ("bytes", .int(t.byteCount)),
                ("hf_name", arch?.hfName(t.name).map(JSON.string) ?? .null),
            ]
            if (options.stats || options.validate) && t.type.canDequantize {
                let s = TensorStats(values: try g.dequantize(t.name).data)
                if options.stats { pairs.append(("stats", statsJSON(s))) }
                if s.nanCount + s.infCount > 0 { ins.faults.append("tensor '\(t.name)': \(s.nanCount) NaN and \(s.infCount) Inf values") }
            }
            rows.append(.object(pairs))
            progress?(i + 1, g.tensors.count)
        }
        ins.report.append(("tensor_count", .int(g.tensors.count)))
        ins.report.append(("total_bytes", .int(total)))
        ins.report.append(("tensors_by_type", .object(types.sorted { $0.key < $1.key }.map { ($0.key, .int($0.value)) })))
        ins.report.append(("tensors", .array(rows)))
        return ins
    }
}
