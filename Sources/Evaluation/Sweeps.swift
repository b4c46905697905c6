import Checkpoint
import Foundation
import Model
import Numerics
import Operators

/// Metrics of one evaluation: classification (accuracy, macro-F1, loss), perplexity (accuracy: next-token
/// top-1 over the scored tokens; loss: mean negative log-likelihood per token; perplexity = exp(loss)) or
/// multiple choice (accuracy: acc; accNorm: acc_norm; loss: mean NLL per token of the right choices).
public struct Score: Sendable {
    public var accuracy: Double
    public var macroF1: Double
    public var loss: Double
    public var examples: Int
    public var perplexity: Double? = nil
    public var accNorm: Double? = nil
    public var tokens: Int? = nil
}

/// A task file tokenized once and cut into padded batches: classification rows, or (`lm`) sequences a
/// causal LM scores.
public struct PreparedData: Sendable {
    public var path: String
    public var gold: [String]
    public var batches: [Batch]
    public var lm: LanguageData? = nil
    public var dataLabels: [String] { Array(Set(gold)).sorted() }
    /// "noun8" for ".../noun8-test.jsonl".
    public var taskName: String { Sweeps.taskName(path) }
    /// "classification", "perplexity" or "multiple-choice".
    public var task: EvalTask { lm?.kind ?? .classification }
}

/// Perplexity or multiple-choice data for a causal LM: every scored sequence once, batched by length.
public struct LanguageData: Sendable {
    public struct Question: Sendable {
        public var label: Int
        /// The sequence of each choice (nil: nothing to score, log-likelihood 0) and its byte length.
        public var choices: [Int?]
        public var bytes: [Int]
    }
    public var kind: EvalTask
    public var sequences: [ScoredSequence]
    /// Sequence indices per batch (similar lengths, padded on the right: causal attention never looks ahead).
    public var batches: [[Int]]
    /// Multiple choice: the questions.
    public var questions: [Question]
    /// Records in the file.
    public var records: Int
}

/// What the sweeps of `coto-eval` evaluate with: one model, one tokenizer, data prepared once.
/// Progress goes to the callback (done, total); the library never prints.
public final class SweepEvaluator {
    public let model: AdaptableModel
    public let tokenizer: Tokenizer
    public var batchSize = 32
    public var maxLength = 128
    public var progress: ((Int, Int) -> Void)? = nil

    /// The model's own head, restored whenever the adapter loaded next has none.
    let baseHead: (Tensor, Tensor?)?

    public init(model: AdaptableModel, tokenizer: Tokenizer) {
        self.model = model
        self.tokenizer = tokenizer
        baseHead = model.classifierHead
    }

    public func prepare(_ path: String) throws -> PreparedData {
        var encodings: [Encoding] = []
        var gold: [String] = []
        for r in try TaskData.classification(path) {
            gold.append(r.label)
            encodings.append(try encodeChecked(model, tokenizer, text: r.text, pair: r.pair, maxLength: maxLength, at: r.place))
        }
        // Batches of similar lengths (less padding; padded positions never change a result).
        let order = encodings.indices.sorted { (encodings[$0].ids.count, $0) < (encodings[$1].ids.count, $1) }
        let batches = stride(from: 0, to: order.count, by: batchSize).map { s -> Batch in
            let part = order[s..<min(order.count, s + batchSize)].map { encodings[$0] }
            return Batch.padded(part.map(\.ids), typeIds: part.map(\.typeIds), pad: tokenizer.padId)
        }
        return PreparedData(path: path, gold: order.map { gold[$0] }, batches: batches)
    }

