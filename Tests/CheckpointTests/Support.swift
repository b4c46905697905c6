import Testing
import Foundation
import TestSupport
@testable import Checkpoint
import Numerics

/// Repository paths for tests.
enum Paths {
    static let root = TestPaths.root
    static func fixture(_ p: String) -> String { TestPaths.fixture(p) }
    static let smollm2 = TestPaths.smollm2
    static let minilm = TestPaths.minilm
}

func readBytes(_ path: String) -> [UInt8] { [UInt8](FileManager.default.contents(atPath: path) ?? Data()) }

func writeBytes(_ bytes: [UInt8], _ path: String) { _ = FileManager.default.createFile(atPath: path, contents: Data(bytes)) }

/// A safetensors file from a header string and a data buffer (for malformed-input tests).
func rawSafetensors(header: String, data: [UInt8] = [], declaredLength: UInt64? = nil) -> [UInt8] {
    let h = Array(header.utf8)
    var out = withUnsafeBytes(of: (declaredLength ?? UInt64(h.count)).littleEndian) { Array($0) }
    out += h
    out += data
    return out
}

/// Parses bytes as a safetensors file and returns the error kind (nil if valid).
func safetensorsError(_ bytes: [UInt8]) -> CheckpointError.Kind? {
    let dir = TempDir()
    let p = dir.file("x.safetensors")
    writeBytes(bytes, p)
    do {
        _ = try SafeTensorsFile(path: p)
        return nil
    } catch let e as CheckpointError { return e.kind } catch { return .io("\(error)") }
}
