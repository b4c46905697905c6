import Testing
import Foundation
import TestSupport
import PropertyBased
@testable import Checkpoint
import Numerics

@Suite struct SafeTensorsReadTests {
    @Test func readsReferenceFileWithEveryDType() throws {
        let f = try SafeTensorsFile(path: Paths.fixture("safetensors/reference_numpy.safetensors"))
        #expect(f.metadataValue("format") == "pt")
        #expect(f.info("b.int")?.dtype == .i32)
        #expect(f.info("k.scalar")?.shape == [])
        #expect(try f.tensor("k.scalar").data == [3.5])
        #expect(f.info("l.empty")?.shape == [0, 4])
        #expect(f.info("name with \"quotes\" and é")?.shape == [2])
        #expect(try f.tensor("f.bool").data.allSatisfy { $0 == 0 || $0 == 1 })
        // Written by dtype descending then name: U64 first, BOOL last.
        #expect(f.tensors.first?.dtype == .u64)
        #expect(f.tensors.last?.dtype == .bool)
    }

    @Test func codecsMatchTorchAndNumpy() throws {
        let f = try SafeTensorsFile(path: Paths.fixture("codecs.safetensors"))
        let x = try f.tensor("input").data
        let bf16 = try f.view("bf16").withBytes { raw in (0..<x.count).map { UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self)) }
        }
        let f16 = try f.view("f16").withBytes { raw in (0..<x.count).map { UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self)) } }
        var bfBad = 0
        var hBad = 0
        for i in x.indices {
            if Codec.floatToBF16(x[i]) != bf16[i] { bfBad += 1 }
            let ours = Codec.floatToF16(x[i])
            // numpy keeps NaN payload bits differently; both must be NaN.
            if x[i].isNaN { if ours & 0x7C00 != 0x7C00 || ours & 0x3FF == 0 { hBad += 1 } } else if ours != f16[i] { hBad += 1 }
        }
        #expect(bfBad == 0, "bf16 mismatches vs torch")
        #expect(hBad == 0, "f16 mismatches vs numpy")
        let e4 = try f.tensor("f8_e4m3").data
        let e5 = try f.tensor("f8_e5m2").data
        for c in 0..<256 {
            let a = Codec.f8e4m3ToFloat(UInt8(c))
            let b = Codec.f8e5m2ToFloat(UInt8(c))
            #expect(a == e4[c] || (a.isNaN && e4[c].isNaN), "e4m3 code \(c)")
            #expect(b == e5[c] || (b.isNaN && e5[c].isNaN), "e5m2 code \(c)")
        }
    }

    @Test func zeroCopyViews() throws {
        let f = try SafeTensorsFile(path: Paths.fixture("tiny-bert/model.safetensors"))
        let v = try f.view("classifier.weight")
        let p1 = v.withBytes { $0.baseAddress }
        let p2 = f.file.bytes.baseAddress.map { $0 + f.dataOffset + Int(v.info.begin) }
        #expect(p1 == UnsafeRawPointer(p2))
    }
}

@Suite struct SafeTensorsMalformedTests {
    let ok = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#

    @Test func validMinimalFile() { #expect(safetensorsError(rawSafetensors(header: ok, data: [UInt8](repeating: 0, count: 8))) == nil) }

    @Test func headerTooSmall() {
        #expect(safetensorsError([1, 2, 3]) == .headerTooSmall(fileSize: 3))
        #expect(safetensorsError([]) == .headerTooSmall(fileSize: 0))
    }

    @Test func headerTooLarge() {
        #expect(safetensorsError(rawSafetensors(header: "{}", declaredLength: 100_000_001)) == .headerTooLarge(100_000_001))
        #expect(safetensorsError(rawSafetensors(header: "{}", declaredLength: UInt64.max)) == .headerTooLarge(UInt64.max))
    }

    @Test func headerPastEnd() {
        #expect(safetensorsError(rawSafetensors(header: "{}", declaredLength: 50)) == .headerPastEnd(headerSize: 50, fileSize: 10))
    }

    @Test func invalidUTF8AndJSON() {
        var b = rawSafetensors(header: "{\"a\":1}")
        b[10] = 0xFF
        #expect(safetensorsError(b) == .headerNotUTF8)
        if case .headerNotJSON = safetensorsError(rawSafetensors(header: "{not json")) {} else { Issue.record("not JSON") }
        if case .headerNotJSON = safetensorsError(rawSafetensors(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},}"#)) {
        } else {
            Issue.record("trailing comma")
        }
        #expect(safetensorsError(rawSafetensors(header: "[]")) == .headerNotObject)
    }

