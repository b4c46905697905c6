import Numerics

/// How an adapter's factors change a linear layer. Persisted with the adapter (`coto_adapter.json` in a
/// directory, `__metadata__["coto_variant"]` in a single file) so every operator and reader sees it.
///   lora: W + s·B·A (rsLoRA is LoRA with s = alpha/sqrt(r));
///   dora: m ⊙ (W + s·B·A) / ||W + s·B·A||_row (PEFT's use_dora; the magnitude vectors say so);
///   hira: W ⊙ (1 + s·B·A) (HiRA; PEFT has no field for it).
public enum AdapterVariant: String, Sendable, CaseIterable, Codable {
    case lora, dora, hira
}

/// A tensor of an adapter, decoded to Float32, remembering the dtype it was stored in.
public struct AdapterTensor: Equatable, Sendable {
    public var dtype: DType
    public var tensor: Tensor
    public init(dtype: DType, tensor: Tensor) {
        self.dtype = dtype
        self.tensor = tensor
    }
}

/// One LoRA module: delta W = s * B A (A [r, in], B [out, r]; embeddings A [r, vocab], B [dim, r]).
public struct LoraModule: Equatable, Sendable {
    /// Module path without the `base_model.model.` prefix, e.g. `bert.encoder.layer.0.attention.self.query`.
    public var name: String
    public var a: AdapterTensor
    public var b: AdapterTensor
    /// `lora_B.bias` (PEFT `lora_bias=True`), [out].
    public var bias: AdapterTensor?
    /// DoRA `lora_magnitude_vector`, [out].
    public var magnitude: AdapterTensor?
    public var isEmbedding: Bool
    public var alpha: Double
    public var scaling: Double

    public init(
        name: String, a: AdapterTensor, b: AdapterTensor, bias: AdapterTensor? = nil, magnitude: AdapterTensor? = nil,
        isEmbedding: Bool = false, alpha: Double, scaling: Double
    ) {
        self.name = name
        self.a = a
        self.b = b
        self.bias = bias
        self.magnitude = magnitude
        self.isEmbedding = isEmbedding
        self.alpha = alpha
        self.scaling = scaling
    }

    public var rank: Int { a.tensor.shape.first ?? 0 }
    public var inFeatures: Int { a.tensor.cols }
    public var outFeatures: Int { b.tensor.rows }
    /// Last component of the name (`query`, `q_proj`, ...).
    public var kind: String { String(name.split(separator: ".").last ?? Substring(name)) }
    /// The integer after `layers.`/`layer.`/`h.`/`blocks.` in the name.
    public var layer: Int? { LoraModule.layerIndex(of: name) }
    public var isDora: Bool { magnitude != nil }

    public static func layerIndex(of name: String) -> Int? {
        let parts = name.split(separator: ".")
        for (i, p) in parts.enumerated() where ["layers", "layer", "h", "blocks"].contains(p) && i + 1 < parts.count {
            if let n = Int(parts[i + 1]) { return n }
        }
        return nil
    }

    /// PEFT key prefix of this module's tensors.
    public var keyPrefix: String { Adapter.keyPrefix + name }
    public var aKey: String { keyPrefix + (isEmbedding ? ".lora_embedding_A" : ".lora_A.weight") }
    public var bKey: String { keyPrefix + (isEmbedding ? ".lora_embedding_B" : ".lora_B.weight") }

    /// s * B * A as a dense [out, in] matrix (embeddings: [dim, vocab]; transpose for the weight layout).
    /// Computed as PEFT's get_delta_weight does: (B @ A), then transposed if asked, then * scaling.
    public func delta(fanInFanOut: Bool = false) -> Tensor {
        let d = BLAS.matmul(b.tensor, a.tensor)
        return Float(scaling) * (fanInFanOut ? d.transposed() : d)
    }

    /// ||s B A||_F computed from the r x r Gram matrices (never forms the out x in delta):
    /// ||BA||_F^2 = trace((B^T B)(A A^T)).
    public var deltaNorm: Double { abs(scaling) * BLAS.productFrobeniusNorm(b: b.tensor, a: a.tensor) }
}