    /// Prepares a task file for `task`: classification as `prepare(_:)`; perplexity and multiple choice
    /// (causal LMs) as coto-eval's evaluation scores them, sequences batched by length.
    public func prepare(_ path: String, task: EvalTask) throws -> PreparedData {
        if task == .classification { return try prepare(path) }
        guard model is LlamaModel else { throw EvalError(path, "\(task.rawValue) sweeps run on decoder models (model_type llama)") }
        var sequences: [ScoredSequence] = []
        var places: [String] = []
        var questions: [LanguageData.Question] = []
        let records: Int
        if task == .perplexity {
            let (count, seqs) = try Evaluator.perplexitySequences(tokenizer, path, maxLength: maxLength)
            (records, sequences, places) = (count, seqs.map(\.0), seqs.map(\.1))
        } else {
            let mc = try TaskData.multipleChoice(path)
            records = mc.count
            for r in mc {
                var idx: [Int?] = []
                for c in r.choices {
                    if let seq = TaskData.continuationSequence(tokenizer, context: r.context, continuation: c, maxLength: maxLength) {
                        idx.append(sequences.count)
                        sequences.append(seq)
                        places.append(r.place)
                    } else {
                        idx.append(nil)
                    }
                }
                questions.append(.init(label: r.label, choices: idx, bytes: r.choices.map { $0.utf8.count }))
            }
        }
        guard !sequences.isEmpty else { throw EvalError(path, "no tokens to score") }
        for (seq, place) in zip(sequences, places) { try model.inputLimits.check(ids: seq.allIds, typeIds: nil, at: place) }
        let order = sequences.indices.sorted { (sequences[$0].input.count, $0) < (sequences[$1].input.count, $1) }
        let batches = stride(from: 0, to: order.count, by: batchSize).map { Array(order[$0..<min(order.count, $0 + batchSize)]) }
        let lm = LanguageData(kind: task, sequences: sequences, batches: batches, questions: questions, records: records)
        return PreparedData(path: path, gold: [], batches: [], lm: lm)
    }

    /// Attaches `adapter` (nil: the base model alone) with its head; `head` takes the head from another
    /// adapter instead. Without any adapter head the model's own head is used.
    public func load(_ adapter: Adapter?, head: Adapter? = nil) throws {
        model.detachAll()
        model.setActive(true)
        if let (w, b) = baseHead { try model.setClassifier(weight: w, bias: b) }
        if let a = adapter { try model.attach(a) }
        if let h = head, let (w, b) = model.classificationHead(of: h) { try model.setClassifier(weight: w, bias: b) }
    }

    /// The label list: the head adapter's, else the adapter's, else the data's sorted labels.
    public static func labels(for adapters: [Adapter?], data: PreparedData) -> [String] {
        for a in adapters { if let l = a?.labels { return l } }
        return data.dataLabels
    }

    /// Evaluates what is loaded.
    public func score(_ data: PreparedData, labels: [String]) throws -> Score {
        try score(data, labels: labels, configurations: 1, configure: { _ in }).scores[0]
    }

