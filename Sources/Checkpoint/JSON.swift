import Numerics

/// A JSON value that keeps object key order and every key as written (duplicates included), so callers
/// can apply format rules that need them: safetensors rejects duplicate tensor names, PEFT's
/// `rank_pattern` is matched in dict order. Numbers keep their literal text, so u64 offsets are exact.
public indirect enum JSON: Equatable, Sendable {
    case null
    case bool(Bool)
    case number(String)
    case string(String)
    case array([JSON])
    case object([(String, JSON)])

    public static func == (a: JSON, b: JSON) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case let (.bool(x), .bool(y)): return x == y
        case let (.number(x), .number(y)): return x == y || (Double(x) != nil && Double(x) == Double(y))
        case let (.string(x), .string(y)): return x == y
        case let (.array(x), .array(y)): return x == y
        case let (.object(x), .object(y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }

    // MARK: accessors

    /// Value of `key` in an object (the last one if the key repeats, as Python's json does).
    public subscript(key: String) -> JSON? {
        guard case let .object(pairs) = self else { return nil }
        return pairs.last(where: { $0.0 == key })?.1
    }

    public var objectPairs: [(String, JSON)]? { if case let .object(p) = self { return p } else { return nil } }
    public var arrayValue: [JSON]? { if case let .array(a) = self { return a } else { return nil } }
    public var stringValue: String? { if case let .string(s) = self { return s } else { return nil } }
    public var boolValue: Bool? { if case let .bool(b) = self { return b } else { return nil } }
    public var isNull: Bool { if case .null = self { return true } else { return false } }

    /// A non-negative integer literal (no sign, fraction or exponent) that fits in UInt64.
    public var uint64Value: UInt64? {
        guard case let .number(s) = self, !s.isEmpty, s.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
        return UInt64(s)
    }

    /// An integer: an integer literal, or a float literal with an integral value (Python writes 16.0).
    public var intValue: Int? {
        guard case let .number(s) = self else { return nil }
        if let i = Int(s) { return i }
        if let d = Double(s), d.rounded() == d, abs(d) < 9.0e15 { return Int(d) }
        return nil
    }

    public var doubleValue: Double? { if case let .number(s) = self { return Double(s) } else { return nil } }

    /// First key that occurs twice in this object, if any.
    public var duplicateKey: String? {
        guard case let .object(pairs) = self else { return nil }
        var seen = Set<String>()
        for (k, _) in pairs where !seen.insert(k).inserted { return k }
        return nil
    }

    public static func int(_ v: Int) -> JSON { .number(String(v)) }
    public static func uint(_ v: UInt64) -> JSON { .number(String(v)) }
    public static func double(_ v: Double) -> JSON {
        if v.isNaN || v.isInfinite { return .null }
        return .number(v.description)
    }
}

// MARK: parsing

public struct JSONParseError: CotoError, Equatable {
    public var subject: String? { nil }
    public let message: String
    public let offset: Int
    public var description: String { "\(message) at byte \(offset)" }
}

extension JSON {
    /// Maximum nesting depth accepted (deeper input is refused, never recursed into).
    public static let maxDepth = 128

    /// Strict RFC 8259 parser: UTF-8 input, no trailing commas, no comments, no NaN, no lone surrogates,
    /// no control characters in strings; only whitespace may follow the value.
    public static func parse(_ bytes: UnsafeRawBufferPointer) throws -> JSON {
        var p = Parser(bytes: bytes)
        p.skipWhitespace()
        let v = try p.value(depth: 0)
        p.skipWhitespace()
        if p.i != bytes.count { throw p.error("trailing characters after the JSON value") }
        return v
    }

    public static func parse<C: Collection>(_ bytes: C) throws -> JSON where C.Element == UInt8 {
        let array = Array(bytes)
        return try array.withUnsafeBytes { try parse($0) }
    }

    public static func parse(string: String) throws -> JSON { try parse(Array(string.utf8)) }
}

private struct Parser {
    let bytes: UnsafeRawBufferPointer
    var i = 0

    init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    func error(_ m: String) -> JSONParseError { JSONParseError(message: m, offset: i) }

    mutating func skipWhitespace() {
        while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x0A || bytes[i] == 0x0D || bytes[i] == 0x09 { i += 1 }
    }

    mutating func value(depth: Int) throws -> JSON {
        guard depth < JSON.maxDepth else { throw error("nesting deeper than \(JSON.maxDepth)") }
        guard i < bytes.count else { throw error("unexpected end of input") }
        switch bytes[i] {
        case UInt8(ascii: "{"):
            i += 1
            var pairs: [(String, JSON)] = []
            skipWhitespace()
            if i < bytes.count, bytes[i] == UInt8(ascii: "}") {
                i += 1
                return .object(pairs)
            }
            while true {
                skipWhitespace()
                guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { throw error("expected a string key") }
                let key = try string()
                skipWhitespace()
                guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { throw error("expected ':'") }
                i += 1
                skipWhitespace()
                pairs.append((key, try value(depth: depth + 1)))
                skipWhitespace()
                guard i < bytes.count else { throw error("unexpected end of input in an object") }
                if bytes[i] == UInt8(ascii: ",") {
                    i += 1
                    continue
                }
                if bytes[i] == UInt8(ascii: "}") {
                    i += 1
                    return .object(pairs)
                }
                throw error("expected ',' or '}'")
            }
        case UInt8(ascii: "["):
            i += 1
            var items: [JSON] = []
            skipWhitespace()
            if i < bytes.count, bytes[i] == UInt8(ascii: "]") {
                i += 1
                return .array(items)
            }
            while true {
                skipWhitespace()
                items.append(try value(depth: depth + 1))
                skipWhitespace()
                guard i < bytes.count else { throw error("unexpected end of input in an array") }
                if bytes[i] == UInt8(ascii: ",") {
                    i += 1
                    continue
                }
                if bytes[i] == UInt8(ascii: "]") {
                    i += 1
                    return .array(items)
                }
                throw error("expected ',' or ']'")
            }
        case UInt8(ascii: "\""):
            return .string(try string())
        case UInt8(ascii: "t"):
            try literal("true")
            return .bool(true)
        case UInt8(ascii: "f"):
            try literal("false")
            return .bool(false)
        case UInt8(ascii: "n"):
            try literal("null")
            return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return .number(try number())
        default:
            throw error("unexpected character")
        }
    }

    mutating func literal(_ word: String) throws {
        let w = Array(word.utf8)
        guard i + w.count <= bytes.count else { throw error("unexpected end of input") }
        for k in 0..<w.count where bytes[i + k] != w[k] { throw error("invalid literal") }
        i += w.count
    }

    mutating func number() throws -> String {
        let start = i
        func digit() -> Bool { i < bytes.count && bytes[i] >= 0x30 && bytes[i] <= 0x39 }
        if bytes[i] == UInt8(ascii: "-") { i += 1 }
        guard digit() else { throw error("invalid number") }
        if bytes[i] == 0x30 { i += 1 } else { while digit() { i += 1 } }
        if i < bytes.count, bytes[i] == UInt8(ascii: ".") {
            i += 1
            guard digit() else { throw error("invalid number") }
            while digit() { i += 1 }
        }
        if i < bytes.count, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
            i += 1
            if i < bytes.count, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
            guard digit() else { throw error("invalid number") }
            while digit() { i += 1 }
        }
        return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<i]), as: UTF8.self)
    }

    mutating func hex4() throws -> UInt32 {
        guard i + 4 <= bytes.count else { throw error("truncated \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[i]
            let d: UInt32
            switch c {
            case 0x30...0x39: d = UInt32(c - 0x30)
            case 0x41...0x46: d = UInt32(c - 0x41 + 10)
            case 0x61...0x66: d = UInt32(c - 0x61 + 10)
            default: throw error("invalid \\u escape")
            }
            v = v << 4 | d
            i += 1
        }
        return v
    }

    mutating func string() throws -> String {
        i += 1  // opening quote
        var out: [UInt8] = []
        var runStart = i
        while true {
            guard i < bytes.count else { throw error("unterminated string") }
            let c = bytes[i]
            if c == UInt8(ascii: "\"") {
                out.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[runStart..<i]))
                i += 1
                break
            }
            if c < 0x20 { throw error("control character in string") }
            if c != UInt8(ascii: "\\") {
                i += 1
                continue
            }
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[runStart..<i]))
            i += 1
            guard i < bytes.count else { throw error("unterminated escape") }
            let e = bytes[i]
            i += 1
            switch e {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5C)
            case UInt8(ascii: "/"): out.append(0x2F)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try hex4()
                if (0xD800..<0xDC00).contains(scalar) {
                    guard i + 1 < bytes.count, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") else {
                        throw error("lone surrogate in \\u escape")
                    }
                    i += 2
                    let low = try hex4()
                    guard (0xDC00..<0xE000).contains(low) else { throw error("lone surrogate in \\u escape") }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00..<0xE000).contains(scalar) {
                    throw error("lone surrogate in \\u escape")
                }
                guard let u = Unicode.Scalar(scalar) else { throw error("invalid \\u escape") }
                out.append(contentsOf: Array(String(Character(u)).utf8))
            default:
                throw error("invalid escape")
            }
            runStart = i
        }
        guard let s = String(validating: out, as: UTF8.self) else { throw error("invalid UTF-8 in string") }
        return s
    }
}

