import Numerics

/// A GGUF metadata value (all types of GGUF v2/v3).
public indirect enum GGUFValue: Equatable, Sendable {
    case u8(UInt8), i8(Int8), u16(UInt16), i16(Int16), u32(UInt32), i32(Int32), f32(Float)
    case bool(Bool), string(String), array(GGUFArray), u64(UInt64), i64(Int64), f64(Double)

    public var typeName: String {
        switch self {
        case .u8: return "u8"
        case .i8: return "i8"
        case .u16: return "u16"
        case .i16: return "i16"
        case .u32: return "u32"
        case .i32: return "i32"
        case .f32: return "f32"
        case .bool: return "bool"
        case .string: return "string"
        case .u64: return "u64"
        case .i64: return "i64"
        case .f64: return "f64"
        case let .array(a): return "array[\(a.count)]"
        }
    }

    /// Integer value of any integer type (and bool).
    public var int: Int? {
        switch self {
        case let .u8(v): return Int(v)
        case let .i8(v): return Int(v)
        case let .u16(v): return Int(v)
        case let .i16(v): return Int(v)
        case let .u32(v): return Int(v)
        case let .i32(v): return Int(v)
        case let .u64(v): return v <= UInt64(Int.max) ? Int(v) : nil
        case let .i64(v): return Int(v)
        case let .bool(b): return b ? 1 : 0
        default: return nil
        }
    }

    public var double: Double? {
        switch self {
        case let .f32(v): return Double(v)
        case let .f64(v): return v
        default: return int.map(Double.init)
        }
    }

    public var string: String? { if case let .string(s) = self { return s } else { return nil } }
    public var bool: Bool? { if case let .bool(b) = self { return b } else { return nil } }

    /// A short human-readable rendering (arrays summarized).
    public var summary: String {
        switch self {
        case let .string(s): return s.count > 80 ? String(s.prefix(77)).debugDescription + "…" : s.debugDescription
        case let .array(a): return "[\(a.count) × \(a.elementType)]"
        case let .f32(v): return "\(v)"
        case let .f64(v): return "\(v)"
        case let .bool(b): return "\(b)"
        default: return int.map(String.init) ?? "?"
        }
    }
}

/// A GGUF array value. Strings and numbers are decoded on demand from the mapped file.
public struct GGUFArray: Equatable, Sendable {
    public let elementType: String
    public let count: Int
    public let values: [GGUFValue]
}

/// ggml tensor types we know the sizes of (and dequantize where marked).
public enum GGMLType: UInt32, Sendable {
    case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q8_1 = 9
    case q2_k = 10, q3_k = 11, q4_k = 12, q5_k = 13, q6_k = 14, q8_k = 15
    case i8 = 24, i16 = 25, i32 = 26, i64 = 27, f64 = 28, bf16 = 30

    /// (elements per block, bytes per block)
    public var block: (Int, Int) {
        switch self {
        case .f32: return (1, 4)
        case .f16: return (1, 2)
        case .bf16: return (1, 2)
        case .f64: return (1, 8)
        case .i8: return (1, 1)
        case .i16: return (1, 2)
        case .i32: return (1, 4)
        case .i64: return (1, 8)
        case .q4_0: return (32, 18)
        case .q4_1: return (32, 20)
        case .q5_0: return (32, 22)
        case .q5_1: return (32, 24)
        case .q8_0: return (32, 34)
        case .q8_1: return (32, 36)
        case .q2_k: return (256, 84)
        case .q3_k: return (256, 110)
        case .q4_k: return (256, 144)
        case .q5_k: return (256, 176)
        case .q6_k: return (256, 210)
        case .q8_k: return (256, 292)
        }
    }

    public var name: String {
        switch self {
        case .f32: return "F32"
        case .f16: return "F16"
        case .bf16: return "BF16"
        case .f64: return "F64"
        case .i8: return "I8"
        case .i16: return "I16"
        case .i32: return "I32"
        case .i64: return "I64"
        case .q4_0: return "Q4_0"
        case .q4_1: return "Q4_1"
        case .q5_0: return "Q5_0"
        case .q5_1: return "Q5_1"
        case .q8_0: return "Q8_0"
        case .q8_1: return "Q8_1"
        case .q2_k: return "Q2_K"
        case .q3_k: return "Q3_K"
        case .q4_k: return "Q4_K"
        case .q5_k: return "Q5_K"
        case .q6_k: return "Q6_K"
        case .q8_k: return "Q8_K"
        }
    }

    public var canDequantize: Bool {
        switch self {
        case .f32, .f16, .bf16, .q8_0, .q4_0, .q4_1: return true
        default: return false
        }
    }
}

/// One tensor of a GGUF file.
public struct GGUFTensorInfo: Equatable, Sendable {
    public var name: String
    /// ggml order: dims[0] varies fastest (columns).
    public var dims: [Int]
    public var type: GGMLType
    /// Relative to the data section.
    public var offset: UInt64
    public var byteCount: Int

    /// PyTorch/safetensors order (reversed dims).
    public var shape: [Int] { dims.reversed() }
    public var elementCount: Int { dims.reduce(1, *) }
}

/// A validated, memory-mapped GGUF file (llama.cpp), versions 2 and 3, little-endian.
public final class GGUFFile: @unchecked Sendable {
    public static let maxDims = 4
    public let path: String
    public let file: MappedFile
    public let version: UInt32
    public let metadata: [(String, GGUFValue)]
    public let tensors: [GGUFTensorInfo]
    public let alignment: Int
    public let dataOffset: Int
    private let index: [String: Int]
    private let metaIndex: [String: Int]

    public convenience init(path: String) throws { try self.init(file: MappedFile(path: path)) }

    public init(file: MappedFile) throws {
        path = file.path
        self.file = file
        let parsed = try file.withBytes { try GGUFFile.parse($0, path: file.path) }
        version = parsed.version
        metadata = parsed.metadata
        tensors = parsed.tensors
        alignment = parsed.alignment
        dataOffset = parsed.dataOffset
        index = Dictionary(tensors.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { a, _ in a })
        metaIndex = Dictionary(metadata.enumerated().map { ($1.0, $0) }, uniquingKeysWith: { a, _ in a })
    }

    public subscript(key: String) -> GGUFValue? { metaIndex[key].map { metadata[$0].1 } }
    public func tensorInfo(named name: String) -> GGUFTensorInfo? { index[name].map { tensors[$0] } }

    /// The raw bytes of a tensor (valid while `self` is alive).
    public func withRawBytes<R>(_ t: GGUFTensorInfo, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try file.withBytes { all in
            let start = dataOffset + Int(t.offset)
            return try body(UnsafeRawBufferPointer(rebasing: all[start..<(start + t.byteCount)]))
        }
    }

    /// A tensor dequantized to Float32, in PyTorch shape order.
    public func dequantize(_ name: String) throws -> Tensor {
        guard let t = tensorInfo(named: name) else { throw CheckpointError(path, .tensorNotFound(name)) }
        guard t.type.canDequantize else {
            throw CheckpointError(path, .invalid("tensor '\(name)': type \(t.type.name) cannot be dequantized (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1)"))
        }
        let values = withRawBytes(t) { GGUFFile.dequantize($0, type: t.type, count: t.elementCount) }
        return Tensor(shape: t.shape, data: values)
    }

}
