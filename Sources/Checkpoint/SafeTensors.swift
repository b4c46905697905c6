import Numerics

/// One tensor's header entry.
public struct TensorInfo: Equatable, Sendable {
    public var name: String
    public var dtype: DType
    public var shape: [Int]
    /// Offsets relative to the data buffer (after the 8-byte length and the header).
    public var begin: UInt64
    public var end: UInt64

    public var elementCount: Int { shape.reduce(1, *) }
    public var byteCount: Int { Int(end - begin) }
}

/// A zero-copy view of one tensor inside a mapped file.
public struct TensorView: @unchecked Sendable {
    public let info: TensorInfo
    let file: MappedFile
    let offset: Int  // absolute offset in the file

    public var name: String { info.name }
    public var dtype: DType { info.dtype }
    public var shape: [Int] { info.shape }
    /// The mapping the bytes live in (keep it to keep them valid).
    public var mapping: AnyObject { file }

    /// The raw little-endian bytes (valid while the view, which retains the mapping, is alive).
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try file.withBytes { all in
            try body(UnsafeRawBufferPointer(rebasing: all[offset..<(offset + info.byteCount)]))
        }
    }

    /// A copy of the raw bytes, read from the file (pread; no page faults on the mapping).
    public func readBytes() -> [UInt8] {
        file.read(offset: offset, length: info.byteCount) ?? withBytes { [UInt8]($0) }
    }

    /// Drops this tensor's pages from the resident set (see `MappedFile.release`).
    public func release() { file.release(offset: offset, length: info.byteCount) }

    /// Decoded to Float32 (a copy).
    public func toTensor() -> Tensor {
        let values = withBytes { Storage.decode($0, dtype: info.dtype) }
        return Tensor(shape: info.shape, data: values)
    }

    public func stats() -> TensorStats {
        withBytes { raw in
            // Decode in chunks so statistics of a large tensor need no full Float copy.
            var acc: [Float] = []
            var stats = TensorStatsAccumulator()
            let chunk = 1 << 16
            var i = 0
            let n = info.elementCount
            while i < n {
                let m = min(chunk, n - i)
                let sub = UnsafeRawBufferPointer(rebasing: raw[(i * info.dtype.size)..<((i + m) * info.dtype.size)])
                acc = Storage.decode(sub, dtype: info.dtype)
                stats.add(acc)
                i += m
            }
            return stats.result
        }
    }
}

/// A validated, memory-mapped safetensors file.
///
/// Validation follows the reference (`safetensors/src/tensor.rs`) in its order: header length,
/// limit, bounds, UTF-8, JSON, then tensors sorted by offset must tile the buffer from 0 with no hole
/// or overlap, `end - begin == product(shape) * size(dtype)` (overflow-checked), and the buffer must end
/// at the end of the file. Stricter than the reference: duplicate names, a tensor named
/// `__metadata__` and non-string metadata are rejected.
public final class SafeTensorsFile: @unchecked Sendable {
    public static let maxHeaderSize: UInt64 = 100_000_000

    public let path: String
    public let file: MappedFile
    public let headerSize: UInt64
    /// Tensors in file (offset) order.
    public let tensors: [TensorInfo]
    /// `__metadata__` in the order written, or nil if absent.
    public let metadata: [(String, String)]?
    private let index: [String: Int]

    public convenience init(path: String) throws {
        try self.init(file: MappedFile(path: path))
    }

    public init(file: MappedFile) throws {
        self.path = file.path
        self.file = file
        let parsed = try file.withBytes { try SafeTensorsFile.parseHeader($0, path: file.path) }
        headerSize = parsed.headerSize
        tensors = parsed.tensors
        metadata = parsed.metadata
        index = Dictionary(tensors.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { a, _ in a })
    }

    public var names: [String] { tensors.map(\.name) }
    public var dataOffset: Int { 8 + Int(headerSize) }

    public func info(_ name: String) -> TensorInfo? { index[name].map { tensors[$0] } }

    public func contains(_ name: String) -> Bool { index[name] != nil }