    /// Evaluates `configurations` settings of the loaded model (`configure(c)` switches to setting c)
    /// batch by batch: each batch runs every setting before the next batch, so on BERT a prefix cache of
    /// that one batch lets settings that agree on their lower layers reuse them. Returns one score per
    /// setting and the layers reused / computed.
    public func score(
        _ data: PreparedData, labels: [String], configurations: Int, configure: (Int) -> Void,
        batchDone: ((Int, Int) -> Void)? = nil
    ) throws -> (scores: [Score], reused: Int, computed: Int) {
        if let lm = data.lm { return try scoreLanguage(lm, configurations: configurations, configure: configure, batchDone: batchDone) }
        guard model.hasClassifier else {
            throw EvalError(data.path, "the model has no classification head: the adapter needs one (modules_to_save)")
        }
        let index = Dictionary(labels.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
        var metrics = [ClassificationMetrics](repeating: ClassificationMetrics(labels: labels), count: configurations)
        var row = 0
        var reused = 0
        var computed = 0
        for (bi, batch) in data.batches.enumerated() {
            let cache: PrefixCache? = configurations > 1 ? PrefixCache() : nil
            var gold: [Int] = []
            for i in 0..<batch.count {
                guard let g = index[data.gold[row + i]] else {
                    throw EvalError(data.path, "label '\(data.gold[row + i])' is not in the adapter's label set (\(labels.joined(separator: ", ")))")
                }
                gold.append(g)
            }
            for c in 0..<configurations {
                if configurations > 1 { configure(c) }
                let out: ForwardOutput
                if let bert = model as? BertModel, let cache {
                    out = try bert.forward(batch, head: .classification, cache: cache)
                } else {
                    out = try model.forward(batch, outputLayers: false, head: .classification)
                }
                guard out.logitsWidth == labels.count else {
                    throw EvalError(data.path, "the head has \(out.logitsWidth) outputs but the label set has \(labels.count) labels")
                }
                metrics[c].add(out, gold: gold)
            }
            reused += cache?.reused ?? 0
            computed += cache?.computed ?? 0
            row += batch.count
            batchDone?(bi + 1, data.batches.count)
        }
        return (metrics.map { Score(accuracy: $0.accuracy, macroF1: $0.macroF1, loss: $0.loss, examples: $0.count) }, reused, computed)
    }

    /// Perplexity or multiple choice of `configurations` settings, batch by batch as classification (a
    /// prefix cache of the batch shares lower layers between settings). Logits are formed only for the
    /// scored positions, 64 rows at a time.
    func scoreLanguage(
        _ lm: LanguageData, configurations: Int, configure: (Int) -> Void, batchDone: ((Int, Int) -> Void)?
    ) throws -> (scores: [Score], reused: Int, computed: Int) {
        guard let llama = model as? LlamaModel else { throw EvalError("model", "\(lm.kind.rawValue) scoring needs a decoder model (model_type llama)") }
        // Per setting: the log-likelihood of every sequence and its top-1 hits.
        var ll = [[Double]](repeating: [Double](repeating: 0, count: lm.sequences.count), count: configurations)
        var hits = [Int](repeating: 0, count: configurations)
        var reused = 0
        var computed = 0
        for (bi, members) in lm.batches.enumerated() {
            let seqs = members.map { lm.sequences[$0] }
            // Padded positions are masked out; pad with an id of the batch itself, which is inside the tables
            // whatever the tokenizer's own pad id is.
            let batch = Batch.padded(seqs.map(\.input), pad: seqs[0].input[0])
            let T = batch.length
            var rows: [Int] = []
            var targets: [Int] = []
            var owner: [Int] = []
            for (b, seq) in seqs.enumerated() {
                for (j, t) in seq.targets.enumerated() {
                    rows.append(b * T + seq.first + j)
                    targets.append(t)
                    owner.append(members[b])
                }
            }
            let cache: PrefixCache? = configurations > 1 ? PrefixCache() : nil
            for c in 0..<configurations {
                if configurations > 1 { configure(c) }
                let out = try llama.forward(batch, outputLayers: false, head: .none, cache: cache)
                for start in stride(from: 0, to: rows.count, by: 64) {
                    let end = min(rows.count, start + 64)
                    let logits = llama.lmLogits(rowsOf: out.lastHidden, rows: Array(rows[start..<end]))
                    let V = llama.vocab
                    for i in start..<end {
                        let row = logits[((i - start) * V)..<((i - start + 1) * V)]
                        ll[c][owner[i]] += logProb(row, targets[i])
                        var best = row.startIndex
                        for k in row.indices where row[k] > row[best] { best = k }
                        if best - row.startIndex == targets[i] { hits[c] += 1 }
                    }
                }
            }
            reused += cache?.reused ?? 0
            computed += cache?.computed ?? 0
            batchDone?(bi + 1, lm.batches.count)
        }
        let tokenCount = lm.sequences.reduce(0) { $0 + $1.targets.count }
        let scores = (0..<configurations).map { c -> Score in
            if lm.kind == .perplexity {
                let loss = -ll[c].reduce(0, +) / Double(tokenCount)
                return Score(
                    accuracy: Double(hits[c]) / Double(tokenCount), macroF1: .nan, loss: loss, examples: lm.records, perplexity: exp(loss),
                    tokens: tokenCount)
            }
            var correct = 0
            var correctNorm = 0
            var goldNLL = 0.0
            var goldTokens = 0
            for q in lm.questions {
                let lls = q.choices.map { $0.map { ll[c][$0] } ?? 0 }
                let norms = zip(lls, q.bytes).map { $0 / Double(max(1, $1)) }
                if lls.indices.max(by: { lls[$0] < lls[$1] }) == q.label { correct += 1 }
                if norms.indices.max(by: { norms[$0] < norms[$1] }) == q.label { correctNorm += 1 }
                if let s = q.choices[q.label] {
                    goldNLL -= ll[c][s]
                    goldTokens += lm.sequences[s].targets.count
                }
            }
            let n = Double(max(1, lm.questions.count))
            return Score(
                accuracy: Double(correct) / n, macroF1: .nan, loss: goldTokens > 0 ? goldNLL / Double(goldTokens) : .nan, examples: lm.records,
                accNorm: Double(correctNorm) / n, tokens: goldTokens)
        }
        return (scores, reused, computed)
    }
}

/// `--shard i/n`: point k of a sweep belongs to shard (k mod n) + 1.
public struct Shard: Sendable, Equatable {
    public var index: Int
    public var count: Int
    public init(index: Int, count: Int) {
        self.index = index
        self.count = count
    }
    public static let whole = Shard(index: 1, count: 1)

    public static func parse(_ s: String) -> Shard? {
        let p = s.split(separator: "/")
        guard p.count == 2, let i = Int(p[0]), let n = Int(p[1]), n >= 1, i >= 1, i <= n else { return nil }
        return Shard(index: i, count: n)
    }