    @Test func unknownDTypeNegativeAndFloatOffsets() {
        #expect(
            safetensorsError(rawSafetensors(header: #"{"a":{"dtype":"F31","shape":[2],"data_offsets":[0,8]}}"#, data: .init(repeating: 0, count: 8)))
                == .unknownDType(tensor: "a", "F31"))
        if case .invalidTensorEntry("a", _) = safetensorsError(rawSafetensors(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}}"#)) {
        } else {
            Issue.record("negative offset")
        }
        if case .invalidTensorEntry("a", _) = safetensorsError(rawSafetensors(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0.0,8]}}"#)) {
        } else {
            Issue.record("float offset")
        }
        if case .invalidTensorEntry("a", _) = safetensorsError(rawSafetensors(header: #"{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#)) {
        } else {
            Issue.record("negative dim")
        }
        if case .invalidTensorEntry("a", _) = safetensorsError(
            rawSafetensors(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,18446744073709551616]}}"#))
        {
        } else {
            Issue.record("offset beyond u64")
        }
        if case .invalidTensorEntry("a", _) = safetensorsError(rawSafetensors(header: #"{"a":{"dtype":"F32","shape":[2]}}"#)) {
        } else {
            Issue.record("missing offsets")
        }
    }

    @Test func duplicateNamesAndMetadataRules() {
        let dup = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#
        #expect(safetensorsError(rawSafetensors(header: dup, data: .init(repeating: 0, count: 8))) == .duplicateTensor("a"))
        let metaTensor = #"{"__metadata__":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#
        #expect(safetensorsError(rawSafetensors(header: metaTensor, data: .init(repeating: 0, count: 4))) == .metadataTensor)
        let nonString = #"{"__metadata__":{"format":1}}"#
        if case .invalidMetadata = safetensorsError(rawSafetensors(header: nonString)) {} else { Issue.record("non-string metadata") }
        #expect(safetensorsError(rawSafetensors(header: #"{"__metadata__":null}"#)) == nil)
    }

    @Test func offsetsHolesOverlapsAndSizes() {
        let overlap = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#
        #expect(safetensorsError(rawSafetensors(header: overlap, data: .init(repeating: 0, count: 12))) == .invalidOffsets(tensor: "b"))
        let hole = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#
        #expect(safetensorsError(rawSafetensors(header: hole, data: .init(repeating: 0, count: 8))) == .invalidOffsets(tensor: "a"))
        let reversed = #"{"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}}"#
        #expect(safetensorsError(rawSafetensors(header: reversed, data: .init(repeating: 0, count: 8))) == .invalidOffsets(tensor: "b"))
        let mismatch = #"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#
        #expect(safetensorsError(rawSafetensors(header: mismatch, data: .init(repeating: 0, count: 8))) == .sizeMismatch(tensor: "a", expected: 12, actual: 8))
        let overflow = #"{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}"#
        #expect(safetensorsError(rawSafetensors(header: overflow, data: .init(repeating: 0, count: 8))) == .shapeOverflow(tensor: "a"))
        let overflowDtype = #"{"a":{"dtype":"F64","shape":[2305843009213693952,4],"data_offsets":[0,8]}}"#
        #expect(safetensorsError(rawSafetensors(header: overflowDtype, data: .init(repeating: 0, count: 8))) == .shapeOverflow(tensor: "a"))
    }

    @Test func trailingAndTruncatedData() {
        #expect(safetensorsError(rawSafetensors(header: ok, data: .init(repeating: 0, count: 12))) == .bufferMismatch(dataEnd: 8, fileDataSize: 12))
        #expect(safetensorsError(rawSafetensors(header: ok, data: .init(repeating: 0, count: 5))) == .bufferMismatch(dataEnd: 8, fileDataSize: 5))
    }

    @Test func deepNestingIsRefusedNotRecursed() {
        let deep = "{\"__metadata__\":" + String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000) + "}"
        if case .headerNotJSON = safetensorsError(rawSafetensors(header: deep)) {} else { Issue.record("deep nesting") }
    }

    @Test func errorsNameTheFile() {
        let dir = TempDir()
        let p = dir.file("broken.safetensors")
        writeBytes([1, 2], p)
        #expect(throws: CheckpointError.self) { try SafeTensorsFile(path: p) }
        do { _ = try SafeTensorsFile(path: p) } catch { #expect("\(error)".hasPrefix(p + ": ")) }
        #expect(throws: CheckpointError(dir.file("missing.safetensors"), .notFound)) { try SafeTensorsFile(path: dir.file("missing.safetensors")) }
        #expect(throws: CheckpointError(dir.path, .isDirectory)) { try SafeTensorsFile(path: dir.path) }
    }
}

