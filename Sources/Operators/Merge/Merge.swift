import Checkpoint
import Numerics

/// What a merge is asked to do (CLI options map one to one).
public struct MergeOptions: Sendable {
    public enum Heads: String, Sendable, CaseIterable { case average, first, drop }

    public var weights: [Double]
    public var density: Double? = nil
    public var rank: Int? = nil
    public var svdClamp: Double? = nil
    /// breadcrumbs: the fraction of largest-magnitude entries dropped as outliers (mergekit's gamma).
    public var gamma: Double = 0.01
    /// della / della_linear: keep probabilities run from density − epsilon to density + epsilon (mergekit's).
    public var epsilon: Double = 0.15
    public var majoritySign: TaskVectors.MajoritySign = .total
    public var seed: UInt64 = 0
    public var heads: Heads = .average
    /// Output dtype for every tensor; nil keeps the first input's dtype.
    public var dtype: DType? = nil
    public var allowNonFinite = false
    /// regmean: each input's activation Grams by module name (`RegMeanGrams.capture`), and the shrinkage a of
    /// G̃ = a·G + (1 − a)·diag(G).
    public var grams: [[String: InputGram]]? = nil
    public var regmeanAlpha: Double = 1

    public init(weights: [Double]) { self.weights = weights }
}

/// Progress of a long operation, reported to the caller's callback (the library never prints).
public enum OperatorProgress: Sendable {
    case module(name: String, index: Int, total: Int)
    case tensor(name: String, index: Int, total: Int)
}

/// One merge method (one file each, mergekit style). What a caller must know about a method lives here,
/// not in name matching: whether it needs a density, whether it elects signs, its default weights.
public protocol MergeMethod: Sendable {
    /// The name `--method` takes.
    var name: String { get }
    /// Whether `--density` is required (pruning or sampling methods).
    var needsDensity: Bool { get }
    /// Whether, per entry, only the values agreeing with an elected sign are kept (TIES family, DELLA,
    /// KnOTS): such merges take weight 1 per input where averaging merges take 1/n (merge sweeps).
    var electsSigns: Bool { get }
    /// Whether the merge needs the inputs' activation statistics (`MergeOptions.grams`: RegMean), which a caller
    /// gets by running the model on data.
    var needsActivations: Bool { get }
    /// Whether every weight must be positive (weights that are sample weights, as LoRA-LEGO's clustering).
    var needsPositiveWeights: Bool { get }
    /// The weights `coto-merge` uses when none are given: 1 each (PEFT's and mergekit's convention), 1/n
    /// for interpolation.
    func defaultWeights(count: Int) -> [Double]
    /// Merges the inputs (at least one) into a new adapter.
    func merge(_ inputs: [Adapter], options: MergeOptions, progress: ((OperatorProgress) -> Void)?) throws -> Adapter
}

extension MergeMethod {
    public var needsDensity: Bool { false }
    public var electsSigns: Bool { false }
    public var needsPositiveWeights: Bool { false }
    public var needsActivations: Bool { false }
    public func defaultWeights(count: Int) -> [Double] { [Double](repeating: 1, count: count) }
}

/// An error of an operator (merge, prune, fuse, extract, convert) about an input adapter or model.
public struct MergeError: CotoError {
    public let path: String?
    public let message: String
    public init(_ path: String?, _ message: String) {
        self.path = path
        self.message = message
    }
    public var subject: String? { path }
}

/// The registry `--method` looks names up in.
public enum MergeMethods {
    public static let all: [MergeMethod] = [
        Interpolate(), TaskArithmetic(),
        TaskVectorMerge(.linear), TaskVectorMerge(.ties), TaskVectorMerge(.dareLinear), TaskVectorMerge(.dareTies),
        TaskVectorMerge(.magnitudePrune), Cat(),
        SVDMerge(.svd), SVDMerge(.tiesSVD), SVDMerge(.dareLinearSVD), SVDMerge(.dareTiesSVD), SVDMerge(.magnitudePruneSVD),
        SVDMerge(.breadcrumbs), SVDMerge(.breadcrumbsTies), SVDMerge(.della), SVDMerge(.dellaLinear), IsoC(), TSV(),
        KnOTS(), CoreSpace(.taskArithmetic), CoreSpace(.ties), CoreSpace(.tsv), CoreSpace(.isoC), Lego(), RegMean(),
    ]
    public static var names: [String] { all.map(\.name) }

