import Numerics

// The GGUF parser: one ordered validation pass over header, metadata, tensor infos and data.

extension GGUFFile {
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
