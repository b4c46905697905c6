/// `adapter_config.json` of a PEFT LoRA adapter (peft 0.21). Known fields are typed; every other field
/// is kept as written and saved back unchanged, so a round trip through coto loses nothing PEFT needs.
public struct LoraConfig: Equatable, Sendable {
    /// HF/PEFT field names.
    public enum CodingKeys: String, CaseIterable {
        case peftType = "peft_type"
        case r
        case loraAlpha = "lora_alpha"
        case targetModules = "target_modules"
        case useRslora = "use_rslora"
        case useDora = "use_dora"
        case fanInFanOut = "fan_in_fan_out"
        case rankPattern = "rank_pattern"
        case alphaPattern = "alpha_pattern"
        case modulesToSave = "modules_to_save"
        case baseModelNameOrPath = "base_model_name_or_path"
        case taskType = "task_type"
        case bias
        case loraBias = "lora_bias"
        case loraDropout = "lora_dropout"
        case layersToTransform = "layers_to_transform"
        case inferenceMode = "inference_mode"
    }

    public enum TargetModules: Equatable, Sendable {
        case names([String])
        /// A regular expression matched against the full module name (PEFT: `re.fullmatch`).
        case regex(String)
    }

    public var peftType: String = "LORA"
    public var r: Int = 8
    public var loraAlpha: Double = 8
    public var targetModules: TargetModules = .names([])
    public var useRslora = false
    public var useDora = false
    public var fanInFanOut = false
    /// Ordered as in the file: the first matching key wins.
    public var rankPattern: [(String, Int)] = []
    public var alphaPattern: [(String, Double)] = []
    public var modulesToSave: [String]? = nil
    public var baseModelNameOrPath: String? = nil
    public var taskType: String? = nil
    public var bias: String = "none"
    public var loraBias = false
    public var loraDropout: Double = 0
    /// Every field as read (known ones are overwritten from the typed values when saving).
    public var extra: [(String, JSON)] = []

    public init() {}

    public static func == (a: LoraConfig, b: LoraConfig) -> Bool { a.json == b.json }

    /// Parses the config; `path` names the file in errors.
    public init(json: JSON, path: String) throws {
        func fail(_ m: String) -> CheckpointError { CheckpointError(path, .invalid(m)) }
        guard let pairs = json.objectPairs else { throw fail("adapter config is not a JSON object") }
        extra = pairs
        func field(_ k: CodingKeys) -> JSON? {
            guard let v = json[k.rawValue], !v.isNull else { return nil }
            return v
        }
        func bool(_ k: CodingKeys) throws -> Bool {
            guard let v = field(k) else { return false }
            guard let b = v.boolValue else { throw fail("\(k.rawValue) must be true or false") }
            return b
        }
        func number(_ k: CodingKeys) throws -> Double? {
            guard let v = field(k) else { return nil }
            guard let d = v.doubleValue, d.isFinite else { throw fail("\(k.rawValue) must be a number") }
            return d
        }
        if let t = field(.peftType) {
            guard let s = t.stringValue else { throw fail("peft_type must be a string") }
            peftType = s
        }
        guard peftType == "LORA" else {
            throw fail("peft_type is \(peftType); coto reads LoRA adapters (LORA, with rsLoRA/DoRA options) only")
        }
        if let rv = field(.r) {
            guard let i = rv.intValue, i > 0 else { throw fail("r must be a positive integer") }
            r = i
        }
        loraAlpha = try number(.loraAlpha) ?? Double(r)
        if let tm = field(.targetModules) {
            if let s = tm.stringValue {
                targetModules = .regex(s)
            } else if let a = tm.arrayValue {
                targetModules = .names(
                    try a.map {
                        guard let s = $0.stringValue else { throw fail("target_modules entries must be strings") }
                        return s
                    })
            } else {
                throw fail("target_modules must be a list of names or a regex string")
            }
        }
        useRslora = try bool(.useRslora)
        useDora = try bool(.useDora)
        fanInFanOut = try bool(.fanInFanOut)
        loraBias = try bool(.loraBias)
        loraDropout = try number(.loraDropout) ?? 0
        if let rp = field(.rankPattern) {
            guard let p = rp.objectPairs else { throw fail("rank_pattern must be an object") }
            rankPattern = try p.map {
                guard let i = $0.1.intValue, i > 0 else { throw fail("rank_pattern['\($0.0)'] must be a positive integer") }
                return ($0.0, i)
            }
        }
        if let ap = field(.alphaPattern) {
            guard let p = ap.objectPairs else { throw fail("alpha_pattern must be an object") }
            alphaPattern = try p.map {
                guard let d = $0.1.doubleValue, d.isFinite else { throw fail("alpha_pattern['\($0.0)'] must be a number") }
                return ($0.0, d)
            }
        }
        if let m = field(.modulesToSave) {
            guard let a = m.arrayValue else { throw fail("modules_to_save must be a list") }
            modulesToSave = try a.map {
                guard let s = $0.stringValue else { throw fail("modules_to_save entries must be strings") }
                return s
            }
        }
        baseModelNameOrPath = field(.baseModelNameOrPath)?.stringValue
        taskType = field(.taskType)?.stringValue
        bias = field(.bias)?.stringValue ?? "none"
        // Patterns are regular expressions: reject ones that do not compile, naming the key.
        for (k, _) in rankPattern where (try? LoraConfig.patternRegex(k)) == nil { throw fail("rank_pattern key '\(k)' is not a valid regular expression") }
        for (k, _) in alphaPattern where (try? LoraConfig.patternRegex(k)) == nil { throw fail("alpha_pattern key '\(k)' is not a valid regular expression") }
    }

