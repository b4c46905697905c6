import Checkpoint
import Evaluation
import Model

/// Task files turned into training examples: records read by the one task-data reader
/// (`TaskData`, Evaluation), tokenized and checked against the model's limits here; errors name
/// `file:line`.
public enum TrainingData {
    /// Classification examples of the training file (and of an evaluation file) with the label list:
    /// the sorted set of the training labels, as datasets' ClassLabel encodes them.
    public static func classification(
        train path: String, eval evalPath: String?, tokenizer: Tokenizer, maxLength: Int, limits: InputLimits
    ) throws -> (train: [Example], eval: [Example]?, labels: [String]) {
        let rows = try TaskData.classification(path)
        let labels = Array(Set(rows.map(\.label))).sorted()
        let index = Dictionary(uniqueKeysWithValues: labels.enumerated().map { ($1, $0) })
        func examples(_ rows: [ClassificationRecord]) throws -> [Example] {
            try rows.map { row in
                guard let y = index[row.label] else {
                    throw TrainError(row.place, "label '\(row.label)' is not in the training label set (\(labels.joined(separator: ", ")))")
                }
                if row.text.allSatisfy(\.isWhitespace) { throw TrainError(row.place, "empty text") }
                let e = tokenizer.encode(row.text, pair: row.pair, addSpecialTokens: true, maxLength: maxLength)
                try limits.check(ids: e.ids, typeIds: e.typeIds, at: row.place)
                return Example(ids: e.ids, typeIds: e.typeIds, label: y)
            }
        }
        return (try examples(rows), try evalPath.map { try examples(TaskData.classification($0)) }, labels)
    }

    /// Causal-LM examples: `{"text"}` scores every token after the first; `{"prompt", "completion"}` scores
    /// the completion's tokens, split from the prompt's as evaluation splits them
    /// (`TaskData.contextContinuationIds`); cut to `maxLength` tokens from the end (the prompt is kept,
    /// as TRL's SFT truncates; evaluation keeps the end instead).
    public static func causalLM(_ path: String, tokenizer: Tokenizer, maxLength: Int, limits: InputLimits) throws -> [Example] {
        let examples = try TaskData.languageModelling(path).map { record, place in
            let e: Example
            switch record {
            case let .promptCompletion(prompt, completion):
                if completion.allSatisfy(\.isWhitespace) { throw TrainError(place, "empty completion") }
                let (p, c) = TaskData.contextContinuationIds(tokenizer, context: prompt, continuation: completion)
                let ids = Array((p + c).prefix(maxLength))
                e = Example(ids: ids, targets: ids.enumerated().map { $0.offset < p.count ? -100 : $0.element })
                if !(e.targets ?? []).contains(where: { $0 != -100 }) {
                    throw TrainError(place, "the completion is cut off by --max-length \(maxLength): nothing to score")
                }
            case let .text(text):
                if text.allSatisfy(\.isWhitespace) { throw TrainError(place, "empty text") }
                let ids = Array(tokenizer.encode(text, pair: nil, addSpecialTokens: false).ids.prefix(maxLength))
                if ids.count < 2 { throw TrainError(place, "the text gives \(ids.count) token: nothing to predict") }
                e = Example(ids: ids, targets: ids)
            }
            try limits.check(ids: e.ids, typeIds: nil, at: place)
            return e
        }
        guard !examples.isEmpty else { throw TrainError(path, "no examples") }
        return examples
    }
}
