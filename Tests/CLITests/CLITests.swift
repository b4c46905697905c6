import Testing
import Foundation
import TestSupport
import Checkpoint
import Numerics

/// Runs the built executables as a user would: exit codes, one-line errors, JSON output.
enum CLI {
    static let root = TestPaths.root

    static func binary(_ name: String) -> String {
        // Next to the test bundle (swift test builds every product into the same directory).
        let bundle = Bundle.main.bundleURL.deletingLastPathComponent()
        for dir in [bundle.path, root + "/.build/debug"] where FileManager.default.isExecutableFile(atPath: dir + "/" + name) {
            return dir + "/" + name
        }
        return root + "/.build/debug/" + name
    }

    struct Result {
        let status: Int32
        let out: String
        let err: String
    }

    static func run(_ tool: String, _ args: [String], environment: [String: String]? = nil) throws -> Result {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary(tool))
        p.arguments = args
        if let environment { p.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new } }
        let o = Pipe()
        let e = Pipe()
        p.standardOutput = o
        p.standardError = e
        try p.run()
        let od = o.fileHandleForReading.readDataToEndOfFile()
        let ed = e.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return Result(status: p.terminationStatus, out: String(decoding: od, as: UTF8.self), err: String(decoding: ed, as: UTF8.self))
    }

    static func fixture(_ p: String) -> String { root + "/Fixtures/" + p }
}

@Suite struct InspectCLITests {
    @Test func helpHasAnExampleAndExitsZero() throws {
        for tool in ["coto-inspect", "coto-convert", "coto-extract", "coto-merge", "coto-prune", "coto-fuse", "coto-train", "coto-eval", "coto-data"] {
            let r = try CLI.run(tool, ["--help"])
            #expect(r.status == 0)
            #expect(r.out.contains("Examples:"))
        }
    }

    @Test func usageErrorsExit64() throws {
        #expect(try CLI.run("coto-inspect", []).status == 64)
        #expect(try CLI.run("coto-inspect", ["x", "--no-such-flag"]).status == 64)
        #expect(try CLI.run("coto-convert", ["a", "-o", "b", "--dtype", "int3"]).status == 64)
    }

    @Test func missingAndBrokenFilesAreOneLineErrors() throws {
        let t = TempDir()
        let missing = t.path + "/nope.safetensors"
        var r = try CLI.run("coto-inspect", [missing])
        #expect(r.status == 1)
        #expect(r.err == "error: \(missing): no such file or directory\n")
        let broken = t.path + "/broken.safetensors"
        _ = FileManager.default.createFile(atPath: broken, contents: Data([9, 0, 0, 0, 0, 0, 0, 0, 123, 125]))
        r = try CLI.run("coto-inspect", [broken])
        #expect(r.status == 1)
        #expect(r.err.hasPrefix("error: \(broken): ") && r.err.split(separator: "\n").count == 1)
    }

    @Test func jsonOutputForEveryKind() throws {
        for (path, kind) in [
            ("peft/bert-lora", "adapter"), ("tiny-bert", "model"), ("tiny-bert-sharded", "model"),
            ("gguf/tiny.gguf", "gguf"), ("codecs.safetensors", "safetensors"),
            ("tiny-bert-sharded/model.safetensors.index.json", "sharded"),
        ] {
            let r = try CLI.run("coto-inspect", [CLI.fixture(path), "--json", "--stats"])
            #expect(r.status == 0, "\(path): \(r.err)")
            let j = try JSON.parse(string: r.out)
            #expect(j["kind"]?.stringValue == kind, "\(path)")
        }
    }

