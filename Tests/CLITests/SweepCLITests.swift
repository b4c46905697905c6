import Testing
import Foundation
import TestSupport
import Checkpoint

/// The experiment loop from the command line on the tiny BERT: data, a sharded sweep joined by the
/// report, the report's files.
@Suite struct SweepCLITests {
    @Test func shardedSweepsJoinInTheReport() throws {
        let t = TempDir()
        let bert = CLI.fixture("tiny-bert")
        let a = CLI.fixture("peft/bert-lora")
        let data = t.path + "/tiny-test.jsonl"
        let rows = ["a b c", "d e", "f", "g h i j", "k l", "m n o", "p", "q r s", "t u", "v w x y"].enumerated().map { i, s in
            "{\"text\": \"\(s)\", \"label\": \"\(["x", "y", "z"][i % 3])\"}"
        }
        try (rows.joined(separator: "\n") + "\n").write(toFile: data, atomically: true, encoding: .utf8)
        let runs = t.path + "/sweeps"
        for shard in ["1/2", "2/2"] {
            let r = try CLI.run(
                "coto-eval",
                [
                    "prune", a, "--model", bert, "--data", data, "--sparsity", "0,0.5,0.9", "--layers", "all,0",
                    "--ranks", "2,1", "--shard", shard, "--name", "lora", "-o", runs, "-q",
                ])
            #expect(r.status == 0, "\(r.err)")
            let s = try CLI.run(
                "coto-eval", ["shapley", a, "--model", bert, "--data", data, "--samples", "8", "--grid", "4", "--shard", shard, "-o", runs, "-q"])
            #expect(s.status == 0, "\(s.err)")
        }
        // --shard auto from a Slurm array's environment: the same files as the explicit shards.
        let auto = t.path + "/auto"
        for id in ["0", "1"] {
            let r = try CLI.run(
                "coto-eval",
                [
                    "prune", a, "--model", bert, "--data", data, "--sparsity", "0,0.5,0.9", "--layers", "all,0", "--ranks", "2,1", "--shard", "auto",
                    "--name", "lora", "-o", auto, "-q",
                ],
                environment: ["SLURM_ARRAY_TASK_ID": id, "SLURM_ARRAY_TASK_COUNT": "2", "SLURM_ARRAY_TASK_MIN": "0"])
            #expect(r.status == 0, "\(r.err)")
        }
        let explicit = try FileManager.default.contentsOfDirectory(atPath: runs).filter { $0.hasPrefix("prune-") }.sorted()
        #expect(try FileManager.default.contentsOfDirectory(atPath: auto).sorted() == explicit && explicit.count == 2)
        for f in explicit { #expect(FileManager.default.contents(atPath: auto + "/" + f) == FileManager.default.contents(atPath: runs + "/" + f)) }
        let none = try CLI.run(
            "coto-eval", ["prune", a, "--model", bert, "--data", data, "--sparsity", "0", "--shard", "auto", "-o", auto, "-q"],
            environment: ["SLURM_ARRAY_TASK_ID": "", "JOB_COMPLETION_INDEX": "0"])
        #expect(none.status == 1 && none.err.hasPrefix("error: ") && none.err.split(separator: "\n").count == 1, "\(none.err)")
        let i = try CLI.run("coto-eval", ["interpolate", a, a, "--model", bert, "--data", data, "--grid", "0:1:0.5", "--json", "-o", runs])
        #expect(i.status == 0, "\(i.err)")
        let j = try JSON.parse(string: i.out)
        #expect(j["points"]?.arrayValue?.count == 3 && j["sweep"]?.stringValue == "interpolate")
        #expect(try FileManager.default.contentsOfDirectory(atPath: runs).count == 5)
        let rep = try CLI.run("coto-eval", ["report", runs, "-o", t.path + "/report"])
        #expect(rep.status == 0 && rep.err.isEmpty, "\(rep.err)")
        let md = try String(contentsOfFile: t.path + "/report/report.md", encoding: .utf8)
        #expect(md.contains("## Pruning") && md.contains("## Shapley values") && md.contains("## Interpolation") && !md.contains("Warnings"))
        for f in try FileManager.default.contentsOfDirectory(atPath: t.path + "/report/plots") { #expect(md.contains("plots/" + f)) }
        // One shard missing: the report says so.
        let parts = try FileManager.default.contentsOfDirectory(atPath: runs).filter { $0.contains("shard-2-of-2") }
        #expect(parts.count == 2)
        try FileManager.default.removeItem(atPath: runs + "/" + parts[0])
        let rep2 = try CLI.run("coto-eval", ["report", runs, "-o", t.path + "/report2"])
        #expect(rep2.status == 1 && rep2.err.contains("missing shard 2/2 of 2") && rep2.err.contains("--partial"), "\(rep2.err)")
        let rep3 = try CLI.run("coto-eval", ["report", runs, "-o", t.path + "/report2", "--partial"])
        #expect(rep3.status == 0 && rep3.err.contains("warning:") && rep3.err.contains("missing shard 2/2"), "\(rep3.err)")
    }

    @Test func wordNetDataFilesAndCard() throws {
        let t = TempDir()
        let r = try CLI.run("coto-data", ["wordnet", "-o", t.path, "--cap-train", "5", "--cap-eval", "2", "--json"])
        #expect(r.status == 0, "\(r.err)")
        let card = try JSON.parse(string: r.out)
        #expect(card["tasks"]?.arrayValue?.count == 3)
        for task in ["noun8", "pos4", "verb15"] {
            for split in ["train", "dev", "test"] {
                #expect(FileManager.default.fileExists(atPath: "\(t.path)/\(task)-\(split).jsonl"))
            }
        }
        let train = try String(contentsOfFile: t.path + "/noun8-train.jsonl", encoding: .utf8).split(separator: "\n")
        #expect(train.count == 40)
        #expect(FileManager.default.fileExists(atPath: t.path + "/card.json"))
    }
}
