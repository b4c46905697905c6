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
/// ggml's tensor types (gguf-py's `GGMLQuantizationType`), with their block shapes (`GGML_QUANT_SIZES`) so a
/// file holding any of them parses; `canDequantize` says which coto turns into Float32 (the others, the
/// i-quants and ternary types among them, are refused in one line naming the type).
public enum GGMLType: UInt32, Sendable, CaseIterable {
    case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q8_1 = 9
    case q2_k = 10, q3_k = 11, q4_k = 12, q5_k = 13, q6_k = 14, q8_k = 15
    case iq2_xxs = 16, iq2_xs = 17, iq3_xxs = 18, iq1_s = 19, iq4_nl = 20, iq3_s = 21, iq2_s = 22, iq4_xs = 23
    case i8 = 24, i16 = 25, i32 = 26, i64 = 27, f64 = 28, iq1_m = 29, bf16 = 30
    case tq1_0 = 34, tq2_0 = 35, mxfp4 = 39

    /// (elements per block, bytes per block)
    public var block: (Int, Int) {
        let qk = 256
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
        case .iq2_xxs: return (qk, 2 + qk / 4)
        case .iq2_xs: return (qk, 2 + qk / 4 + qk / 32)
        case .iq3_xxs: return (qk, 2 + qk / 4 + qk / 8)
        case .iq1_s: return (qk, 2 + qk / 8 + qk / 16)
        case .iq4_nl: return (32, 18)
        case .iq3_s: return (qk, 2 + qk / 4 + qk / 8 + qk / 32 + 4)
        case .iq2_s: return (qk, 2 + qk / 4 + qk / 16)
        case .iq4_xs: return (qk, 4 + qk / 2 + qk / 64)
        case .iq1_m: return (qk, qk / 8 + qk / 16 + qk / 32)
        case .tq1_0: return (qk, 2 + 4 * 13)
        case .tq2_0: return (qk, 2 + 64)
        case .mxfp4: return (32, 17)
        }
    }

    /// gguf-py's spelling: "Q4_K", "IQ2_XXS", "BF16".
    public var name: String { "\(self)".uppercased() }

    public var canDequantize: Bool {
        switch self {
        case .f32, .f16, .bf16, .q8_0, .q4_0, .q4_1, .q5_0, .q5_1, .q2_k, .q3_k, .q4_k, .q5_k, .q6_k, .q8_k: return true
        default: return false
        }
    }

    /// "F32, F16, ..., Q8_K": what `canDequantize` accepts, for error messages.
    public static var dequantizable: String { allCases.filter(\.canDequantize).map(\.name).joined(separator: ", ") }

    /// The one-line refusal of a type coto does not dequantize.
    public var refusal: String {
        let kind = "\(self)".hasPrefix("iq") ? "an i-quant" : "a type"
        return "type \(name) is \(kind) coto does not dequantize (supported: \(GGMLType.dequantizable))"
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
            throw CheckpointError(path, .invalid("tensor '\(name)': \(t.type.refusal)"))
        }
        let values = withRawBytes(t) { GGUFFile.dequantize($0, type: t.type, count: t.elementCount) }
        return Tensor(shape: t.shape, data: values)
    }

}
