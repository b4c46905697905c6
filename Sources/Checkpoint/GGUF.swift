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

    /// Dequantizes `count` elements (a whole number of blocks, checked by the parser).
    public static func dequantize(_ raw: UnsafeRawBufferPointer, type: GGMLType, count: Int) -> [Float] {
        var out = [Float](repeating: 0, count: count)
        out.withUnsafeMutableBufferPointer { y in
            @inline(__always) func f16(_ off: Int) -> Float {
                Codec.f16ToFloat(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: off, as: UInt16.self)))
            }
            switch type {
            case .f32: Storage.decode(raw, dtype: .f32, into: y)
            case .f16: Storage.decode(raw, dtype: .f16, into: y)
            case .bf16: Storage.decode(raw, dtype: .bf16, into: y)
            case .q8_0:
                for b in 0..<(count / 32) {
                    let base = b * 34
                    let d = f16(base)
                    for j in 0..<32 { y[b * 32 + j] = Float(Int8(bitPattern: raw[base + 2 + j])) * d }
                }
            case .q4_0:
                for b in 0..<(count / 32) {
                    let base = b * 18
                    let d = f16(base)
                    for j in 0..<16 {
                        let q = raw[base + 2 + j]
                        y[b * 32 + j] = Float(Int(q & 0xF) - 8) * d
                        y[b * 32 + j + 16] = Float(Int(q >> 4) - 8) * d
                    }
                }
            case .q4_1:
                for b in 0..<(count / 32) {
                    let base = b * 20
                    let d = f16(base)
                    let m = f16(base + 2)
                    for j in 0..<16 {
                        let q = raw[base + 4 + j]
                        y[b * 32 + j] = Float(q & 0xF) * d + m
                        y[b * 32 + j + 16] = Float(q >> 4) * d + m
                    }
                }
            default: break
            }
        }
        return out
    }

    // MARK: parsing

    /// Validates GGUF bytes (no file needed); returns tensor infos and the data offset. Used by the fuzz targets.
    public static func validate(bytes: UnsafeRawBufferPointer, path: String = "<bytes>") throws -> (
        metadata: [(String, GGUFValue)], tensors: [GGUFTensorInfo], dataOffset: Int
    ) {
        let p = try parse(bytes, path: path)
        return (p.metadata, p.tensors, p.dataOffset)
    }

    struct Parsed {
        var version: UInt32
        var metadata: [(String, GGUFValue)]
        var tensors: [GGUFTensorInfo]
        var alignment: Int
        var dataOffset: Int
    }

    /// A bounds-checked little-endian cursor. Every count read from the file is checked against the
    /// bytes that remain before anything is allocated for it.
    struct Cursor {
        let bytes: UnsafeRawBufferPointer
        let path: String
        var pos = 0
        var remaining: Int { bytes.count - pos }

        func fail(_ m: String) -> CheckpointError { CheckpointError(path, .invalid("GGUF: \(m) (at byte \(pos))")) }

        mutating func read<T: FixedWidthInteger>(_: T.Type, _ what: String) throws -> T {
            guard remaining >= MemoryLayout<T>.size else { throw fail("truncated while reading \(what)") }
            let v = T(littleEndian: bytes.loadUnaligned(fromByteOffset: pos, as: T.self))
            pos += MemoryLayout<T>.size
            return v
        }

        mutating func string(_ what: String) throws -> String {
            let n = try read(UInt64.self, "\(what) length")
            guard n <= UInt64(remaining) else { throw fail("\(what) length \(n) runs past the end of the file") }
            let s = UnsafeRawBufferPointer(rebasing: bytes[pos..<(pos + Int(n))])
            pos += Int(n)
            guard let str = String(validating: s, as: UTF8.self) else { throw fail("\(what) is not valid UTF-8") }
            return str
        }

        mutating func value(type: UInt32, key: String, depth: Int = 0) throws -> GGUFValue {
            switch type {
            case 0: return .u8(try read(UInt8.self, key))
            case 1: return .i8(try read(Int8.self, key))
            case 2: return .u16(try read(UInt16.self, key))
            case 3: return .i16(try read(Int16.self, key))
            case 4: return .u32(try read(UInt32.self, key))
            case 5: return .i32(try read(Int32.self, key))
            case 6: return .f32(Float(bitPattern: try read(UInt32.self, key)))
            case 7:
                let b = try read(UInt8.self, key)
                guard b <= 1 else { throw fail("bool value \(b) of '\(key)' is not 0 or 1") }
                return .bool(b == 1)
            case 8: return .string(try string("value of '\(key)'"))
            case 9:
                guard depth == 0 else { throw fail("nested array in '\(key)'") }
                let et = try read(UInt32.self, "array type of '\(key)'")
                let n = try read(UInt64.self, "array length of '\(key)'")
                let minSize: UInt64
                switch et {
                case 0, 1, 7: minSize = 1
                case 2, 3: minSize = 2
                case 4, 5, 6: minSize = 4
                case 8, 10, 11, 12: minSize = 8
                case 9: throw fail("nested array in '\(key)'")
                default: throw fail("unknown array element type \(et) in '\(key)'")
                }
                let (need, o) = n.multipliedReportingOverflow(by: minSize)
                guard !o, need <= UInt64(remaining) else { throw fail("array '\(key)' of \(n) elements runs past the end of the file") }
                var vals: [GGUFValue] = []
                vals.reserveCapacity(Int(n))
                for _ in 0..<Int(n) { vals.append(try value(type: et, key: key, depth: depth + 1)) }
                let names = ["u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"]
                return .array(GGUFArray(elementType: names[Int(et)], count: Int(n), values: vals))
            case 10: return .u64(try read(UInt64.self, key))
            case 11: return .i64(try read(Int64.self, key))
            case 12: return .f64(Double(bitPattern: try read(UInt64.self, key)))
            default: throw fail("unknown metadata value type \(type) for '\(key)'")
            }
        }
    }

    static func parse(_ bytes: UnsafeRawBufferPointer, path: String) throws -> Parsed {
        var c = Cursor(bytes: bytes, path: path)
        guard bytes.count >= 4, bytes[0] == 0x47, bytes[1] == 0x47, bytes[2] == 0x55, bytes[3] == 0x46 else {
            throw CheckpointError(path, .invalid("not a GGUF file (magic is not 'GGUF')"))
        }
        c.pos = 4
        let version = try c.read(UInt32.self, "version")
        guard version == 2 || version == 3 else {
            if version.byteSwapped == 2 || version.byteSwapped == 3 {
                throw CheckpointError(path, .invalid("big-endian GGUF is not supported"))
            }
            throw CheckpointError(path, .invalid("GGUF version \(version) is not supported (2 and 3 are)"))
        }
        let nTensors = try c.read(UInt64.self, "tensor count")
        let nKV = try c.read(UInt64.self, "metadata count")
        // Each KV needs at least 8 (key length) + 4 (type) + 1 bytes; each tensor info at least 8 + 4 + 4 + 8.
        guard nKV <= UInt64(c.remaining) / 13 else { throw c.fail("metadata count \(nKV) is larger than the file can hold") }
        guard nTensors <= UInt64(c.remaining) / 24 else { throw c.fail("tensor count \(nTensors) is larger than the file can hold") }
        var metadata: [(String, GGUFValue)] = []
        var seenKeys = Set<String>()
        for _ in 0..<Int(nKV) {
            let key = try c.string("metadata key")
            guard seenKeys.insert(key).inserted else { throw c.fail("metadata key '\(key)' appears twice") }
            let type = try c.read(UInt32.self, "type of '\(key)'")
            metadata.append((key, try c.value(type: type, key: key)))
        }
        var alignment = 32
        if let a = metadata.first(where: { $0.0 == "general.alignment" })?.1 {
            guard let v = a.int, v > 0, v <= 1 << 20, v & (v - 1) == 0 else {
                throw CheckpointError(path, .invalid("GGUF: general.alignment must be a power of two (got \(a.summary))"))
            }
            alignment = v
        }
        var infos: [GGUFTensorInfo] = []
        var seen = Set<String>()
        for _ in 0..<Int(nTensors) {
            let name = try c.string("tensor name")
            guard seen.insert(name).inserted else { throw c.fail("tensor '\(name)' appears twice") }
            let nd = try c.read(UInt32.self, "dimension count of '\(name)'")
            guard nd >= 1 && nd <= UInt32(maxDims) else { throw c.fail("tensor '\(name)' has \(nd) dimensions (1...\(maxDims) allowed)") }
            var dims: [Int] = []
            var count: UInt64 = 1
            for _ in 0..<Int(nd) {
                let d = try c.read(UInt64.self, "dimension of '\(name)'")
                // Each dimension on its own must be representable (a zero elsewhere keeps the product small).
                guard d <= UInt64(Int.max) / 8 else { throw c.fail("tensor '\(name)': dimension \(d) is too large") }
                let (p, o) = count.multipliedReportingOverflow(by: d)
                guard !o, p <= UInt64(Int.max) / 8 else { throw c.fail("tensor '\(name)': element count overflows") }
                count = p
                dims.append(Int(d))
            }
            let rawType = try c.read(UInt32.self, "type of '\(name)'")
            guard let type = GGMLType(rawValue: rawType) else { throw c.fail("tensor '\(name)' has unknown ggml type \(rawType)") }
            let offset = try c.read(UInt64.self, "offset of '\(name)'")
            let (per, size) = type.block
            guard dims[0] % per == 0 else {
                throw c.fail("tensor '\(name)': first dimension \(dims[0]) is not a multiple of the \(type.name) block size \(per)")
            }
            let (bytesNeeded, o) = (count / UInt64(per)).multipliedReportingOverflow(by: UInt64(size))
            guard !o, bytesNeeded <= UInt64(Int.max) else { throw c.fail("tensor '\(name)': byte size overflows") }
            guard offset % UInt64(alignment) == 0 else { throw c.fail("tensor '\(name)': offset \(offset) is not aligned to \(alignment)") }
            infos.append(GGUFTensorInfo(name: name, dims: dims, type: type, offset: offset, byteCount: Int(bytesNeeded)))
        }
        let dataOffset = (c.pos + alignment - 1) / alignment * alignment
        let dataSize = UInt64(max(0, bytes.count - dataOffset))
        // Every tensor inside the data section, and no two overlapping.
        let sorted = infos.sorted { $0.offset < $1.offset }
        var prevEnd: UInt64 = 0
        var prevName = ""
        for t in sorted {
            let (end, o) = t.offset.addingReportingOverflow(UInt64(t.byteCount))
            guard !o, end <= dataSize else {
                throw CheckpointError(
                    path, .invalid("GGUF: tensor '\(t.name)' (\(t.byteCount) bytes at data offset \(t.offset)) runs past the end of the file (truncated?)"))
            }
            guard t.offset >= prevEnd else {
                throw CheckpointError(path, .invalid("GGUF: tensor '\(t.name)' overlaps tensor '\(prevName)'"))
            }
            prevEnd = end
            prevName = t.name
        }
        return Parsed(version: version, metadata: metadata, tensors: infos, alignment: alignment, dataOffset: dataOffset)
    }
}
