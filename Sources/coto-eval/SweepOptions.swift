import ArgumentParser
import Checkpoint
import CotoCLI
import Evaluation
import Foundation
import Model
import Numerics
import Operators

/// What every sweep shares: the model, batching, the run directory, the series name and the shard.
struct SweepOptions: ParsableArguments {
    @Option(help: "Model directory or llama.cpp GGUF file.") var model: String
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
    @Option(
        help:
            "Run the sweep's shards 1/N … N/N as this many local processes side by side, the cores shared among them (results as one process; `coto-eval report` joins the parts)."
    ) var jobs = 1
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
        guard jobs >= 1 else { throw ValidationError("--jobs must be at least 1") }
        guard jobs == 1 || (shard == "1/1" && numShards == nil) else {
            throw ValidationError("--jobs runs the sweep's shards on this machine: give it or --shard, not both")
        }
        guard jobs == 1 || !output.json else {
            throw ValidationError(
                "--json goes with one process: with --jobs each shard writes its own result file (`coto-eval gather` checks them, `coto-eval report` joins them)"
            )
        }
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
        let (m, tok) = try ModelRegistry.loadWithTokenizer(model)
        let ev = SweepEvaluator(model: m, tokenizer: tok)
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

    /// Runs `body` with a progress bar through `Sweeps.runShard` (a finished shard of the same configuration
    /// is kept, not rerun) and prints what happened.
    func run(
        _ label: String, unit: String = " points", header: SweepResult, _ body: (SweepEvaluator) throws -> SweepResult,
        summary: (SweepResult) -> String
    ) throws {
        if jobs > 1 {
            let cores = try LocalJobs.run(jobs: jobs, subject: out)
            if !output.quiet { Console.writeErr("\(header.sweep) sweep: \(jobs) local jobs finished, \(cores) core(s) each") }
            return
        }
        let outcome = try Sweeps.runShard(header: header, model: model, options: numericOptions, outDir: out, overwrite: overwrite) {
            let ev = try evaluator()
            var bar: ProgressRenderer? = nil
            ev.progress = { done, total in
                if bar == nil { bar = ProgressRenderer(label: label, total: total, unit: unit, quiet: !output.chatty) }
                bar?.update(done)
            }
            let result = try body(ev)
            bar?.finish()
            return result
        }
        switch outcome {
        case let .kept(path, config, text):
            if output.json {
                Console.writeOut(text.trimmingCharacters(in: .newlines))
            } else if !output.quiet {
                Console.writeOut(
                    "shard \(header.shardPosition?.text ?? "1/1") of this \(header.sweep) sweep is done already (configuration \(config.short)): nothing to do\nkept \(path)"
                )
            }
        case let .wrote(path, result, text):
            if output.json {
                Console.writeOut(text.trimmingCharacters(in: .newlines))
            } else if !output.quiet {
                Console.writeOut(summary(result) + "\nwrote \(path)")
            }
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
