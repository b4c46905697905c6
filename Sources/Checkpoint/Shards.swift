import Numerics

/// A sharded checkpoint read through `model.safetensors.index.json`. Lazy: a shard is opened (mapped
/// and validated) the first time one of its tensors is asked for.
public final class ShardedCheckpoint: TensorStore, @unchecked Sendable {
    public let indexPath: String
    public let directory: String
    /// `metadata.total_size` as declared, if present.
    public let declaredTotalSize: UInt64?
    /// Tensor name -> shard file name, in the index's order.
    public let weightMap: [(String, String)]
    private let shardOf: [String: String]
    private var opened: [String: SafeTensorsFile] = [:]

    public convenience init(indexPath: String) throws {
        try self.init(indexBytes: FileSystem.readFile(indexPath, limit: 256 << 20), indexPath: indexPath)
    }

    /// Parses an index from its bytes (shards are opened lazily, relative to the index's directory).
    public init(indexBytes bytes: [UInt8], indexPath: String) throws {
        self.indexPath = indexPath
        self.directory = FileSystem.dirname(of: indexPath)
        let json: JSON
        do { json = try JSON.parse(bytes) } catch let e as JSONParseError {
            throw CheckpointError(indexPath, .invalid("index is not valid JSON: \(e)"))
        }
        guard json.objectPairs != nil else { throw CheckpointError(indexPath, .invalid("index is not a JSON object")) }
        if let meta = json["metadata"], !meta.isNull {
            guard meta.objectPairs != nil else { throw CheckpointError(indexPath, .invalid("\"metadata\" is not an object")) }
            if let ts = meta["total_size"] {
                guard let v = ts.uint64Value ?? ts.doubleValue.flatMap({ $0 >= 0 && $0 < 1.8e19 && $0.rounded() == $0 ? UInt64($0) : nil }) else {
                    throw CheckpointError(indexPath, .invalid("metadata.total_size is not a non-negative integer"))
                }
                declaredTotalSize = v
            } else {
                declaredTotalSize = nil
            }
        } else {
            declaredTotalSize = nil
        }
        guard let wm = json["weight_map"]?.objectPairs else {
            throw CheckpointError(indexPath, .invalid("index has no \"weight_map\" object"))
        }
        if let dup = json["weight_map"]?.duplicateKey {
            throw CheckpointError(indexPath, .invalid("weight_map lists tensor '\(dup)' twice"))
        }
        var map: [(String, String)] = []
        var lookup: [String: String] = [:]
        for (name, v) in wm {
            guard let file = v.stringValue else {
                throw CheckpointError(indexPath, .invalid("weight_map entry '\(name)' is not a file name"))
            }
            try ShardedCheckpoint.validateShardName(file, tensor: name, indexPath: indexPath)
            map.append((name, file))
            lookup[name] = file
        }
        weightMap = map
        shardOf = lookup
    }

    /// Shard names must stay inside the checkpoint's directory and be safetensors files.
    static func validateShardName(_ file: String, tensor: String, indexPath: String) throws {
        if file.hasPrefix("/") || file.hasPrefix("\\") {
            throw CheckpointError(indexPath, .invalid("weight_map entry '\(tensor)': shard path '\(file)' is absolute"))
        }
        let parts = file.split(whereSeparator: { $0 == "/" || $0 == "\\" })
        if parts.contains("..") {
            throw CheckpointError(indexPath, .invalid("weight_map entry '\(tensor)': shard path '\(file)' contains '..'"))
        }
        if !file.hasSuffix(".safetensors") {
            throw CheckpointError(indexPath, .invalid("weight_map entry '\(tensor)': shard '\(file)' does not end in .safetensors"))
        }
        if file.utf8.contains(0) {
            throw CheckpointError(indexPath, .invalid("weight_map entry '\(tensor)': shard path contains a NUL byte"))
        }
    }

    public var location: String { indexPath }
    public var tensorNames: [String] { weightMap.map(\.0) }
    /// Distinct shard files in first-use order.
    public var shardFiles: [String] {
        var seen = Set<String>()
        return weightMap.compactMap { seen.insert($0.1).inserted ? $0.1 : nil }
    }
    /// Shards opened so far (the reader is lazy).
    public var openedShards: [String] { opened.keys.sorted() }

    public func shard(_ file: String) throws -> SafeTensorsFile {
        if let f = opened[file] { return f }
        let f = try SafeTensorsFile(path: FileSystem.join(directory, file))
        opened[file] = f
        return f
    }

    public func shard(for name: String) throws -> SafeTensorsFile {
        guard let file = shardOf[name] else { throw CheckpointError(indexPath, .tensorNotFound(name)) }
        let f = try shard(file)
        guard f.contains(name) else {
            throw CheckpointError(f.path, .invalid("the index places tensor '\(name)' here but the shard does not hold it"))
        }
        return f
    }

    public func tensorInfo(_ name: String) -> TensorInfo? { try? shard(for: name).info(name) }
    public func view(_ name: String) throws -> TensorView { try shard(for: name).view(name) }
    public func loadTensor(_ name: String) throws -> Tensor { try view(name).toTensor() }
    public func entry(_ name: String) throws -> TensorEntry { TensorEntry(name: name, view: try view(name)) }
    public func release(_ name: String) { (try? view(name))?.release() }
    public func mappedView(_ name: String) -> TensorView? { try? view(name) }

