import Foundation
import ArgumentParser
import Checkpoint
import CotoCLI
import Evaluation
import Model
import Numerics
import Operators

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coto-eval",
        abstract: "Evaluate a model with an adapter on a task file; generate text.",
        discussion: """
            Tasks (JSONL, one object per line):
              classification    {"text", "label"} (optional "text_pair"): accuracy, macro-F1, loss, confusion matrix
              multiple-choice   {"context", "choices": [...], "label": index}: acc and acc_norm (per byte), as lm-eval-harness
              perplexity        {"text"} or {"prompt", "completion"} (loss on the completion only)

            Examples:
              coto-eval --model minilm/ --adapter runs/coto-s0 --data test.jsonl --task classification
              coto-eval --model minilm/ --adapter merged/ --head runs/nouns --data nouns-test.jsonl --task classification --json
              coto-eval --model smollm2/ --data mc.jsonl --task multiple-choice
              coto-eval generate --model smollm2/ --prompt "The capital of France is" --max-new-tokens 16

            Sweeps (classification; each writes a results JSON into --out, a run directory):
              coto-eval interpolate runs/lora-s0 runs/lora-s1 --model minilm/ --data test.jsonl --grid 0:1:0.1 -o sweeps/
              coto-eval merge nouns/ pos/ verbs/ --model minilm/ --task-data nouns-test.jsonl,pos-test.jsonl,verbs-test.jsonl -o sweeps/
              coto-eval prune runs/coto-s0 --model minilm/ --data test.jsonl --sparsity 0,0.5,0.9 --layers all,low,high -o sweeps/
              coto-eval shapley runs/coto-s0 --model minilm/ --data test.jsonl --samples 64 -o sweeps/ --shard 1/2
              coto-eval gather sweeps/ runs/
              coto-eval report runs/ sweeps/ -o report/
            """,
        subcommands: [Run.self, Generate.self, Interpolate.self, MergeSweep.self, PruneSweep.self, Shapley.self, GatherCommand.self, ReportCommand.self],
        defaultSubcommand: Run.self)

    struct ModelOptions: ParsableArguments {
        @Option(help: "Model directory (config.json, safetensors weights, tokenizer.json or vocab.txt).")
        var model: String

        @Option(help: "Adapter directory or .safetensors file applied in the forward pass.")
        var adapter: String?

        @Option(
            help:
                "Run the adapter's factors as this variant instead of the one it declares: lora or hira (default: what the adapter says; DoRA modules stay DoRA)."
        )
        var variant: String?

        @Option(help: "BLAS threads.")
        var threads = 2

        func load() throws -> (AdaptableModel, Tokenizer, Adapter?) {
            Parallel.configure(threads: threads)
            let m = try ModelRegistry.load(model)
            let tok = try TokenizerLoader.load(modelDir: model)
            var a: Adapter? = nil
            if let p = adapter {
                a = try Adapter.load(p)
                try m.attach(a!, variant: variant.flatMap(AdapterVariant.init(rawValue:)))
            }
            return (m, tok, a)
        }

        func validate() throws {
            if let v = variant, !["lora", "hira"].contains(v) { throw ValidationError("--variant must be lora or hira") }
            guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
        }
    }

    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "run", abstract: "Evaluate on a task file (the default subcommand).")

        @OptionGroup var modelOptions: ModelOptions

        @Option(help: "Adapter whose classification head (and label list) to use instead.")
        var head: String?

        @Option(help: "JSONL task file.")
        var data: String

        @Option(help: "classification, multiple-choice or perplexity.")
        var task: String

        @Option(help: "Comma-separated label list (classification), overriding the adapter's.")
        var labels: String?

        @Option(help: "Examples per forward pass.")
        var batchSize = 16

        @Option(help: "Truncate inputs to this many tokens (default 512, or the model's max_position_embeddings if lower; above it is an error).")
        var maxLength: Int?

        @OptionGroup var out: OutputOptions

        func validate() throws {
            guard EvalTask(rawValue: task) != nil else { throw ValidationError("--task must be classification, multiple-choice or perplexity (got '\(task)')") }
            guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1") }
            guard (maxLength ?? 2) >= 2 else { throw ValidationError("--max-length must be at least 2") }
        }

        func run() throws {
            let (model, tok, adapter) = try modelOptions.load()
            var labelList = adapter?.labels
            let modelLabels = FileSystem.join(modelOptions.model, Adapter.labelsFile)
            if labelList == nil, FileSystem.exists(modelLabels) {
                // A fused model carries its head's label list.
                labelList = try Adapter.load(labelsOnly: modelLabels)
            }
            if let h = head {
                let ha = try Adapter.load(h)
                guard let (w, b) = model.classificationHead(of: ha) else {
                    throw CommandError(h, "has no classification head (classifier/score in modules_to_save)")
                }
                try model.setClassifier(weight: w, bias: b)
                labelList = ha.labels
            }
            var o = EvalOptions()
            o.batchSize = batchSize
            o.maxLength = try model.inputLimits.maxLength(requested: maxLength, fallback: 512, modelDir: modelOptions.model)
            o.labels = labels.map { $0.split(separator: ",").map { String($0) } }
            var bar: ProgressRenderer? = nil
            let progress: (Int, Int) -> Void = { done, total in
                if bar == nil { bar = ProgressRenderer(label: "evaluating", total: total, unit: " examples", quiet: !out.chatty) }
                bar?.update(done)
            }
            let result: EvalResult
            switch EvalTask(rawValue: task)! {
            case .classification:
                result = try Evaluator.classification(model: model, tokenizer: tok, data: data, labels: labelList, options: o, progress: progress)
            case .multipleChoice:
                result = try Evaluator.multipleChoice(model: model, tokenizer: tok, data: data, options: o, progress: progress)
            case .perplexity:
                result = try Evaluator.perplexity(model: model, tokenizer: tok, data: data, options: o, progress: progress)
            }
            bar?.finish()
            if out.json {
                var pairs = result.json.objectPairs ?? []
                pairs.insert(("model", .string(modelOptions.model)), at: 0)
                pairs.insert(("adapter", modelOptions.adapter.map(JSON.string) ?? .null), at: 1)
                Console.writeOut(JSON.object(pairs).pretty)
            } else {
                Console.writeOut("\(data): \(result.summary)")
            }
        }
    }

    struct Generate: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Greedy generation with a KV cache (decoder models).")

        @OptionGroup var modelOptions: ModelOptions

        @Option(help: "Prompt text.")
        var prompt: String

        @Option(help: "Maximum new tokens.")
        var maxNewTokens = 32

        @OptionGroup var out: OutputOptions

        func run() throws {
            let (model, tok, _) = try modelOptions.load()
            guard let llama = model as? LlamaModel else { throw CommandError(modelOptions.model, "generation needs a decoder model (llama)") }
            let ids = tok.encode(prompt, pair: nil, addSpecialTokens: false).ids
            var stop = Set<Int>()
            if case let .one(e)? = model.config.eosTokenId { stop.insert(e) }
            if case let .many(es)? = model.config.eosTokenId { stop.formUnion(es) }
            let t0 = ProgressRenderer.now()
            let outIds = try llama.generate(prompt: ids, maxNewTokens: maxNewTokens, stop: stop)
            let dt = ProgressRenderer.now() - t0
            guard let bpe = tok as? ByteLevelBPETokenizer else { throw CommandError(modelOptions.model, "decoding needs a byte-level BPE tokenizer") }
            let text = bpe.decode(outIds)
            if out.json {
                Console.writeOut(
                    JSON.object([
                        ("prompt", .string(prompt)), ("prompt_ids", .array(ids.map { JSON.int($0) })),
                        ("ids", .array(outIds.map { JSON.int($0) })), ("text", .string(text)),
                        ("tokens_per_second", .double(Double(outIds.count) / max(dt, 1e-9))),
                    ]).pretty)
            } else {
                Console.writeOut(prompt + text)
                if out.chatty { Console.writeErr("\(outIds.count) tokens in \(fmt(dt, 3)) s (\(fmt(Double(outIds.count) / max(dt, 1e-9), 3)) tokens/s)") }
            }
        }
    }
}