/// A PEFT LoRA adapter: config, modules, and the tensors it saves besides LoRA (modules_to_save heads).
public struct Adapter: Sendable {
    public static let keyPrefix = "base_model.model."
    public static let configFile = "adapter_config.json"
    public static let weightsFile = "adapter_model.safetensors"
    /// Metadata key under which a bare adapter file carries its config.
    public static let metadataConfigKey = "coto_adapter_config"

    public var config: LoraConfig
    /// Sorted by name.
    public var modules: [LoraModule]
    /// Full keys -> tensors that are not LoRA factors (modules_to_save heads, trainable tokens...).
    public var otherTensors: [(String, AdapterTensor)]
    /// Where it was read from.
    public var source: String
    /// How `config` was obtained, for reports ("adapter_config.json", "file metadata", "inferred from shapes").
    public var configOrigin: String
    /// Classification label list (index i of the head is labels[i]); stored beside the adapter where PEFT
    /// ignores it: `coto_labels.json` in a directory, `__metadata__["coto_labels"]` in a file.
    public var labels: [String]? = nil
    public static let labelsFile = "coto_labels.json"
    /// coto's own adapter facts PEFT has no field for (HiRA: {"variant": "hira"}).
    public static let cotoFile = "coto_adapter.json"
    public static let metadataLabelsKey = "coto_labels"
    public static let metadataVariantKey = "coto_variant"
    /// How the factors act on the base layer. `.dora` exactly when the modules carry magnitude vectors;
    /// `.hira` from `coto_adapter.json` / `__metadata__["coto_variant"]`; `.lora` otherwise.
    public var variant: AdapterVariant = .lora

    public init(config: LoraConfig, modules: [LoraModule], otherTensors: [(String, AdapterTensor)], source: String, configOrigin: String) {
        self.config = config
        self.modules = modules.sorted { $0.name < $1.name }
        self.otherTensors = otherTensors
        self.source = source
        self.configOrigin = configOrigin
        self.variant = self.modules.contains { $0.isDora } ? .dora : .lora
    }

    /// Sets the variant a file declared, checked against the modules (HiRA has no rule for DoRA magnitudes
    /// or embeddings; a declared DoRA needs magnitudes).
    mutating func declare(_ v: AdapterVariant, path: String) throws {
        switch v {
        case .hira:
            if let m = modules.first(where: { $0.isDora }) {
                throw CheckpointError(path, .invalid("declares variant hira but module '\(m.name)' has a DoRA magnitude vector"))
            }
            if let m = modules.first(where: { $0.isEmbedding }) {
                throw CheckpointError(path, .invalid("declares variant hira but module '\(m.name)' is an embedding (HiRA adapts linear layers only)"))
            }
            if let m = modules.first(where: { $0.bias != nil }) {
                throw CheckpointError(path, .invalid("declares variant hira but module '\(m.name)' has a lora_B.bias (HiRA has no rule for it)"))
            }
        case .dora:
            if modules.contains(where: { !$0.isDora }) {
                throw CheckpointError(path, .invalid("declares variant dora but not every module has a lora_magnitude_vector"))
            }
        case .lora:
            if let m = modules.first(where: { $0.isDora }) {
                throw CheckpointError(path, .invalid("declares variant lora but module '\(m.name)' has a DoRA magnitude vector"))
            }
        }
        variant = v
    }

    static func parseVariant(_ text: String, path: String) throws -> AdapterVariant {
        guard let v = AdapterVariant(rawValue: text) else {
            throw CheckpointError(path, .invalid("unknown adapter variant '\(text)' (lora, dora or hira)"))
        }
        return v
    }

    /// Head tensors (modules_to_save), keyed by full key.
    public var heads: [(String, AdapterTensor)] {
        let mts = config.modulesToSave ?? []
        return otherTensors.filter { key, _ in
            let path = key.hasPrefix(Adapter.keyPrefix) ? String(key.dropFirst(Adapter.keyPrefix.count)) : key
            return mts.contains { path.hasPrefix($0 + ".") || path.contains("." + $0 + ".") }
        }
    }

