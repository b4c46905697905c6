import Testing
import Foundation
import Checkpoint
import TestSupport
@testable import Training

/// Training grids: the cells, their order, names and arguments; every malformed grid is a one-line error.
@Suite struct TrainGridTests {
    static func grid(_ text: String, path: String = "/g/grid.json") throws -> TrainGrid {
        try TrainGrid(json: JSON.parse(string: text), path: path)
    }

    @Test func cellsAreSortedNamedAndCarryTheirArguments() throws {
        let g = try Self.grid(
            """
            {"model": "m", "tasks": {"verb15": {"data": "v.jsonl"}, "noun8": {"data": "/d/n.jsonl", "eval-data": "n-dev.jsonl"}},
             "methods": ["lora", "coto"], "variants": ["lora", "dora"], "seeds": [1, 0],
             "options": {"steps": 30, "shuffle": false, "lr": 0.002, "targets": "query,value", "eval-every": 10}}
            """)
        let names = g.cells.map(\.name)
        #expect(names.count == 16 && Set(names).count == 16)
        #expect(
            Array(names.prefix(8)) == [
                "noun8-coto-dora-s0", "noun8-coto-dora-s1", "noun8-dora-s0", "noun8-dora-s1", "noun8-coto-s0", "noun8-coto-s1", "noun8-lora-s0",
                "noun8-lora-s1",
            ])
        #expect(names[8].hasPrefix("verb15-"))
        // Paths relative to the grid file; options sorted, flags as --x / --no-x.
        #expect(g.model == "/g/m" && g.tasks[0].data == "/d/n.jsonl" && g.tasks[0].evalData == "/g/n-dev.jsonl" && g.tasks[1].data == "/g/v.jsonl")
        let args = g.arguments(g.cells[0], output: "runs/x")
        #expect(
            args == [
                "--model", "/g/m", "--data", "/d/n.jsonl", "--eval-data", "/g/n-dev.jsonl", "--variant", "dora", "--coto", "--seed", "0",
                "--eval-every", "10", "--lr", "0.002", "--no-shuffle", "--steps", "30", "--targets", "query,value", "--output", "runs/x",
            ])
        #expect(g.arguments(g.cells[2], output: "o").contains("--no-coto"))
        // Defaults: both methods, plain LoRA, seed 0.
        let d = try Self.grid(#"{"model": "m", "tasks": {"t": {"data": "t.jsonl"}}}"#, path: "grid.json")
        #expect(d.cells.map(\.name) == ["t-coto-s0", "t-lora-s0"] && d.model == "m")
    }

    @Test func aTasksOwnOptionsOverrideTheGridsForItsCellsOnly() throws {
        let g = try Self.grid(
            """
            {"model": "m", "tasks": {"verb15": {"data": "v.jsonl", "options": {"steps": 600, "eval-every": 60, "group-by-length": false}},
                                     "noun8": {"data": "n.jsonl"}},
             "methods": ["lora"], "options": {"steps": 400, "eval-every": 40, "group-by-length": true, "lr": 0.002}}
            """)
        let noun = g.arguments(g.cells[0], output: "o")
        let verb = g.arguments(g.cells[1], output: "o")
        #expect(Array(noun.drop { $0 != "--eval-every" }) == ["--eval-every", "40", "--group-by-length", "--lr", "0.002", "--steps", "400", "--output", "o"])
        #expect(
            Array(verb.drop { $0 != "--eval-every" }) == ["--eval-every", "60", "--no-group-by-length", "--lr", "0.002", "--steps", "600", "--output", "o"])
        // A task's options are checked as the grid's are.
        for bad in [#"{"seed": 1}"#, #"{"--steps": 1}"#, #"{"steps": [1]}"#, #"[1]"#] {
            #expect(throws: TrainError.self) {
                try Self.grid(#"{"model": "m", "tasks": {"t": {"data": "t.jsonl", "options": \#(bad)}}}"#)
            }
        }
    }

    @Test func malformedGridsAreOneLineErrors() throws {
        let bad = [
            #"[]"#,
            #"{"tasks": {"t": {"data": "t"}}}"#,
            #"{"model": "m"}"#,
            #"{"model": "m", "tasks": {}}"#,
            #"{"model": "m", "tasks": {"t": {}}}"#,
            #"{"model": "m", "tasks": {"a/b": {"data": "t"}}}"#,
            #"{"model": "m", "tasks": {"t": {"data": "t", "dev": "x"}}}"#,
            #"{"model": "m", "tasks": {"t": {"data": "t"}}, "methods": ["coto", "adam"]}"#,
            #"{"model": "m", "tasks": {"t": {"data": "t"}}, "methods": []}"#,
            #"{"model": "m", "tasks": {"t": {"data": "t"}}, "variants": ["lora", "lora"]}"#,
            #"{"model": "m", "tasks": {"t": {"data": "t"}}, "seeds": [-1]}"#,
            #"{"model": "m", "tasks": {"t": {"data": "t"}}, "seeds": [0, 0]}"#,
            #"{"model": "m", "tasks": {"t": {"data": "t"}}, "options": {"seed": 3}}"#,
            #"{"model": "m", "tasks": {"t": {"data": "t"}}, "options": {"--steps": 3}}"#,
            #"{"model": "m", "tasks": {"t": {"data": "t"}}, "options": {"steps": [3]}}"#,
            #"{"model": "m", "tasks": {"t": {"data": "t"}}, "epochs": 3}"#,
            #"{"model": "m", "model": "n", "tasks": {"t": {"data": "t"}}}"#,
        ]
        for text in bad {
            do {
                _ = try Self.grid(text)
                Issue.record("accepted: \(text)")
            } catch let e as TrainError {
                #expect(e.subject == "/g/grid.json" && !e.message.isEmpty && !e.message.contains("\n"), "\(text): \(e)")
            }
        }
        let t = TempDir()
        try "{".write(toFile: t.path + "/g.json", atomically: true, encoding: .utf8)
        #expect(throws: TrainError.self) { try TrainGrid.load(t.path + "/g.json") }
    }

    @Test func trainingConfigurationsFollowDataContentAndOptions() throws {
        let t = TempDir()
        let data = t.path + "/d.jsonl"
        try "{\"text\": \"a\", \"label\": \"x\"}\n".write(toFile: data, atomically: true, encoding: .utf8)
        var cache: [String: InputDigest] = [:]
        let model = TestPaths.fixture("tiny-bert")
        let a = try TrainConfig.configuration(model: model, data: data, evalData: nil, options: ["lr": "0.001"], digests: &cache)
        #expect(cache.count == 2)
        #expect(try TrainConfig.configuration(model: model, data: data, evalData: nil, options: ["lr": "0.001"], digests: &cache) == a)
        #expect(try TrainConfig.configuration(model: model, data: data, evalData: nil, options: ["lr": "0.002"], digests: &cache).hash != a.hash)
        try "{\"text\": \"b\", \"label\": \"x\"}\n".write(toFile: data, atomically: true, encoding: .utf8)
        var fresh: [String: InputDigest] = [:]
        let b = try TrainConfig.configuration(model: model, data: data, evalData: nil, options: ["lr": "0.001"], digests: &fresh)
        #expect(b.hash != a.hash && b.differences(from: a) == ["data \(data) has other content"])
    }
}
