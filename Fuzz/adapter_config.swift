import Checkpoint

/// libFuzzer target: any bytes as adapter_config.json; valid configs answer rank/alpha/scaling queries.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzAdapterConfig(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    if let c = try? LoraConfig(bytes: bytes, path: "fuzz") {
        for name in ["model.layers.0.self_attn.q_proj", "bert.encoder.layer.1.attention.self.value", "x"] {
            _ = c.rank(for: name)
            _ = c.alpha(for: name)
            _ = c.scaling(for: name)
            _ = c.targets(name)
        }
        _ = c.json.pretty
    }
    return 0
}
