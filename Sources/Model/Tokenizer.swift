import Checkpoint
import Foundation

/// Token ids for a text (and an optional second segment), as HF `tokenizers` produces them.
public struct Encoding: Sendable, Equatable {
    public var ids: [Int]
    public var typeIds: [Int]
    public init(ids: [Int], typeIds: [Int]) { self.ids = ids; self.typeIds = typeIds }
}

public protocol Tokenizer: Sendable {
    /// Encodes with the tokenizer's post-processing (BERT: [CLS] A [SEP] (B [SEP])).
    func encode(_ text: String, pair: String?, addSpecialTokens: Bool) -> Encoding
    var padId: Int { get }
    func id(of token: String) -> Int?
}

public enum TokenizerLoader {
    /// From a model directory: tokenizer.json (WordPiece or byte-level BPE), else vocab.txt (WordPiece).
    public static func load(modelDir: String) throws -> Tokenizer {
        let tj = FileSystem.join(modelDir, "tokenizer.json")
        if FileSystem.exists(tj) { return try load(tokenizerJSON: tj) }
        let vocab = FileSystem.join(modelDir, "vocab.txt")
        if FileSystem.exists(vocab) {
            let text = String(decoding: try FileSystem.readFile(vocab, limit: 64 << 20), as: UTF8.self)
            var v: [String: Int] = [:]
            for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() where !line.isEmpty || i == 0 {
                let tok = line.hasSuffix("\r") ? String(line.dropLast()) : String(line)
                if v[tok] == nil { v[tok] = i }
            }
            // As BertTokenizer: the special tokens of the vocabulary are never split.
            let specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"].compactMap { t in v[t].map { AddedToken(content: t, id: $0, special: true) } }
            return WordPieceTokenizer(vocab: v, lowercase: true, stripAccents: nil, unk: "[UNK]", prefix: "##", maxChars: 100, added: specials)
        }
        throw CheckpointError(modelDir, .invalid("no tokenizer.json or vocab.txt"))
    }

    public static func load(tokenizerJSON path: String) throws -> Tokenizer {
        let json: JSON
        do { json = try JSON.parse(FileSystem.readFile(path, limit: 512 << 20)) } catch let e as JSONParseError {
            throw CheckpointError(path, .invalid("not valid JSON: \(e)"))
        }
        return try load(json: json, path: path)
    }

    public static func load(json: JSON, path: String) throws -> Tokenizer {
        guard let model = json["model"], let type = model["type"]?.stringValue else {
            throw CheckpointError(path, .invalid("tokenizer.json has no model.type"))
        }
        let added = (json["added_tokens"]?.arrayValue ?? []).compactMap { t -> AddedToken? in
            guard let c = t["content"]?.stringValue, let id = t["id"]?.intValue else { return nil }
            return AddedToken(content: c, id: id, special: t["special"]?.boolValue ?? false)
        }
        switch type {
        case "WordPiece":
            guard let vocabPairs = model["vocab"]?.objectPairs else { throw CheckpointError(path, .invalid("WordPiece model without vocab")) }
            var vocab: [String: Int] = [:]
            for (k, v) in vocabPairs { if let i = v.intValue { vocab[k] = i } }
            let norm = json["normalizer"]
            let lower = norm?["lowercase"]?.boolValue ?? true
            let strip = norm?["strip_accents"]?.boolValue
            return WordPieceTokenizer(vocab: vocab, lowercase: lower, stripAccents: strip,
                                      unk: model["unk_token"]?.stringValue ?? "[UNK]",
                                      prefix: model["continuing_subword_prefix"]?.stringValue ?? "##",
                                      maxChars: model["max_input_chars_per_word"]?.intValue ?? 100, added: added)
        case "BPE":
            return try ByteLevelBPETokenizer(json: json, model: model, added: added, path: path)
        default:
            throw CheckpointError(path, .invalid("tokenizer model type '\(type)' is not supported (WordPiece and byte-level BPE are)"))
        }
    }
}

public struct AddedToken: Sendable, Equatable {
    public var content: String
    public var id: Int
    public var special: Bool
}

/// Splits text around added tokens (leftmost, longest match first), as tokenizers' AddedVocabulary.
func splitAdded(_ text: String, _ added: [AddedToken]) -> [(String, Int?)] {
    guard !added.isEmpty else { return [(text, nil)] }
    let sorted = added.sorted { $0.content.unicodeScalars.count > $1.content.unicodeScalars.count }
    var out: [(String, Int?)] = []
    let scalars = Array(text.unicodeScalars)
    var i = 0, start = 0
    while i < scalars.count {
        var hit: AddedToken? = nil
        for t in sorted where !t.content.isEmpty {
            let c = Array(t.content.unicodeScalars)
            if i + c.count <= scalars.count && Array(scalars[i..<(i + c.count)]) == c { hit = t; break }
        }
        if let t = hit {
            if start < i { out.append((String(String.UnicodeScalarView(scalars[start..<i])), nil)) }
            out.append((t.content, t.id))
            i += t.content.unicodeScalars.count
            start = i
        } else { i += 1 }
    }
    if start < scalars.count { out.append((String(String.UnicodeScalarView(scalars[start...])), nil)) }
    return out
}
