import Foundation

/// BERT WordPiece, as HF tokenizers' BertNormalizer + BertPreTokenizer + WordPiece + TemplateProcessing.
public struct WordPieceTokenizer: Tokenizer {
    let vocab: [String: Int]
    let lowercase: Bool
    let stripAccents: Bool?
    let unk: String
    let prefix: String
    let maxChars: Int
    let added: [AddedToken]
    public let clsId: Int?, sepId: Int?
    public let padId: Int

    public init(vocab: [String: Int], lowercase: Bool, stripAccents: Bool?, unk: String, prefix: String, maxChars: Int, added: [AddedToken] = []) {
        self.vocab = vocab
        self.lowercase = lowercase
        self.stripAccents = stripAccents
        self.unk = unk
        self.prefix = prefix
        self.maxChars = maxChars
        self.added = added
        clsId = vocab["[CLS]"]
        sepId = vocab["[SEP]"]
        padId = vocab["[PAD]"] ?? 0
    }

    public func id(of token: String) -> Int? { vocab[token] }

    static func isChinese(_ v: UInt32) -> Bool {
        (0x4E00...0x9FFF).contains(v) || (0x3400...0x4DBF).contains(v) || (0x20000...0x2A6DF).contains(v)
            || (0x2A700...0x2B73F).contains(v) || (0x2B740...0x2B81F).contains(v) || (0x2B820...0x2CEAF).contains(v)
            || (0xF900...0xFAFF).contains(v) || (0x2F800...0x2FA1F).contains(v)
    }

    static func isWhitespace(_ s: Unicode.Scalar) -> Bool {
        s == "\t" || s == "\n" || s == "\r" || s.properties.isWhitespace
    }

    static func isControl(_ s: Unicode.Scalar) -> Bool {
        if s == "\t" || s == "\n" || s == "\r" { return false }
        switch s.properties.generalCategory {
        case .control, .format, .surrogate, .privateUse, .unassigned: return true
        default: return false
        }
    }

    static func isPunctuation(_ s: Unicode.Scalar) -> Bool {
        let v = s.value
        if (33...47).contains(v) || (58...64).contains(v) || (91...96).contains(v) || (123...126).contains(v) { return true }
        switch s.properties.generalCategory {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
            .initialPunctuation, .finalPunctuation, .otherPunctuation:
            return true
        default: return false
        }
    }

    /// BertNormalizer: clean text, pad CJK, strip accents (NFD, drop Mn), lowercase.
    func normalize(_ text: String) -> String {
        var s = String.UnicodeScalarView()
        for c in text.unicodeScalars {
            if c.value == 0 || c.value == 0xFFFD || WordPieceTokenizer.isControl(c) { continue }
            if WordPieceTokenizer.isWhitespace(c) {
                s.append(" ")
                continue
            }
            if WordPieceTokenizer.isChinese(c.value) {
                s.append(" ")
                s.append(c)
                s.append(" ")
                continue
            }
            s.append(c)
        }
        var out = String(s)
        if stripAccents ?? lowercase {
            out = String(
                String.UnicodeScalarView(
                    out.decomposedStringWithCanonicalMapping.unicodeScalars.filter {
                        $0.properties.generalCategory != .nonspacingMark
                    }))
        }
        if lowercase { out = out.lowercased() }
        return out
    }

    /// BertPreTokenizer: whitespace split, punctuation isolated.
    func preTokenize(_ text: String) -> [String] {
        var words: [String] = []
        var cur = String.UnicodeScalarView()
        for c in text.unicodeScalars {
            if WordPieceTokenizer.isWhitespace(c) {
                if !cur.isEmpty {
                    words.append(String(cur))
                    cur = String.UnicodeScalarView()
                }
            } else if WordPieceTokenizer.isPunctuation(c) {
                if !cur.isEmpty {
                    words.append(String(cur))
                    cur = String.UnicodeScalarView()
                }
                words.append(String(c))
            } else {
                cur.append(c)
            }
        }
        if !cur.isEmpty { words.append(String(cur)) }
        return words
    }

    /// Greedy longest-match-first WordPiece on characters.
    func wordPiece(_ word: String) -> [Int] {
        let chars = Array(word.unicodeScalars)  // Rust chars: scalars, not grapheme clusters
        let unkId = vocab[unk] ?? 0
        if chars.count > maxChars { return [unkId] }
        var ids: [Int] = []
        var start = 0
        while start < chars.count {
            var end = chars.count
            var found: Int? = nil
            while start < end {
                var sub = String(String.UnicodeScalarView(chars[start..<end]))
                if start > 0 { sub = prefix + sub }
                if let id = vocab[sub] {
                    found = id
                    break
                }
                end -= 1
            }
            guard let id = found else { return [unkId] }
            ids.append(id)
            start = end
        }
        return ids
    }

    func tokenize(_ text: String) -> [Int] {
        var ids: [Int] = []
        for (piece, addedId) in splitAdded(text, added.filter { $0.special }) {
            if let a = addedId {
                ids.append(a)
                continue
            }
            for w in preTokenize(normalize(piece)) { ids += wordPiece(w) }
        }
        return ids
    }

    public func encode(_ text: String, pair: String?, addSpecialTokens: Bool = true) -> Encoding {
        let a = tokenize(text)
        guard addSpecialTokens, let cls = clsId, let sep = sepId else {
            let b = pair.map(tokenize) ?? []
            return Encoding(ids: a + b, typeIds: a.map { _ in 0 } + b.map { _ in 1 })
        }
        var ids = [cls] + a + [sep]
        var types = [Int](repeating: 0, count: ids.count)
        if let p = pair {
            let b = tokenize(p)
            ids += b + [sep]
            types += [Int](repeating: 1, count: b.count + 1)
        }
        return Encoding(ids: ids, typeIds: types)
    }
}
