import Checkpoint
import Foundation
import Model

/// Evaluation tasks of `coto-eval` (classification, multiple-choice, perplexity). Progress goes to a
/// callback (done, total); the library never prints.
public enum EvalTask: String, CaseIterable, Sendable { case classification, multipleChoice = "multiple-choice", perplexity }

public struct EvalOptions: Sendable {
    public var batchSize = 16
    public var maxLength = 512
    /// Explicit label list (classification), overriding the adapter's.
    public var labels: [String]? = nil
    public init() {}
}

public struct EvalResult {
    public var task: EvalTask
    public var json: JSON
    public var summary: String
}

/// Runs `body`; an error about the model's input (path "input") is re-raised at `place` (file:line).
func at<T>(_ place: String, _ body: () throws -> T) throws -> T {
    do { return try body() } catch let e as ModelError where e.subject == "input" { throw EvalError(place, e.message) }
}

/// Encodes a classification text (and pair) and checks it against the model's tables: an empty text, a
/// token or type id outside them, or too many positions is an error at `place`, never a trap.
func encodeChecked(_ model: AdaptableModel, _ tok: Tokenizer, text: String, pair: String?, maxLength: Int, at place: String) throws -> Encoding {
    if text.allSatisfy(\.isWhitespace) { throw EvalError(place, "empty text") }
    let e = tok.encode(text, pair: pair, addSpecialTokens: true, maxLength: maxLength)
    try model.inputLimits.check(ids: e.ids, typeIds: e.typeIds, at: place)
    return e
}