    @Test func validateExitsOneOnNaN() throws {
        let t = TempDir()
        let p = t.path + "/nan.safetensors"
        try SafeTensorsWriter.write([TensorEntry(name: "w", dtype: .f32, shape: [2], source: .bytes([0, 0, 192, 127, 0, 0, 128, 63]))], to: p)
        let r = try CLI.run("coto-inspect", [p, "--validate"])
        #expect(r.status == 1)
        #expect(r.err.contains("fault: tensor 'w': 1 NaN"))
        #expect(try CLI.run("coto-inspect", [CLI.fixture("tiny-bert-sharded"), "--validate"]).status == 0)
    }
}

@Suite struct ConvertCLITests {
    @Test func adapterDirToFileAndBack() throws {
        let t = TempDir()
        let file = t.path + "/a.safetensors"
        var r = try CLI.run("coto-convert", [CLI.fixture("peft/bert-dora"), "-o", file])
        #expect(r.status == 0, "\(r.err)")
        r = try CLI.run("coto-convert", [file, "-o", t.path + "/back"])
        #expect(r.status == 0, "\(r.err)")
        let a = try Adapter.load(CLI.fixture("peft/bert-dora"))
        let b = try Adapter.load(t.path + "/back")
        #expect(a.modules == b.modules)
    }

    @Test func outputEqualToInputIsRefused() throws {
        let t = TempDir()
        let file = t.path + "/a.safetensors"
        _ = try CLI.run("coto-convert", [CLI.fixture("peft/bert-lora"), "-o", file])
        let before = try Data(contentsOf: URL(fileURLWithPath: file))
        let r = try CLI.run("coto-convert", [file, "-o", file])
        #expect(r.status == 1 && r.err.contains("output path is the input"))
        #expect(try Data(contentsOf: URL(fileURLWithPath: file)) == before)
    }

    @Test func reshardAndRecastModelDir() throws {
        let t = TempDir()
        let r = try CLI.run("coto-convert", [CLI.fixture("tiny-bert"), "-o", t.path + "/m", "--max-shard-size", "10KB", "--dtype", "bf16", "--json"])
        #expect(r.status == 0, "\(r.err)")
        let m = try HFModelDir(path: t.path + "/m")
        #expect(m.weights is ShardedCheckpoint)
        #expect(m.weights.tensorNames.allSatisfy { m.weights.tensorInfo($0)?.dtype == .bf16 })
        #expect((m.configJSON["dtype"] ?? m.configJSON["torch_dtype"])?.stringValue == "bfloat16")
        // Same bytes as torch's own bf16 copy of the model.
        let ref = try SafeTensorsFile(path: CLI.fixture("tiny-bert-bf16/model.safetensors"))
        for n in ref.names { #expect(try m.weights.loadTensor(n) == ref.tensor(n), "\(n)") }
    }

    @Test func tinyGGUFIsNotLlamaComplete() throws {
        // tiny.gguf has arch llama but no llama.* metadata: a clear error, nothing written.
        let t = TempDir()
        let r = try CLI.run("coto-convert", [CLI.fixture("gguf/tiny.gguf"), "-o", t.path + "/out"])
        #expect(r.status == 1)
        #expect(r.err.contains("llama.embedding_length"))
        #expect(!FileManager.default.fileExists(atPath: t.path + "/out/config.json"))
    }
}

@Suite struct OperatorCLITests {
    @Test func mergeLambdaEndpointsAndJSON() throws {
        let t = TempDir()
        let a = CLI.fixture("peft/bert-lora")
        var r = try CLI.run("coto-merge", [a, a, "--lambda", "0", "-o", t.path + "/m0", "--json"])
        #expect(r.status == 0, "\(r.err)")
        let j = try JSON.parse(string: r.out)
        #expect(j["method"]?.stringValue == "interpolate" && j["result"]?["module_count"]?.intValue == 4)
        #expect(try Adapter.load(t.path + "/m0").modules == Adapter.load(a).modules)
        r = try CLI.run(
            "coto-merge", [CLI.fixture("peft/merge-a"), CLI.fixture("peft/merge-c"), "--method", "svd", "--rank", "3", "-o", t.path + "/s.safetensors"])
        #expect(r.status == 0, "\(r.err)")
        #expect(try Adapter.load(t.path + "/s.safetensors").modules.allSatisfy { $0.rank == 3 })
    }