    /// The method a user names, in any of the ecosystem's spellings: `-` and `_` are the same and case does
    /// not matter (mergekit's `task_arithmetic` is `task-arithmetic`, `iso-c` is `iso_c`, PEFT's
    /// `dare_ties` is `DARE-TIES`).
    public static func named(_ n: String) -> MergeMethod? {
        let key = canonicalKey(n)
        return all.first { canonicalKey($0.name) == key }
    }

    static func canonicalKey(_ n: String) -> String {
        String(n.lowercased().filter { !$0.isWhitespace }.map { $0 == "-" ? "_" : $0 })
    }

    /// The valid name nearest to an unknown one (edit distance over the canonical spellings; ties go to the
    /// first in `names`), if it is close enough to be a likely misspelling: at most a third of its length.
    public static func suggestion(for n: String) -> String? {
        let key = canonicalKey(n)
        guard !key.isEmpty else { return nil }
        let scored = names.map { ($0, editDistance(key, canonicalKey($0))) }
        guard let best = scored.min(by: { $0.1 < $1.1 }), best.1 <= max(1, key.count / 3) else { return nil }
        return best.0
    }

    /// The one-line message for an unknown method name: the nearest valid name if there is one, then the list.
    public static func unknownMessage(_ n: String) -> String {
        let hint = suggestion(for: n).map { " (did you mean '\($0)'?)" } ?? ""
        return "unknown merge method '\(n)'\(hint); one of: \(names.joined(separator: ", "))"
    }

    /// Levenshtein distance (insertions, deletions, substitutions each cost 1).
    static func editDistance(_ a: String, _ b: String) -> Int {
        let x = Array(a.unicodeScalars)
        let y = Array(b.unicodeScalars)
        var row = Array(0...y.count)
        for i in 1...max(1, x.count) where !x.isEmpty {
            var previous = row[0]
            row[0] = i
            for j in stride(from: 1, through: y.count, by: 1) {
                let old = row[j]
                row[j] = min(row[j] + 1, row[j - 1] + 1, previous + (x[i - 1] == y[j - 1] ? 0 : 1))
                previous = old
            }
        }
        return row[y.count]
    }
}

/// Shared steps of every merge: argument checks, module alignment, heads, output config, finiteness.
enum MergeSupport {
    static func check(_ inputs: [Adapter], _ o: MergeOptions, method: String, needsDensity: Bool = false) throws {
        guard !inputs.isEmpty else { throw MergeError(nil, "no input adapters") }
        guard o.weights.count == inputs.count else {
            throw MergeError(nil, "\(o.weights.count) weights for \(inputs.count) adapters")
        }
        if let bad = o.weights.first(where: { !$0.isFinite }) { throw MergeError(nil, "weight \(bad) is not finite") }
        if let d = o.density, !(d >= 0 && d <= 1) { throw MergeError(nil, "--density must be in [0, 1], got \(d)") }
        if needsDensity && o.density == nil { throw MergeError(nil, "method \(method) needs --density") }
        if let k = o.rank, k < 1 { throw MergeError(nil, "--rank must be at least 1, got \(k)") }
        if let q = o.svdClamp, !(q >= 0 && q <= 1) { throw MergeError(nil, "--svd-clamp must be a quantile in [0, 1], got \(q)") }
        if !(o.gamma >= 0 && o.gamma < 1) { throw MergeError(nil, "--gamma must be in [0, 1), got \(o.gamma)") }
        if method.hasPrefix("della"), let d = o.density, d < 1, !(d - o.epsilon > 0 && d + o.epsilon < 1) {
            throw MergeError(nil, "--epsilon \(o.epsilon) with --density \(d): density ± epsilon must stay inside (0, 1)")
        }
        if !o.allowNonFinite {
            for a in inputs { try checkFinite(a, where: a.source) }
        }
        let flags = Set(inputs.map { $0.config.fanInFanOut })
        if flags.count > 1 { throw MergeError(nil, "inputs disagree on fan_in_fan_out; they were made for different base layers") }
        try checkVariants(inputs)
        if o.heads != .drop { _ = try labels(inputs, heads: o.heads) }
    }