/// What every sweep shares: the model, batching, the run directory, the series name and the shard.
struct SweepOptions: ParsableArguments {
    @Option(help: "Model directory.") var model: String
    @Option(name: .shortAndLong, help: "Run directory the results JSON goes into.") var out: String
    @Option(help: "Series name in reports (default: coto/lora from the metrics.json coto-train wrote beside the adapter).") var name: String?
    @Option(
        help:
            "Run only part i of n of the points (i/n), or `auto` from the scheduler's environment (Slurm array, Kubernetes Indexed Job, RANK/WORLD_SIZE); `coto-eval report` joins the parts."
    ) var shard = "1/1"
    @Option(
        help:
            "With --shard auto: the number of shards (required for a Kubernetes Indexed Job; with a Slurm array the task id is then the shard index from 0, so a resubmitted index keeps its shard)."
    ) var numShards: Int?
    @Option(help: "Examples per forward pass.") var batchSize = 32
    @Option(help: "Truncate inputs to this many tokens (default 128, or the model's max_position_embeddings if lower; above it is an error).") var maxLength:
        Int?
    @Option(help: "Threads.") var threads = 2
    @Option(
        help:
            "What the points score: classification (accuracy, macro-F1), perplexity or multiple-choice (decoder models: perplexity and next-token accuracy, or acc and acc_norm)."
    ) var task = "classification"
    @Flag(help: "Recompute and replace this shard's result file even if it is there (same or another configuration).") var overwrite = false
    @OptionGroup var output: OutputOptions

