import Checkpoint
import Numerics

/// libFuzzer target: any bytes as a GGUF file. Valid files are dequantized tensor by tensor.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzGGUF(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    guard let (_, tensors, offset) = try? GGUFFile.validate(bytes: bytes) else { return 0 }
    for t in tensors where t.type.canDequantize && t.elementCount <= 1 << 20 {
        let start = offset + Int(t.offset)
        let raw = UnsafeRawBufferPointer(rebasing: bytes[start..<(start + t.byteCount)])
        let v = GGUFFile.dequantize(raw, type: t.type, count: t.elementCount)
        if v.count != t.elementCount { fatalError("dequantized \(v.count) of \(t.elementCount)") }
    }
    return 0
}
