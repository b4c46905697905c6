import Checkpoint
import Numerics

/// What `coto-extract` is asked to do: a fixed rank, or per module the smallest rank that keeps a fraction
/// of the delta's energy (Σ σ_i² over ‖ΔW‖_F²), at most `maxRank`.
public struct ExtractOptions: Sendable {
    public var rank: Int? = nil
    public var energy: Double? = nil
    public var maxRank = 128
    /// Module kinds to extract (last name component, e.g. query,value); nil: every 2-D weight but embeddings.
    public var targets: [String]? = nil
    /// Output dtype; nil: the tuned model's dtype of each weight.
    public var dtype: DType? = nil
    public init() {}
}

/// Per module: the rank chosen, the energy kept and the relative reconstruction error ‖ΔW − B·A‖_F / ‖ΔW‖_F.
public struct ExtractReport: Sendable {
    public struct Entry: Sendable {
        public var module: String
        public var shape: [Int]
        public var rank: Int
        public var deltaNorm: Double
        public var energy: Double
        public var relativeError: Double
    }
    public var entries: [Entry] = []
    /// 2-D weights equal in both models (no module written).
    public var unchanged: [String] = []
    /// Tensors that differ but are not LoRA-representable here (biases, norms, embeddings when not targeted).
    public var notExtracted: [String] = []

    public var json: JSON {
        .object([
            (
                "modules",
                .array(
                    entries.map { e in
                        .object([
                            ("name", .string(e.module)), ("shape", .array(e.shape.map(JSON.int))), ("rank", .int(e.rank)),
                            ("delta_norm", .double(e.deltaNorm)), ("energy", .double(e.energy)), ("relative_error", .double(e.relativeError)),
                        ])
                    })
            ),
            ("unchanged", .array(unchanged.map(JSON.string))),
            ("changed_not_extracted", .array(notExtracted.map(JSON.string))),
        ])
    }
}

/// LoRA extraction from a fine-tune: per linear module the best rank-k factors of ΔW = W_tuned − W_base
/// (Eckart–Young: the top-k singular triplets, computed by LAPACK sgesvdx without the rest), B = U_k·S_k,
/// A = V_kᵀ, lora_alpha = k (scaling 1); streamed one tensor pair at a time over (sharded) checkpoints.
public enum Extractor {
    /// The best rank-k (B, A) of a dense delta [out, in], its singular values and the kept energy.
    public static func factor(_ d: Tensor, rank k: Int?, energy: Double?, maxRank: Int) throws -> (
        b: Tensor, a: Tensor, rank: Int, energy: Double, error: Double, norm: Double
    ) {
        var total = 0.0
        for v in d.data { total += Double(v) * Double(v) }
        let cap = min(k ?? maxRank, d.rows, d.cols)
        let (u, s, vt) = try LAPACK.svdTop(d, k: cap)
        var kk = min(cap, s.count)
        if let e = energy {
            var acc = 0.0
            kk = s.count
            for (i, v) in s.enumerated() {
                acc += Double(v) * Double(v)
                if acc >= e * total {
                    kk = i + 1
                    break
                }
            }
            kk = max(1, kk)
        }
        let kept = s.prefix(kk).reduce(0.0) { $0 + Double($1) * Double($1) }
        let (b, a) = LowRank.top(u: u, s: s, vt: vt, k: kk)
        // The error from the residual itself (1 − kept/total cancels badly when almost all is kept).
        let approx = BLAS.matmul(b, a)
        var resid = 0.0
        for i in d.data.indices {
            let e = Double(d.data[i]) - Double(approx.data[i])
            resid += e * e
        }
        let err = total > 0 ? (resid / total).squareRoot() : 0
        return (b, a, kk, total > 0 ? min(1, kept / total) : 1, err, total.squareRoot())
    }

    static func isEmbedding(_ name: String) -> Bool {
        let n = name.lowercased()
        return n.contains("embed") || n.hasSuffix("lm_head.weight") || n.contains("wte.") || n.contains("wpe.")
    }

    public static func extract(
        base: HFModelDir, tuned: HFModelDir, options o: ExtractOptions,
        progress: ((OperatorProgress) -> Void)? = nil
    ) throws -> (Adapter, ExtractReport) {
        guard (o.rank != nil) != (o.energy != nil) else { throw MergeError(nil, "give --rank or --energy (one of them)") }
        if let k = o.rank, k < 1 { throw MergeError(nil, "--rank must be at least 1, got \(k)") }
        if let e = o.energy, !(e > 0 && e <= 1) { throw MergeError(nil, "--energy must be in (0, 1], got \(e)") }
        guard o.maxRank >= 1 else { throw MergeError(nil, "--max-rank must be at least 1") }
        let bs = base.weights
        let ts = tuned.weights
        let baseNames = Set(bs.tensorNames)
        var report = ExtractReport()
        var modules: [LoraModule] = []
        let names = ts.tensorNames
        var matched = 0
        for (idx, name) in names.enumerated() {
            guard let ti = ts.tensorInfo(name) else { continue }
            guard baseNames.contains(name), let bi = bs.tensorInfo(name) else {
                report.notExtracted.append(name + " (not in the base)")
                continue
            }
            guard bi.shape == ti.shape else {
                throw MergeError(tuned.path, "tensor '\(name)' is \(ti.shape) but \(bi.shape) in the base \(base.path): not a fine-tune of that base")
            }
            let module = name.hasSuffix(".weight") ? String(name.dropLast(".weight".count)) : name
            let kind = String(module.split(separator: ".").last ?? Substring(module))
            let targeted =
                ti.shape.count == 2 && name.hasSuffix(".weight")
                && (o.targets.map { $0.contains(kind) } ?? !isEmbedding(name))
            progress?(.tensor(name: name, index: idx, total: names.count))
            let w1 = try ts.loadTensor(name)
            let w0 = try bs.loadTensor(name)
            ts.release(name)
            bs.release(name)
            var changed = false
            for i in w1.data.indices where w1.data[i] != w0.data[i] {
                changed = true
                break
            }
            guard targeted else {
                if changed { report.notExtracted.append(name) }
                continue
            }
            matched += 1
            guard changed else {
                report.unchanged.append(module)
                continue
            }
            let d = w1 - w0
            if !Storage.allFinite(d.data) { throw MergeError(tuned.path, "tensor '\(name)': the difference has NaN or Inf values") }
            let f = try factor(d, rank: o.rank, energy: o.energy, maxRank: o.maxRank)
            let dt = o.dtype ?? ti.dtype
            modules.append(
                LoraModule(
                    name: module, a: AdapterTensor(dtype: dt, tensor: f.a), b: AdapterTensor(dtype: dt, tensor: f.b),
                    alpha: Double(f.rank), scaling: 1))
            report.entries.append(.init(module: module, shape: ti.shape, rank: f.rank, deltaNorm: f.norm, energy: f.energy, relativeError: f.error))
        }
        if let t = o.targets, matched == 0 {
            throw MergeError(tuned.path, "no 2-D weight matches --targets \(t.joined(separator: ","))")
        }
        guard !modules.isEmpty else { throw MergeError(tuned.path, "no targeted weight differs from the base \(base.path): nothing to extract") }
        var c = LoraConfig()
        c.targetModules = .names(Array(Set(modules.map(\.kind))).sorted())
        c.baseModelNameOrPath = base.path
        c.fit(modules: modules.map { ($0.name, $0.rank, $0.alpha) })
        return (Adapter(config: c, modules: modules, otherTensors: [], source: "extract(\(tuned.path))", configOrigin: "coto-extract"), report)
    }
}