    public func owns(_ k: Int) -> Bool { k % count == index - 1 }

    /// The value of a `--shard` option: `i/n`, or `auto` (from the scheduler's environment, with `numShards`
    /// if given). Malformed text is a one-line error.
    public static func resolve(option: String, numShards: Int?, environment: [String: String]) throws -> Shard {
        if option == "auto" { return try fromEnvironment(environment, numShards: numShards) }
        guard let s = parse(option) else { throw EvalError("--shard", optionProblem(option) ?? "") }
        return s
    }

    /// What is wrong with a `--shard` value (nil: `i/n` or `auto`).
    public static func optionProblem(_ option: String) -> String? {
        option == "auto" || parse(option) != nil ? nil : "must be i/n with 1 <= i <= n, or auto (got '\(option)')"
    }

    /// How many of `total` points (indices 0..<total) this shard owns.
    public func ownedCount(of total: Int) -> Int { total >= index ? (total - index) / count + 1 : 0 }

    /// "2/4".
    public var text: String { "\(index)/\(count)" }

    /// This process's shard from a scheduler's environment (`--shard auto`), first found of: a Slurm job
    /// array (`SLURM_ARRAY_TASK_ID`), a Kubernetes Indexed Job (`JOB_COMPLETION_INDEX`, 0-based, with
    /// `numShards`), or `RANK`/`WORLD_SIZE`. Points go to shards by index mod n over the sorted grid, so a
    /// retried task redoes exactly its own.
    ///
    /// Slurm: with `numShards` the array task id is the shard index from 0 (`--array=0-3 --num-shards 4`), so
    /// a resubmitted subset (`sbatch --array=2`) is still shard 3 of 4; without it the array itself is the
    /// shard grid (`SLURM_ARRAY_TASK_COUNT`, or `_MIN`/`_MAX`/`_STEP`: `--array=1-8:2` gives shards 1…4 of 4).
    public static func fromEnvironment(_ env: [String: String], numShards: Int?) throws -> Shard {
        func int(_ key: String) throws -> Int? {
            guard let v = env[key] else { return nil }
            guard let i = Int(v.trimmingCharacters(in: .whitespaces)) else { throw EvalError("--shard auto", "\(key)=\(v) is not an integer") }
            return i
        }
        func shard(_ i: Int, _ n: Int, from what: String) throws -> Shard {
            guard n >= 1, i >= 1, i <= n else { throw EvalError("--shard auto", "\(what) gives shard \(i) of \(n)") }
            if let m = numShards, m != n { throw EvalError("--shard auto", "--num-shards \(m) but \(what) says \(n) tasks") }
            return Shard(index: i, count: n)
        }
        if let id = try int("SLURM_ARRAY_TASK_ID") {
            if let m = numShards {
                guard id >= 0, id < m else {
                    throw EvalError(
                        "--shard auto",
                        "SLURM_ARRAY_TASK_ID \(id) is not a shard index below --num-shards \(m) (with --num-shards, submit --array=0-\(m - 1) or part of it)")
                }
                return Shard(index: id + 1, count: m)
            }
            let lo = try int("SLURM_ARRAY_TASK_MIN") ?? 0
            let step = try int("SLURM_ARRAY_TASK_STEP") ?? 1
            guard step >= 1, id >= lo, (id - lo) % step == 0 else {
                throw EvalError("--shard auto", "SLURM_ARRAY_TASK_ID \(id) is not on the array's grid (min \(lo), step \(step))")
            }
            let n: Int
            if let c = try int("SLURM_ARRAY_TASK_COUNT") {
                n = c
            } else if let hi = try int("SLURM_ARRAY_TASK_MAX") {
                n = (hi - lo) / step + 1
            } else {
                throw EvalError("--shard auto", "SLURM_ARRAY_TASK_ID is set but not SLURM_ARRAY_TASK_COUNT or SLURM_ARRAY_TASK_MAX (give --num-shards)")
            }
            return try shard((id - lo) / step + 1, n, from: "the Slurm array")
        }
        if let idx = try int("JOB_COMPLETION_INDEX") {
            guard let n = numShards else { throw EvalError("--shard auto", "JOB_COMPLETION_INDEX is set: give --num-shards (the Job's completions)") }
            return try shard(idx + 1, n, from: "JOB_COMPLETION_INDEX")
        }
        if let rank = try int("RANK") {
            guard let n = try int("WORLD_SIZE") else { throw EvalError("--shard auto", "RANK is set but not WORLD_SIZE") }
            return try shard(rank + 1, n, from: "RANK/WORLD_SIZE")
        }
        throw EvalError(
            "--shard auto",
            "no scheduler index in the environment: SLURM_ARRAY_TASK_ID (Slurm job array), JOB_COMPLETION_INDEX with --num-shards (Kubernetes Indexed Job) or RANK with WORLD_SIZE"
        )
    }
    public var suffix: String { count == 1 ? "" : "-shard-\(index)-of-\(count)" }
}

/// The sweeps of `coto-eval`: each returns a results object (JSON) for a run directory; `Report` joins
/// shards and derives barriers, merge tables and Shapley estimates.
public enum Sweeps {
    public static func taskName(_ path: String) -> String {
        var b = FileSystem.basename(of: path)
        for s in [".jsonl", ".json"] where b.hasSuffix(s) { b.removeLast(s.count) }
        for s in ["-test", "-dev", "-train", "_test", "_dev", "_train"] where b.hasSuffix(s) { b.removeLast(s.count) }
        return b
    }