    func validate() throws {
        if let problem = Shard.optionProblem(shard) { throw ValidationError("--shard \(problem)") }
        if let n = numShards, n < 1 { throw ValidationError("--num-shards must be at least 1") }
        guard EvalTask(rawValue: task) != nil else { throw ValidationError("--task must be classification, perplexity or multiple-choice (got '\(task)')") }
        guard batchSize >= 1, (maxLength ?? 2) >= 2, threads >= 1 else {
            throw ValidationError("--batch-size and --threads must be positive, --max-length at least 2")
        }
    }

    var parsedShard: Shard {
        get throws {
            try Shard.resolve(option: shard, numShards: numShards, environment: ProcessInfo.processInfo.environment)
        }
    }

    func evaluator() throws -> SweepEvaluator {
        Parallel.configure(threads: threads)
        let m = try ModelRegistry.load(model)
        let ev = SweepEvaluator(model: m, tokenizer: try TokenizerLoader.load(modelDir: model))
        ev.batchSize = batchSize
        ev.maxLength = try m.inputLimits.maxLength(requested: maxLength, fallback: 128, modelDir: model)
        return ev
    }

    func loadAdapter(_ path: String) throws -> Adapter {
        let a = try Adapter.load(path)
        guard !a.modules.isEmpty else { throw CommandError(path, "the adapter has no LoRA modules") }
        return a
    }

    var evalTask: EvalTask { EvalTask(rawValue: task) ?? .classification }

    /// The task file prepared for the sweep's task.
    func prepare(_ ev: SweepEvaluator, _ path: String) throws -> PreparedData { try ev.prepare(path, task: evalTask) }

    /// The options that can change a sweep's numbers (threads do not).
    var numericOptions: [String: String] { ["batch_size": String(batchSize), "max_length": maxLength.map(String.init) ?? "default"] }

