#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Crypto
import Foundation

/// The release of the coto tools; part of every configuration hash (a different release may compute different
/// numbers, so its shards never join an older one's).
public enum CotoVersion {
    public static let string = "0.14.0"
}

/// SHA-256 of bytes, text and files, as lowercase hex, through swift-crypto (`Crypto.SHA256`: BoringSSL's
/// implementation, with the SHA-NI and AVX2 paths where the CPU has them).
public enum SHA256 {
    public static func hex(_ bytes: [UInt8]) -> String { hex(Crypto.SHA256.hash(data: bytes)) }

    public static func hex(_ text: String) -> String { hex(Array(text.utf8)) }

    /// The digest of a file's bytes, streamed over its mapping in 4 MiB pieces; each piece's pages leave this
    /// process's resident set once hashed, so hashing a model file does not hold it in memory.
    public static func file(_ path: String) throws -> String {
        let file = try MappedFile(path: path)
        file.adviseSequential()
        var hasher = Crypto.SHA256()
        let piece = 4 << 20
        file.withBytes { all in
            var offset = 0
            while offset < all.count {
                let n = min(piece, all.count - offset)
                hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: all[offset..<(offset + n)]))
                file.release(offset: offset, length: n)
                offset += n
            }
        }
        return hex(hasher.finalize())
    }

    private static func hex(_ digest: Crypto.SHA256.Digest) -> String {
        digest.map { String(format: "%02x", $0) }.joined()
    }
}

/// The content digest of one input of a sweep or a training run: a file's SHA-256, or for a directory the
/// SHA-256 of the sorted `name<TAB>sha256` lines of the files its loader reads.
public struct InputDigest: Codable, Sendable, Equatable {
    /// model, adapter, data, eval-data, ...
    public var role: String
    public var path: String
    public var sha256: String

    public init(role: String, path: String, sha256: String) {
        (self.role, self.path, self.sha256) = (role, path, sha256)
    }

    /// A model: a GGUF file, or a directory's weights, configs and tokenizer files (`.safetensors`, `.json`,
    /// `.txt`, `.gguf`, `.model`; not READMEs or hidden files).
    public static func model(_ path: String) throws -> InputDigest {
        try of(path, role: "model") { n in
            !n.hasPrefix(".") && [".safetensors", ".json", ".txt", ".gguf", ".model"].contains { n.hasSuffix($0) }
        }
    }

    /// An adapter: a bare `.safetensors` file, or a PEFT directory's config, weights, label list and variant
    /// (not the training log or metrics beside them).
    public static func adapter(_ path: String) throws -> InputDigest {
        try of(path, role: "adapter") { [Adapter.configFile, Adapter.weightsFile, Adapter.labelsFile, Adapter.cotoFile].contains($0) }
    }

    /// A data file.
    public static func file(_ path: String, role: String) throws -> InputDigest {
        try of(path, role: role) { _ in true }
    }

    static func of(_ path: String, role: String, _ include: (String) -> Bool) throws -> InputDigest {
        guard FileSystem.exists(path) else { throw CheckpointError(path, .notFound) }
        guard FileSystem.isDirectory(path) else { return InputDigest(role: role, path: path, sha256: try SHA256.file(path)) }
        var lines = ""
        for n in try FileSystem.listDirectory(path).sorted() where include(n) {
            let p = FileSystem.join(path, n)
            guard !FileSystem.isDirectory(p) else { continue }
            lines += "\(n)\t\(try SHA256.file(p))\n"
        }
        return InputDigest(role: role, path: path, sha256: SHA256.hex(lines))
    }
}

/// What a result was computed from: the inputs' content digests, the options that change numbers, the code
/// version, and `hash` over all of them (and the result's identity). Two results with the same hash were
/// computed from the same configuration; shards join only if their hashes agree.
/// Paths are recorded but not hashed: moving the inputs does not change a configuration.
public struct ConfigRecord: Codable, Sendable, Equatable {
    public var hash: String
    public var version: String
    public var inputs: [InputDigest]
    public var options: [String: String]

    /// `identity`: what the result is (the sweep and its settings, or a training cell).
    public init(identity: String, inputs: [InputDigest], options: [String: String], version: String = CotoVersion.string) {
        var text = "coto-config-v1\nversion \(version)\nidentity \(identity)\n"
        for i in inputs { text += "input \(i.role) \(i.sha256)\n" }
        for k in options.keys.sorted() { text += "option \(k)=\(options[k]!)\n" }
        (self.hash, self.version, self.inputs, self.options) = (SHA256.hex(text), version, inputs, options)
    }

    /// The first 12 hex digits (what messages show).
    public var short: String { String(hash.prefix(12)) }

    /// What changed from `other` (the earlier configuration) to this one, one phrase each ("batch_size 32 → 8";
    /// empty when only the identity differs).
    public func differences(from other: ConfigRecord) -> [String] {
        var out: [String] = []
        if version != other.version { out.append("coto version \(other.version) → \(version)") }
        for (i, mine) in inputs.enumerated() {
            guard i < other.inputs.count else {
                out.append("\(mine.role) \(mine.path) is new")
                continue
            }
            let theirs = other.inputs[i]
            if theirs.sha256 != mine.sha256 || theirs.role != mine.role { out.append("\(mine.role) \(mine.path) has other content") }
        }
        if other.inputs.count > inputs.count { out.append("\(other.inputs.count - inputs.count) fewer inputs") }
        for k in Set(options.keys).union(other.options.keys).sorted() where options[k] != other.options[k] {
            out.append("\(k) \(other.options[k] ?? "unset") → \(options[k] ?? "unset")")
        }
        return out
    }

    enum CodingKeys: String, CodingKey { case hash, version, inputs, options }
}
