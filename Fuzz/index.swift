import Checkpoint

/// libFuzzer target: any bytes as model.safetensors.index.json.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzIndex(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    if let idx = try? ShardedCheckpoint(indexBytes: bytes, indexPath: "/nonexistent-fuzz-dir/model.safetensors.index.json") {
        for (_, file) in idx.weightMap {
            let parts = file.split(whereSeparator: { $0 == "/" || $0 == "\\" })
            if parts.contains("..") || file.hasPrefix("/") || !file.hasSuffix(".safetensors") { fatalError("accepted a hostile shard path \(file)") }
        }
        _ = idx.shardFiles
    }
    return 0
}
