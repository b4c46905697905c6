import Numerics

/// Every error the checkpoint layer raises: the file it concerns and the cause, rendered as one line
/// `FILE: cause` by the CLIs.
public struct CheckpointError: CotoError, Equatable, Sendable {
    public enum Kind: Equatable, Sendable {
        // I/O
        case notFound
        case isDirectory
        case notDirectory
        case io(String)
        // safetensors header, in the reference's order of checks
        case headerTooSmall(fileSize: Int)
        case headerTooLarge(UInt64)
        case headerPastEnd(headerSize: UInt64, fileSize: Int)
        case headerNotUTF8
        case headerNotJSON(String)
        case headerNotObject
        case invalidTensorEntry(tensor: String, String)
        case unknownDType(tensor: String, String)
        case duplicateTensor(String)
        case metadataTensor
        case invalidMetadata(String)
        case invalidOffsets(tensor: String)
        case shapeOverflow(tensor: String)
        case sizeMismatch(tensor: String, expected: UInt64, actual: UInt64)
        case bufferMismatch(dataEnd: UInt64, fileDataSize: UInt64)
        // lookups and other formats
        case tensorNotFound(String)
        case invalid(String)
    }

    public let path: String
    public let kind: Kind

    public init(_ path: String, _ kind: Kind) {
        self.path = path
        self.kind = kind
    }

    public var message: String {
        switch kind {
        case .notFound: return "no such file or directory"
        case .isDirectory: return "is a directory, expected a file"
        case .notDirectory: return "is not a directory"
        case let .io(m): return m
        case let .headerTooSmall(size): return "not a safetensors file: \(size) bytes, too small for the 8-byte header length"
        case let .headerTooLarge(n): return "safetensors header length \(n) exceeds the 100000000-byte limit"
        case let .headerPastEnd(n, size): return "safetensors header length \(n) runs past the end of the \(size)-byte file (truncated?)"
        case .headerNotUTF8: return "safetensors header is not valid UTF-8"
        case let .headerNotJSON(m): return "safetensors header is not valid JSON: \(m)"
        case .headerNotObject: return "safetensors header is not a JSON object"
        case let .invalidTensorEntry(t, m): return "tensor '\(t)': \(m)"
        case let .unknownDType(t, d): return "tensor '\(t)': unknown dtype '\(d)'"
        case let .duplicateTensor(t): return "tensor '\(t)' is declared twice in the header"
        case .metadataTensor: return "'__metadata__' must be a string-to-string map, not a tensor"
        case let .invalidMetadata(m): return "__metadata__: \(m)"
        case let .invalidOffsets(t): return "tensor '\(t)': data_offsets leave a hole or overlap another tensor"
        case let .shapeOverflow(t): return "tensor '\(t)': shape x dtype size overflows"
        case let .sizeMismatch(t, e, a): return "tensor '\(t)': shape and dtype need \(e) bytes but data_offsets span \(a)"
        case let .bufferMismatch(end, size):
            return end < size
                ? "\(size - end) trailing bytes after the last tensor (data ends at \(end) of \(size))"
                : "file truncated: tensors need \(end) data bytes, file has \(size)"
        case let .tensorNotFound(t): return "no tensor named '\(t)'"
        case let .invalid(m): return m
        }
    }

    public var subject: String? { path }
}