    public var layers: [Int] { Array(Set(modules.compactMap(\.layer))).sorted() }
    public var parameterCount: Int {
        modules.reduce(0) { $0 + $1.a.tensor.count + $1.b.tensor.count + ($1.bias?.tensor.count ?? 0) + ($1.magnitude?.tensor.count ?? 0) }
    }

    // MARK: loading

    /// Loads a PEFT adapter directory, or a bare adapter `.safetensors` file. For a bare file without our
    /// config metadata, r comes from the shapes and lora_alpha = `alpha` (default: r).
    public static func load(_ path: String, alpha: Double? = nil) throws -> Adapter {
        if FileSystem.isDirectory(path) {
            let cfgPath = FileSystem.join(path, configFile)
            let wPath = FileSystem.join(path, weightsFile)
            if !FileSystem.exists(cfgPath) {
                throw CheckpointError(path, .invalid("not a PEFT adapter directory: no \(configFile)"))
            }
            if !FileSystem.exists(wPath) {
                if FileSystem.exists(FileSystem.join(path, "adapter_model.bin")) {
                    throw CheckpointError(
                        FileSystem.join(path, "adapter_model.bin"),
                        .invalid("pickle weights are not loaded (unsafe); save the adapter with safe_serialization=True"))
                }
                throw CheckpointError(path, .invalid("not a PEFT adapter directory: no \(weightsFile)"))
            }
            let config = try LoraConfig(bytes: FileSystem.readFile(cfgPath, limit: 64 << 20), path: cfgPath)
            let file = try SafeTensorsFile(path: wPath)
            var a = try build(file: file, config: config, source: path, origin: configFile)
            let lp = FileSystem.join(path, labelsFile)
            if FileSystem.exists(lp) { a.labels = try parseLabels(FileSystem.readFile(lp, limit: 64 << 20), path: lp) }
            let cp = FileSystem.join(path, cotoFile)
            if FileSystem.exists(cp) {
                guard let obj = try? JSON.parse(FileSystem.readFile(cp, limit: 1 << 20)), case .object = obj else {
                    throw CheckpointError(cp, .invalid("not a JSON object"))
                }
                guard let text = obj["variant"]?.stringValue else { throw CheckpointError(cp, .invalid("no string field \"variant\"")) }
                try a.declare(parseVariant(text, path: cp), path: cp)
            }
            return a
        }
        let file = try SafeTensorsFile(path: path)
        let labels = try file.metadataValue(metadataLabelsKey).map { try parseLabels(Array($0.utf8), path: path + " (__metadata__.\(metadataLabelsKey))") }
        if let text = file.metadataValue(metadataConfigKey) {
            let config = try LoraConfig(bytes: Array(text.utf8), path: path + " (__metadata__.\(metadataConfigKey))")
            var a = try build(file: file, config: config, source: path, origin: "file metadata")
            a.labels = labels
            if let text = file.metadataValue(metadataVariantKey) {
                let where_ = path + " (__metadata__.\(metadataVariantKey))"
                try a.declare(parseVariant(text, path: where_), path: where_)
            }
            return a
        }
        // A bare file from elsewhere: r from the shapes, alpha = r unless given.
        var config = LoraConfig()
        var ranks: [String: Int] = [:]
        for info in file.tensors {
            guard let (module, part) = classify(info.name), part == .a || part == .embeddingA else { continue }
            ranks[module] = info.shape.first ?? 0
        }
        guard let r0 = ranks.values.max() else {
            throw CheckpointError(path, .invalid("no LoRA tensors (…lora_A.weight / …lora_B.weight) in this file"))
        }
        config.r = r0
        config.loraAlpha = alpha ?? Double(r0)
        // Modules whose rank differs get a rank_pattern entry (escaped: names are literal).
        for (m, r) in ranks.sorted(by: { $0.key < $1.key }) where r != r0 {
            config.rankPattern.append((escapeRegex(m), r))
            if alpha == nil { config.alphaPattern.append((escapeRegex(m), Double(r))) }
        }
        config.targetModules = .names(Array(Set(ranks.keys.map { String($0.split(separator: ".").last ?? Substring($0)) })).sorted())
        config.useDora = file.names.contains { $0.hasSuffix(".lora_magnitude_vector") }
        config.loraBias = file.names.contains { $0.hasSuffix(".lora_B.bias") }
        return try build(
            file: file, config: config, source: path,
            origin: alpha == nil ? "inferred from shapes (lora_alpha = r)" : "inferred from shapes (lora_alpha from --alpha)")
    }

