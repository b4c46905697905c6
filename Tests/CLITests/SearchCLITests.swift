import Foundation
import Testing
import TestSupport
import Checkpoint

/// `coto-eval search` end to end on the tiny BERT: the best adapter, search.json with dev and test scores, the plot,
/// the same command run again resuming from its state (nothing left to do, the same best weights), and the search
/// as two local processes giving the same result.
@Suite struct SearchCLITests {
    @Test func aSearchWritesItsBestAdapterAndResumesFromItsState() throws {
        let t = TempDir()
        let lines = try String(contentsOfFile: CLI.fixture("wordnet/noun8-train.jsonl"), encoding: .utf8).split(separator: "\n")
        // Three labels, as the tiny BERT's head has three outputs.
        func write(_ name: String, _ rows: ArraySlice<Substring>) throws {
            var out: [String] = []
            for (i, l) in rows.enumerated() {
                let obj = try #require(try JSONSerialization.jsonObject(with: Data(l.utf8)) as? [String: Any])
                let text = try #require(obj["text"] as? String)
                out.append(String(decoding: try JSONSerialization.data(withJSONObject: ["text": text, "label": ["a", "b", "c"][i % 3]]), as: UTF8.self))
            }
            try (out.joined(separator: "\n") + "\n").write(toFile: t.path + "/" + name, atomically: true, encoding: .utf8)
        }
        try write("a-dev.jsonl", lines[0..<12])
        try write("b-dev.jsonl", lines[12..<24])
        try write("a-test.jsonl", lines[24..<36])
        try write("b-test.jsonl", lines[36..<48])
        let args = [
            CLI.fixture("peft/merge-a"), CLI.fixture("peft/merge-b"), "--model", CLI.fixture("tiny-bert"), "--task-data",
            t.path + "/a-dev.jsonl," + t.path + "/b-dev.jsonl", "--test-data", t.path + "/a-test.jsonl," + t.path + "/b-test.jsonl",
            "--method", "dare_ties", "--budget", "12", "--max-length", "24", "-o", t.path + "/s",
        ]
        let r = try CLI.run("coto-eval", ["search"] + args)
        #expect(r.status == 0, "\(r.err)")
        #expect(r.out.contains("best of 14 candidates") && r.out.contains("test mean"), "\(r.out)")
        for f in ["best/adapter_model.safetensors", "search.json", "search.png", "search-state.json"] {
            #expect(FileManager.default.fileExists(atPath: t.path + "/s/" + f), "\(f)")
        }
        let json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: t.path + "/s/search.json"))) as? [String: Any])
        #expect((json["weights"] as? [[Double]])?.first?.count == 2 && (json["densities"] as? [Double])?.count == 1)
        #expect((json["log"] as? [Any])?.count == 2 && json["test"] != nil)
        let first = try Data(contentsOf: URL(fileURLWithPath: t.path + "/s/best/adapter_model.safetensors"))
        // Again: the state says the search is finished; the same best adapter comes out.
        let again = try CLI.run("coto-eval", ["search"] + args)
        #expect(again.status == 0, "\(again.err)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: t.path + "/s/best/adapter_model.safetensors")) == first)
        // The best adapter as a row of a merge sweep (--merged): its test scores are the search's.
        let sweep = try CLI.run(
            "coto-eval",
            [
                "merge", CLI.fixture("peft/merge-a"), CLI.fixture("peft/merge-b"), "--model", CLI.fixture("tiny-bert"), "--task-data",
                t.path + "/a-test.jsonl," + t.path + "/b-test.jsonl", "--methods", "ties", "--merged", "ties-searched=" + t.path + "/s/best",
                "--max-length", "24", "-o", t.path + "/sweeps", "--json",
            ])
        #expect(sweep.status == 0, "\(sweep.err)")
        let result = try #require(try JSONSerialization.jsonObject(with: Data(sweep.out.utf8)) as? [String: Any])
        let points = try #require(result["points"] as? [[String: Any]])
        let searched = points.filter { $0["method"] as? String == "ties-searched" }.compactMap { $0["accuracy"] as? Double }
        let test = try #require((json["test"] as? [String: Any])?["tasks"] as? [Double])
        #expect(searched == test && points.count == 6, "\(points)")
        #expect(
            try CLI.run(
                "coto-eval",
                [
                    "merge", CLI.fixture("peft/merge-a"), CLI.fixture("peft/merge-b"), "--task-data", "x,y", "--methods", "ties",
                    "--merged", "ties=" + t.path + "/s/best", "--model", "m", "-o", t.path + "/x",
                ]
            ).status == 64)
        // Two local processes (each a shard of every generation) give the same search, byte for byte.
        let jobs = try CLI.run("coto-eval", ["search"] + args.map { $0 == t.path + "/s" ? t.path + "/j" : $0 } + ["--jobs", "2"])
        #expect(jobs.status == 0, "\(jobs.err)")
        #expect(jobs.out.contains("best of 14 candidates") && jobs.err.contains("2 local jobs finished"), "\(jobs.out)\n\(jobs.err)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: t.path + "/j/best/adapter_model.safetensors")) == first)
        #expect(try Data(contentsOf: URL(fileURLWithPath: t.path + "/j/search.json")) == Data(contentsOf: URL(fileURLWithPath: t.path + "/s/search.json")))
        #expect(
            try FileManager.default.contentsOfDirectory(atPath: t.path + "/j/generations").sorted() == [
                "g0001-shard-1-of-2.json", "g0001-shard-2-of-2.json", "g0002-shard-1-of-2.json", "g0002-shard-2-of-2.json",
            ])
        // Shards do not take --overwrite.
        #expect(try CLI.run("coto-eval", ["search"] + args + ["--jobs", "2", "--overwrite"]).status == 64)
        // Another budget is another search: refused without --overwrite.
        let other = try CLI.run("coto-eval", ["search"] + args.map { $0 == "12" ? "20" : $0 })
        #expect(other.status == 1 && other.err.contains("holds another search"), "\(other.err)")
        #expect(try CLI.run("coto-eval", ["search", CLI.fixture("peft/merge-a"), "--model", "m", "--task-data", "x", "-o", t.path + "/x"]).status == 64)
    }
}
