import ArgumentParser
import Checkpoint
import CotoCLI
import Evaluation
import Foundation
import Model
import Numerics
import Operators

struct Search: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "search",
        abstract: "Search a merge method's weights (and density) by CMA-ES on dev data; write the best merged adapter and its scores.",
        discussion: """
            Genes: one weight per adapter (|x|) and, for methods with a density, one density (clamped to [0, 1]), per
            group of --groups consecutive layers (one group without it). Objective: the mean over tasks of each task's
            dev score with its own adapter's head (accuracy; −NLL per token on perplexity data). OUT/search-state.json
            is written after every generation: the same command resumes a killed search. A generation's candidates
            are independent: --jobs N evaluates them in N local processes, --shard auto in a Slurm array's tasks (or
            --shard k/n); shard 1 leads (updates CMA-ES, writes the state and, at the end, the best adapter), the
            others evaluate their part of each generation. Every shard must run at the same time; a killed shard
            rerun with the same command picks up where it stopped. The result equals one process's.
              coto-eval search nouns/ verbs/ --model minilm/ --task-data n-dev.jsonl,v-dev.jsonl \\
                --test-data n-test.jsonl,v-test.jsonl --method ties --budget 60 -o search/
            """)
    @Argument(help: "One adapter per task.") var adapters: [String]
    @Option(help: "Dev task files in adapter order, comma-separated (the search's objective).") var taskData: String
    @Option(help: "Test task files in adapter order, comma-separated (scored once, for the best weights; never seen by the search).")
    var testData: String?
    @Option(help: "Merge method whose weights are searched.") var method = "ties"
    @Option(help: "Candidate evaluations in all (whole CMA-ES generations).") var budget = 60
    @Option(help: "Layers per group: a weight (and density) per group of this many consecutive layers.") var groups: Int?
    @Option(help: "Seed of CMA-ES's sampling (and of the method's random pruning).") var seed: UInt64 = 0
    @Option(help: "CMA-ES's initial step size.") var sigma = 0.3
    @Option(help: "With shards: seconds a shard waits for its siblings' next results before giving up (default: as long as it runs).")
    var waitTimeout: Double?
    @OptionGroup var sweep: SweepOptions

    func validate() throws {
        guard adapters.count >= 2 else { throw ValidationError("give at least two adapters") }
        guard MergeMethods.named(method) != nil else { throw ValidationError(MergeMethods.unknownMessage(method)) }
        guard MergeMethods.named(method)?.name != "regmean" else { throw ValidationError("regmean has no weights to search") }
        guard budget >= 1, (groups ?? 1) >= 1, sigma > 0 else { throw ValidationError("--budget and --groups must be at least 1, --sigma positive") }
        guard (waitTimeout ?? 1) > 0 else { throw ValidationError("--wait-timeout must be positive") }
        guard !sweep.overwrite || (sweep.jobs == 1 && sweep.shard == "1/1") else {
            throw ValidationError("--overwrite restarts a search in one process: give it without --jobs or --shard")
        }
    }

    func files(_ list: String, _ option: String) throws -> [String] {
        let parts = list.split(separator: ",").map(String.init)
        guard parts.count == adapters.count else { throw ValidationError("\(option) has \(parts.count) files for \(adapters.count) adapters") }
        return parts
    }

    func run() throws {
        let dev = try files(taskData, "--task-data")
        let test = try testData.map { try files($0, "--test-data") }
        let m = MergeMethods.named(method)!
        if sweep.jobs > 1 {
            let cores = try LocalJobs.run(jobs: sweep.jobs, subject: sweep.out)
            if !sweep.output.quiet { Console.writeErr("search: \(sweep.jobs) local jobs finished, \(cores) core(s) each") }
            let path = FileSystem.join(sweep.out, "search.json")
            let text = String(decoding: try FileSystem.readFile(path), as: UTF8.self)
            if sweep.output.json {
                Console.writeOut(text.trimmingCharacters(in: .newlines))
            } else if !sweep.output.quiet {
                guard let json = try? JSON.parse(string: text) else { throw CommandError(path, "is not the search's summary") }
                Console.writeOut(summary(json))
            }
            return
        }
        let shard = try sweep.parsedShard
        let inputs = try adapters.map(sweep.loadAdapter)
        let settings = MergeSearch.Settings(method: m.name, budget: budget, groups: groups, seed: seed, sigma: sigma)
        let layout = MergeSearch.Layout.of(inputs, groupSize: groups, density: m.needsDensity)
        var digests = [try InputDigest.model(sweep.model)] + (try adapters.map(InputDigest.adapter))
        digests += try dev.map { try InputDigest.file($0, role: "dev-data") }
        var options = sweep.numericOptions
        options.merge(
            [
                "method": m.name, "budget": String(budget), "groups": groups.map(String.init) ?? "none", "seed": String(seed),
                "sigma": String(sigma),
            ]
        ) { _, new in new }
        let config = ConfigRecord(identity: "coto-eval search", inputs: digests, options: options)
        let ev = try sweep.evaluator()
        let devData = try dev.map { try sweep.prepare(ev, $0) }
        try FileSystem.makeDirectory(sweep.out)
        var bar: ProgressRenderer? = nil
        let label = shard.count == 1 ? "search" : "search shard \(shard.text)"
        let state = try MergeSearch.run(
            settings: settings, start: layout.start(m), config: config.hash, statePath: FileSystem.join(sweep.out, "search-state.json"),
            overwrite: sweep.overwrite, shards: SearchShards(shard: shard, waitTimeout: waitTimeout),
            progress: { g, total, best in
                if bar == nil { bar = ProgressRenderer(label: label, total: total, unit: " generations", quiet: !sweep.output.chatty) }
                bar?.update(g, detail: String(format: "best %.4f", best))
            }
        ) { x in
            try MergeSearch.score(ev, merged: try MergeSearch.merge(inputs, genes: x, layout: layout, method: m, seed: seed), heads: inputs, data: devData).mean
        }
        bar?.finish()
        guard shard.index == 1 else {
            if !sweep.output.quiet {
                Console.writeErr("search shard \(shard.text): its part of \(state.es.generation) generations is done; shard 1 writes the result")
            }
            return
        }
        guard let best = state.bestGenes else { throw CommandError(sweep.out, "the search evaluated no candidate") }
        let merged = try MergeSearch.merge(inputs, genes: best, layout: layout, method: m, seed: seed)
        try merged.save(to: FileSystem.join(sweep.out, "best"))
        let devScores = try MergeSearch.score(ev, merged: merged, heads: inputs, data: devData)
        let testScores = try test.map { files in try MergeSearch.score(ev, merged: merged, heads: inputs, data: try files.map { try sweep.prepare(ev, $0) }) }
        var fields: [(String, JSON)] = [
            ("method", .string(m.name)), ("adapters", .array(inputs.map { .string($0.source) })), ("budget", .int(budget)),
            ("evaluations", .int(state.es.evaluations)), ("generations", .int(state.es.generation)), ("seed", .int(Int(seed))),
            ("groups", .array(layout.groups.map { .array($0.map(JSON.int)) })),
            ("weights", .array(layout.groups.indices.map { g in .array(layout.weights(best, group: g).map(JSON.double)) })),
            ("dev", .object([("mean", .double(devScores.mean)), ("tasks", .array(devScores.tasks.map(JSON.double)))])),
            (
                "log",
                .array(
                    state.log.map {
                        .object([("generation", .int($0.generation)), ("best", .double($0.best)), ("scores", .array($0.scores.map(JSON.double)))])
                    })
            ),
        ]
        if layout.density { fields.append(("densities", .array(layout.groups.indices.map { .double(layout.density(best, group: $0) ?? .nan) }))) }
        if let t = testScores { fields.append(("test", .object([("mean", .double(t.mean)), ("tasks", .array(t.tasks.map(JSON.double)))]))) }
        try AtomicFileWriter.write(JSON.object(fields).pretty + "\n", to: FileSystem.join(sweep.out, "search.json"))
        try AtomicFileWriter.write(try MergeSearch.plot(state, title: "Search: \(m.name)").render().png(), to: FileSystem.join(sweep.out, "search.png"))
        if sweep.output.json {
            Console.writeOut(JSON.object(fields).pretty)
        } else if !sweep.output.quiet {
            Console.writeOut(summary(JSON.object(fields)))
        }
    }

    /// The closing lines from search.json.
    func summary(_ json: JSON) -> String {
        let weights = (json["weights"]?.arrayValue ?? []).map { g in
            (g.arrayValue ?? []).map { fmt($0.doubleValue ?? .nan, 3) }.joined(separator: ", ")
        }.joined(separator: " | ")
        let evaluations = json["evaluations"]?.intValue.map(String.init) ?? "?"
        return "best of \(evaluations) candidates: weights \(weights); dev mean \(fmt(json["dev"]?["mean"]?.doubleValue ?? .nan, 4))"
            + (json["test"]?["mean"]?.doubleValue.map { "; test mean \(fmt($0, 4))" } ?? "")
            + "\nwrote \(FileSystem.join(sweep.out, "best")), search.json, search.png"
    }
}