    public func view(_ name: String) throws -> TensorView {
        guard let i = index[name] else { throw CheckpointError(path, .tensorNotFound(name)) }
        return view(tensors[i])
    }

    public func view(_ info: TensorInfo) -> TensorView {
        TensorView(info: info, file: file, offset: dataOffset + Int(info.begin))
    }

    public func tensor(_ name: String) throws -> Tensor { try view(name).toTensor() }

    public func metadataValue(_ key: String) -> String? { metadata?.last(where: { $0.0 == key })?.1 }

    // MARK: header validation

    /// Validates the bytes of a whole safetensors file (no file needed): its tensors in offset order and
    /// metadata, or the error the reader would raise. Used by the fuzz targets.
    public static func validate(bytes: UnsafeRawBufferPointer, path: String = "<bytes>") throws -> (
        tensors: [TensorInfo], metadata: [(String, String)]?, dataOffset: Int
    ) {
        let p = try parseHeader(bytes, path: path)
        return (p.tensors, p.metadata, 8 + Int(p.headerSize))
    }

    struct ParsedHeader {
        var headerSize: UInt64
        var tensors: [TensorInfo]
        var metadata: [(String, String)]?
    }

    static func parseHeader(_ bytes: UnsafeRawBufferPointer, path: String) throws -> ParsedHeader {
        func fail(_ k: CheckpointError.Kind) -> CheckpointError { CheckpointError(path, k) }
        guard bytes.count >= 8 else { throw fail(.headerTooSmall(fileSize: bytes.count)) }
        let n = UInt64(littleEndian: bytes.loadUnaligned(as: UInt64.self))
        guard n <= maxHeaderSize else { throw fail(.headerTooLarge(n)) }
        guard 8 + n <= UInt64(bytes.count) else { throw fail(.headerPastEnd(headerSize: n, fileSize: bytes.count)) }
        let headerBytes = UnsafeRawBufferPointer(rebasing: bytes[8..<(8 + Int(n))])
        guard String(validating: headerBytes, as: UTF8.self) != nil else { throw fail(.headerNotUTF8) }
        let json: JSON
        do { json = try JSON.parse(headerBytes) } catch let e as JSONParseError {
            throw fail(.headerNotJSON(e.description))
        }
        guard let pairs = json.objectPairs else { throw fail(.headerNotObject) }

        var metadata: [(String, String)]? = nil
        var infos: [TensorInfo] = []
        var seen = Set<String>()
        var sawMetadata = false
        for (name, value) in pairs {
            if name == "__metadata__" {
                if sawMetadata { throw fail(.duplicateTensor(name)) }
                sawMetadata = true
                if value.isNull { continue }
                guard let mpairs = value.objectPairs else {
                    if value["dtype"] != nil { throw fail(.metadataTensor) }
                    throw fail(.invalidMetadata("must be an object of strings"))
                }
                if value["dtype"] != nil && value["data_offsets"] != nil { throw fail(.metadataTensor) }
                var m: [(String, String)] = []
                var mseen = Set<String>()
                for (k, v) in mpairs {
                    guard let s = v.stringValue else { throw fail(.invalidMetadata("value of '\(k)' is not a string")) }
                    if !mseen.insert(k).inserted { throw fail(.invalidMetadata("key '\(k)' appears twice")) }
                    m.append((k, s))
                }
                metadata = m
                continue
            }
            if !seen.insert(name).inserted { throw fail(.duplicateTensor(name)) }
            guard value.objectPairs != nil else { throw fail(.invalidTensorEntry(tensor: name, "entry is not an object")) }
            guard let dt = value["dtype"] else { throw fail(.invalidTensorEntry(tensor: name, "missing dtype")) }
            guard let dts = dt.stringValue else { throw fail(.invalidTensorEntry(tensor: name, "dtype is not a string")) }
            guard let dtype = DType(rawValue: dts) else { throw fail(.unknownDType(tensor: name, dts)) }
            guard let shapeJSON = value["shape"]?.arrayValue else {
                throw fail(.invalidTensorEntry(tensor: name, "missing or non-array shape"))
            }
            var shape: [Int] = []
            for d in shapeJSON {
                guard let u = d.uint64Value, u <= UInt64(Int.max) else {
                    throw fail(.invalidTensorEntry(tensor: name, "shape entries must be non-negative integers"))
                }
                shape.append(Int(u))
            }
            guard let offs = value["data_offsets"]?.arrayValue, offs.count == 2 else {
                throw fail(.invalidTensorEntry(tensor: name, "data_offsets must be [begin, end]"))
            }
            guard let b = offs[0].uint64Value, let e = offs[1].uint64Value else {
                throw fail(.invalidTensorEntry(tensor: name, "data_offsets must be non-negative integers below 2^64"))
            }
            infos.append(TensorInfo(name: name, dtype: dtype, shape: shape, begin: b, end: e))
        }
        // Sort by offsets (begin, then end), as the reference does, then check the tiling.
        infos.sort { ($0.begin, $0.end) < ($1.begin, $1.end) }
        var start: UInt64 = 0
        for t in infos {
            if t.begin != start || t.end < t.begin { throw fail(.invalidOffsets(tensor: t.name)) }
            start = t.end
            var count: UInt64 = 1
            for d in t.shape {
                let (p, o) = count.multipliedReportingOverflow(by: UInt64(d))
                if o { throw fail(.shapeOverflow(tensor: t.name)) }
                count = p
            }
            let (nbytes, o) = count.multipliedReportingOverflow(by: UInt64(t.dtype.size))
            if o || nbytes > UInt64(Int.max) { throw fail(.shapeOverflow(tensor: t.name)) }
            if t.end - t.begin != nbytes {
                throw fail(.sizeMismatch(tensor: t.name, expected: nbytes, actual: t.end - t.begin))
            }
        }
        let dataSize = UInt64(bytes.count) - 8 - n
        if start != dataSize { throw fail(.bufferMismatch(dataEnd: start, fileDataSize: dataSize)) }
        return ParsedHeader(headerSize: n, tensors: infos, metadata: metadata)
    }
}

