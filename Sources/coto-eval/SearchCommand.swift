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
            is written after every generation: the same command resumes a killed search.
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
    @OptionGroup var sweep: SweepOptions

    func validate() throws {
        guard adapters.count >= 2 else { throw ValidationError("give at least two adapters") }
        guard MergeMethods.named(method) != nil else { throw ValidationError(MergeMethods.unknownMessage(method)) }
        guard MergeMethods.named(method)?.name != "regmean" else { throw ValidationError("regmean has no weights to search") }
        guard budget >= 1, (groups ?? 1) >= 1, sigma > 0 else { throw ValidationError("--budget and --groups must be at least 1, --sigma positive") }
        guard sweep.jobs == 1, sweep.shard == "1/1" else { throw ValidationError("search runs in one process (its candidates share the model)") }
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
        let state = try MergeSearch.run(
            settings: settings, layout: layout, start: layout.start(m), config: config.hash, statePath: FileSystem.join(sweep.out, "search-state.json"),
            overwrite: sweep.overwrite,
            progress: { g, total, best in
                if bar == nil { bar = ProgressRenderer(label: "search", total: total, unit: " generations", quiet: !sweep.output.chatty) }
                bar?.update(g, detail: String(format: "best %.4f", best))
            }
        ) { x in
            try MergeSearch.score(ev, merged: try MergeSearch.merge(inputs, genes: x, layout: layout, method: m, seed: seed), heads: inputs, data: devData).mean
        }
        bar?.finish()
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
            let w = layout.groups.indices.map { g in layout.weights(best, group: g).map { fmt($0, 3) }.joined(separator: ", ") }.joined(separator: " | ")
            Console.writeOut(
                "best of \(state.es.evaluations) candidates: weights \(w); dev mean \(fmt(devScores.mean, 4))"
                    + (testScores.map { "; test mean \(fmt($0.mean, 4))" } ?? "") + "\nwrote \(FileSystem.join(sweep.out, "best")), search.json, search.png")
        }
    }
}