    /// Runs `body` with a progress bar, writes its result into the run directory, prints a summary.
    /// `header` is the result before it runs: its file is looked up first, and a finished shard of the same
    /// configuration is not run again.
    func run(
        _ label: String, unit: String = " points", header: SweepResult, _ body: (SweepEvaluator) throws -> SweepResult,
        summary: (SweepResult) -> String
    ) throws {
        let config = try Sweeps.configuration(of: header, model: model, options: numericOptions)
        let path = FileSystem.join(out, Sweeps.fileName(header))
        if try Sweeps.shardStatus(at: path, config: config, overwrite: overwrite) == .done {
            if output.json {
                Console.writeOut(String(decoding: try FileSystem.readFile(path), as: UTF8.self).trimmingCharacters(in: .newlines))
            } else if !output.quiet {
                Console.writeOut(
                    "shard \(header.shardPosition?.text ?? "1/1") of this \(header.sweep) sweep is done already (configuration \(config.short)): nothing to do\nkept \(path)"
                )
            }
            return
        }
        let ev = try evaluator()
        var bar: ProgressRenderer? = nil
        ev.progress = { done, total in
            if bar == nil { bar = ProgressRenderer(label: label, total: total, unit: unit, quiet: !output.chatty) }
            bar?.update(done)
        }
        var result = try body(ev)
        bar?.finish()
        guard Sweeps.fileName(result) == Sweeps.fileName(header) else { throw CommandError(path, "internal error: the sweep's result differs from its plan") }
        result.config = config
        try FileSystem.makeDirectory(out)
        let text = try result.encoded()
        try AtomicFileWriter.write(text, to: path)
        if output.json {
            Console.writeOut(text.trimmingCharacters(in: .newlines))
        } else if !output.quiet {
            Console.writeOut(summary(result) + "\nwrote \(path)")
        }
    }
}

func pointLines(_ r: SweepResult, _ label: (SweepPoint) -> String) -> String {
    (r.points ?? []).map { p in
        let score =
            p.perplexity.map { "perplexity \(fmt($0, 4)), next-token accuracy \(fmt(p.accuracy ?? .nan, 4))" }
            ?? p.accNorm.map { "acc \(fmt(p.accuracy ?? .nan, 4)), acc_norm \(fmt($0, 4))" } ?? "accuracy \(fmt(p.accuracy ?? .nan, 4))"
        return "\(label(p)): \(score)"
    }.joined(separator: "\n")
}

struct Interpolate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Accuracy along (1-λ)A + λB (every adapter tensor and the heads); reports the barrier.")
    @Argument(help: "Adapter A (λ = 0).") var a: String
    @Argument(help: "Adapter B (λ = 1).") var b: String
    @Option(help: "Classification JSONL.") var data: String
    @Option(help: "λ values: start:stop:step or a list.") var grid = "0:1:0.1"
    @OptionGroup var sweep: SweepOptions

    func validate() throws {
        guard Sweeps.parseGrid(grid) != nil else { throw ValidationError("--grid must be start:stop:step or a comma-separated list (got '\(grid)')") }
    }

    func run() throws {
        let (A, B) = (try sweep.loadAdapter(a), try sweep.loadAdapter(b))
        let g = Sweeps.parseGrid(grid)!
        let name = sweep.name ?? Sweeps.seriesName(a)
        let shard = try sweep.parsedShard
        try sweep.run(
            "interpolating",
            header: Sweeps.interpolateHeader(a: A.source, b: B.source, data: data, grid: g, name: name, shard: shard, task: sweep.evalTask),
            { ev in
                try Sweeps.interpolate(ev, a: A, b: B, data: try sweep.prepare(ev, data), grid: g, name: name, shard: shard)
            },
            summary: { r in
                let barrier =
                    r.shard.last == 1 ? Sweeps.barrier(r).map { "\nbarrier \(fmt($0, 4)) (\(Sweeps.metric(r).name))" } ?? "" : ""
                return pointLines(r) { "λ=\(fmt($0.lambda ?? .nan, 2))" } + barrier
            })
    }
}

