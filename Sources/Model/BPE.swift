import Checkpoint
import Foundation

/// Byte-level BPE from tokenizer.json (GPT-2 / LLaMA-3 / SmolLM style): added tokens split first,
/// pre-tokenizer (ByteLevel with the GPT-2 regex, Split(Regex), Digits, Sequence), byte-to-unicode
/// mapping, merges applied by rank.
public final class ByteLevelBPETokenizer: Tokenizer, @unchecked Sendable {
    enum Pre {
        case byteLevel(useRegex: Bool)
        case split(Regex<AnyRegexOutput>)
        case digits(individual: Bool)
    }

    static let gpt2Pattern = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#

    let vocab: [String: Int]
    let ranks: [String: Int]  // "left right" -> rank
    let added: [AddedToken]
    let pre: [Pre]
    let byteToChar: [Character]
    public let padId: Int
    private let idToToken: [Int: String]
    private let charToByte: [Character: UInt8]
    private let addedIds: Set<Int>
    private var cache: [String: [Int]] = [:]
    private let lock = NSLock()

    init(json: JSON, model: JSON, added: [AddedToken], path: String) throws {
        guard let v = model["vocab"]?.objectPairs else { throw ModelError(path, "BPE model without vocab") }
        var vocab: [String: Int] = [:]
        for (k, id) in v { if let i = id.intValue { vocab[k] = i } }
        self.vocab = vocab
        var ranks: [String: Int] = [:]
        for (i, m) in (model["merges"]?.arrayValue ?? []).enumerated() {
            let key: String
            if let s = m.stringValue {
                key = s
            } else if let a = m.arrayValue, a.count == 2, let l = a[0].stringValue, let r = a[1].stringValue {
                key = l + " " + r
            } else {
                continue
            }
            if ranks[key] == nil { ranks[key] = i }
        }
        self.ranks = ranks
        self.added = added
        byteToChar = GGUFConverter.byteToUnicode
        padId = added.first { $0.content.contains("pad") }?.id ?? 0
        var inverse: [Int: String] = [:]
        for (t, i) in vocab { inverse[i] = t }
        for a in added { inverse[a.id] = a.content }
        idToToken = inverse
        var c2b: [Character: UInt8] = [:]
        for (b, c) in GGUFConverter.byteToUnicode.enumerated() { c2b[c] = UInt8(b) }
        charToByte = c2b
        addedIds = Set(added.map(\.id))
        func parse(_ p: JSON) throws -> [Pre] {
            switch p["type"]?.stringValue {
            case "ByteLevel": return [.byteLevel(useRegex: p["use_regex"]?.boolValue ?? true)]
            case "Split":
                guard let pat = p["pattern"]?["Regex"]?.stringValue ?? p["pattern"]?["String"]?.stringValue.map(NSRegularExpression.escapedPattern(for:)) else {
                    throw ModelError(path, "Split pre-tokenizer without a pattern")
                }
                guard (p["behavior"]?.stringValue ?? "Isolated") == "Isolated", p["invert"]?.boolValue != true else {
                    throw ModelError(path, "Split pre-tokenizer behavior other than Isolated is not supported")
                }
                return [.split(try Regex(pat).matchingSemantics(.unicodeScalar))]
            case "Digits": return [.digits(individual: p["individual_digits"]?.boolValue ?? false)]
            case "Sequence": return try (p["pretokenizers"]?.arrayValue ?? []).flatMap(parse)
            case nil: return []
            case let t?: throw ModelError(path, "pre-tokenizer '\(t)' is not supported")
            }
        }
        pre = try json["pre_tokenizer"].map { $0.isNull ? [] : try parse($0) } ?? []
    }

    public func id(of token: String) -> Int? { vocab[token] ?? added.first { $0.content == token }?.id }

    static let gpt2 = try! Regex(gpt2Pattern).matchingSemantics(.unicodeScalar)