    /// The series an adapter belongs to in reports: `--name`, else from the metrics.json coto-train wrote
    /// beside it ("coto" / "lora", prefixed by the variant when it is not plain LoRA), else "adapter".
    public static func seriesName(_ path: String) -> String {
        let dir = FileSystem.isDirectory(path) ? path : FileSystem.dirname(of: path)
        guard FileSystem.exists(FileSystem.join(dir, RunRecords.metricsFile)), let m = try? RunRecords.readMetrics(dir) else { return "adapter" }
        return m.seriesName
    }

    /// (λ, accuracy) of an interpolation sweep's points.
    static func result(_ sweep: String, name: String, adapters: [String], data: [String], shard: Shard, settings: SweepSettings, task: EvalTask)
        -> SweepResult
    {
        var settings = settings
        settings.task = task == .classification ? nil : task.rawValue
        return SweepResult(
            sweep: sweep, name: name, adapters: adapters, data: data, task: data.map(taskName).joined(separator: "+"),
            shard: [shard.index, shard.count], settings: settings)
    }

    /// λ grid "0:1:0.1" (start:stop:step, both ends included) or a list "0,0.5,1".
    public static func parseGrid(_ s: String) -> [Double]? {
        let p = s.split(separator: ":")
        if p.count == 3, let a = Double(p[0]), let b = Double(p[1]), let st = Double(p[2]), st > 0, b >= a, (b - a) / st <= 10_000 {
            let n = Int(((b - a) / st).rounded(.down) + 1e-9)
            var g = (0...n).map { (a + Double($0) * st) }
            g = g.map { ($0 * 1e9).rounded() / 1e9 }
            if let last = g.last, b - last > st * 1e-6 { g.append(b) }
            return g
        }
        let l = s.split(separator: ",").compactMap { Double($0.trimmingCharacters(in: .whitespaces)) }
        return l.count == s.split(separator: ",").count && !l.isEmpty ? l : nil
    }

    // MARK: interpolate

    /// Metric along θ(λ) = (1−λ)·A + λ·B for every adapter tensor and the heads (the paper's linear path).
    public static func interpolate(
        _ ev: SweepEvaluator, a: Adapter, b: Adapter, data: PreparedData, grid: [Double], name: String,
        shard: Shard = .whole
    ) throws -> SweepResult {
        let labels = SweepEvaluator.labels(for: [a, b], data: data)
        guard a.labels == nil || b.labels == nil || a.labels == b.labels else {
            throw EvalError(b.source, "its label list differs from \(a.source)'s: the heads cannot be interpolated")
        }
        let mine = grid.indices.filter(shard.owns)
        var points: [SweepPoint] = []
        for (n, k) in mine.enumerated() {
            let l = grid[k]
            var o = MergeOptions(weights: [1 - l, l])
            o.allowNonFinite = true
            let merged = l == 0 ? a : (l == 1 ? b : try Interpolate().merge([a, b], options: o, progress: nil))
            try ev.load(merged)
            let s = try ev.score(data, labels: labels)
            var point = SweepPoint(score: s)
            point.lambda = l
            points.append(point)
            ev.progress?(n + 1, mine.count)
        }
        var r = interpolateHeader(a: a.source, b: b.source, data: data.path, grid: grid, name: name, shard: shard, task: data.task)
        r.points = points
        return r
    }

    /// An interpolation sweep's result without its points (what it is, before it runs).
    public static func interpolateHeader(
        a: String, b: String, data: String, grid: [Double], name: String, shard: Shard, task: EvalTask = .classification
    ) -> SweepResult {
        result("interpolate", name: name, adapters: [a, b], data: [data], shard: shard, settings: SweepSettings(grid: grid), task: task)
    }