struct MergeSweep: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Every merge method on every task, each task scored with its own adapter's head.",
        discussion: "Default weights: 1 per adapter for the TIES family, 1/n for the others (--weights overrides all).")
    @Argument(help: "One adapter per task.") var adapters: [String]
    @Option(help: "Task files in adapter order, or ADAPTER=FILE pairs, comma-separated.") var taskData: String
    @Option(help: "Merge methods, comma-separated.") var methods = "interpolate,task-arithmetic,ties,dare_ties,svd"
    @Option(help: "Weights, comma-separated (default: per method).") var weights: String?
    @Option(help: "Density for the methods that need one (ties, dare, magnitude_prune, breadcrumbs, della, knots, core_ties).") var density = 0.5
    @Option(help: "Seed of DARE's random pruning.") var seed: UInt64 = 0
    @OptionGroup var sweep: SweepOptions

    func validate() throws {
        guard adapters.count >= 2 else { throw ValidationError("give at least two adapters") }
        for m in methods.split(separator: ",") where MergeMethods.named(String(m)) == nil {
            throw ValidationError("unknown method '\(m)' (known: \(MergeMethods.names.joined(separator: ", ")))")
        }
        guard density > 0, density <= 1 else { throw ValidationError("--density must be in (0, 1]") }
    }

    func taskFiles() throws -> [String] {
        let parts = taskData.split(separator: ",").map { String($0) }
        if parts.allSatisfy({ !$0.contains("=") }) {
            guard parts.count == adapters.count else { throw ValidationError("--task-data has \(parts.count) files for \(adapters.count) adapters") }
            return parts
        }
        var map: [String: String] = [:]
        for p in parts {
            guard let eq = p.firstIndex(of: "=") else { throw ValidationError("--task-data: mix of ADAPTER=FILE pairs and plain files") }
            map[String(p[..<eq])] = String(p[p.index(after: eq)...])
        }
        return try adapters.map { a in
            guard let f = map[a] ?? map[FileSystem.basename(of: a)] else { throw ValidationError("--task-data has no file for adapter '\(a)'") }
            return f
        }
    }

    func run() throws {
        let files = try taskFiles()
        let ws = try weights.map { try parseNumberList($0, option: "--weights") }
        if let w = ws, w.count != adapters.count { throw ValidationError("--weights has \(w.count) values for \(adapters.count) adapters") }
        let inputs = try adapters.map(sweep.loadAdapter)
        let names = Set(adapters.map(Sweeps.seriesName))
        let ms = methods.split(separator: ",").map(String.init)
        let name = sweep.name ?? (names.count == 1 ? names.first! : "mixed")
        let shard = try sweep.parsedShard
        try sweep.run(
            "merging",
            header: Sweeps.mergeHeader(
                adapters: inputs.map(\.source), data: files, methods: ms, weights: ws, density: density, seed: seed, name: name, shard: shard,
                task: sweep.evalTask),
            { ev in
                try Sweeps.merge(
                    ev, adapters: inputs, data: try files.map { try sweep.prepare(ev, $0) }, methods: ms, weights: ws, density: density, seed: seed, name: name,
                    shard: shard)
            }, summary: { r in pointLines(r) { "\($0.method ?? "") on \($0.task ?? "")" } })
    }
}