    static func isolate(_ pieces: [String], _ re: Regex<AnyRegexOutput>) -> [String] {
        var out: [String] = []
        for p in pieces {
            var last = p.startIndex
            for m in p.matches(of: re) {
                if m.range.isEmpty { continue }
                if last < m.range.lowerBound { out.append(String(p[last..<m.range.lowerBound])) }
                out.append(String(p[m.range]))
                last = m.range.upperBound
            }
            if last < p.endIndex { out.append(String(p[last...])) }
        }
        return out
    }

    func preTokenize(_ text: String) -> [String] {
        var pieces = [text]
        var mapped = false
        for step in pre {
            switch step {
            case let .split(re): pieces = ByteLevelBPETokenizer.isolate(pieces, re)
            case let .digits(individual):
                pieces = pieces.flatMap { p -> [String] in
                    var out: [String] = []
                    var cur = String.UnicodeScalarView()
                    var curDigit: Bool? = nil
                    for s in p.unicodeScalars {
                        let d = s.properties.numericType != nil && s.properties.generalCategory == .decimalNumber
                        if d && individual {
                            if !cur.isEmpty { out.append(String(cur)) }
                            out.append(String(s))
                            cur = .init()
                            curDigit = nil
                            continue
                        }
                        if let cd = curDigit, cd != d, !cur.isEmpty {
                            out.append(String(cur))
                            cur = .init()
                        }
                        cur.append(s)
                        curDigit = d
                    }
                    if !cur.isEmpty { out.append(String(cur)) }
                    return out
                }
            case let .byteLevel(useRegex):
                if useRegex { pieces = ByteLevelBPETokenizer.isolate(pieces, ByteLevelBPETokenizer.gpt2) }
                pieces = pieces.map { String($0.utf8.map { byteToChar[Int($0)] }) }
                mapped = true
            }
        }
        if !mapped { pieces = pieces.map { String($0.utf8.map { byteToChar[Int($0)] }) } }
        return pieces.filter { !$0.isEmpty }
    }

    func bpe(_ word: String) -> [Int] {
        lock.lock()
        if let c = cache[word] {
            lock.unlock()
            return c
        }
        lock.unlock()
        var parts = word.map(String.init)
        while parts.count > 1 {
            var best = Int.max
            var at = -1
            for i in 0..<(parts.count - 1) {
                if let r = ranks[parts[i] + " " + parts[i + 1]], r < best {
                    best = r
                    at = i
                }
            }
            if at < 0 { break }
            // Merge every occurrence of the best pair, left to right.
            let (l, r) = (parts[at], parts[at + 1])
            var merged: [String] = []
            var i = 0
            while i < parts.count {
                if i < parts.count - 1 && parts[i] == l && parts[i + 1] == r {
                    merged.append(l + r)
                    i += 2
                } else {
                    merged.append(parts[i])
                    i += 1
                }
            }
            parts = merged
        }
        let ids = parts.compactMap { vocab[$0] }
        lock.lock()
        cache[word] = ids
        lock.unlock()
        return ids
    }

    /// Ids back to text: tokens' byte-alphabet characters mapped back to bytes (added tokens verbatim).
    public func decode(_ ids: [Int]) -> String {
        var bytes: [UInt8] = []
        for id in ids {
            guard let t = idToToken[id] else { continue }
            if addedIds.contains(id) {
                bytes += Array(t.utf8)
                continue
            }
            for c in t { if let b = charToByte[c] { bytes.append(b) } else { bytes += Array(String(c).utf8) } }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    public func encode(_ text: String, pair: String? = nil, addSpecialTokens: Bool = true) -> Encoding {
        func one(_ t: String) -> [Int] {
            var ids: [Int] = []
            for (piece, addedId) in splitAdded(t, added) {
                if let a = addedId {
                    ids.append(a)
                    continue
                }
                for w in preTokenize(piece) { ids += bpe(w) }
            }
            return ids
        }
        let a = one(text)
        let b = pair.map(one) ?? []
        return Encoding(ids: a + b, typeIds: a.map { _ in 0 } + b.map { _ in 1 })
    }
}
