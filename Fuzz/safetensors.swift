import Checkpoint
import Numerics

/// libFuzzer target: any bytes as a safetensors file. Valid files are then read tensor by tensor.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSafetensors(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    guard let (tensors, _, offset) = try? SafeTensorsFile.validate(bytes: bytes) else { return 0 }
    for t in tensors {
        let start = offset + Int(t.begin)
        let raw = UnsafeRawBufferPointer(rebasing: bytes[start..<(start + t.byteCount)])
        let values = Storage.decode(raw, dtype: t.dtype)
        if values.count != t.elementCount { fatalError("decoded \(values.count) of \(t.elementCount) elements of \(t.name)") }
    }
    return 0
}