    /// What a sweep's points are compared by: accuracy (classification; acc for multiple choice) or
    /// perplexity (lower is better). Shapley values of a perplexity sweep are of the log-likelihood per
    /// token (−loss), which adds up over players where perplexity would not.
    public struct Metric: Sendable {
        public var name: String
        public var higherIsBetter: Bool
        public var value: @Sendable (SweepPoint) -> Double?
        public var shapleyName: String
        public var shapleyValue: @Sendable (SweepPoint) -> Double?
    }

    public static func metric(_ r: SweepResult) -> Metric { metric(task: r.settings.task) }

    public static func metric(task: String?) -> Metric {
        if task == EvalTask.perplexity.rawValue {
            return Metric(
                name: "perplexity", higherIsBetter: false, value: { $0.perplexity }, shapleyName: "log-likelihood per token",
                shapleyValue: { $0.loss.map { -$0 } })
        }
        let name = task == EvalTask.multipleChoice.rawValue ? "acc" : "accuracy"
        return Metric(name: name, higherIsBetter: true, value: { $0.accuracy }, shapleyName: name, shapleyValue: { $0.accuracy })
    }

    /// (λ, metric) of an interpolation sweep's points.
    public static func curve(_ points: [SweepPoint], _ metric: Metric) -> [(Double, Double)] {
        points.compactMap { p in
            guard let l = p.lambda, let v = metric.value(p) else { return nil }
            return (l, v)
        }
    }

    /// The barrier of a whole interpolation sweep by its metric: the largest drop below the straight line
    /// between the end points, or for perplexity the largest rise above it.
    public static func barrier(_ r: SweepResult) -> Double? {
        let m = metric(r)
        return barrier(curve(r.points ?? [], m), m)
    }

    /// The barrier of a curve by its metric: the largest drop below the line between the end points, or
    /// (lower is better) the largest rise above it.
    public static func barrier(_ points: [(Double, Double)], _ metric: Metric) -> Double? {
        barrier(metric.higherIsBetter ? points : points.map { ($0.0, -$0.1) })
    }

    /// `task` as tables show it: marked with the metric unless it is accuracy ("text (perplexity)").
    public static func label(_ task: String, metricName: String) -> String {
        metricName == "accuracy" ? task : "\(task) (\(metricName))"
    }

    /// Largest drop of the curve below the straight line between its end points (0 if none).
    public static func barrier(_ points: [(Double, Double)]) -> Double? {
        let p = points.sorted { $0.0 < $1.0 }
        guard let first = p.first, let last = p.last, last.0 > first.0 else { return nil }
        var worst = 0.0
        for (x, y) in p {
            let t = (x - first.0) / (last.0 - first.0)
            worst = max(worst, (1 - t) * first.1 + t * last.1 - y)
        }
        return worst
    }

    // MARK: merge

    /// Weights of a method in a merge sweep of n adapters: 1 for the sign-electing methods (TIES family,
    /// DELLA, KnOTS: they average the agreeing values themselves), 1/n for the averaging ones, so every
    /// method is compared at the adapters' mean.
    public static func sweepWeights(_ method: MergeMethod, count n: Int) -> [Double] {
        method.electsSigns ? [Double](repeating: 1, count: n) : [Double](repeating: 1 / Double(n), count: n)
    }