// MARK: writing

/// Where a tensor's bytes come from when writing. `.lazy` produces them when the writer reaches the
/// tensor, so peak memory is one tensor whatever the file's size.
public enum TensorSource {
    case bytes([UInt8])
    case view(TensorView)
    case tensor(Tensor)
    case lazy(() throws -> [UInt8])
}

/// One tensor to write.
public struct TensorEntry {
    public var name: String
    public var dtype: DType
    public var shape: [Int]
    public var source: TensorSource

    public init(name: String, dtype: DType, shape: [Int], source: TensorSource) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.source = source
    }

    /// A Float32 tensor stored as `dtype` (rounded to nearest even for f16/bf16).
    public init(name: String, tensor: Tensor, dtype: DType = .f32) {
        self.init(
            name: name, dtype: dtype, shape: tensor.shape,
            source: dtype == .f32
                ? .tensor(tensor)
                : .lazy {
                    Storage.encode(tensor.data, dtype: dtype)
                })
    }

    /// A zero-copy copy of a tensor of another file.
    public init(name: String, view: TensorView) {
        self.init(name: name, dtype: view.dtype, shape: view.shape, source: .view(view))
    }

    public var byteCount: Int { shape.reduce(1, *) * dtype.size }
}

public enum SafeTensorsWriter {
    /// The order the reference writes tensors in: dtype descending (U64 ... BOOL), then name (bytewise).
    public static func referenceOrder(_ a: TensorEntry, _ b: TensorEntry) -> Bool {
        if a.dtype != b.dtype { return a.dtype > b.dtype }
        return a.name.utf8.lexicographicallyPrecedes(b.name.utf8)
    }