    /// Whether a path holds an adapter: a directory with adapter_config.json, or a safetensors file with
    /// our config metadata or LoRA tensors.
    public static func isAdapter(path: String) -> Bool {
        if FileSystem.isDirectory(path) { return FileSystem.exists(FileSystem.join(path, configFile)) }
        guard let f = try? SafeTensorsFile(path: path) else { return false }
        return isAdapter(file: f)
    }

    public static func isAdapter(file f: SafeTensorsFile) -> Bool {
        f.metadataValue(metadataConfigKey) != nil || f.names.contains { classify($0) != nil }
    }

    /// A label list file (`coto_labels.json`) on its own.
    public static func load(labelsOnly path: String) throws -> [String] {
        try parseLabels(FileSystem.readFile(path, limit: 64 << 20), path: path)
    }

    static func parseLabels(_ bytes: [UInt8], path: String) throws -> [String] {
        guard let arr = (try? JSON.parse(bytes))?.arrayValue else { throw CheckpointError(path, .invalid("label list is not a JSON array")) }
        return try arr.map {
            if let s = $0.stringValue { return s }
            if case let .number(n) = $0 { return n }
            throw CheckpointError(path, .invalid("label list entries must be strings or numbers"))
        }
    }

    /// A regular expression matching `s` literally (for exact-name rank_pattern / alpha_pattern keys).
    public static func escapeRegex(_ s: String) -> String {
        var out = ""
        for c in s {
            if "\\.^$|?*+()[]{}".contains(c) { out.append("\\") }
            out.append(c)
        }
        return out
    }

    enum Part { case a, b, bias, magnitude, embeddingA, embeddingB }

    /// Splits a PEFT key into (module path, part), or nil for a non-LoRA tensor.
    static func classify(_ key: String) -> (String, Part)? {
        let suffixes: [(String, Part)] = [
            (".lora_A.weight", .a), (".lora_B.weight", .b), (".lora_B.bias", .bias),
            (".lora_magnitude_vector", .magnitude), (".lora_magnitude_vector.weight", .magnitude),
            (".lora_embedding_A", .embeddingA), (".lora_embedding_B", .embeddingB),
        ]
        for (s, p) in suffixes where key.hasSuffix(s) {
            var module = String(key.dropLast(s.count))
            if module.hasPrefix(keyPrefix) { module = String(module.dropFirst(keyPrefix.count)) }
            return (module, p)
        }
        return nil
    }

    static func build(file: SafeTensorsFile, config: LoraConfig, source: String, origin: String) throws -> Adapter {
        let path = file.path
        struct Parts {
            var a, b, bias, mag: AdapterTensor?
            var embedding = false
        }
        var parts: [String: Parts] = [:]
        var others: [(String, AdapterTensor)] = []
        for info in file.tensors {
            let t = AdapterTensor(dtype: info.dtype, tensor: file.view(info).toTensor())
            guard let (module, part) = classify(info.name) else {
                others.append((info.name, t))
                continue
            }
            var p = parts[module] ?? Parts()
            switch part {
            case .a: p.a = t
            case .b: p.b = t
            case .embeddingA:
                p.a = t
                p.embedding = true
            case .embeddingB:
                p.b = t
                p.embedding = true
            case .bias: p.bias = t
            case .magnitude: p.mag = t
            }
            parts[module] = p
        }
        var modules: [LoraModule] = []
        for (name, p) in parts.sorted(by: { $0.key < $1.key }) {
            func bad(_ m: String) -> CheckpointError { CheckpointError(path, .invalid("module '\(name)': \(m)")) }
            guard let a = p.a else { throw bad("has lora_B but no lora_A") }
            guard let b = p.b else { throw bad("has lora_A but no lora_B") }
            guard a.tensor.rank == 2, b.tensor.rank == 2 else { throw bad("lora_A and lora_B must be 2-D, got \(a.tensor.shape) and \(b.tensor.shape)") }
            let r = a.tensor.shape[0]
            guard r > 0 else { throw bad("rank 0") }
            guard b.tensor.shape[1] == r else { throw bad("lora_A is \(a.tensor.shape) but lora_B is \(b.tensor.shape): ranks differ") }
            let cfgR = config.rank(for: name)
            if cfgR != r {
                throw bad("has rank \(r) in the weights but \(cfgR) in the config (r / rank_pattern)")
            }
            if let bias = p.bias, bias.tensor.shape != [b.tensor.shape[0]] {
                throw bad("lora_B.bias has shape \(bias.tensor.shape), expected [\(b.tensor.shape[0])]")
            }
            if let m = p.mag, m.tensor.count != b.tensor.shape[0] {
                throw bad("lora_magnitude_vector has shape \(m.tensor.shape), expected [\(b.tensor.shape[0])]")
            }
            let alpha = config.alpha(for: name)
            modules.append(
                LoraModule(
                    name: name, a: a, b: b, bias: p.bias, magnitude: p.mag, isEmbedding: p.embedding,
                    alpha: alpha, scaling: LoraConfig.scaling(alpha: alpha, r: r, rslora: config.useRslora)))
        }
        return Adapter(config: config, modules: modules, otherTensors: others, source: source, configOrigin: origin)
    }