    /// Every method on every task; each task is scored with its own adapter's head and label list.
    /// The "individual" rows are each adapter on its own task (the reference for the drops).
    public static func merge(
        _ ev: SweepEvaluator, adapters: [Adapter], data: [PreparedData], methods: [String], weights: [Double]?,
        density: Double, seed: UInt64, name: String, shard: Shard = .whole
    ) throws -> SweepResult {
        guard adapters.count == data.count, !adapters.isEmpty else {
            throw EvalError("--task-data", "\(adapters.count) adapters but \(data.count) task files: give one task file per adapter")
        }
        if let other = data.first(where: { $0.task != data[0].task }) {
            throw EvalError(other.path, "is a \(other.task.rawValue) task but \(data[0].path) is \(data[0].task.rawValue): a merge sweep scores one kind")
        }
        var work: [(String, Int)] = []
        for t in data.indices { work.append(("individual", t)) }
        for m in methods { for t in data.indices { work.append((m, t)) } }
        let mine = work.indices.filter(shard.owns)
        var mergedCache: [String: Adapter] = [:]
        var points: [SweepPoint] = []
        for (n, k) in mine.enumerated() {
            let (method, t) = work[k]
            let adapter: Adapter
            if method == "individual" {
                adapter = adapters[t]
            } else if let m = mergedCache[method] {
                adapter = m
            } else {
                guard let m = MergeMethods.named(method) else { throw EvalError("--methods", "unknown merge method '\(method)'") }
                var o = MergeOptions(weights: weights ?? sweepWeights(m, count: adapters.count))
                o.density = m.needsDensity ? density : nil
                o.seed = seed
                o.heads = .drop
                o.allowNonFinite = true
                adapter = try m.merge(adapters, options: o, progress: nil)
                mergedCache[method] = adapter
            }
            try ev.load(adapter, head: adapters[t])
            let s = try ev.score(data[t], labels: SweepEvaluator.labels(for: [adapters[t]], data: data[t]))
            var point = SweepPoint(score: s)
            (point.method, point.task, point.adapter) = (method, data[t].taskName, adapters[t].source)
            points.append(point)
            ev.progress?(n + 1, mine.count)
        }
        var r = mergeHeader(
            adapters: adapters.map(\.source), data: data.map(\.path), methods: methods, weights: weights, density: density, seed: seed, name: name,
            shard: shard, task: data[0].task)
        r.points = points
        return r
    }

    /// A merge sweep's result without its points.
    public static func mergeHeader(
        adapters: [String], data: [String], methods: [String], weights: [Double]?, density: Double, seed: UInt64, name: String, shard: Shard,
        task: EvalTask = .classification
    ) -> SweepResult {
        result(
            "merge", name: name, adapters: adapters, data: data, shard: shard,
            settings: SweepSettings(methods: methods, weights: weights, density: density, seed: seed), task: task)
    }

    // MARK: prune

    public struct PrunePoint: Sendable {
        public var kind: String  // sparsity, layers, modules, rank
        public var value: String
        public var options: PruneOptions?
    }

    public static func prunePoints(
        sparsities: [Double], scope: PruneOptions.Scope, layers: [String], modules: [String], ranks: [Int],
        rankMethod: PruneOptions.RankMethod
    ) -> [PrunePoint] {
        var pts: [PrunePoint] = []
        for s in sparsities {
            var o = PruneOptions()
            o.sparsity = s
            o.scope = scope
            o.allowNonFinite = true
            pts.append(PrunePoint(kind: "sparsity", value: fmtValue(s), options: s == 0 ? nil : o))
        }
        for l in layers {
            var o = PruneOptions()
            o.allowNonFinite = true
            if l == "none" {
                pts.append(PrunePoint(kind: "layers", value: l, options: nil))
                continue
            }
            o.dropLayers = l
            pts.append(PrunePoint(kind: "layers", value: l, options: o))
        }
        for m in modules {
            var o = PruneOptions()
            o.dropModules = [m]
            o.allowNonFinite = true
            pts.append(PrunePoint(kind: "modules", value: m, options: o))
        }
        for r in ranks {
            var o = PruneOptions()
            o.rank = r
            o.rankMethod = rankMethod
            o.allowNonFinite = true
            pts.append(PrunePoint(kind: "rank", value: String(r), options: o))
        }
        return pts
    }

    static func fmtValue(_ v: Double) -> String {
        v == v.rounded() ? String(Int(v)) : String(format: "%g", v)
    }

    /// Pruning curves: magnitude sparsity, dropped layer sets (`all` drops every adapter), dropped module
    /// kinds, rank truncation.
    public static func prune(
        _ ev: SweepEvaluator, adapter: Adapter, data: PreparedData, points pts: [PrunePoint], name: String,
        shard: Shard = .whole
    ) throws -> SweepResult {
        let labels = SweepEvaluator.labels(for: [adapter], data: data)
        let mine = pts.indices.filter(shard.owns)
        var points: [SweepPoint] = []
        for (n, k) in mine.enumerated() {
            let p = pts[k]
            var pruned = adapter
            var kept = 1.0
            var zeroed = 0
            var dropped = 0
            if let o = p.options {
                if p.kind == "layers" && p.value == "all" {
                    pruned.modules = []
                    kept = 0
                    dropped = adapter.modules.reduce(0) { $0 + $1.a.tensor.count + $1.b.tensor.count }
                } else {
                    let (out, report) = try Pruner.prune(adapter, options: o)
                    pruned = out
                    kept = report.normFractionKept
                    zeroed = report.zeroed
                    dropped = report.dropped
                }
            }
            try ev.load(pruned)
            let s = try ev.score(data, labels: labels)
            var point = SweepPoint(score: s)
            (point.kind, point.value, point.normFractionKept) = (p.kind, p.value, kept)
            (point.zeroed, point.dropped) = (zeroed, dropped)
            points.append(point)
            ev.progress?(n + 1, mine.count)
        }
        var r = pruneHeader(adapter: adapter.source, data: data.path, points: pts, name: name, shard: shard, task: data.task)
        r.points = points
        return r
    }