    /// A HiRA adapter with a label list through the commands: convert (dir → file → dir), merge, prune; each
    /// output reloads as HiRA with the labels; merging it with a LoRA adapter is one error line.
    @Test func hiraAndLabelsSurviveConvertMergeAndPrune() throws {
        let t = TempDir()
        var h = try Adapter.load(CLI.fixture("peft/bert-lora"))
        h.variant = .hira
        h.labels = ["neg", "neu", "pos"]
        try h.save(to: t.path + "/h")
        #expect(FileManager.default.fileExists(atPath: t.path + "/h/coto_adapter.json"))
        let steps: [(String, [String], String)] = [
            ("coto-convert", [t.path + "/h", "-o", t.path + "/h.safetensors"], t.path + "/h.safetensors"),
            ("coto-convert", [t.path + "/h.safetensors", "-o", t.path + "/h2"], t.path + "/h2"),
            ("coto-merge", [t.path + "/h", t.path + "/h2", "--lambda", "0.3", "-o", t.path + "/m"], t.path + "/m"),
            ("coto-merge", [t.path + "/h", t.path + "/h2", "--method", "task-arithmetic", "-o", t.path + "/ta.safetensors"], t.path + "/ta.safetensors"),
            ("coto-prune", [t.path + "/h", "--sparsity", "0.5", "-o", t.path + "/p"], t.path + "/p"),
        ]
        for (tool, args, out) in steps {
            let r = try CLI.run(tool, args)
            #expect(r.status == 0, "\(tool) \(args): \(r.err)")
            let back = try Adapter.load(out)
            #expect(back.variant == .hira, "\(out) reloads as \(back.variant)")
            #expect(back.labels == h.labels, "\(out) labels \(back.labels ?? [])")
        }
        let r = try CLI.run("coto-merge", [t.path + "/h", CLI.fixture("peft/bert-lora"), "-o", t.path + "/mixed"])
        #expect(r.status == 1 && r.err.hasPrefix("error: ") && r.err.contains("HiRA") && r.err.split(separator: "\n").count == 1, "\(r.err)")
        #expect(!FileManager.default.fileExists(atPath: t.path + "/mixed"))
    }