    /// Opens every shard and checks the index against them: each listed tensor present, no shard tensor
    /// missing from the index, total_size equal to the tensors' bytes.
    public func validateAll() throws {
        var total: UInt64 = 0
        var listed = Set<String>()
        for (name, _) in weightMap {
            let f = try shard(for: name)
            total += UInt64(f.info(name)!.byteCount)
            listed.insert(name)
        }
        for file in shardFiles {
            for n in try shard(file).names where !listed.contains(n) {
                throw CheckpointError(FileSystem.join(directory, file), .invalid("tensor '\(n)' is not listed in \(FileSystem.basename(of: indexPath))"))
            }
        }
        if let d = declaredTotalSize, d != total {
            throw CheckpointError(indexPath, .invalid("metadata.total_size is \(d) but the listed tensors hold \(total) bytes"))
        }
    }
}

/// Parses a shard size as Hugging Face does: "5GB" = 5e9, "500MB", "10KB", "2GiB" = 2*2^30, or bytes.
public func parseByteSize(_ s: String) -> UInt64? {
    let t = s.trimmingCharacters(in: " ").uppercased()
    let units: [(String, Double)] = [
        ("GIB", 1073741824), ("MIB", 1048576), ("KIB", 1024),
        ("GB", 1e9), ("MB", 1e6), ("KB", 1e3), ("B", 1),
    ]
    for (u, m) in units where t.hasSuffix(u) {
        guard let v = Double(t.dropLast(u.count).trimmingCharacters(in: " ")), v > 0, v.isFinite else { return nil }
        return UInt64((v * m).rounded())
    }
    guard let v = UInt64(t), v > 0 else { return nil }
    return v
}

extension StringProtocol {
    func trimmingCharacters(in set: Character) -> String {
        var sub = Substring(self)
        while sub.first == set { sub.removeFirst() }
        while sub.last == set { sub.removeLast() }
        return String(sub)
    }
}

public enum ShardedWriter {
    /// Splits entries into shards of at most `maxShardSize` bytes each, in the given order (a tensor
    /// larger than the limit gets a shard of its own), as huggingface_hub's `split_state_dict_into_shards`.
    public static func plan(_ entries: [TensorEntry], maxShardSize: UInt64) -> [[TensorEntry]] {
        var shards: [[TensorEntry]] = []
        var current: [TensorEntry] = []
        var size: UInt64 = 0
        for e in entries {
            let n = UInt64(e.byteCount)
            if n > maxShardSize {
                shards.append([e])
                continue
            }
            if size + n > maxShardSize && !current.isEmpty {
                shards.append(current)
                current = []
                size = 0
            }
            current.append(e)
            size += n
        }
        if !current.isEmpty { shards.append(current) }
        return shards
    }

    /// Writes `model.safetensors` (one shard) or `model-0000k-of-0000n.safetensors` plus
    /// `model.safetensors.index.json` into `directory`. Every file is written atomically; the index last.
    /// Returns the file names written.
    @discardableResult
    public static func write(
        _ entries: [TensorEntry], to directory: String, maxShardSize: UInt64?, prefix: String = "model",
        metadata: [(String, String)]? = [("format", "pt")], prefetch: Int = 0, progress: ((Int, Int) -> Void)? = nil
    ) throws -> [String] {
        _ = try SafeTensorsWriter.prepare(entries, path: directory)  // names, duplicates
        let total = entries.reduce(0) { $0 + $1.byteCount }
        let shards = maxShardSize.map { plan(entries, maxShardSize: $0) } ?? [entries]
        var done = 0
        if shards.count <= 1 {
            let name = "\(prefix).safetensors"
            try SafeTensorsWriter.write(shards.first ?? [], metadata: metadata, to: FileSystem.join(directory, name), prefetch: prefetch) { d, _ in
                progress?(d, total)
            }
            return [name]
        }
        var files: [String] = []
        var weightMap: [(String, JSON)] = []
        let n = shards.count
        func pad(_ i: Int) -> String {
            let s = String(i)
            return String(repeating: "0", count: max(0, 5 - s.count)) + s
        }
        for (i, shard) in shards.enumerated() {
            let name = "\(prefix)-\(pad(i + 1))-of-\(pad(n)).safetensors"
            try SafeTensorsWriter.write(shard, metadata: metadata, to: FileSystem.join(directory, name), prefetch: prefetch) { d, _ in
                progress?(done + d, total)
            }
            done += shard.reduce(0) { $0 + $1.byteCount }
            files.append(name)
            for e in shard { weightMap.append((e.name, .string(name))) }
        }
        weightMap.sort { $0.0.utf8.lexicographicallyPrecedes($1.0.utf8) }
        let index = JSON.object([
            ("metadata", .object([("total_size", .int(total))])),
            ("weight_map", .object(weightMap)),
        ])
        let indexName = "\(prefix).safetensors.index.json"
        try AtomicFileWriter.write(index.pretty + "\n", to: FileSystem.join(directory, indexName))
        files.append(indexName)
        return files
    }
}