    /// A pruning sweep's result without its points.
    public static func pruneHeader(
        adapter: String, data: String, points: [PrunePoint], name: String, shard: Shard, task: EvalTask = .classification
    ) -> SweepResult {
        result(
            "prune", name: name, adapters: [adapter], data: [data], shard: shard, settings: SweepSettings(points: points.map { "\($0.kind)=\($0.value)" }),
            task: task)
    }

    // MARK: shapley

    /// Players: the adapter's layers, or each module.
    public static func players(of adapter: Adapter, group: String) -> [(name: String, modules: Set<String>)] {
        if group == "module" { return adapter.modules.map { ($0.name, [$0.name]) } }
        var byLayer: [Int: Set<String>] = [:]
        var rest: Set<String> = []
        for m in adapter.modules { if let l = m.layer { byLayer[l, default: []].insert(m.name) } else { rest.insert(m.name) } }
        var out = byLayer.keys.sorted().map { (name: "layer \($0)", modules: byLayer[$0]!) }
        if !rest.isEmpty { out.insert((name: "no layer", modules: rest), at: 0) }
        return out
    }

    /// Scores the coalitions owned by this shard (each once, in an order that shares lower layers).
    public static func shapley(
        _ ev: SweepEvaluator, adapter: Adapter, data: PreparedData, group: String, plan: ShapleyPlan, name: String,
        shard: Shard = .whole
    ) throws -> SweepResult {
        let labels = SweepEvaluator.labels(for: [adapter], data: data)
        let players = self.players(of: adapter, group: group)
        guard players.count == plan.players else {
            throw EvalError(adapter.source, "the plan has \(plan.players) players but the adapter has \(players.count) groups")
        }
        try ev.load(adapter)
        let coalitions = plan.coalitions
        let mine = coalitions.indices.filter(shard.owns)
        let switches: [Set<String>] = mine.map { k in
            var on = Set<String>()
            for (i, p) in players.enumerated() where coalitions[k][i] { on.formUnion(p.modules) }
            return on
        }
        let (scores, reused, computed) = try ev.score(
            data, labels: labels, configurations: mine.count,
            configure: { c in
                ev.model.setActive(false)
                ev.model.setActive(true) { key in switches[c].contains { $0 == key || $0.hasSuffix("." + key) } }
            }, batchDone: ev.progress)
        let values = Dictionary(zip(mine, scores).map { (ShapleyPlan.key(coalitions[$0.0]), SweepPoint(score: $0.1)) }, uniquingKeysWith: { a, _ in a })
        ev.model.setActive(true)
        var r = shapleyHeader(adapter: adapter, data: data.path, group: group, plan: plan, name: name, shard: shard, task: data.task)
        (r.layersReused, r.layersComputed) = (reused, computed)
        r.values = values
        return r
    }

    /// A Shapley sweep's result without its values (the players and the plan's size included).
    public static func shapleyHeader(
        adapter: Adapter, data: String, group: String, plan: ShapleyPlan, name: String, shard: Shard, task: EvalTask = .classification
    ) -> SweepResult {
        var r = result(
            "shapley", name: name, adapters: [adapter.source], data: [data], shard: shard, settings: SweepSettings(group: group, plan: plan.settings),
            task: task)
        (r.players, r.coalitions) = (players(of: adapter, group: group).map(\.name), plan.coalitions.count)
        return r
    }
}

extension Sweeps {
    /// `interpolate-coto-noun8-1a2b3c4d[-shard-1-of-4].json`: stable for the same adapters and settings.
    public static func fileName(_ result: SweepResult) -> String {
        let (sweep, name, task) = (result.sweep, result.name, result.task)
        let id = fnv1a64(result.joinKey)
        var shard = ""
        if result.shard.count == 2, result.shard[1] > 1 { shard = "-shard-\(result.shard[0])-of-\(result.shard[1])" }
        let safe = { (s: String) in String(s.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "+" ? $0 : "_" }) }
        return "\(safe(sweep))-\(safe(name))-\(safe(task))-\(String(id & 0xffff_ffff, radix: 16))\(shard).json"
    }
}
