import Testing
import Foundation
import TestSupport
import Checkpoint

/// Sharded sweeps and training grids from the command line on the tiny BERT: a finished shard is not rerun,
/// another configuration is refused, `gather` names every gap, and the report from shards is byte for byte the
/// report from one unsharded run.
@Suite(.serialized) struct ScaleCLITests {
    static let bert = CLI.fixture("tiny-bert")
    static let a = CLI.fixture("peft/bert-lora")

    /// A second adapter of the same shapes and head: bert-lora at half its magnitude-pruned entries.
    static func second(_ t: TempDir) throws -> String {
        let b = t.path + "/b"
        let r = try CLI.run("coto-prune", [a, "--sparsity", "0.5", "-o", b, "-q"])
        try #require(r.status == 0, "\(r.err)")
        return b
    }

    static func data(_ t: TempDir) throws -> String {
        let data = t.path + "/tiny-test.jsonl"
        let rows = ["a b c", "d e", "f", "g h i j", "k l", "m n o", "p", "q r s", "t u", "v w x y"].enumerated().map { i, s in
            "{\"text\": \"\(s)\", \"label\": \"\(["x", "y", "z"][i % 3])\"}"
        }
        try (rows.joined(separator: "\n") + "\n").write(toFile: data, atomically: true, encoding: .utf8)
        return data
    }

    /// Every sweep kind, as shard `shard` into `out`.
    static func sweeps(_ data: String, _ b: String, out: String, shard: String, extra: [String] = []) throws {
        let common =
            ["--model", bert, "--name", "lora", "-o", out, "-q"] + (shard.hasPrefix("jobs ") ? ["--jobs", String(shard.dropFirst(5))] : ["--shard", shard])
            + extra
        let runs: [[String]] = [
            ["interpolate", a, b, "--data", data, "--grid", "0:1:0.25"],
            ["prune", a, "--data", data, "--sparsity", "0,0.5,0.9", "--layers", "all,0", "--ranks", "2,1"],
            ["shapley", a, "--data", data, "--samples", "8", "--grid", "4"],
            ["merge", a, b, "--task-data", "\(data),\(data)", "--methods", "interpolate,ties,svd"],
        ]
        for r in runs {
            let res = try CLI.run("coto-eval", r + common)
            #expect(res.status == 0, "\(r[0]) \(shard): \(res.err)")
        }
    }

