import Testing
import Foundation
import TestSupport
@testable import Checkpoint
import Numerics

@Suite struct ShardTests {
    @Test func lazyShardedReadEqualsSingleFile() throws {
        let single = try SafeTensorsFile(path: Paths.fixture("tiny-bert/model.safetensors"))
        let sharded = try ShardedCheckpoint(indexPath: Paths.fixture("tiny-bert-sharded/model.safetensors.index.json"))
        #expect(sharded.shardFiles.count == 4)
        #expect(sharded.openedShards.isEmpty)
        _ = try sharded.loadTensor("classifier.weight")
        #expect(sharded.openedShards.count == 1)
        #expect(Set(sharded.tensorNames) == Set(single.names))
        for n in single.names { #expect(try sharded.loadTensor(n) == single.tensor(n)) }
        try sharded.validateAll()
    }

    @Test func shardedWriteRoundTrips() throws {
        let src = try SafeTensorsFile(path: Paths.fixture("tiny-bert/model.safetensors"))
        let dir = TempDir()
        let entries = try src.names.map { try src.entry($0) }
        let files = try ShardedWriter.write(entries, to: dir.path, maxShardSize: 6000)
        #expect(files.last == "model.safetensors.index.json")
        #expect(files.first == "model-00001-of-0000\(files.count - 1).safetensors")
        let back = try ShardedCheckpoint(indexPath: dir.file("model.safetensors.index.json"))
        try back.validateAll()
        #expect(back.declaredTotalSize == UInt64(entries.reduce(0) { $0 + $1.byteCount }))
        for n in src.names { #expect(try back.loadTensor(n) == src.tensor(n)) }
        for shard in back.shardFiles where shard != "model-00001-of-0000\(files.count - 1).safetensors" {
            #expect(FileSystem.fileSize(dir.file(shard))! <= 6000 + 4096, "shard \(shard) over the limit")
        }
        // One shard: plain model.safetensors, no index.
        let dir2 = TempDir()
        #expect(try ShardedWriter.write(entries, to: dir2.path, maxShardSize: nil) == ["model.safetensors"])
    }

    @Test func hostileIndexEntriesAreRejected() throws {
        let dir = TempDir()
        for (shard, needle) in [
            ("../evil.safetensors", "'..'"), ("/etc/passwd.safetensors", "absolute"),
            ("model.bin", "does not end in .safetensors"), ("a/../../b.safetensors", "'..'"),
        ] {
            let idx = #"{"metadata":{"total_size":4},"weight_map":{"w":"\#(shard)"}}"#
            writeBytes(Array(idx.utf8), dir.file("model.safetensors.index.json"))
            do {
                _ = try ShardedCheckpoint(indexPath: dir.file("model.safetensors.index.json"))
                Issue.record("accepted \(shard)")
            } catch let e as CheckpointError {
                #expect(e.message.contains(needle), "\(e)")
            }
        }
        writeBytes(Array(#"{"weight_map":{"w":"a.safetensors","w":"b.safetensors"}}"#.utf8), dir.file("model.safetensors.index.json"))
        #expect(throws: CheckpointError.self) { try ShardedCheckpoint(indexPath: dir.file("model.safetensors.index.json")) }
    }

    @Test func indexTotalSizeMismatchIsAFault() throws {
        let dir = TempDir()
        try SafeTensorsWriter.write([TensorEntry(name: "w", tensor: Tensor(shape: [1], data: [1]))], to: dir.file("s.safetensors"))
        writeBytes(Array(#"{"metadata":{"total_size":99},"weight_map":{"w":"s.safetensors"}}"#.utf8), dir.file("i.index.json"))
        let s = try ShardedCheckpoint(indexPath: dir.file("i.index.json"))
        #expect(throws: CheckpointError.self) { try s.validateAll() }
    }

    @Test func byteSizes() {
        #expect(parseByteSize("5GB") == 5_000_000_000)
        #expect(parseByteSize("2GiB") == 2 << 30)
        #expect(parseByteSize("500MB") == 500_000_000)
        #expect(parseByteSize("1000") == 1000)
        #expect(parseByteSize("-1GB") == nil)
        #expect(parseByteSize("lots") == nil)
    }
}

@Suite struct AdapterTests {
    struct Expected: Decodable {
        let r: Int
        let scaling: Double
        let delta_norm: Double
        let dora: Bool
    }

    func expected() throws -> [String: [String: Expected]] {
        try JSONDecoder().decode([String: [String: Expected]].self, from: Data(readBytes(Paths.fixture("peft/expected.json"))))
    }

    @Test(arguments: ["bert-lora", "bert-rslora", "bert-patterns", "bert-dora", "bert-bias", "bert-embedding", "llama-lora"])
    func peftAdaptersParseWithPEFTsRanksAndScalings(name: String) throws {
        let a = try Adapter.load(Paths.fixture("peft/" + name))
        let exp = try expected()[name]!
        #expect(Set(a.modules.map(\.name)) == Set(exp.keys))
        for m in a.modules {
            let e = exp[m.name]!
            #expect(m.rank == e.r, "\(m.name)")
            #expect(abs(m.scaling - e.scaling) < 1e-9, "\(m.name)")
            #expect(abs(m.deltaNorm - e.delta_norm) <= 1e-5 * max(1, e.delta_norm), "\(m.name): \(m.deltaNorm) vs \(e.delta_norm)")
            #expect(abs(m.delta().frobeniusNorm - e.delta_norm) <= 1e-5 * max(1, e.delta_norm))
            #expect(m.isDora == e.dora)
        }
    }

    @Test func modulesKnowTheirLayerKindAndExtras() throws {
        let a = try Adapter.load(Paths.fixture("peft/bert-lora"))
        #expect(a.modules.map(\.layer) == [0, 0, 1, 1])
        #expect(a.modules.map(\.kind) == ["query", "value", "query", "value"])
        #expect(a.heads.map(\.0).sorted() == ["base_model.model.classifier.bias", "base_model.model.classifier.weight"])
        let bias = try Adapter.load(Paths.fixture("peft/bert-bias"))
        #expect(bias.modules.allSatisfy { $0.bias?.tensor.shape == [16] })
        let emb = try Adapter.load(Paths.fixture("peft/bert-embedding"))
        let e = emb.modules.first { $0.isEmbedding }!
        #expect(e.name == "bert.embeddings.word_embeddings" && e.a.tensor.shape == [2, 64] && e.b.tensor.shape == [16, 2])
        #expect(e.layer == nil)
        let llama = try Adapter.load(Paths.fixture("peft/llama-lora"))
        #expect(Set(llama.modules.map(\.kind)) == ["q_proj", "v_proj", "down_proj"])
    }

    @Test(arguments: ["bert-lora", "bert-patterns", "bert-dora", "bert-bias", "bert-embedding"])
    func saveAndReloadAsDirAndFile(name: String) throws {
        let a = try Adapter.load(Paths.fixture("peft/" + name))
        let dir = TempDir()
        try a.save(to: dir.file("out"))
        try a.save(to: dir.file("out.safetensors"))
        for p in [dir.file("out"), dir.file("out.safetensors")] {
            let b = try Adapter.load(p)
            #expect(b.modules == a.modules)
            #expect(b.otherTensors.map(\.0) == a.otherTensors.map(\.0))
            #expect(b.config == a.config)
        }
        // The directory's weights are byte-identical to PEFT's file (same tensors, same layout).
        #expect(readBytes(dir.file("out/adapter_model.safetensors")) == readBytes(Paths.fixture("peft/\(name)/adapter_model.safetensors")))
        // Unknown config fields survive.
        let cfg = try JSON.parse(readBytes(dir.file("out/adapter_config.json")))
        #expect(cfg["peft_version"] != nil && cfg["megatron_core"] != nil)
    }

    @Test func dtypeConversionOnSave() throws {
        let a = try Adapter.load(Paths.fixture("peft/bert-lora"))
        let dir = TempDir()
        try a.save(to: dir.file("bf16"), dtype: .bf16)
        let f = try SafeTensorsFile(path: dir.file("bf16/adapter_model.safetensors"))
        #expect(f.tensors.allSatisfy { $0.dtype == .bf16 })
        let b = try Adapter.load(dir.file("bf16"))
        #expect(b.modules[0].a.tensor.maxAbsDiff(a.modules[0].a.tensor) < 0.01)
    }

    @Test func bareFileFromElsewhereInfersRankAndAlpha() throws {
        let src = try SafeTensorsFile(path: Paths.fixture("peft/bert-patterns/adapter_model.safetensors"))
        let dir = TempDir()
        try SafeTensorsWriter.write(try src.names.map { try src.entry($0) }, to: dir.file("bare.safetensors"))
        let a = try Adapter.load(dir.file("bare.safetensors"))
        #expect(a.configOrigin.hasPrefix("inferred"))
        #expect(a.config.r == 4)
        for m in a.modules { #expect(m.alpha == Double(m.rank) && m.scaling == 1) }
        let b = try Adapter.load(dir.file("bare.safetensors"), alpha: 16)
        #expect(b.modules.first { $0.rank == 4 }!.scaling == 4)
    }

    @Test func patternMatchingFollowsPEFT() {
        // re.match(rf"(.*\.)?({key})$", name): suffix on a dot boundary, keys are regexes, first key wins.
        #expect(LoraConfig.matchPattern(["query"], "bert.encoder.layer.0.attention.self.query") == "query")
        #expect(LoraConfig.matchPattern(["uery"], "bert.encoder.layer.0.attention.self.query") == nil)
        #expect(LoraConfig.matchPattern(["layer.1.attention.self.query"], "bert.encoder.layer.1.attention.self.query") != nil)
        #expect(LoraConfig.matchPattern(["layer\\.[01]\\..*query"], "bert.encoder.layer.1.attention.self.query") != nil)
        #expect(LoraConfig.matchPattern(["dense", "output.dense"], "bert.encoder.layer.0.output.dense") == "dense")
        var c = LoraConfig()
        c.r = 8
        c.loraAlpha = 16
        c.rankPattern = [("q_proj", 4)]
        c.alphaPattern = [("q_proj", 2)]
        #expect(c.rank(for: "model.layers.0.self_attn.q_proj") == 4)
        #expect(c.scaling(for: "model.layers.0.self_attn.q_proj") == 0.5)
        #expect(c.scaling(for: "model.layers.0.self_attn.v_proj") == 2)
        c.useRslora = true
        #expect(c.scaling(for: "model.layers.0.self_attn.v_proj") == 16 / 8.0.squareRoot())
    }

    @Test func inconsistentAdaptersAreRejected() throws {
        let dir = TempDir()
        // lora_A without lora_B.
        try SafeTensorsWriter.write([TensorEntry(name: "base_model.model.x.lora_A.weight", tensor: Tensor(zeros: [2, 4]))], to: dir.file("a.safetensors"))
        #expect(throws: CheckpointError.self) { try Adapter.load(dir.file("a.safetensors")) }
        // Rank mismatch between A and B.
        try SafeTensorsWriter.write(
            [
                TensorEntry(name: "base_model.model.x.lora_A.weight", tensor: Tensor(zeros: [2, 4])),
                TensorEntry(name: "base_model.model.x.lora_B.weight", tensor: Tensor(zeros: [4, 3])),
            ], to: dir.file("b.safetensors"))
        #expect(throws: CheckpointError.self) { try Adapter.load(dir.file("b.safetensors")) }
        // Config rank disagrees with the weights.
        try FileSystem.makeDirectory(dir.file("c"))
        try SafeTensorsWriter.write(
            [
                TensorEntry(name: "base_model.model.x.lora_A.weight", tensor: Tensor(zeros: [2, 4])),
                TensorEntry(name: "base_model.model.x.lora_B.weight", tensor: Tensor(zeros: [4, 2])),
            ], to: dir.file("c/adapter_model.safetensors"))
        writeBytes(Array(#"{"peft_type":"LORA","r":8,"lora_alpha":8,"target_modules":["x"]}"#.utf8), dir.file("c/adapter_config.json"))
        do {
            _ = try Adapter.load(dir.file("c"))
            Issue.record("accepted")
        } catch let e as CheckpointError {
            #expect(e.message.contains("rank 2 in the weights but 8 in the config"))
        }
        writeBytes(Array(#"{"peft_type":"IA3"}"#.utf8), dir.file("c/adapter_config.json"))
        #expect(throws: CheckpointError.self) { try Adapter.load(dir.file("c")) }
        writeBytes(Array(#"{"peft_type":"LORA","r":2,"rank_pattern":{"(":1}}"#.utf8), dir.file("c/adapter_config.json"))
        #expect(throws: CheckpointError.self) { try Adapter.load(dir.file("c")) }
        // A directory without a config.
        #expect(throws: CheckpointError.self) { try Adapter.load(dir.path) }
    }
}

@Suite struct ModelDirTests {
    @Test func tinyModelsLoad() throws {
        let bert = try HFModelDir(path: Paths.fixture("tiny-bert"))
        #expect(bert.config.modelType == "bert" && bert.config.hiddenSize == 16 && bert.config.numHiddenLayers == 2)
        #expect(bert.weightFiles == ["model.safetensors"])
        let sharded = try HFModelDir(path: Paths.fixture("tiny-bert-sharded"))
        #expect(sharded.weights is ShardedCheckpoint && sharded.parameterCount == bert.parameterCount)
        let llama = try HFModelDir(path: Paths.fixture("tiny-llama"))
        #expect(llama.config.numKeyValueHeads == 2 && llama.config.tieWordEmbeddings == true)
        #expect(llama.otherFiles == ["generation_config.json"])
    }

    @Test func realMiniLMLoads() throws {
        #expect(FileSystem.exists(Paths.minilm), "run `make setup` first: \(Paths.minilm) is missing")
        let m = try HFModelDir(path: Paths.minilm)
        #expect(m.config.modelType == "bert" && m.config.hiddenSize == 384 && m.config.numHiddenLayers == 6)
        #expect(abs(m.parameterCount - 22_713_216) < 100_000)
        #expect(m.tokenizerFiles.contains("tokenizer.json") && m.tokenizerFiles.contains("vocab.txt"))
        let ins = try Inspection.inspect(Paths.minilm, options: .init(validate: true))
        #expect(ins.faults.isEmpty)
    }
}

/// The run records coto-train writes and the report reads: typed both ways, non-finite numbers as null,
/// files from before the typed records still read, a bad line named by file:line.
@Suite struct RunRecordTests {
    @Test func stepLogAndMetricsRoundTrip() throws {
        let dir = TempDir()
        let log = [
            StepLog(step: 1, loss: 1.25, lr: 2e-3, p: 0.1, activeGroups: [0, 3], tokensPerSecond: 1500.5, seconds: 0.25),
            StepLog(step: 2, loss: .nan, lr: 1e-3, p: 0.4, activeGroups: [], tokensPerSecond: 1400, seconds: 0.5),
        ]
        try AtomicFileWriter.write(try RunRecords.logLines(log), to: dir.file(RunRecords.logFile))
        let back = try RunRecords.readLog(dir.path)
        #expect(back.count == 2 && back[0] == log[0] && back[1].loss.isNaN && back[1].activeGroups.isEmpty)
        #expect(String(decoding: readBytes(dir.file(RunRecords.logFile)), as: UTF8.self).contains("\"loss\":null"))
        #expect(try RunRecords.decodeLogArray(try RunRecords.logArray([log[0]]), path: "x") == [log[0]])
        let m = RunMetrics(
            task: "classification", steps: 2, coto: true, variant: "dora", labels: ["a", "b"], finalLoss: nil, data: "d/noun8-train.jsonl",
            evalData: nil, seed: 7, rank: 8, targets: "query,value", threads: 2, trainSeconds: 3.5, tokensPerSecond: 1450, devStep: 2,
            devAccuracy: 0.75, devLoss: 0.6)
        try AtomicFileWriter.write(try RunRecords.metricsJSON(m), to: dir.file(RunRecords.metricsFile))
        #expect(try RunRecords.readMetrics(dir.path) == m)
        #expect(m.seriesName == "coto-dora")
    }

    @Test func metricsWrittenBeforeTheTypedRecordsStillRead() throws {
        let dir = TempDir()
        let old = """
            {"task": "classification", "steps": 100, "coto": false, "variant": "lora", "labels": ["x", "y"], "final_loss": null,
             "data": "data/pos4-train.jsonl", "eval_data": null, "seed": 1, "rank": 8, "targets": "query,value", "threads": 2,
             "train_seconds": 37.7, "tokens_per_second": 2100.5}
            """
        try AtomicFileWriter.write(old, to: dir.file(RunRecords.metricsFile))
        let m = try RunRecords.readMetrics(dir.path)
        #expect(m.seriesName == "lora" && m.finalLoss == nil && m.devAccuracy == nil && m.seed == 1 && m.trainSeconds == 37.7)
        let lines = "{\"step\": 1, \"loss\": 0.5, \"lr\": 0.001, \"p\": 1, \"active_groups\": [0], \"tokens_per_s\": 10}\nnot json\n"
        try AtomicFileWriter.write(lines, to: dir.file(RunRecords.logFile))
        do {
            _ = try RunRecords.readLog(dir.path)
            Issue.record("accepted")
        } catch let e as CheckpointError { #expect(e.path == dir.file(RunRecords.logFile) + ":2") }
    }
}