public enum Evaluator {
    /// Classification: `{"text", "label"}` (+ optional `text_pair`).
    public static func classification(
        model: AdaptableModel, tokenizer: Tokenizer, data path: String, labels adapterLabels: [String]?,
        options o: EvalOptions, progress: ((Int, Int) -> Void)? = nil
    ) throws -> EvalResult {
        var items: [(Encoding, String, String)] = []
        for r in try TaskData.classification(path) {
            let e = try encodeChecked(model, tokenizer, text: r.text, pair: r.pair, maxLength: o.maxLength, at: r.place)
            items.append((e, r.label, r.place))
        }
        let labelSource: String
        let labels: [String]
        if let l = o.labels {
            labels = l
            labelSource = "--labels"
        } else if let l = adapterLabels {
            labels = l
            labelSource = "adapter label list"
        } else {
            labels = Array(Set(items.map(\.1))).sorted()
            labelSource = "sorted labels of the evaluation data"
        }
        guard model.hasClassifier else {
            throw EvalError(path, "the model has no classification head: give an adapter with one (modules_to_save) or --head")
        }
        let index = Dictionary(labels.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
        var metrics = ClassificationMetrics(labels: labels)
        var done = 0
        for chunk in stride(from: 0, to: items.count, by: o.batchSize) {
            let part = Array(items[chunk..<min(items.count, chunk + o.batchSize)])
            for (_, label, place) in part where index[label] == nil {
                throw EvalError(place, "label '\(label)' is not in the label set (\(labelSource): \(labels.joined(separator: ", ")))")
            }
            let batch = Batch.padded(part.map(\.0.ids), typeIds: part.map(\.0.typeIds), pad: tokenizer.padId)
            let out = try model.forward(batch, outputLayers: false, head: .classification)
            guard out.logitsWidth == labels.count else {
                throw EvalError(path, "the head has \(out.logitsWidth) outputs but the label set has \(labels.count) labels (\(labelSource))")
            }
            metrics.add(out, gold: part.map { index[$0.1]! })
            done += part.count
            progress?(done, items.count)
        }
        let json = JSON.object([
            ("task", .string("classification")), ("data", .string(path)), ("examples", .int(metrics.count)),
            ("accuracy", .double(metrics.accuracy)), ("macro_f1", .double(metrics.macroF1)), ("loss", .double(metrics.loss)),
            ("labels", .array(labels.map { .string($0) })), ("label_source", .string(labelSource)),
            ("confusion_matrix", .array(metrics.confusion.map { .array($0.map { JSON.int($0) }) })),
        ])
        return EvalResult(
            task: .classification, json: json,
            summary:
                "accuracy \(fmt4(metrics.accuracy)), macro-F1 \(fmt4(metrics.macroF1)), loss \(fmt4(metrics.loss)) on \(metrics.count) examples (labels: \(labelSource))"
        )
    }

    /// Log-likelihood of a scored sequence and the number of tokens scored.
    static func logLikelihood(_ model: AdaptableModel, _ seq: ScoredSequence, at place: String) throws -> (Double, Int) {
        try at(place) {
            // Every id, the scored last one included, must be inside the embedding / LM-head table.
            try model.inputLimits.check(ids: seq.allIds, typeIds: nil, at: place)
            let out = try model.forward(Batch(ids: [seq.input]), outputLayers: false, head: .languageModel)
            let V = out.logitsWidth
            var ll = 0.0
            for (j, target) in seq.targets.enumerated() {
                let row = seq.first + j
                ll += logProb(out.logits[(row * V)..<((row + 1) * V)], target)
            }
            return (ll, seq.targets.count)
        }
    }

    /// Multiple choice: `{"context", "choices": [...], "label": index}`; acc (summed log-likelihood) and
    /// acc_norm (log-likelihood / byte length of the choice), as lm-evaluation-harness.
    public static func multipleChoice(
        model: AdaptableModel, tokenizer: Tokenizer, data path: String, options o: EvalOptions,
        progress: ((Int, Int) -> Void)? = nil
    ) throws -> EvalResult {
        let records = try TaskData.multipleChoice(path)
        var correct = 0
        var correctNorm = 0
        for (n, r) in records.enumerated() {
            var lls: [Double] = []
            var norms: [Double] = []
            for c in r.choices {
                var ll = 0.0
                if let seq = TaskData.continuationSequence(tokenizer, context: r.context, continuation: c, maxLength: o.maxLength) {
                    ll = try logLikelihood(model, seq, at: r.place).0
                }
                lls.append(ll)
                norms.append(ll / Double(max(1, c.utf8.count)))
            }
            if lls.indices.max(by: { lls[$0] < lls[$1] }) == r.label { correct += 1 }
            if norms.indices.max(by: { norms[$0] < norms[$1] }) == r.label { correctNorm += 1 }
            progress?(n + 1, records.count)
        }
        let acc = Double(correct) / Double(records.count)
        let accNorm = Double(correctNorm) / Double(records.count)
        return EvalResult(
            task: .multipleChoice,
            json: .object([
                ("task", .string("multiple-choice")), ("data", .string(path)), ("examples", .int(records.count)),
                ("acc", .double(acc)), ("acc_norm", .double(accNorm)),
            ]), summary: "acc \(fmt4(acc)), acc_norm \(fmt4(accNorm)) on \(records.count) examples")
    }

    /// The scored sequences of a perplexity file: `{"text"}` (every token after the first) or
    /// `{"prompt", "completion"}` (the completion only); records with nothing to score are left out.
    static func perplexitySequences(_ tok: Tokenizer, _ path: String, maxLength: Int) throws -> (records: Int, sequences: [(ScoredSequence, String)]) {
        let records = try TaskData.languageModelling(path)
        var out: [(ScoredSequence, String)] = []
        for (r, place) in records {
            switch r {
            case let .promptCompletion(prompt, completion):
                if let seq = TaskData.continuationSequence(tok, context: prompt, continuation: completion, maxLength: maxLength) { out.append((seq, place)) }
            case let .text(t):
                if t.allSatisfy(\.isWhitespace) { throw EvalError(place, "empty text") }
                if let seq = TaskData.textSequence(tok, text: t, maxLength: maxLength) { out.append((seq, place)) }
            }
        }
        return (records.count, out)
    }

    /// Perplexity: `{"text"}` (every token after the first) or `{"prompt", "completion"}` (completion only).
    public static func perplexity(
        model: AdaptableModel, tokenizer: Tokenizer, data path: String, options o: EvalOptions,
        progress: ((Int, Int) -> Void)? = nil
    ) throws -> EvalResult {
        let (count, sequences) = try perplexitySequences(tokenizer, path, maxLength: o.maxLength)
        var nll = 0.0
        var tokens = 0
        for (n, (seq, place)) in sequences.enumerated() {
            let (ll, k) = try logLikelihood(model, seq, at: place)
            nll -= ll
            tokens += k
            progress?(n + 1, sequences.count)
        }
        guard tokens > 0 else { throw EvalError(path, "no tokens to score") }
        let loss = nll / Double(tokens)
        return EvalResult(
            task: .perplexity,
            json: .object([
                ("task", .string("perplexity")), ("data", .string(path)), ("examples", .int(count)), ("tokens", .int(tokens)),
                ("loss", .double(loss)), ("perplexity", .double(exp(loss))),
            ]), summary: "perplexity \(fmt4(exp(loss))) (loss \(fmt4(loss)) over \(tokens) tokens, \(count) examples)")
    }
}

func fmt4(_ v: Double) -> String { String(format: "%.4f", v) }