    static func files(_ dir: String) throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: dir).sorted() }
    static func bytes(_ p: String) -> Data? { FileManager.default.contents(atPath: p) }

    /// DIR/train.jsonl: the first 32 noun8 training examples; returns every line of the fixture.
    @discardableResult
    static func writeTrain(_ dir: String) throws -> [Substring] {
        let lines = try String(contentsOfFile: CLI.fixture("wordnet/noun8-train.jsonl"), encoding: .utf8).split(separator: "\n")
        try (lines.prefix(32).joined(separator: "\n") + "\n").write(toFile: dir + "/train.jsonl", atomically: true, encoding: .utf8)
        return lines
    }

    /// A 3-step grid over 32 noun8 examples, LoRA and CoTo, the given seeds: DIR/train.jsonl, DIR/grid.json.
    static func writeSmallGrid(_ dir: String, seeds: String) throws -> String {
        try writeTrain(dir)
        let grid = dir + "/grid.json"
        try """
        {"model": "\(bert)", "tasks": {"noun8": {"data": "train.jsonl"}}, "methods": ["lora", "coto"], "seeds": [\(seeds)],
         "options": {"steps": 3, "batch-size": 8, "max-length": 16, "targets": "query,value"}}
        """.write(toFile: grid, atomically: true, encoding: .utf8)
        return grid
    }

    @Test func shardedReportEqualsTheUnshardedOneByteForByte() throws {
        let t = TempDir()
        let data = try Self.data(t)
        let sweeps = t.path + "/sweeps"
        let b = try Self.second(t)
        for i in 1...3 { try Self.sweeps(data, b, out: sweeps, shard: "\(i)/3") }
        #expect(try Self.files(sweeps).count == 12)
        let g = try CLI.run("coto-eval", ["gather", sweeps])
        #expect(g.status == 0 && g.out.split(separator: "\n").count == 4 && !g.out.contains("INCOMPLETE"), "\(g.out) \(g.err)")
        #expect(try CLI.run("coto-eval", ["report", sweeps, "-o", t.path + "/sharded", "-q"]).status == 0)
        // The same sweeps unsharded, in a directory of the same name (the report names its inputs).
        try FileManager.default.moveItem(atPath: sweeps, toPath: t.path + "/parts")
        try Self.sweeps(data, b, out: sweeps, shard: "1/1")
        #expect(try CLI.run("coto-eval", ["report", sweeps, "-o", t.path + "/whole", "-q"]).status == 0)
        for f in ["report.md", "results.json"] + (try Self.files(t.path + "/whole/plots")).map({ "plots/" + $0 }) {
            #expect(Self.bytes(t.path + "/sharded/" + f) == Self.bytes(t.path + "/whole/" + f), "\(f) differs")
        }
        #expect(try Self.files(t.path + "/whole/plots").count >= 4)
        // The same sweeps as 3 local jobs (`--jobs 3`: shards 1/3 … 3/3 side by side): the same report again.
        try FileManager.default.moveItem(atPath: sweeps, toPath: t.path + "/whole-in")
        try Self.sweeps(data, b, out: sweeps, shard: "jobs 3")
        #expect(try Self.files(sweeps).count == 12)
        #expect(try CLI.run("coto-eval", ["report", sweeps, "-o", t.path + "/jobs", "-q"]).status == 0)
        for f in ["report.md", "results.json"] + (try Self.files(t.path + "/whole/plots")).map({ "plots/" + $0 }) {
            #expect(Self.bytes(t.path + "/jobs/" + f) == Self.bytes(t.path + "/whole/" + f), "\(f) differs with --jobs")
        }
    }

    @Test func aFinishedShardIsNotRerunAndAnotherConfigurationIsRefused() throws {
        let t = TempDir()
        let data = try Self.data(t)
        let out = t.path + "/s"
        let args = ["interpolate", Self.a, try Self.second(t), "--model", Self.bert, "--data", data, "--grid", "0:1:0.5", "--shard", "1/2", "-o", out]
        #expect(try CLI.run("coto-eval", args + ["-q"]).status == 0)
        let file = out + "/" + (try Self.files(out)[0])
        let before = Self.bytes(file)
        let mtime = try FileManager.default.attributesOfItem(atPath: file)[.modificationDate] as? Date
        let again = try CLI.run("coto-eval", args)
        #expect(again.status == 0 && again.out.contains("done already") && again.out.contains("nothing to do"), "\(again.out)")
        let mtimeAfter = try FileManager.default.attributesOfItem(atPath: file)[.modificationDate] as? Date
        #expect(Self.bytes(file) == before && mtimeAfter == mtime)
        let j = try JSON.parse(string: String(decoding: before ?? Data(), as: UTF8.self))
        #expect(j["config"]?["hash"]?.stringValue?.count == 64 && j["config"]?["inputs"]?.arrayValue?.count == 4)
        // Another option: refused, one line naming the file and what changed; --overwrite replaces it.
        let other = try CLI.run("coto-eval", args + ["--batch-size", "4", "-q"])
        #expect(other.status == 1 && other.err.split(separator: "\n").count == 1, "\(other.err)")
        #expect(other.err.contains(file) && other.err.contains("batch_size 32 → 4") && other.err.contains("--overwrite"))
        #expect(Self.bytes(file) == before)
        #expect(try CLI.run("coto-eval", args + ["--batch-size", "4", "--overwrite", "-q"]).status == 0)
        #expect(Self.bytes(file) != before)
        // Another input content: the data file changed.
        try (String(contentsOfFile: data, encoding: .utf8) + "{\"text\": \"z\", \"label\": \"x\"}\n").write(toFile: data, atomically: true, encoding: .utf8)
        let changed = try CLI.run("coto-eval", args + ["--batch-size", "4", "-q"])
        #expect(changed.status == 1 && changed.err.contains("data \(data) has other content"), "\(changed.err)")
    }

    @Test func gatherNamesEveryGapAndTheReportWaitsForIt() throws {
        let t = TempDir()
        let data = try Self.data(t)
        let out = t.path + "/s"
        let args = ["prune", Self.a, "--model", Self.bert, "--data", data, "--sparsity", "0,0.5,0.9", "--ranks", "2,1", "-o", out, "-q"]
        for i in ["1/3", "3/3"] { #expect(try CLI.run("coto-eval", args + ["--shard", i]).status == 0) }
        // Missing.
        var g = try CLI.run("coto-eval", ["gather", out])
        #expect(g.status == 1 && g.err.contains("missing shard 2/3 of 3") && g.out.contains("INCOMPLETE"), "\(g.err)")
        #expect(g.err.split(separator: "\n").last?.hasPrefix("error: ") == true)
        #expect(try CLI.run("coto-eval", ["gather", out, "--partial"]).status == 0)
        let rep = try CLI.run("coto-eval", ["report", out, "-o", t.path + "/r"])
        #expect(rep.status == 1 && rep.err.contains("missing shard 2/3") && !FileManager.default.fileExists(atPath: t.path + "/r/report.md"))
        let partial = try CLI.run("coto-eval", ["report", out, "-o", t.path + "/r", "--partial"])
        #expect(partial.status == 0 && partial.err.contains("warning:"), "\(partial.err)")
        #expect(try String(contentsOfFile: t.path + "/r/report.md", encoding: .utf8).contains("missing shard 2/3"))
        // Another configuration for shard 2.
        #expect(try CLI.run("coto-eval", args + ["--shard", "2/3", "--max-length", "16"]).status == 0)
        g = try CLI.run("coto-eval", ["gather", out])
        #expect(g.status == 1 && g.err.contains("max_length default → 16"), "\(g.err)")
        #expect(try CLI.run("coto-eval", args + ["--shard", "2/3", "--overwrite"]).status == 0)
        #expect(try CLI.run("coto-eval", ["gather", out]).status == 0)
        // Duplicated: a copy of shard 1 in a subdirectory.
        let name = try Self.files(out).first { $0.contains("shard-1-of-3") }!
        try FileManager.default.createDirectory(atPath: out + "/copy", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: out + "/" + name, toPath: out + "/copy/" + name)
        g = try CLI.run("coto-eval", ["gather", out])
        #expect(g.status == 1 && g.err.contains("shard 1/3 is there twice"), "\(g.err)")
        try FileManager.default.removeItem(atPath: out + "/copy")
        // A shard file short of a point.
        let path3 = out + "/" + (try Self.files(out).first { $0.contains("shard-3-of-3") }!)
        var obj = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path3))) as? [String: Any])
        obj["points"] = Array((obj["points"] as? [Any] ?? []).dropLast())
        try JSONSerialization.data(withJSONObject: obj).write(to: URL(fileURLWithPath: path3))
        g = try CLI.run("coto-eval", ["gather", out])
        #expect(g.status == 1 && g.err.contains("shard 3/3 holds 0 of its 1 points"), "\(g.err)")
    }

    /// `--jobs 2`: the grid's two shards as local processes side by side, one core each; every cell's adapter
    /// is byte-identical to the one-process run's, and gather finds the grid complete.
    @Test func localJobsTrainTheGridByteForByteAsOneProcess() throws {
        let t = TempDir()
        let grid = try Self.writeSmallGrid(t.path, seeds: "0, 1")
        let serial = try CLI.run("coto-train", ["--grid", grid, "-o", t.path + "/one", "-q"])
        #expect(serial.status == 0, "\(serial.err)")
        let jobs = try CLI.run("coto-train", ["--grid", grid, "-o", t.path + "/two", "--jobs", "2"])
        #expect(jobs.status == 0, "\(jobs.err)")
        #expect(jobs.err.contains("2 local jobs finished"), "\(jobs.err)")
        let cells = ["noun8-coto-s0", "noun8-coto-s1", "noun8-lora-s0", "noun8-lora-s1"]
        for c in cells {
            let a = Self.bytes(t.path + "/one/\(c)/adapter_model.safetensors")
            #expect(a != nil && a == Self.bytes(t.path + "/two/\(c)/adapter_model.safetensors"), "\(c)")
        }
        let g = try CLI.run("coto-eval", ["gather", t.path + "/two"])
        #expect(g.status == 0 && g.out.contains("4 of 4 cells finished"), "\(g.out)\(g.err)")
        // --jobs with --shard is refused.
        #expect(try CLI.run("coto-train", ["--grid", grid, "-o", t.path + "/x", "--jobs", "2", "--shard", "1/2"]).status == 64)
    }

    /// `--jobs 2` whose first shard fails: the other (a cell of 100,000 steps) is stopped at once, not waited
    /// for, and the error names both.
    @Test func aFailedLocalJobStopsTheOthers() throws {
        let t = TempDir()
        let lines = try Self.writeTrain(t.path)
        try (lines.prefix(8).joined(separator: "\n") + "\n{not json\n").write(toFile: t.path + "/bad.jsonl", atomically: true, encoding: .utf8)
        let grid = t.path + "/grid.json"
        try """
        {"model": "\(Self.bert)", "tasks": {"a_bad": {"data": "bad.jsonl"}, "b_long": {"data": "train.jsonl", "options": {"steps": 100000}}},
         "methods": ["lora"], "seeds": [0], "options": {"steps": 3, "batch-size": 8, "max-length": 16, "targets": "query,value"}}
        """.write(toFile: grid, atomically: true, encoding: .utf8)
        let r = try CLI.run("coto-train", ["--grid", grid, "-o", t.path + "/runs", "--jobs", "2", "-q"])
        #expect(r.status == 1 && r.err.contains("shard 1/2 exited 1") && r.err.contains("stopped shard 2/2"), "\(r.err)")
        // Had it been waited for, its 100,000 steps would have finished and written metrics.json.
        #expect(!FileManager.default.fileExists(atPath: t.path + "/runs/b_long-lora-s0/metrics.json"))
    }

    /// COTO_COST_DIR: every process writes its cost record; the grid's GEMM work is the same FLOPs run as one
    /// process or as two local jobs; gemm-rate measures the shapes and the report sets the stages against the floor.
    @Test func costRecordsCountTheSameGemmWorkSerialOrInJobsAndTheReportHasTheFloor() throws {
        let t = TempDir()
        let grid = try Self.writeSmallGrid(t.path, seeds: "0")
        let cost = t.path + "/cost"
        let serial = try CLI.run("coto-train", ["--grid", grid, "-o", t.path + "/one", "-q"], environment: ["COTO_COST_DIR": cost + "/stages/serial"])
        #expect(serial.status == 0, "\(serial.err)")
        let jobs = try CLI.run(
            "coto-train", ["--grid", grid, "-o", t.path + "/two", "-q", "--jobs", "2"], environment: ["COTO_COST_DIR": cost + "/stages/jobs"])
        #expect(jobs.status == 0, "\(jobs.err)")
        func records(_ stage: String) throws -> [[String: Any]] {
            let dir = cost + "/stages/" + stage
            return try FileManager.default.contentsOfDirectory(atPath: dir).sorted().map { f in
                let d = try Data(contentsOf: URL(fileURLWithPath: dir + "/" + f))
                return try #require(try JSONSerialization.jsonObject(with: d) as? [String: Any])
            }
        }
        let one = try records("serial")
        let two = try records("jobs")
        #expect(one.count == 1 && two.count == 3, "a record per process: \(one.count), \(two.count)")
        let flops = { (r: [[String: Any]]) in r.compactMap { $0["gemm_flops"] as? Double }.reduce(0, +) }
        #expect(flops(one) > 1e6 && flops(one) == flops(two), "\(flops(one)) vs \(flops(two))")
        try "{\"stage\": \"serial\", \"seconds\": 2.5}\n{\"stage\": \"jobs\", \"seconds\": 1.5}\n".write(
            toFile: cost + "/stages.jsonl", atomically: true, encoding: .utf8)
        let rate = try CLI.run("coto-bench", ["gemm-rate", cost, "--repeats", "1", "-q"])
        #expect(rate.status == 0 && FileManager.default.fileExists(atPath: cost + "/rates.json"), "\(rate.err)")
        let report = try CLI.run("coto-eval", ["report", t.path + "/one", "--cost", cost, "-o", t.path + "/report"])
        #expect(report.status == 0 && report.out.contains("cost: 4 s against a compute floor of"), "\(report.out)\(report.err)")
        let md = try String(contentsOfFile: t.path + "/report/report.md", encoding: .utf8)
        #expect(md.contains("## Cost against the compute floor") && md.contains("| serial | 2.5 | 1 |"), "\(md)")
        // A cost directory that is not one: one line naming it.
        let bad = try CLI.run("coto-eval", ["report", t.path + "/one", "--cost", t.path + "/nope", "-o", t.path + "/r2"])
        #expect(bad.status == 1 && bad.err.contains("nope: is not a cost directory"), "\(bad.err)")
    }

    @Test func aTrainingGridTrainsItsShardsSkipsFinishedCellsAndGatherFindsTheRest() throws {
        let t = TempDir()
        let lines = try Self.writeTrain(t.path)
        try (lines.suffix(8).joined(separator: "\n") + "\n").write(toFile: t.path + "/dev.jsonl", atomically: true, encoding: .utf8)
        let grid = t.path + "/grid.json"
        func writeGrid(lr: String) throws {
            try """
            {"model": "\(Self.bert)", "tasks": {"noun8": {"data": "train.jsonl", "eval-data": "dev.jsonl"}},
             "methods": ["lora", "coto"], "seeds": [0, 1],
             "options": {"steps": 2, "batch-size": 8, "max-length": 16, "lr": \(lr), "targets": "query,value"}}
            """.write(toFile: grid, atomically: true, encoding: .utf8)
        }
        try writeGrid(lr: "0.002")
        let runs = t.path + "/runs"
        let env = ["SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "2", "SLURM_ARRAY_TASK_MIN": "0"]
        let r1 = try CLI.run("coto-train", ["--grid", grid, "-o", runs, "--shard", "auto"], environment: env)
        #expect(r1.status == 0, "\(r1.err)")
        // Shard 1 of 2 owns cells 0 and 2 of the sorted grid: noun8-coto-s0, noun8-lora-s0.
        #expect(try Self.files(runs) == ["coto_grid.json", "noun8-coto-s0", "noun8-lora-s0"])
        var g = try CLI.run("coto-eval", ["gather", runs])
        #expect(g.status == 1 && g.out.contains("2 of 4 cells finished"), "\(g.out)")
        #expect(g.err.contains("cell noun8-coto-s1 (shard 2/2) is not finished") && g.err.contains("cell noun8-lora-s1 (shard 2/2) is not finished"))
        // A rerun of the finished shard does nothing.
        let metrics = runs + "/noun8-coto-s0/metrics.json"
        let before = Self.bytes(metrics)
        let again = try CLI.run("coto-train", ["--grid", grid, "-o", runs, "--shard", "1/2"])
        #expect(again.status == 0 && again.err.contains("noun8-coto-s0 (1 of 2 in shard 1/2): finished already"), "\(again.err)")
        #expect(Self.bytes(metrics) == before)
        // The other shard completes the grid; the report joins its runs.
        #expect(try CLI.run("coto-train", ["--grid", grid, "-o", runs, "--shard", "2/2", "-q"]).status == 0)
        g = try CLI.run("coto-eval", ["gather", runs])
        #expect(g.status == 0 && g.out.contains("complete, 4 of 4 cells finished"), "\(g.out) \(g.err)")
        let rep = try CLI.run("coto-eval", ["report", runs, "-o", t.path + "/report", "--json"])
        #expect(rep.status == 0, "\(rep.err)")
        // The same cell trained alone with the grid's arguments has the same configuration.
        let m = try JSON.parse(string: String(contentsOfFile: metrics, encoding: .utf8))
        let alone = try CLI.run(
            "coto-train",
            [
                "--model", Self.bert, "--data", t.path + "/train.jsonl", "--eval-data", t.path + "/dev.jsonl", "--seed", "0", "--steps", "2",
                "--batch-size", "8", "--max-length", "16", "--lr", "0.002", "-o", t.path + "/alone", "--json",
            ])
        #expect(alone.status == 0, "\(alone.err)")
        #expect(try JSON.parse(string: alone.out)["config"]?["hash"] == m["config"]?["hash"])
        // A killed cell (no metrics.json) is named, and rerunning its shard completes it.
        try FileManager.default.removeItem(atPath: runs + "/noun8-lora-s1/metrics.json")
        g = try CLI.run("coto-eval", ["gather", runs])
        #expect(g.status == 1 && g.err.contains("cell noun8-lora-s1 (shard 2/2) is not finished"), "\(g.err)")
        #expect(try CLI.run("coto-train", ["--grid", grid, "-o", runs, "--shard", "2/2", "-q"]).status == 0)
        #expect(try CLI.run("coto-eval", ["gather", runs]).status == 0)
        // A task killed while writing its first checkpoint leaves one without its optimizer state: the cell
        // starts over instead of failing to resume.
        try FileManager.default.removeItem(atPath: runs + "/noun8-lora-s1/metrics.json")
        try FileManager.default.createDirectory(atPath: runs + "/noun8-lora-s1/checkpoint/adapter", withIntermediateDirectories: true)
        let partial = try CLI.run("coto-train", ["--grid", grid, "-o", runs, "--shard", "2/2"])
        #expect(partial.status == 0 && partial.err.contains("noun8-lora-s1 (2 of 2 in shard 2/2): training"), "\(partial.err)")
        #expect(try CLI.run("coto-eval", ["gather", runs]).status == 0)
        // Another grid into the same directory: refused unless --overwrite.
        try writeGrid(lr: "0.001")
        let other = try CLI.run("coto-train", ["--grid", grid, "-o", runs, "--shard", "1/2"])
        #expect(other.status == 1 && other.err.contains("coto_grid.json") && other.err.contains("--overwrite"), "\(other.err)")
        #expect(try CLI.run("coto-train", ["--grid", grid, "-o", runs, "--shard", "1/2", "--overwrite", "-q"]).status == 0)
        g = try CLI.run("coto-eval", ["gather", runs])
        #expect(g.status == 1 && g.err.contains("noun8-coto-s1") && g.err.contains("another configuration"), "\(g.err)")
        // Usage errors.
        #expect(try CLI.run("coto-train", ["--grid", grid, "--model", Self.bert, "-o", runs]).status == 64)
        #expect(try CLI.run("coto-train", ["--model", Self.bert, "--data", "x", "--shard", "1/2", "-o", runs]).status == 64)
    }
}