@Suite struct SafeTensorsWriteTests {
    /// Ranges of a mapped file appended in the kernel (copy_file_range, same file system) or from the
    /// mapping (another file system: /dev/shm where it exists) give the source's bytes, between buffered
    /// writes, at unaligned offsets; pread copies of ranges equal the mapping.
    @Test func rangeCopiesAndReadsEqualTheSourceBytes() throws {
        let dir = TempDir()
        var rng = SeededRNG(seed: 4)
        let src = (0..<((3 << 20) + 123)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        writeBytes(src, dir.file("src"))
        let m = try MappedFile(path: dir.file("src"))
        #expect(m.read(offset: 5, length: 70_000).map { $0 == Array(src[5..<70_005]) } == true)
        #expect(m.read(offset: src.count - 10, length: 11) == nil)
        var dests = [dir.file("out")]
        if FileManager.default.fileExists(atPath: "/dev/shm") { dests.append("/dev/shm/coto-range-" + UUID().uuidString) }
        for d in dests {
            defer { if d.hasPrefix("/dev/shm") { try? FileManager.default.removeItem(atPath: d) } }
            let w = try AtomicFileWriter(path: d)
            try w.write([1, 2, 3])
            try w.write(from: m, offset: 7, length: 2 << 20)
            try w.write([9])
            try w.write(from: m, offset: 5, length: 1000)
            let expected: [UInt8] = [1, 2, 3] + src[7..<(7 + (2 << 20))] + [9] + src[5..<1005]
            #expect(w.bytesWritten == UInt64(expected.count))
            try w.commit()
            #expect(readBytes(d) == expected, "\(d)")
        }
    }

    /// Reads a reference-written file, writes the same tensors and metadata with our writer, compares bytes.
    func rewrite(_ fixture: String) throws -> ([UInt8], [UInt8]) {
        let path = Paths.fixture(fixture)
        let f = try SafeTensorsFile(path: path)
        let dir = TempDir()
        let out = dir.file("out.safetensors")
        // Feed tensors in a scrambled order: the writer must order them as the reference does.
        let entries = try f.names.reversed().map { TensorEntry(name: $0, view: try f.view($0)) }
        try SafeTensorsWriter.write(entries, metadata: f.metadata, to: out)
        return (readBytes(path), readBytes(out))
    }

    @Test func byteIdenticalToPythonWriter() throws {
        for fixture in [
            "safetensors/reference_numpy.safetensors", "safetensors/reference_torch.safetensors",
            "safetensors/reference_nometa.safetensors", "tiny-bert/model.safetensors",
            "tiny-bert-bf16/model.safetensors", "peft/bert-lora/adapter_model.safetensors",
        ] {
            let (a, b) = try rewrite(fixture)
            #expect(a == b, "\(fixture) differs from the reference writer's bytes")
        }
    }

    @Test func emptyFilesMatchReferenceTests() throws {
        // From the reference's own tests (tensor.rs test_empty).
        let dir = TempDir()
        try SafeTensorsWriter.write([], metadata: nil, to: dir.file("a.safetensors"))
        #expect(readBytes(dir.file("a.safetensors")) == [8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32])
        try SafeTensorsWriter.write([], metadata: [("framework", "pt")], to: dir.file("b.safetensors"))
        #expect(readBytes(dir.file("b.safetensors")) == [40, 0, 0, 0, 0, 0, 0, 0] + Array(#"{"__metadata__":{"framework":"pt"}}     "#.utf8))
    }

    @Test func atomicWriteLeavesNoTempAndSetsMode() throws {
        let dir = TempDir()
        let out = dir.file("w.safetensors")
        try SafeTensorsWriter.write([TensorEntry(name: "x", tensor: Tensor(shape: [2], data: [1, 2]))], to: out)
        #expect(try FileSystem.listDirectory(dir.path) == ["w.safetensors"])
        let mask = umask(0)
        umask(mask)
        let attrs = try FileManager.default.attributesOfItem(atPath: out)
        #expect((attrs[.posixPermissions] as? Int) == Int(0o644 & ~mask))
    }

    @Test func failedWriteKeepsPreviousContent() throws {
        let dir = TempDir()
        let out = dir.file("w.safetensors")
        try SafeTensorsWriter.write([TensorEntry(name: "x", tensor: Tensor(shape: [1], data: [1]))], to: out)
        let before = readBytes(out)
        struct Boom: Error {}
        #expect(throws: Boom.self) {
            try SafeTensorsWriter.write(
                [
                    TensorEntry(name: "a", dtype: .f32, shape: [1], source: .bytes([0, 0, 128, 63])),
                    TensorEntry(name: "b", dtype: .f32, shape: [1], source: .lazy { throw Boom() }),
                ], to: out)
        }
        #expect(readBytes(out) == before)
        #expect(try FileSystem.listDirectory(dir.path) == ["w.safetensors"])
        // A source of the wrong size is refused, not written.
        #expect(throws: CheckpointError.self) {
            try SafeTensorsWriter.write([TensorEntry(name: "a", dtype: .f32, shape: [2], source: .bytes([0, 0, 0, 0]))], to: out)
        }
        #expect(readBytes(out) == before)
    }

    @Test func writerRejectsDuplicateAndMetadataNames() {
        let dir = TempDir()
        let t = Tensor(shape: [1], data: [1])
        #expect(throws: CheckpointError(dir.file("o.safetensors"), .duplicateTensor("a"))) {
            try SafeTensorsWriter.write([TensorEntry(name: "a", tensor: t), TensorEntry(name: "a", tensor: t)], to: dir.file("o.safetensors"))
        }
        #expect(throws: CheckpointError(dir.file("o.safetensors"), .metadataTensor)) {
            try SafeTensorsWriter.write([TensorEntry(name: "__metadata__", tensor: t)], to: dir.file("o.safetensors"))
        }
    }

    @Test func overwritingAMappedInputIsSafe() throws {
        let dir = TempDir()
        let p = dir.file("m.safetensors")
        try SafeTensorsWriter.write([TensorEntry(name: "x", tensor: Tensor(shape: [3], data: [1, 2, 3]))], to: p)
        let f = try SafeTensorsFile(path: p)
        let view = try f.view("x")
        // Rewrite the same path from the mapped input, scaled.
        try SafeTensorsWriter.write(
            [
                TensorEntry(
                    name: "x", dtype: .f32, shape: [3],
                    source: .lazy {
                        Storage.encode(view.toTensor().data.map { $0 * 10 }, dtype: .f32)
                    })
            ], to: p)
        #expect(view.toTensor().data == [1, 2, 3])  // the old mapping is intact
        #expect(try SafeTensorsFile(path: p).tensor("x").data == [10, 20, 30])
    }

    @Test func lazySourcesRunOneAtATimeInWriteOrder() throws {
        let dir = TempDir()
        var calls: [String] = []
        let entries = ["b", "a", "c"].map { n in
            TensorEntry(
                name: n, dtype: .f32, shape: [1],
                source: .lazy {
                    calls.append(n)
                    return [0, 0, 0, 0]
                })
        }
        try SafeTensorsWriter.write(entries, to: dir.file("l.safetensors"))
        #expect(calls == ["a", "b", "c"])
    }

    @Test func roundTripProperty() async throws {
        let dtypes: [DType] = [.f32, .f16, .bf16, .f64, .i32, .u8, .i64]
        await propertyCheck(count: 40, input: Gen.int(in: 0...6).array(of: 1...6), Gen.int(in: 1...3)) { picks, dims in
            let dir = TempDir()
            var rng = SeededRNG(seed: UInt64(picks.count * 31 + dims))
            var entries: [TensorEntry] = []
            var expected: [String: (DType, [Float])] = [:]
            for (i, p) in picks.enumerated() {
                let dtype = dtypes[p]
                let shape = (0..<dims).map { _ in rng.int(below: 4) }
                let n = shape.reduce(1, *)
                let values = (0..<n).map { _ in Float(rng.int(below: 200) - 100) / 4 }
                let name = "t\(i).\(dtype.rawValue)"
                entries.append(TensorEntry(name: name, tensor: Tensor(shape: shape, data: values), dtype: dtype))
                let decoded = Storage.encode(values, dtype: dtype).withUnsafeBytes { Storage.decode($0, dtype: dtype) }
                expected[name] = (dtype, decoded)
            }
            do {
                try SafeTensorsWriter.write(entries, metadata: [("format", "pt"), ("k", "v")], to: dir.file("r.safetensors"))
                let f = try SafeTensorsFile(path: dir.file("r.safetensors"))
                #expect(f.names.count == entries.count)
                #expect(f.metadataValue("k") == "v")
                for (name, (dtype, values)) in expected {
                    #expect(f.info(name)?.dtype == dtype)
                    #expect(try f.tensor(name).data == values)
                }
            } catch { Issue.record("\(error)") }
        }
    }
}