// MARK: serialization

extension JSON {
    /// Compact serialization as serde_json writes it (no spaces, non-ASCII kept as UTF-8).
    public var compact: String {
        var out = ""
        write(into: &out, indent: nil, level: 0, asciiOnly: false)
        return out
    }

    /// Indented serialization as Python's `json.dumps(indent=2)` writes it (non-ASCII escaped).
    public var pretty: String {
        var out = ""
        write(into: &out, indent: 2, level: 0, asciiOnly: true)
        return out
    }

    private func write(into out: inout String, indent: Int?, level: Int, asciiOnly: Bool) {
        func newline(_ l: Int) {
            guard let ind = indent else { return }
            out += "\n" + String(repeating: " ", count: ind * l)
        }
        switch self {
        case .null: out += "null"
        case let .bool(b): out += b ? "true" : "false"
        case let .number(s): out += s
        case let .string(s): JSON.writeString(s, into: &out, asciiOnly: asciiOnly)
        case let .array(items):
            if items.isEmpty {
                out += "[]"
                return
            }
            out += "["
            for (k, v) in items.enumerated() {
                if k > 0 { out += "," }
                newline(level + 1)
                v.write(into: &out, indent: indent, level: level + 1, asciiOnly: asciiOnly)
            }
            newline(level)
            out += "]"
        case let .object(pairs):
            if pairs.isEmpty {
                out += "{}"
                return
            }
            out += "{"
            for (k, (key, v)) in pairs.enumerated() {
                if k > 0 { out += "," }
                newline(level + 1)
                JSON.writeString(key, into: &out, asciiOnly: asciiOnly)
                out += indent == nil ? ":" : ": "
                v.write(into: &out, indent: indent, level: level + 1, asciiOnly: asciiOnly)
            }
            newline(level)
            out += "}"
        }
    }

    static func writeString(_ s: String, into out: inout String, asciiOnly: Bool) {
        let hex: [Character] = Array("0123456789abcdef")
        func u4(_ v: UInt32) {
            out += "\\u"
            for shift in [12, 8, 4, 0] { out.append(hex[Int((v >> UInt32(shift)) & 0xF)]) }
        }
        out += "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if scalar.value < 0x20 {
                    u4(scalar.value)
                } else if asciiOnly && scalar.value > 0x7F {
                    if scalar.value >= 0x10000 {
                        let v = scalar.value - 0x10000
                        u4(0xD800 + (v >> 10))
                        u4(0xDC00 + (v & 0x3FF))
                    } else {
                        u4(scalar.value)
                    }
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out += "\""
    }
}