/// Perplexity and multiple-choice sweeps from the command line on the tiny LLaMA, and their report.
@Suite struct LanguageSweepCLITests {
    @Test func perplexityAndMultipleChoiceSweepsAndTheirReport() throws {
        let t = TempDir()
        let m = t.path + "/llama"
        try FileManager.default.createDirectory(atPath: m, withIntermediateDirectories: true)
        for f in ["config.json", "model.safetensors"] { try FileManager.default.copyItem(atPath: CLI.fixture("tiny-llama/" + f), toPath: m + "/" + f) }
        try (["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + (0..<56).map { "w\($0)" }).joined(separator: "\n").write(
            toFile: m + "/vocab.txt", atomically: true, encoding: .utf8)
        let ppl = t.path + "/text-test.jsonl"
        try (["w1 w2 w3 w4 w5", "w7 w8 w9", "w10 w11 w12 w13 w14 w15 w16"].map { "{\"text\": \"\($0)\"}" }.joined(separator: "\n") + "\n").write(
            toFile: ppl, atomically: true, encoding: .utf8)
        let mc = t.path + "/mc-test.jsonl"
        try
            ([#"{"context": "w1 w2", "choices": [" w3", " w40 w41"], "label": 0}"#, #"{"context": "w5", "choices": [" w6", " w7", " w8"], "label": 2}"#]
            .joined(separator: "\n") + "\n").write(toFile: mc, atomically: true, encoding: .utf8)
        let a = CLI.fixture("peft/llama-lora")
        let common = ["--model", m, "--name", "lora", "-o", t.path + "/sweeps"]
        let i = try CLI.run("coto-eval", ["interpolate", a, a, "--data", ppl, "--task", "perplexity", "--grid", "0:1:0.5"] + common)
        #expect(i.status == 0 && i.out.contains("perplexity") && i.out.contains("barrier"), "\(i.out) \(i.err)")
        let p = try CLI.run("coto-eval", ["prune", a, "--data", mc, "--task", "multiple-choice", "--layers", "all,0", "-q"] + common)
        #expect(p.status == 0, "\(p.err)")
        let s = try CLI.run("coto-eval", ["shapley", a, "--data", ppl, "--task", "perplexity", "--samples", "4", "-q"] + common)
        #expect(s.status == 0, "\(s.err)")
        let r = try CLI.run("coto-eval", ["report", t.path + "/sweeps", "-o", t.path + "/report", "-q"])
        #expect(r.status == 0, "\(r.err)")
        let md = try String(contentsOfFile: t.path + "/report/report.md", encoding: .utf8)
        #expect(md.contains("text (perplexity)") && md.contains("mc (acc)") && md.contains("log-likelihood per token"), "\(md)")
        // A classification model cannot run a perplexity sweep: one line, exit 1.
        let bad = try CLI.run(
            "coto-eval", ["interpolate", a, a, "--data", ppl, "--task", "perplexity", "--model", CLI.fixture("tiny-bert"), "-o", t.path + "/x"])
        #expect(bad.status == 1 && bad.err.contains("decoder models") && bad.err.split(separator: "\n").count == 1, "\(bad.err)")
    }
}