    // MARK: saving

    /// The tensors PEFT saves for this adapter, each in `dtype` or its own dtype when nil.
    public func entries(dtype: DType? = nil) -> [TensorEntry] {
        var out: [TensorEntry] = []
        func add(_ key: String, _ t: AdapterTensor) {
            out.append(TensorEntry(name: key, tensor: t.tensor, dtype: dtype ?? t.dtype))
        }
        for m in modules {
            add(m.aKey, m.a)
            add(m.bKey, m.b)
            if let bias = m.bias { add(m.keyPrefix + ".lora_B.bias", bias) }
            if let mag = m.magnitude { add(m.keyPrefix + ".lora_magnitude_vector", mag) }
        }
        for (k, t) in otherTensors { add(k, t) }
        return out
    }

    /// Saves a PEFT adapter directory (`adapter_config.json` + `adapter_model.safetensors`) when `path`
    /// does not end in `.safetensors`, else one file with the config in its metadata. Atomic per file.
    public func save(to path: String, dtype: DType? = nil, extraMetadata: [(String, String)] = []) throws {
        let labelMeta = labels.map { [(Adapter.metadataLabelsKey, JSON.array($0.map { .string($0) }).compact)] } ?? []
        if path.hasSuffix(".safetensors") && !FileSystem.isDirectory(path) {
            let variantMeta = variant == .hira ? [(Adapter.metadataVariantKey, variant.rawValue)] : []
            let meta = [("format", "pt"), (Adapter.metadataConfigKey, config.json.compact)] + labelMeta + variantMeta + extraMetadata
            try SafeTensorsWriter.write(entries(dtype: dtype), metadata: meta, to: path)
            return
        }
        try FileSystem.makeDirectory(path)
        try SafeTensorsWriter.write(
            entries(dtype: dtype), metadata: [("format", "pt")] + extraMetadata,
            to: FileSystem.join(path, Adapter.weightsFile))
        try AtomicFileWriter.write(config.json.pretty, to: FileSystem.join(path, Adapter.configFile))
        if let l = labels {
            try AtomicFileWriter.write(JSON.array(l.map { .string($0) }).pretty + "\n", to: FileSystem.join(path, Adapter.labelsFile))
        } else if FileSystem.exists(FileSystem.join(path, Adapter.labelsFile)) {
            try FileSystem.remove(FileSystem.join(path, Adapter.labelsFile))  // a stale list from an earlier write
        }
        let cp = FileSystem.join(path, Adapter.cotoFile)
        if variant == .hira {
            try AtomicFileWriter.write(JSON.object([("variant", .string(variant.rawValue))]).pretty + "\n", to: cp)
        } else if FileSystem.exists(cp) {
            try FileSystem.remove(cp)  // a stale declaration from an earlier write
        }
    }
}