struct PruneSweep: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prune", abstract: "Pruning curves: magnitude sparsity, dropped layer sets and module kinds, rank.")
    @Argument(help: "Adapter.") var adapter: String
    @Option(help: "Classification JSONL.") var data: String
    @Option(help: "Magnitude sparsities, comma-separated.") var sparsity: String?
    @Option(help: "tensor or global magnitude threshold.") var scope = "tensor"
    @Option(
        help: "Layer sets to drop: all, every-other, low, middle, high, index ranges like 0-2, or lists like 0;2;4 (comma-separated points; 'none' keeps all).")
    var layers: String?
    @Option(help: "Module kinds to drop one at a time, comma-separated (query,key,value).") var modules: String?
    @Option(help: "Ranks to truncate to, comma-separated.") var ranks: String?
    @Option(help: "Rank method: svd or norm.") var rankMethod = "svd"
    @OptionGroup var sweep: SweepOptions

    func validate() throws {
        guard sparsity != nil || layers != nil || modules != nil || ranks != nil else {
            throw ValidationError("give --sparsity, --layers, --modules or --ranks")
        }
        guard PruneOptions.Scope(rawValue: scope) != nil else { throw ValidationError("--scope must be tensor or global") }
        guard PruneOptions.RankMethod(rawValue: rankMethod) != nil else { throw ValidationError("--rank-method must be svd or norm") }
    }

    func run() throws {
        let sp = try sparsity.map { try parseNumberList($0, option: "--sparsity") } ?? []
        if sp.contains(where: { $0 < 0 || $0 >= 1 }) { throw ValidationError("--sparsity values must be in [0, 1)") }
        let rk =
            try ranks.map {
                try parseNumberList($0, option: "--ranks").map { v -> Int in
                    guard v >= 1, v == v.rounded() else { throw ValidationError("--ranks must be positive integers") }
                    return Int(v)
                }
            } ?? []
        // Commas separate points, so an index list inside one point is written 0;2;4.
        let ls = layers.map { $0.split(separator: ",").map { $0.replacingOccurrences(of: ";", with: ",") } } ?? []
        let ms = modules.map { $0.split(separator: ",").map(String.init) } ?? []
        let A = try sweep.loadAdapter(adapter)
        let pts = Sweeps.prunePoints(
            sparsities: sp, scope: PruneOptions.Scope(rawValue: scope)!, layers: ls, modules: ms, ranks: rk,
            rankMethod: PruneOptions.RankMethod(rawValue: rankMethod)!)
        let name = sweep.name ?? Sweeps.seriesName(adapter)
        let shard = try sweep.parsedShard
        try sweep.run(
            "pruning", header: Sweeps.pruneHeader(adapter: A.source, data: data, points: pts, name: name, shard: shard, task: sweep.evalTask),
            { ev in try Sweeps.prune(ev, adapter: A, data: try sweep.prepare(ev, data), points: pts, name: name, shard: shard) },
            summary: { r in pointLines(r) { "\($0.kind ?? "") \($0.value ?? "")" } })
    }
}

struct Shapley: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Shapley value of each adapter group (layer or module) by the multilinear extension.",
        discussion:
            "Samples are spread over a grid of inclusion probabilities q; each distinct coalition is scored once, in an order that lets the forward pass reuse lower layers."
    )
    @Argument(help: "Adapter.") var adapter: String
    @Option(help: "Classification JSONL.") var data: String
    @Option(help: "Random subsets (over all q).") var samples = 64
    @Option(help: "Number of q values in (0, 1) (midpoints).") var grid = 8
    @Option(help: "Players: layer or module.") var group = "layer"
    @Option(help: "Seed of the subsets.") var seed: UInt64 = 0
    @OptionGroup var sweep: SweepOptions

    func validate() throws {
        guard samples >= 1, grid >= 1 else { throw ValidationError("--samples and --grid must be at least 1") }
        guard group == "layer" || group == "module" else { throw ValidationError("--group must be layer or module") }
    }

    func run() throws {
        let A = try sweep.loadAdapter(adapter)
        let players = Sweeps.players(of: A, group: group)
        let plan = ShapleyPlan(players: players.count, samples: samples, grid: grid, seed: seed)
        let name = sweep.name ?? Sweeps.seriesName(adapter)
        let shard = try sweep.parsedShard
        try sweep.run(
            "shapley", unit: " batches (every coalition)",
            header: Sweeps.shapleyHeader(adapter: A, data: data, group: group, plan: plan, name: name, shard: shard, task: sweep.evalTask),
            { ev in try Sweeps.shapley(ev, adapter: A, data: try sweep.prepare(ev, data), group: group, plan: plan, name: name, shard: shard) },
            summary: { r in
                guard r.shard.last == 1 else { return "\(r.values?.count ?? 0) coalitions scored (shard \(r.shard.map(String.init).joined(separator: "/")))" }
                let m = Sweeps.metric(r)
                let est = plan.estimate(scored: r.values ?? [:], value: m.shapleyValue)
                var lines = players.enumerated().map { "\($1.name): φ = \(fmt(est.values[$0], 4)) ± \(fmt(est.standardErrors[$0], 4))" }
                lines.append(
                    "Σφ = \(fmt(est.sum, 4)); v(all) − v(none) = \(fmt(est.full - est.empty, 4)); layers reused \(r.layersReused ?? 0), computed \(r.layersComputed ?? 0)"
                )
                return lines.joined(separator: "\n")
            })
    }
}

