import Foundation
import Testing
import TestSupport
@testable import Checkpoint
import Numerics

/// Every quantized GGUF type coto reads, bit for bit against gguf-py's `quants.dequantize` on random blocks
/// (Fixtures/kquants.py), Q8_K by hand (gguf-py has no dequantization for it), and the types it does not
/// read refused in one line naming them.
@Suite struct KQuantTests {
    static let refs = Result { try SafeTensorsFile(path: TestPaths.fixture("gguf/kquants.safetensors")) }

    @Test(arguments: [GGMLType.q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q2_k, .q3_k, .q4_k, .q5_k, .q6_k])
    func bitExactAgainstGGUFPy(type: GGMLType) throws {
        let refs = try Self.refs.get()
        let raw = try refs.tensor(type.name + ".raw")
        let bytes = raw.data.map { UInt8($0) }
        let want = try refs.tensor(type.name + ".values").data
        #expect(bytes.count % type.block.1 == 0 && want.count == bytes.count / type.block.1 * type.block.0)
        let ours = bytes.withUnsafeBytes { GGUFFile.dequantize($0, type: type, count: want.count) }
        let mismatches = zip(ours, want).filter { $0.bitPattern != $1.bitPattern }.count
        #expect(mismatches == 0, "\(type.name): \(mismatches) of \(want.count) values differ")
        // Random bytes: the values are not trivially zero.
        #expect(Set(want).count > want.count / 8)
    }

    @Test func q8KIsScaleTimesQuant() {
        var block = [UInt8](repeating: 0, count: 292)
        withUnsafeBytes(of: Float(0.375).bitPattern.littleEndian) { block.replaceSubrange(0..<4, with: $0) }
        for j in 0..<256 { block[4 + j] = UInt8(bitPattern: Int8(truncatingIfNeeded: j - 128)) }
        let y = block.withUnsafeBytes { GGUFFile.dequantize($0, type: .q8_k, count: 256) }
        #expect(y == (0..<256).map { Float(0.375) * Float($0 - 128) })
    }

    /// A multi-threaded dequantization gives the values a one-thread one gives (blocks are independent).
    @Test func threadsDoNotChangeTheValues() throws {
        let refs = try Self.refs.get()
        let bytes = try refs.tensor("Q4_K.raw").data.map { UInt8($0) }
        let count = bytes.count / 144 * 256
        let serial = bytes.withUnsafeBytes { raw in
            (0..<(count / 256)).flatMap { b in
                var y = [Float](repeating: 0, count: 256)
                y.withUnsafeMutableBufferPointer { GGUFFile.blockDecoder(.q4_k)!(raw.baseAddress! + b * 144, $0.baseAddress!) }
                return y
            }
        }
        let parallel = bytes.withUnsafeBytes { GGUFFile.dequantize($0, type: .q4_k, count: count) }
        #expect(serial == parallel)
    }

    @Test func iQuantsAndOtherTypesAreRefusedByName() throws {
        for (type, name) in [(GGMLType.iq2_xxs, "IQ2_XXS"), (.iq4_xs, "IQ4_XS"), (.iq4_nl, "IQ4_NL"), (.tq2_0, "TQ2_0"), (.q8_1, "Q8_1")] {
            let (per, size) = type.block
            var b = GGUFBuilder.header(tensors: 1, kvs: 0)
            b.tensorInfo("w", dims: [UInt64(per)], type: type.rawValue, offset: 0)
            b.align()
            b.bytes += [UInt8](repeating: 0, count: size)
            let dir = TempDir()
            writeBytes(b.bytes, dir.file("m.gguf"))
            let g = try GGUFFile(path: dir.file("m.gguf"))  // the file parses: its type is known
            do {
                _ = try g.dequantize("w")
                Issue.record("\(name) dequantized")
            } catch let e as CheckpointError {
                #expect(e.message.contains("type \(name) is") && e.message.contains("Q6_K"), "\(e.message)")
                #expect(e.message.contains("i-quant") == name.hasPrefix("IQ"))
            }
        }
        #expect(GGMLType.dequantizable == "F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K, BF16")
    }
}