    /// coto-extract on a fused tiny BERT and coto-convert --to-lora on a DoRA adapter, as a user runs them.
    @Test func extractAndToLoRACommands() throws {
        let t = TempDir()
        let bert = CLI.fixture("tiny-bert")
        #expect(try CLI.run("coto-fuse", ["--model", bert, "--adapter", CLI.fixture("peft/bert-lora"), "-q", "-o", t.path + "/fused"]).status == 0)
        var r = try CLI.run("coto-extract", ["--base", bert, "--tuned", t.path + "/fused", "--energy", "0.9999", "--json", "-o", t.path + "/x"])
        #expect(r.status == 0, "\(r.err)")
        let j = try JSON.parse(string: r.out)
        let mods = j["report"]?["modules"]?.arrayValue ?? []
        #expect(mods.count == 4)  // query and value of two layers (the head PEFT saved is the base's, unchanged)
        #expect(mods.allSatisfy { ($0["relative_error"]?.doubleValue ?? 1) < 0.01 && ($0["rank"]?.intValue ?? 99) <= 4 })
        #expect(j["report"]?["changed_not_extracted"]?.arrayValue?.isEmpty == true)
        #expect((j["report"]?["unchanged"]?.arrayValue?.count ?? 0) >= 10)
        #expect(try Adapter.load(t.path + "/x").modules.count == 4)
        // Usage errors and a model that is not a fine-tune of the base.
        #expect(try CLI.run("coto-extract", ["--base", bert, "--tuned", t.path + "/fused", "-o", t.path + "/y"]).status == 64)
        #expect(
            try CLI.run("coto-extract", ["--base", bert, "--tuned", t.path + "/fused", "--rank", "2", "--energy", "0.5", "-o", t.path + "/y"]).status == 64)
        r = try CLI.run("coto-extract", ["--base", bert, "--tuned", CLI.fixture("tiny-llama"), "--rank", "2", "-o", t.path + "/y"])
        #expect(r.status == 1 && r.err.hasPrefix("error: ") && r.err.split(separator: "\n").count == 1, "\(r.err)")
        #expect(!FileManager.default.fileExists(atPath: t.path + "/y"))
        // DoRA -> LoRA.
        r = try CLI.run("coto-convert", [CLI.fixture("peft/bert-dora"), "--to-lora", "--base", bert, "--rank", "16", "--json", "-o", t.path + "/l"])
        #expect(r.status == 0, "\(r.err)")
        let conv = try JSON.parse(string: r.out)["to_lora"]?.arrayValue ?? []
        #expect(conv.count == 4 && conv.allSatisfy { ($0["relative_error"]?.doubleValue ?? 1) < 1e-5 })
        let l = try Adapter.load(t.path + "/l")
        #expect(l.variant == .lora && l.modules.allSatisfy { $0.magnitude == nil })
        #expect(try CLI.run("coto-convert", [CLI.fixture("peft/bert-dora"), "--to-lora", "-o", t.path + "/m"]).status == 64)
        r = try CLI.run("coto-convert", [CLI.fixture("peft/bert-lora"), "--to-lora", "--base", bert, "-o", t.path + "/m"])
        #expect(r.status == 1 && r.err.contains("already a LoRA adapter"), "\(r.err)")
    }

