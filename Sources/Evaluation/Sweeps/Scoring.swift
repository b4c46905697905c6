import Checkpoint
import Foundation
import Model
import Numerics
import Operators

// Scoring: a task file prepared once (classification rows or a causal LM's scored sequences) and the
// evaluator every sweep scores with.

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
        guard model is LlamaModel else {
            throw EvalError(path, "\(task.rawValue) sweeps run on decoder models (model_type \(ModelRegistry.decoderTypes.joined(separator: ", ")))")
        }
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
        guard let llama = model as? LlamaModel else {
            throw EvalError("model", "\(lm.kind.rawValue) scoring needs a decoder model (model_type \(ModelRegistry.decoderTypes.joined(separator: ", ")))")
        }
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