    /// HiRA's delta W ⊙ (s·B·A) is linear in B·A, so every factor rule holds among HiRA inputs; it does
    /// not add to a LoRA or DoRA delta, so mixing them is refused.
    static func checkVariants(_ inputs: [Adapter]) throws {
        guard let h = inputs.first(where: { $0.variant == .hira }), let o = inputs.first(where: { $0.variant != .hira }) else { return }
        throw MergeError(
            h.source,
            "is a HiRA adapter (W ⊙ (1 + s·B·A)) but \(o.source) is \(o.variant.rawValue): their deltas do not add; merge HiRA adapters only with HiRA adapters"
        )
    }

    /// The label list of the merged head: the first input's with `--heads first`, none with `--heads drop`;
    /// when heads are averaged, every input that has a list must have the same one (an input without a list,
    /// e.g. trained by PEFT, is taken to share it).
    static func labels(_ inputs: [Adapter], heads: MergeOptions.Heads) throws -> [String]? {
        switch heads {
        case .drop: return nil
        case .first: return inputs[0].labels
        case .average:
            guard let (i0, first) = inputs.enumerated().first(where: { $0.1.labels != nil }).map({ ($0.0, $0.1.labels!) }) else { return nil }
            for (i, a) in inputs.enumerated() {
                if let l = a.labels, l != first {
                    throw MergeError(
                        a.source,
                        "its label list (\(l.joined(separator: ", "))) differs from input \(i0 + 1)'s (\(first.joined(separator: ", "))): averaging the heads would mix classes; use --heads drop (or --heads first) (input \(i + 1))"
                    )
                }
            }
            return first
        }
    }

    static func checkFinite(_ a: Adapter, where path: String) throws {
        for m in a.modules {
            for (part, t) in [("lora_A", m.a), ("lora_B", m.b)] + (m.bias.map { [("lora_B.bias", $0)] } ?? [])
                + (m.magnitude.map { [("lora_magnitude_vector", $0)] } ?? []) where !Storage.allFinite(t.tensor.data)
            {
                throw MergeError(path, "module '\(m.name)' \(part) has NaN or Inf values (--allow-nonfinite to proceed anyway)")
            }
        }
        for (k, t) in a.otherTensors where !Storage.allFinite(t.tensor.data) {
            throw MergeError(path, "tensor '\(k)' has NaN or Inf values (--allow-nonfinite to proceed anyway)")
        }
    }

    /// Module names over all inputs (sorted), each with the inputs that have it: (input index, module).
    static func aligned(_ inputs: [Adapter]) -> [(String, [(Int, LoraModule)])] {
        var map: [String: [(Int, LoraModule)]] = [:]
        for (i, a) in inputs.enumerated() { for m in a.modules { map[m.name, default: []].append((i, m)) } }
        return map.keys.sorted().map { ($0, map[$0]!) }
    }

    static func outDType(_ o: MergeOptions, _ t: AdapterTensor) -> DType { o.dtype ?? t.dtype }