/// Prints the coverage lines and returns the problems (what `gather` lists and `report` checks first).
func checkCoverage(_ roots: [String], print lines: Bool) throws -> [String] {
    let g = try Gather.run(roots)
    if lines {
        for s in g.sweeps {
            let state = s.problems.isEmpty ? "complete" : "INCOMPLETE"
            Console.writeOut(
                "\(s.title): \(state), shards \(s.covered.count) of \(s.count), \(s.found) of \(s.expected) points, configuration \(s.config?.short ?? "none")")
        }
        for gr in g.grids {
            let state = gr.problems.isEmpty ? "complete" : "INCOMPLETE"
            Console.writeOut("grid \(gr.manifestPath): \(state), \(gr.finished.count) of \(gr.manifest.cells.count) cells finished")
        }
    }
    for s in g.skipped { Console.writeErr("warning: \(s)") }
    return g.problems
}

struct GatherCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gather",
        abstract: "Check that every sweep's shards and every training-grid cell are there once, from one configuration.",
        discussion: """
            For each sweep found under the directories: one shard count, every shard i/n present exactly once, one
            configuration hash, each shard holding all of its points. For each training grid (coto_grid.json): every
            cell finished, trained from the grid's configuration. Problems are listed one per line; the exit status
            is 1 if there are any, unless --partial.
            """)
    @Argument(help: "Sweep output directories, training-grid output directories, or result files.") var roots: [String]
    @Flag(help: "Exit 0 even if shards or cells are missing, duplicated or mismatched (they are still listed).") var partial = false

    func run() throws {
        let problems = try checkCoverage(roots, print: true)
        for p in problems { Console.writeErr("problem: \(p)") }
        if !problems.isEmpty && !partial {
            throw CommandError(
                roots.joined(separator: " "),
                "\(problems.count) coverage problem\(problems.count == 1 ? "" : "s") (listed above); rerun those shards, or give --partial")
        }
    }
}

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Join sweep results (and shards) and training runs into report.md, results.json and plots/*.png.")
    @Argument(help: "Run directories (searched recursively) or result files.") var runs: [String]
    @Option(name: .shortAndLong, help: "Report directory.") var output: String
    @Option(help: "Title of report.md.") var title = "coto report"
    @Flag(help: "Render even if shards or grid cells are missing, duplicated or mismatched (report.md lists them).") var partial = false
    @OptionGroup var out: OutputOptions

    func run() throws {
        // The gather check first: a report from part of a sweep is only written when asked for.
        let problems = try checkCoverage(runs, print: false)
        if !problems.isEmpty && !partial {
            for p in problems { Console.writeErr("problem: \(p)") }
            throw CommandError(
                runs.joined(separator: " "),
                "\(problems.count) coverage problem\(problems.count == 1 ? "" : "s") (listed above); rerun those shards, or give --partial")
        }
        let r = try Report.build(runs, title: title)
        try Report.write(r, to: output)
        for w in r.warnings where out.chatty { Console.writeErr("warning: \(w)") }
        if out.json {
            Console.writeOut(r.results.pretty)
        } else if !out.quiet {
            Console.writeOut("wrote \(FileSystem.join(output, "report.md")), results.json and \(r.plots.count) plots")
        }
    }
}

runCommand(Eval.self)
