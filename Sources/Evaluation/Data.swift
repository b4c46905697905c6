import Checkpoint
import Model

/// One JSONL record with its line number (for errors).
public struct Record {
    public let line: Int
    public let json: JSON
}

public enum JSONL {
    /// Reads a JSONL file: one object per non-empty line; errors name `file:line`.
    public static func read(_ path: String) throws -> [Record] {
        guard FileSystem.exists(path) else { throw CheckpointError(path, .notFound) }
        if FileSystem.isDirectory(path) { throw CheckpointError(path, .isDirectory) }
        let bytes = try FileSystem.readFile(path, limit: 4 << 30)
        var out: [Record] = []
        var start = 0
        var line = 1
        func handle(_ end: Int) throws {
            var slice = bytes[start..<end]
            if slice.last == 13 { slice = slice.dropLast() }
            if slice.allSatisfy({ $0 == 32 || $0 == 9 }) { return }
            let json: JSON
            do { json = try JSON.parse(slice) } catch let e as JSONParseError {
                throw EvalError("\(path):\(line)", "not valid JSON: \(e)")
            }
            guard json.objectPairs != nil else { throw EvalError("\(path):\(line)", "each line must be a JSON object") }
            out.append(Record(line: line, json: json))
        }
        for (i, b) in bytes.enumerated() where b == 10 {
            try handle(i)
            start = i + 1
            line += 1
        }
        if start < bytes.count { try handle(bytes.count) }
        if out.isEmpty { throw EvalError(path, "no records (empty file)") }
        return out
    }

    /// A field as text: strings as they are, numbers as written.
    public static func text(_ r: Record, _ key: String, path: String, required: Bool = true) throws -> String? {
        guard let v = r.json[key], !v.isNull else {
            if required { throw EvalError("\(path):\(r.line)", "missing \"\(key)\"") }
            return nil
        }
        if let s = v.stringValue { return s }
        if case let .number(n) = v { return n }
        if let b = v.boolValue { return b ? "true" : "false" }
        throw EvalError("\(path):\(r.line)", "\"\(key)\" must be a string or a number")
    }
}

/// A classification record: `{"text", "label"}` with an optional `"text_pair"`, and where it was read
/// (`file:line`, for errors).
public struct ClassificationRecord: Sendable, Equatable {
    public var text: String
    public var pair: String?
    public var label: String
    public var place: String
}

/// A language-modelling record: `{"text"}` (every token after the first is scored) or
/// `{"prompt", "completion"}` (the completion only).
public enum LMText: Sendable, Equatable {
    case text(String)
    case promptCompletion(prompt: String, completion: String)
}

/// The one reader of task files: every command that reads classification or language-modelling JSONL
/// reads it here (errors name `file:line`).
public enum TaskData {
    public static func classification(_ path: String) throws -> [ClassificationRecord] {
        try JSONL.read(path).map { r in
            ClassificationRecord(
                text: try JSONL.text(r, "text", path: path)!, pair: try JSONL.text(r, "text_pair", path: path, required: false),
                label: try JSONL.text(r, "label", path: path)!, place: "\(path):\(r.line)")
        }
    }

    /// The ids of `context` followed by `continuation`, split as lm-evaluation-harness splits them: trailing
    /// spaces of the context move to the continuation; the context's ids are those of the context alone,
    /// the continuation's the rest of the joint encoding. Training on prompt/completion records and
    /// scoring them (perplexity, multiple choice) both tokenize through this.
    public static func contextContinuationIds(_ tok: Tokenizer, context: String, continuation: String) -> (context: [Int], continuation: [Int]) {
        var ctx = context
        var cont = continuation
        while ctx.hasSuffix(" ") {
            ctx.removeLast()
            cont = " " + cont
        }
        let whole = tok.encode(ctx + cont, pair: nil, addSpecialTokens: false).ids
        let ctxIds = tok.encode(ctx, pair: nil, addSpecialTokens: false).ids
        return (ctxIds, Array(whole.dropFirst(ctxIds.count)))
    }

    public static func languageModelling(_ path: String) throws -> [(record: LMText, place: String)] {
        try JSONL.read(path).map { r in
            let place = "\(path):\(r.line)"
            if r.json["prompt"] != nil || r.json["completion"] != nil {
                return (.promptCompletion(prompt: try JSONL.text(r, "prompt", path: path)!, completion: try JSONL.text(r, "completion", path: path)!), place)
            }
            return (.text(try JSONL.text(r, "text", path: path)!), place)
        }
    }
}

/// A multiple-choice record: `{"context", "choices": [...], "label": index}`.
public struct MultipleChoiceRecord: Sendable, Equatable {
    public var context: String
    public var choices: [String]
    public var label: Int
    /// "file:line".
    public var place: String
}

/// A sequence a causal LM scores: the ids it reads (`input`) and the next tokens it is scored on: the
/// prediction at input position `first + j` is scored against `targets[j]`.
public struct ScoredSequence: Sendable, Equatable {
    public var input: [Int]
    public var first: Int
    public var targets: [Int]
    /// Bytes of the scored text (multiple choice normalizes by them).
    public var bytes: Int
    /// Every id the model sees or is scored on.
    public var allIds: [Int] { input + [targets.last].compactMap { $0 } }
}

extension TaskData {
    public static func multipleChoice(_ path: String) throws -> [MultipleChoiceRecord] {
        try JSONL.read(path).map { r in
            let place = "\(path):\(r.line)"
            let context = try JSONL.text(r, "context", path: path)!
            guard let choices = r.json["choices"]?.arrayValue?.compactMap(\.stringValue), !choices.isEmpty,
                choices.count == r.json["choices"]?.arrayValue?.count
            else {
                throw EvalError(place, "\"choices\" must be a non-empty list of strings")
            }
            guard let label = r.json["label"]?.intValue, label >= 0, label < choices.count else {
                throw EvalError(place, "\"label\" must be the index of the right choice (0...\(choices.count - 1))")
            }
            return MultipleChoiceRecord(context: context, choices: choices, label: label, place: place)
        }
    }

    /// `continuation` after `context` (lm-evaluation-harness's split), in a window of at most `maxLength`
    /// input tokens that keeps the end: nil when nothing is left to score. A continuation longer than the
    /// window loses its first tokens (they would have no context to be predicted from).
    public static func continuationSequence(_ tok: Tokenizer, context: String, continuation: String, maxLength: Int) -> ScoredSequence? {
        let (ctxIds, contIds) = contextContinuationIds(tok, context: context, continuation: continuation)
        guard !contIds.isEmpty else { return nil }
        let window = Array((ctxIds + contIds).suffix(maxLength + 1))
        let input = Array(window.dropLast())
        guard !input.isEmpty else { return nil }
        let targets = Array(contIds.suffix(min(contIds.count, input.count)))
        return ScoredSequence(input: input, first: input.count - targets.count, targets: targets, bytes: continuation.utf8.count)
    }

    /// A text scored on every token after the first, truncated to `maxLength` tokens: nil under two.
    public static func textSequence(_ tok: Tokenizer, text: String, maxLength: Int) -> ScoredSequence? {
        let ids = Array(tok.encode(text, pair: nil, addSpecialTokens: false).ids.prefix(maxLength))
        guard ids.count >= 2 else { return nil }
        return ScoredSequence(input: Array(ids.dropLast()), first: 0, targets: Array(ids.dropFirst()), bytes: text.utf8.count)
    }
}