    /// Heads and other non-LoRA tensors under the policy.
    static func heads(_ inputs: [Adapter], _ o: MergeOptions) throws -> [(String, AdapterTensor)] {
        switch o.heads {
        case .drop: return []
        case .first: return inputs[0].otherTensors.map { ($0.0, AdapterTensor(dtype: o.dtype ?? $0.1.dtype, tensor: $0.1.tensor)) }
        case .average:
            let keys = inputs[0].otherTensors.map(\.0)
            for (i, a) in inputs.enumerated() where Set(a.otherTensors.map(\.0)) != Set(keys) {
                let diff = Set(a.otherTensors.map(\.0)).symmetricDifference(keys).sorted().first ?? ""
                throw MergeError(a.source, "tensor '\(diff)' is in some inputs but not in input \(i + 1); use --heads first or --heads drop")
            }
            if keys.isEmpty { return [] }
            let total = o.weights.reduce(0, +)
            guard abs(total) > 1e-12 else { throw MergeError(nil, "weights sum to 0: heads cannot be averaged; use --heads first or --heads drop") }
            var out: [(String, AdapterTensor)] = []
            for (k, first) in inputs[0].otherTensors {
                var ts: [[Float]] = []
                for a in inputs {
                    let t = a.otherTensors.first { $0.0 == k }!.1.tensor
                    guard t.shape == first.tensor.shape else {
                        throw MergeError(a.source, "tensor '\(k)' has shape \(t.shape), expected \(first.tensor.shape)")
                    }
                    ts.append(t.data)
                }
                let avg = TaskVectors.weightedSum(ts, o.weights.map { $0 / total })
                out.append((k, AdapterTensor(dtype: o.dtype ?? first.dtype, tensor: Tensor(shape: first.tensor.shape, data: avg))))
            }
            return out
        }
    }

    /// A config that gives every module exactly its (rank, alpha): r and lora_alpha from the most common
    /// module values, exact-name rank_pattern / alpha_pattern entries for the rest. rsLoRA is off (outputs
    /// carry their scaling in alpha/r).
    static func fitConfig(base: LoraConfig, inputs: [Adapter], modules: [LoraModule], heads: MergeOptions.Heads) -> LoraConfig {
        var c = base
        c.useRslora = false
        c.useDora = modules.contains { $0.isDora }
        c.loraBias = modules.contains { $0.bias != nil }
        c.fit(modules: modules.map { ($0.name, $0.rank, $0.alpha) })
        // Targets: the union of the inputs' (names), or their regexes joined as PEFT does.
        var names = Set<String>()
        var regexes: [String] = []
        for a in inputs {
            switch a.config.targetModules {
            case let .names(n): names.formUnion(n)
            case let .regex(r): regexes.append(r)
            }
        }
        if regexes.isEmpty {
            c.targetModules = .names(names.sorted())
        } else {
            c.targetModules = .regex((regexes + names.sorted().map(Adapter.escapeRegex)).map { "(\($0))" }.joined(separator: "|"))
        }
        if heads == .drop { c.modulesToSave = nil }
        return c
    }

    /// A module with scaling 1 (alpha = rank), the form every non-interpolate merge produces.
    static func unitModule(name: String, b: Tensor, a: Tensor, bias: Tensor?, like: LoraModule, o: MergeOptions) -> LoraModule {
        let r = a.rows
        return LoraModule(
            name: name, a: AdapterTensor(dtype: outDType(o, like.a), tensor: a),
            b: AdapterTensor(dtype: outDType(o, like.b), tensor: b),
            bias: bias.map { AdapterTensor(dtype: outDType(o, like.bias ?? like.b), tensor: $0) },
            magnitude: nil, isEmbedding: like.isEmbedding, alpha: Double(r), scaling: 1)
    }

    /// Σ w_i s_i b_i over the inputs with a bias (exact: the bias term is linear in the weights).
    static func mergedBias(_ mods: [(Int, LoraModule)], _ w: [Double]) -> Tensor? {
        let withBias = mods.filter { $0.1.bias != nil }
        guard let first = withBias.first?.1.bias else { return nil }
        let data = TaskVectors.weightedSum(withBias.map { $0.1.bias!.tensor.data }, withBias.map { w[$0.0] * $0.1.scaling })
        return Tensor(shape: first.tensor.shape, data: data)
    }