@Suite struct JSONTests {
    @Test func parsesAndKeepsOrderAndDuplicates() throws {
        let j = try JSON.parse(string: #"{"b":1,"a":[true,false,null],"b":"x","u":"\u00e9\ud83d\ude00"}"#)
        #expect(j.objectPairs?.map(\.0) == ["b", "a", "b", "u"])
        #expect(j.duplicateKey == "b")
        #expect(j["b"] == .string("x"))
        #expect(j["u"]?.stringValue == "é😀")
    }

    @Test func rejectsInvalidInput() {
        for bad in ["{", "[1,]", "{\"a\":1,}", "01", "1.", "-", "\"\\ud800\"", "\"a\u{01}\"", "nul", "{} x", "NaN", "'a'"] {
            #expect(throws: JSONParseError.self, "\(bad)") { try JSON.parse(string: bad) }
        }
    }

    @Test func serializesLikeSerdeAndPython() throws {
        let j = JSON.object([("a", .string("é\n\u{01}\"")), ("b", .array([.int(1), .double(0.5)]))])
        #expect(j.compact == #"{"a":"é\n\u0001\"","b":[1,0.5]}"#)
        #expect(j.pretty == "{\n  \"a\": \"\\u00e9\\n\\u0001\\\"\",\n  \"b\": [\n    1,\n    0.5\n  ]\n}")
        #expect(try JSON.parse(string: j.compact) == j)
    }
}