    /// llama.cpp LoRA adapters through coto-convert both ways, and coto-fuse onto the GGUF base itself.
    @Test func ggufAdapterRoundTripAndFuseOntoAGGUFBase() throws {
        let t = TempDir()
        let base = TestPaths.smollm2
        #expect(FileManager.default.fileExists(atPath: base), "run make setup")
        var rng = SeededRNG(seed: 8)
        func m(_ r: Int, _ c: Int) -> Tensor { Tensor(shape: [r, c], data: (0..<(r * c)).map { _ in Float(rng.normal() * 0.05) }) }
        var c = LoraConfig()
        c.r = 4
        c.loraAlpha = 8
        c.targetModules = .names(["q_proj", "v_proj"])
        c.taskType = "CAUSAL_LM"
        let a = Adapter(
            config: c,
            modules: [
                LoraModule(
                    name: "model.layers.0.self_attn.q_proj", a: AdapterTensor(dtype: .f32, tensor: m(4, 576)), b: AdapterTensor(dtype: .f32, tensor: m(576, 4)),
                    alpha: 8, scaling: 2),
                LoraModule(
                    name: "model.layers.1.self_attn.v_proj", a: AdapterTensor(dtype: .f32, tensor: m(4, 576)), b: AdapterTensor(dtype: .f32, tensor: m(192, 4)),
                    alpha: 8, scaling: 2),
            ], otherTensors: [], source: "test", configOrigin: "test")
        try a.save(to: t.path + "/a")
        var r = try CLI.run("coto-convert", [t.path + "/a", "-o", t.path + "/a.gguf", "--base", base, "--json"])
        #expect(r.status == 0, "\(r.err)")
        #expect(try JSON.parse(string: r.out)["kind"]?.stringValue == "adapter-to-gguf")
        r = try CLI.run("coto-convert", [t.path + "/a.gguf", "-o", t.path + "/back"])
        #expect(r.status == 1 && r.err.hasPrefix("error: ") && r.err.contains("--base") && r.err.split(separator: "\n").count == 1, "\(r.err)")
        r = try CLI.run("coto-convert", [t.path + "/a.gguf", "--base", base, "-o", t.path + "/back"])
        #expect(r.status == 0, "\(r.err)")
        let back = try Adapter.load(t.path + "/back")
        #expect(back.modules.count == 2)
        for (x, y) in zip(back.modules, a.modules) { #expect(x.name == y.name && x.delta().maxAbsDiff(y.delta()) <= 1e-6) }
        // Fuse onto the Q4_1 GGUF directly: an HF directory with the derived files; the temporary side
        // directory (in this test's own TMPDIR: other tests make theirs at the same time) is gone afterwards.
        let tmp = t.path + "/tmp"
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        r = try CLI.run("coto-fuse", ["--model", base, "--adapter", t.path + "/a", "-q", "-o", t.path + "/fused"], environment: ["TMPDIR": tmp])
        #expect(r.status == 0, "\(r.err)")
        for f in ["config.json", "model.safetensors", "tokenizer.json", "generation_config.json"] {
            #expect(FileManager.default.fileExists(atPath: t.path + "/fused/" + f), "\(f)")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: tmp).isEmpty)
    }

    @Test func dareWithTheSameSeedWritesIdenticalBytes() throws {
        let t = TempDir()
        let a = CLI.fixture("peft/merge-a")
        let b = CLI.fixture("peft/merge-b")
        for (out, seed) in [("x", "7"), ("y", "7"), ("z", "8")] {
            let r = try CLI.run("coto-merge", [a, b, "--method", "dare_ties", "--density", "0.4", "--seed", seed, "-o", t.path + "/\(out).safetensors"])
            #expect(r.status == 0, "\(r.err)")
        }
        let x = try Data(contentsOf: URL(fileURLWithPath: t.path + "/x.safetensors"))
        #expect(x == (try Data(contentsOf: URL(fileURLWithPath: t.path + "/y.safetensors"))))
        #expect(x != (try Data(contentsOf: URL(fileURLWithPath: t.path + "/z.safetensors"))))
    }

    /// LoRA-LEGO from the command line on inputs of ranks 4, 4 and 8 (key only in merge-b): the written adapter
    /// reloads with each module at r = α = k (`--rank`, default the largest rank among the inputs that have the
    /// module, at most its number of units: key keeps its 4), the same seed writes the same file, every delta is
    /// finite and nonzero.
    @Test func legoFromTheCommandLine() throws {
        let t = TempDir()
        let ins = ["merge-a", "merge-b", "merge-c"].map { CLI.fixture("peft/" + $0) }
        for (k, extra) in [(8, [String]()), (12, ["--rank", "12"])] {
            var files: [Data] = []
            for run in 0..<2 {
                let out = t.path + "/lego-\(k)-\(run).safetensors"
                let r = try CLI.run("coto-merge", ins + ["--method", "lego", "--seed", "3", "--heads", "drop"] + extra + ["-o", out])
                #expect(r.status == 0, "\(r.err)")
                let merged = try Adapter.load(out)
                for m in merged.modules {
                    #expect(m.rank == (m.name.hasSuffix(".key") ? 4 : k) && m.scaling == 1, "\(m.name): rank \(m.rank)")
                    let d = m.delta().data
                    #expect(d.allSatisfy(\.isFinite) && d.contains { $0 != 0 }, "\(m.name)")
                }
                files.append(try Data(contentsOf: URL(fileURLWithPath: out)))
            }
            #expect(files[0] == files[1], "the same seed writes the same adapter")
        }
    }

    /// The SVD-space merges from the command line on inputs of ranks 4, 4 and 8: the written adapters reload
    /// and their deltas are the reference's (Fixtures/beyond-peft/spaces.safetensors); knots without
    /// --density is one error line and writes nothing.
    @Test func svdSpaceMergesFromTheCommandLine() throws {
        let t = TempDir()
        let ins = ["merge-a", "merge-b", "merge-c"].map { CLI.fixture("peft/" + $0) }
        let ref = try SafeTensorsFile(path: CLI.fixture("beyond-peft/spaces.safetensors"))
        for (method, extra) in [("knots", ["--density", "0.3"]), ("core", []), ("core_ties", ["--density", "0.4"])] {
            let out = t.path + "/\(method).safetensors"
            let r = try CLI.run("coto-merge", ins + ["--method", method, "--weights", "0.8,0.8,0.8"] + extra + ["-o", out])
            #expect(r.status == 0, "\(method): \(r.err)")
            let merged = try Adapter.load(out)
            #expect(merged.modules.count == 6, "\(method)")
            for m in merged.modules {
                let want = try ref.tensor("\(method).\(m.name).delta")
                let got = m.delta()
                let err = zip(got.data, want.data).reduce(0.0) { $0 + Double($1.0 - $1.1) * Double($1.0 - $1.1) }.squareRoot()
                let norm = want.data.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
                #expect(err <= 1e-4 * norm, "\(method) \(m.name): \(err / norm)")
            }
        }
        let r = try CLI.run("coto-merge", [ins[0], ins[2], "--method", "knots", "-o", t.path + "/x"])
        #expect(r.status == 1 && r.err.contains("--density") && r.err.split(separator: "\n").count == 1, "\(r.err)")
        #expect(!FileManager.default.fileExists(atPath: t.path + "/x"))
    }

    /// mergekit's and PEFT's spellings name the same method (the same bytes out); a misspelling gets the
    /// nearest name suggested.
    @Test func mergeMethodSpellings() throws {
        let t = TempDir()
        let a = CLI.fixture("peft/merge-a")
        let c = CLI.fixture("peft/merge-c")
        for (i, spelling) in ["task-arithmetic", "task_arithmetic", "Task_Arithmetic"].enumerated() {
            let r = try CLI.run("coto-merge", [a, c, "--method", spelling, "-o", t.path + "/ta\(i).safetensors", "--json"])
            #expect(r.status == 0, "\(spelling): \(r.err)")
            #expect(r.out.contains("\"task-arithmetic\""), "\(r.out)")
        }
        let first = try Data(contentsOf: URL(fileURLWithPath: t.path + "/ta0.safetensors"))
        for i in 1...2 { #expect(try Data(contentsOf: URL(fileURLWithPath: t.path + "/ta\(i).safetensors")) == first) }
        let typo = try CLI.run("coto-merge", [a, c, "--method", "dare-tie", "-o", t.path + "/x"])
        #expect(typo.status == 64 && typo.err.contains("did you mean 'dare_ties'?"), "\(typo.err)")
        let far = try CLI.run("coto-merge", [a, c, "--method", "slerp", "-o", t.path + "/x"])
        #expect(far.status == 64 && far.err.contains("unknown merge method 'slerp'") && !far.err.contains("did you mean"), "\(far.err)")
    }

    @Test func mergeUsageAndInputErrors() throws {
        let t = TempDir()
        let a = CLI.fixture("peft/merge-a")
        let c = CLI.fixture("peft/merge-c")
        for args in [
            [a, c, "--method", "nope", "-o", t.path + "/x"], [a, "--lambda", "0.5", "-o", t.path + "/x"],
            [a, c, "--weights", "1", "-o", t.path + "/x"], [a, c, "--density", "1.5", "-o", t.path + "/x"],
            [a, c, "--rank", "0", "-o", t.path + "/x"], [a, c, "--heads", "sum", "-o", t.path + "/x"],
        ] {
            #expect(try CLI.run("coto-merge", args).status == 64, "\(args)")
        }
        // Mixed ranks where the method needs equal ranks: one line naming the cause, nothing written.
        let r = try CLI.run("coto-merge", [a, c, "--method", "ties", "--density", "0.5", "-o", t.path + "/x"])
        #expect(r.status == 1 && r.err.hasPrefix("error: ") && r.err.contains("same r") && r.err.split(separator: "\n").count == 1)
        #expect(!FileManager.default.fileExists(atPath: t.path + "/x"))
        let missing = try CLI.run("coto-merge", [a, t.path + "/nope", "-o", t.path + "/x"])
        #expect(missing.status == 1 && missing.err.contains("nope"))
    }

    @Test func pruneReportsWhatItRemoved() throws {
        let t = TempDir()
        let r = try CLI.run("coto-prune", [CLI.fixture("peft/bert-patterns"), "--keep-layers", "0", "--sparsity", "0.5", "-o", t.path + "/p", "--json"])
        #expect(r.status == 0, "\(r.err)")
        let j = try JSON.parse(string: r.out)
        let report = j["report"]!
        #expect(report["dropped"]!.intValue! > 0 && report["zeroed"]!.intValue! > 0)
        let kept = report["norm_fraction_kept"]!.doubleValue!
        #expect(kept > 0 && kept < 1)
        #expect(report["layers"]?.arrayValue?.count == 2)
        #expect(try CLI.run("coto-prune", [CLI.fixture("peft/bert-lora"), "-o", t.path + "/q"]).status == 64)
        #expect(try CLI.run("coto-prune", [CLI.fixture("peft/bert-lora"), "--drop-modules", "q_proj", "-o", t.path + "/q"]).status == 1)
    }

    @Test func fuseWritesAModelDirAndRefusesItsInput() throws {
        let t = TempDir()
        var r = try CLI.run("coto-fuse", ["--model", CLI.fixture("tiny-bert"), "--adapter", CLI.fixture("peft/bert-dora"), "-o", t.path + "/f", "--json"])
        #expect(r.status == 0, "\(r.err)")
        #expect(try HFModelDir(path: t.path + "/f").weights.tensorNames.count == 41)
        r = try CLI.run("coto-fuse", ["--model", CLI.fixture("tiny-bert"), "--adapter", CLI.fixture("peft/bert-lora"), "-o", CLI.fixture("tiny-bert")])
        #expect(r.status == 1)
        r = try CLI.run("coto-fuse", ["--model", CLI.fixture("tiny-llama"), "--adapter", CLI.fixture("peft/bert-lora"), "-o", t.path + "/g"])
        #expect(r.status == 1 && r.err.contains("bert.encoder"))
    }
}

/// coto-eval takes a llama.cpp GGUF as --model directly (dequantized as it loads, tokenizer from its
/// metadata): the same scores as on its conversion.
@Suite struct GGUFModelCLITests {
    @Test func evalOnTheGGUFEqualsEvalOnItsConversion() throws {
        #expect(FileManager.default.fileExists(atPath: TestPaths.smollm2), "run make setup")
        let t = TempDir()
        let data = t.path + "/ppl.jsonl"
        try #"{"text": "A dog is a domesticated animal that barks."}\#n{"text": "The capital of France is Paris."}\#n"#.write(
            toFile: data, atomically: true, encoding: .utf8)
        #expect(try CLI.run("coto-convert", [TestPaths.smollm2, "-o", t.path + "/conv", "-q"]).status == 0)
        let direct = try CLI.run("coto-eval", ["--model", TestPaths.smollm2, "--data", data, "--task", "perplexity", "--json"])
        let converted = try CLI.run("coto-eval", ["--model", t.path + "/conv", "--data", data, "--task", "perplexity", "--json"])
        #expect(direct.status == 0 && converted.status == 0, "\(direct.err) \(converted.err)")
        func loss(_ s: String) throws -> Double {
            let o = try #require(try JSONSerialization.jsonObject(with: Data(s.utf8)) as? [String: Any])
            return try #require(o["loss"] as? Double)
        }
        #expect(try loss(direct.out) == loss(converted.out))
        #expect(try loss(direct.out) > 1 && loss(direct.out) < 8)
    }
}