    static func refuseDora(_ inputs: [Adapter], method: String) throws {
        if let a = inputs.first(where: { $0.modules.contains { $0.isDora } }) {
            throw MergeError(
                a.source, "DoRA adapters (lora_magnitude_vector) can only be merged with --method interpolate; \(method) has no rule for magnitudes")
        }
    }

    /// The common shape of the factor-space merges (task arithmetic, Iso-C, TSV): checks, then per module
    /// (name, the inputs that have it) the new factors (B [out, k], A [k, in]) at scaling 1, or nil to leave
    /// the module out; biases, config, heads, variant and labels as every merge does.
    static func perModule(
        _ inputs: [Adapter], _ o: MergeOptions, method: String, needsDensity: Bool = false,
        progress: ((OperatorProgress) -> Void)?,
        _ factors: (String, [(Int, LoraModule)]) throws -> (b: Tensor, a: Tensor)?
    ) throws -> Adapter {
        try check(inputs, o, method: method, needsDensity: needsDensity)
        try refuseDora(inputs, method: method)
        let modulesIn = aligned(inputs)
        var merged: [(String, [(Int, LoraModule)], Tensor, Tensor)] = []
        for (idx, (name, mods)) in modulesIn.enumerated() {
            progress?(.module(name: name, index: idx, total: modulesIn.count))
            guard let (b, a) = try factors(name, mods) else { continue }
            merged.append((name, mods, b, a))
        }
        return try assemble(inputs, o, method: method, merged)
    }

    /// The merged adapter from per-module factors (name, the inputs that have it, B [out, k], A [k, in]) at
    /// scaling 1: biases, config, heads, variant and labels as every merge does.
    static func assemble(
        _ inputs: [Adapter], _ o: MergeOptions, method: String,
        _ merged: [(String, [(Int, LoraModule)], Tensor, Tensor)]
    ) throws -> Adapter {
        let modules = merged.map { name, mods, b, a in
            unitModule(name: name, b: b, a: a, bias: mergedBias(mods, o.weights), like: mods[0].1, o: o)
        }
        let config = fitConfig(base: inputs[0].config, inputs: inputs, modules: modules, heads: o.heads)
        return try finish(modules, heads: try heads(inputs, o), config: config, inputs: inputs, o: o, method: method)
    }

    /// Checks that every input's module has the first one's delta shape (out x in) and kind.
    static func sameShape(_ mods: [(Int, LoraModule)], _ inputs: [Adapter]) throws -> (out: Int, inF: Int) {
        let m0 = mods[0].1
        let out = m0.b.tensor.rows
        let inF = m0.a.tensor.cols
        for (i, m) in mods where m.b.tensor.rows != out || m.a.tensor.cols != inF || m.isEmbedding != m0.isEmbedding {
            throw MergeError(
                inputs[i].source,
                "module '\(m.name)': delta is \(m.b.tensor.rows)x\(m.a.tensor.cols), other inputs have \(out)x\(inF); the adapters were made for different base models"
            )
        }
        return (out, inF)
    }

    /// The merged adapter: the inputs' variant (HiRA stays HiRA; DoRA follows the modules' magnitudes) and
    /// label list travel with it.
    static func finish(
        _ modules: [LoraModule], heads: [(String, AdapterTensor)], config: LoraConfig, inputs: [Adapter], o: MergeOptions,
        method: String
    ) throws -> Adapter {
        var out = Adapter(config: config, modules: modules, otherTensors: heads, source: "merge(\(method))", configOrigin: "merge")
        if inputs.contains(where: { $0.variant == .hira }) { out.variant = .hira }
        out.labels = heads.isEmpty ? nil : try labels(inputs, heads: o.heads)
        if !o.allowNonFinite {
            do { try checkFinite(out, where: "result") } catch let e as MergeError {
                throw MergeError(nil, "the \(method) merge produced non-finite values: \(e.message)")
            }
        }
        return out
    }
}
