import Checkpoint

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