    /// The header bytes (compact JSON, `__metadata__` first, space-padded to a multiple of 8) for
    /// entries already in write order.
    public static func header(for entries: [TensorEntry], metadata: [(String, String)]?) -> [UInt8] {
        var pairs: [(String, JSON)] = []
        if let m = metadata {
            pairs.append(("__metadata__", .object(m.map { ($0.0, JSON.string($0.1)) })))
        }
        var offset: UInt64 = 0
        for e in entries {
            let n = UInt64(e.byteCount)
            pairs.append(
                (
                    e.name,
                    .object([
                        ("dtype", .string(e.dtype.rawValue)),
                        ("shape", .array(e.shape.map { JSON.int($0) })),
                        ("data_offsets", .array([.uint(offset), .uint(offset + n)])),
                    ])
                ))
            offset += n
        }
        var bytes = Array(JSON.object(pairs).compact.utf8)
        let extra = (8 - bytes.count % 8) % 8
        bytes.append(contentsOf: repeatElement(UInt8(ascii: " "), count: extra))
        return bytes
    }

    /// Validates entries (unique names, none named `__metadata__`, byte counts) and returns them in write order.
    public static func prepare(_ entries: [TensorEntry], path: String) throws -> [TensorEntry] {
        var seen = Set<String>()
        for e in entries {
            if e.name == "__metadata__" { throw CheckpointError(path, .metadataTensor) }
            if !seen.insert(e.name).inserted { throw CheckpointError(path, .duplicateTensor(e.name)) }
            if e.shape.contains(where: { $0 < 0 }) { throw CheckpointError(path, .invalidTensorEntry(tensor: e.name, "negative dimension")) }
        }
        return entries.sorted(by: referenceOrder)
    }

    /// Writes a safetensors file atomically, one tensor at a time, in the reference's layout
    /// (byte-identical to `safetensors.numpy.save_file` for the same tensors and metadata).
    /// `progress` is called after each tensor with (bytes written, total bytes).
    public static func write(
        _ entries: [TensorEntry], metadata: [(String, String)]? = [("format", "pt")], to path: String,
        prefetch: Int = 0, progress: ((Int, Int) -> Void)? = nil
    ) throws {
        let ordered = try prepare(entries, path: path)
        let header = self.header(for: ordered, metadata: metadata)
        let total = ordered.reduce(0) { $0 + $1.byteCount }
        let w = try AtomicFileWriter(path: path)
        do {
            var len = UInt64(header.count).littleEndian
            try withUnsafeBytes(of: &len) { try w.write($0) }
            try w.write(header)
            var done = 0
            // With `prefetch` > 0, lazily computed tensors are produced on a second thread up to that many
            // entries ahead of the write (computing overlaps writing; at most that many are held).
            try Pipeline.run(
                count: ordered.count, depth: prefetch,
                produce: { i -> [UInt8]? in
                    if case let .lazy(f) = ordered[i].source { return try f() }
                    return nil
                },
                consume: { i, produced in
                    let e = ordered[i]
                    let expected = e.byteCount
                    func check(_ n: Int) throws {
                        if n != expected {
                            throw CheckpointError(path, .sizeMismatch(tensor: e.name, expected: UInt64(expected), actual: UInt64(n)))
                        }
                    }
                    switch e.source {
                    case let .bytes(b):
                        try check(b.count)
                        try w.write(b)
                    case let .view(v):
                        try check(v.info.byteCount)
                        try w.write(from: v.file, offset: v.offset, length: v.info.byteCount)
                        v.release()
                    case let .tensor(t):
                        guard e.dtype == .f32 else {
                            let b = Storage.encode(t.data, dtype: e.dtype)
                            try check(b.count)
                            try w.write(b)
                            break
                        }
                        try check(t.count * 4)
                        #if _endian(little)
                        try t.data.withUnsafeBytes { try w.write($0) }
                        #else
                        try w.write(Storage.encode(t.data, dtype: .f32))
                        #endif
                    case .lazy:
                        let b = produced ?? []
                        try check(b.count)
                        try w.write(b)
                    }
                    done += expected
                    progress?(done, total)
                })
            try w.commit()
        } catch {
            w.abandon()
            throw error
        }
    }
}
