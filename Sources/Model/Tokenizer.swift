import Checkpoint
import Foundation

/// Token ids for a text (and an optional second segment), as HF `tokenizers` produces them.
public struct Encoding: Sendable, Equatable {
    public var ids: [Int]
    public var typeIds: [Int]
    public init(ids: [Int], typeIds: [Int]) {
        self.ids = ids
        self.typeIds = typeIds
    }
}

public protocol Tokenizer: Sendable {
    /// Encodes with the tokenizer's post-processing (BERT: [CLS] A [SEP] (B [SEP])).
    func encode(_ text: String, pair: String?, addSpecialTokens: Bool) -> Encoding
    /// The same, truncated to `maxLength` tokens in all as HF tokenizers' `longest_first` does: special
    /// tokens are kept, and tokens are removed one at a time from the longer segment (the second on ties).
    func encode(_ text: String, pair: String?, addSpecialTokens: Bool, maxLength: Int) -> Encoding
    var padId: Int { get }
    func id(of token: String) -> Int?
}

/// HF tokenizers' `LongestFirst` lengths for a pair that exceeds `budget` (truncation/mod.rs): the
/// shorter segment keeps what it can, and if both must shrink they get budget/2 and the rest.
func longestFirst(_ a: Int, _ b: Int, _ budget: Int) -> (Int, Int) {
    var (n1, n2) = (a, b)
    let swapped = n1 > n2
    if swapped { Swift.swap(&n1, &n2) }
    n2 = n1 > budget ? n1 : max(n1, budget - n1)
    if n1 + n2 > budget {
        n1 = budget / 2
        n2 = n1 + budget % 2
    }
    return swapped ? (min(a, n2), min(b, n1)) : (min(a, n1), min(b, n2))
}

extension WordPieceTokenizer {
    public func encode(_ text: String, pair: String?, addSpecialTokens: Bool, maxLength: Int) -> Encoding {
        var a = tokenize(text)
        var b = pair.map(tokenize)
        let specials = addSpecialTokens && clsId != nil && sepId != nil ? (b == nil ? 2 : 3) : 0
        let budget = max(0, maxLength - specials)
        var (n1, n2) = (a.count, b?.count ?? 0)
        if n1 + n2 > budget {
            if b == nil { n1 = budget } else { (n1, n2) = longestFirst(n1, n2, budget) }
        }
        a = Array(a.prefix(n1))
        b = b.map { Array($0.prefix(n2)) }
        guard addSpecialTokens, let cls = clsId, let sep = sepId else {
            let bb = b ?? []
            return Encoding(ids: a + bb, typeIds: a.map { _ in 0 } + bb.map { _ in 1 })
        }
        var ids = [cls] + a + [sep]
        var types = [Int](repeating: 0, count: ids.count)
        if let bb = b {
            ids += bb + [sep]
            types += [Int](repeating: 1, count: bb.count + 1)
        }
        return Encoding(ids: ids, typeIds: types)
    }
}

extension ByteLevelBPETokenizer {
    public func encode(_ text: String, pair: String?, addSpecialTokens: Bool, maxLength: Int) -> Encoding {
        let e = encode(text, pair: pair, addSpecialTokens: addSpecialTokens)
        guard e.ids.count > maxLength else { return e }
        let aCount = e.typeIds.filter { $0 == 0 }.count
        let bCount = e.ids.count - aCount
        let (n1, n2) = bCount == 0 ? (maxLength, 0) : longestFirst(aCount, bCount, maxLength)
        let ids = Array(e.ids[0..<n1]) + Array(e.ids[aCount..<(aCount + n2)])
        return Encoding(ids: ids, typeIds: [Int](repeating: 0, count: n1) + [Int](repeating: 1, count: n2))
    }
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
        throw ModelError(modelDir, "no tokenizer.json or vocab.txt")
    }

    public static func load(tokenizerJSON path: String) throws -> Tokenizer {
        let json: JSON
        do { json = try JSON.parse(FileSystem.readFile(path, limit: 512 << 20)) } catch let e as JSONParseError {
            throw ModelError(path, "not valid JSON: \(e)")
        }
        return try load(json: json, path: path)
    }

    public static func load(json: JSON, path: String) throws -> Tokenizer {
        guard let model = json["model"], let type = model["type"]?.stringValue else {
            throw ModelError(path, "tokenizer.json has no model.type")
        }
        let added = (json["added_tokens"]?.arrayValue ?? []).compactMap { t -> AddedToken? in
            guard let c = t["content"]?.stringValue, let id = t["id"]?.intValue else { return nil }
            return AddedToken(content: c, id: id, special: t["special"]?.boolValue ?? false)
        }
        switch type {
        case "WordPiece":
            guard let vocabPairs = model["vocab"]?.objectPairs else { throw ModelError(path, "WordPiece model without vocab") }
            var vocab: [String: Int] = [:]
            for (k, v) in vocabPairs { if let i = v.intValue { vocab[k] = i } }
            let norm = json["normalizer"]
            let lower = norm?["lowercase"]?.boolValue ?? true
            let strip = norm?["strip_accents"]?.boolValue
            return WordPieceTokenizer(
                vocab: vocab, lowercase: lower, stripAccents: strip,
                unk: model["unk_token"]?.stringValue ?? "[UNK]",
                prefix: model["continuing_subword_prefix"]?.stringValue ?? "##",
                maxChars: model["max_input_chars_per_word"]?.intValue ?? 100, added: added)
        case "BPE":
            return try ByteLevelBPETokenizer(json: json, model: model, added: added, path: path)
        default:
            throw ModelError(path, "tokenizer model type '\(type)' is not supported (WordPiece and byte-level BPE are)")
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
    var i = 0
    var start = 0
    while i < scalars.count {
        var hit: AddedToken? = nil
        for t in sorted where !t.content.isEmpty {
            let c = Array(t.content.unicodeScalars)
            if i + c.count <= scalars.count && Array(scalars[i..<(i + c.count)]) == c {
                hit = t
                break
            }
        }
        if let t = hit {
            if start < i { out.append((String(String.UnicodeScalarView(scalars[start..<i])), nil)) }
            out.append((t.content, t.id))
            i += t.content.unicodeScalars.count
            start = i
        } else {
            i += 1
        }
    }
    if start < scalars.count { out.append((String(String.UnicodeScalarView(scalars[start...])), nil)) }
    return out
}
