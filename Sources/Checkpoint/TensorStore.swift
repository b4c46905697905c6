import Numerics

/// Anything that holds named tensors: one safetensors file, a sharded checkpoint, a GGUF file.
public protocol TensorStore: AnyObject {
    /// Where the tensors live (for error messages).
    var location: String { get }
    /// Tensor names in a stable order.
    var tensorNames: [String] { get }
    func tensorInfo(_ name: String) -> TensorInfo?
    /// The tensor decoded to Float32.
    func loadTensor(_ name: String) throws -> Tensor
    /// An entry that writes this tensor unchanged (zero-copy where the store allows).
    func entry(_ name: String) throws -> TensorEntry
    /// Drops a tensor's mapped pages from the resident set after use (no-op where nothing is mapped).
    func release(_ name: String)
    /// The tensor's bytes where they lie in a mapped file (nil where the store decodes, as a GGUF does).
    func mappedView(_ name: String) -> TensorView?
}

extension TensorStore {
    public func mappedView(_ name: String) -> TensorView? { nil }
}

extension SafeTensorsFile: TensorStore {
    public var location: String { path }
    public var tensorNames: [String] { names }
    public func tensorInfo(_ name: String) -> TensorInfo? { info(name) }
    public func loadTensor(_ name: String) throws -> Tensor { try tensor(name) }
    public func entry(_ name: String) throws -> TensorEntry { TensorEntry(name: name, view: try view(name)) }
    public func release(_ name: String) { (try? view(name))?.release() }
    public func mappedView(_ name: String) -> TensorView? { try? view(name) }
}

/// Opens a path as a tensor store: a `.safetensors` file, a `*.safetensors.index.json`, or a directory
/// holding `model.safetensors` or `model.safetensors.index.json` (or the adapter equivalent).
public func openTensorStore(_ path: String) throws -> TensorStore {
    if FileSystem.isDirectory(path) {
        for name in ["model.safetensors.index.json", "model.safetensors", "adapter_model.safetensors"] {
            let p = FileSystem.join(path, name)
            if FileSystem.exists(p) { return try openTensorStore(p) }
        }
        let indexes = try FileSystem.listDirectory(path).filter { $0.hasSuffix(".safetensors.index.json") }
        if let idx = indexes.first { return try ShardedCheckpoint(indexPath: FileSystem.join(path, idx)) }
        let files = try FileSystem.listDirectory(path).filter { $0.hasSuffix(".safetensors") }
        if files.count == 1 { return try SafeTensorsFile(path: FileSystem.join(path, files[0])) }
        throw CheckpointError(path, .invalid("no safetensors weights (model.safetensors or an index) in this directory"))
    }
    if path.hasSuffix(".index.json") { return try ShardedCheckpoint(indexPath: path) }
    return try SafeTensorsFile(path: path)
}