    public init(bytes: [UInt8], path: String) throws {
        let json: JSON
        do { json = try JSON.parse(bytes) } catch let e as JSONParseError {
            throw CheckpointError(path, .invalid("not valid JSON: \(e)"))
        }
        try self.init(json: json, path: path)
    }

    /// The config as JSON: every field read, known ones updated, keys sorted as PEFT writes them.
    public var json: JSON {
        var map: [String: JSON] = [:]
        for (k, v) in extra { map[k] = v }
        map[CodingKeys.peftType.rawValue] = .string(peftType)
        map[CodingKeys.r.rawValue] = .int(r)
        map[CodingKeys.loraAlpha.rawValue] = loraAlpha.rounded() == loraAlpha && abs(loraAlpha) < 1e15 ? .int(Int(loraAlpha)) : .double(loraAlpha)
        switch targetModules {
        case let .names(n): map[CodingKeys.targetModules.rawValue] = .array(n.map { .string($0) })
        case let .regex(s): map[CodingKeys.targetModules.rawValue] = .string(s)
        }
        map[CodingKeys.useRslora.rawValue] = .bool(useRslora)
        map[CodingKeys.useDora.rawValue] = .bool(useDora)
        map[CodingKeys.fanInFanOut.rawValue] = .bool(fanInFanOut)
        map[CodingKeys.loraBias.rawValue] = .bool(loraBias)
        map[CodingKeys.loraDropout.rawValue] = .double(loraDropout)
        map[CodingKeys.rankPattern.rawValue] = .object(rankPattern.map { ($0.0, .int($0.1)) })
        map[CodingKeys.alphaPattern.rawValue] = .object(
            alphaPattern.map {
                ($0.0, $0.1.rounded() == $0.1 && abs($0.1) < 1e15 ? .int(Int($0.1)) : .double($0.1))
            })
        map[CodingKeys.modulesToSave.rawValue] = modulesToSave.map { .array($0.map { .string($0) }) } ?? .null
        map[CodingKeys.baseModelNameOrPath.rawValue] = baseModelNameOrPath.map { .string($0) } ?? .null
        map[CodingKeys.taskType.rawValue] = taskType.map { .string($0) } ?? .null
        map[CodingKeys.bias.rawValue] = .string(bias)
        if map[CodingKeys.inferenceMode.rawValue] == nil { map[CodingKeys.inferenceMode.rawValue] = .bool(true) }
        return .object(map.keys.sorted().map { ($0, map[$0]!) })
    }

    /// Adds exact module names to `exclude_modules` (PEFT then leaves those modules without LoRA).
    public mutating func exclude(modules names: [String]) {
        guard !names.isEmpty else { return }
        let key = "exclude_modules"
        let current = extra.last(where: { $0.0 == key })?.1 ?? .null
        let value: JSON
        if let s = current.stringValue {
            value = .string((["(\(s))"] + names.map { "(\(Adapter.escapeRegex($0)))" }).joined(separator: "|"))
        } else {
            var list = current.arrayValue?.compactMap(\.stringValue) ?? []
            for n in names where !list.contains(n) { list.append(n) }
            value = .array(list.map { .string($0) })
        }
        extra.removeAll { $0.0 == key }
        extra.append((key, value))
    }

    /// Sets r, lora_alpha, rank_pattern and alpha_pattern so that each named module gets exactly its
    /// (rank, alpha): r and lora_alpha from the most common values, exact-name patterns for the rest.
    public mutating func fit(modules: [(name: String, rank: Int, alpha: Double)]) {
        func mostCommon<T: Hashable & Comparable>(_ xs: [T]) -> T? {
            var n: [T: Int] = [:]
            for x in xs { n[x, default: 0] += 1 }
            return n.max { ($0.value, $0.key) < ($1.value, $1.key) }?.key
        }
        let rr = mostCommon(modules.map(\.rank)) ?? r
        let aa = mostCommon(modules.filter { $0.rank == rr }.map(\.alpha)) ?? loraAlpha
        r = rr
        loraAlpha = aa
        rankPattern = modules.filter { $0.rank != rr }.map { (Adapter.escapeRegex($0.name), $0.rank) }
        alphaPattern = modules.filter { $0.alpha != aa }.map { (Adapter.escapeRegex($0.name), $0.alpha) }
    }

    // MARK: per-module rank, alpha, scaling (PEFT semantics)

    static func patternRegex(_ key: String) throws -> Regex<AnyRegexOutput> {
        try Regex("(.*\\.)?(\(key))")
    }

    /// PEFT's `get_pattern_key`: the first key (in file order) with `re.match(rf"(.*\.)?({key})$", name)`.
    public static func matchPattern(_ keys: [String], _ name: String) -> String? {
        for k in keys {
            guard let re = try? patternRegex(k) else { continue }
            if (try? re.wholeMatch(in: name)) != nil { return k }
        }
        return nil
    }

    /// Rank PEFT gives module `name` (the module path without `base_model.model.`).
    public func rank(for name: String) -> Int {
        if let k = LoraConfig.matchPattern(rankPattern.map(\.0), name) { return rankPattern.first { $0.0 == k }!.1 }
        return r
    }

    public func alpha(for name: String) -> Double {
        if let k = LoraConfig.matchPattern(alphaPattern.map(\.0), name) { return alphaPattern.first { $0.0 == k }!.1 }
        return loraAlpha
    }

    /// s = alpha / r, or alpha / sqrt(r) with rsLoRA.
    public func scaling(for name: String) -> Double {
        LoraConfig.scaling(alpha: alpha(for: name), r: rank(for: name), rslora: useRslora)
    }

    public static func scaling(alpha: Double, r: Int, rslora: Bool) -> Double {
        rslora ? alpha / Double(r).squareRoot() : alpha / Double(r)
    }

    /// Whether `targetModules` selects the module `name` (PEFT: exact name or `.name` suffix; regex
    /// fullmatch; `all-linear`, PEFT's shorthand, selects every module it is asked about).
    public func targets(_ name: String) -> Bool {
        switch targetModules {
        case let .names(n): return n == ["all-linear"] || n.contains { name == $0 || name.hasSuffix("." + $0) }
        case let .regex(s): return (try? Regex(s).wholeMatch(in: name)) != nil
        }
    }
}
