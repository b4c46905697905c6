import ArgumentParser
import Checkpoint
import CotoCLI
import Evaluation
import Model
import Numerics
import Training
import Foundation
#if canImport(Glibc)
import Glibc
#endif

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coto-train",
        abstract: "Train LoRA / rsLoRA / DoRA / HiRA adapters with or without CoTo on the CPU.",
        discussion: """
            CoTo (--coto, the default): each optimizer step, every group of adapters (a layer's, or each module's
            with --coto-group module) is active with probability p, rising linearly from --initial-p to --final-p
            over the first --stage1-ratio of the steps; inactive adapters are skipped and not updated. --no-coto
            trains plain LoRA on the same code path. Output: a PEFT adapter directory with coto_labels.json,
            train_log.jsonl (step, loss, lr, p, active groups, tokens/s) and metrics.json.

            Examples:
              coto-train --model minilm/ --data train.jsonl --eval-data dev.jsonl --task classification -o runs/coto-s0
              coto-train --model minilm/ --data train.jsonl --task classification --no-coto --seed 1 -o runs/lora-s1
              coto-train --model minilm/ --data train.jsonl --task classification --variant dora --rank 16 -o runs/dora

            Training grids (tasks x variants x methods x seeds, one run directory per cell; Docs/scale.md):
              coto-train --grid grid.json -o runs/                      every cell, one after the other
              coto-train --grid grid.json -o runs/ --jobs 2             on this machine, two cells at a time
              coto-train --grid grid.json -o runs/ --shard auto         this Slurm array task's / Indexed Job pod's cells
            A finished cell with the same configuration is skipped, a killed one resumes from its checkpoint
            (with "save-every" in the grid's options); `coto-eval gather runs/` checks that every cell finished.
            """)

    @Option(name: .customLong("model"), help: "Model directory or GGUF file (BERT for classification, a decoder family for causal-lm).") var modelPath: String?
    @Option(name: .customLong("data"), help: "Training JSONL: {\"text\", \"label\"} (classification), {\"text\"} or {\"prompt\", \"completion\"} (causal-lm).")
    var dataPath: String?
    @Option(help: "Evaluation JSONL, scored every --eval-every steps and at the end.") var evalData: String?
    @Option(help: "classification (BERT) or causal-lm (LLaMA).") var task = "classification"
    @Option(name: .shortAndLong, help: "Output adapter directory.") var output: String
    @Option(help: "lora, rslora, dora or hira.") var variant = "lora"
    @Option(help: "LoRA rank.") var rank = 8
    @Option(help: "lora_alpha (default: 2 x rank).") var alpha: Double?
    @Option(help: "Target modules: names (query,value) or all-linear.") var targets = "query,value"
    @Flag(inversion: .prefixedNo, help: "CoTo stochastic activation (default on).") var coto = true
    @Option(help: "CoTo initial activation probability.") var initialP = 0.1
    @Option(help: "CoTo final activation probability.") var finalP = 1.0
    @Option(help: "Fraction of the steps over which p rises.") var stage1Ratio = 0.75
    @Option(help: "CoTo groups: layer or module.") var cotoGroup = "layer"
    @Option(help: "Epochs (ignored with --steps).") var epochs = 3
    @Option(help: "Optimizer steps.") var steps: Int?
    @Option(help: "Examples per micro-batch.") var batchSize = 16
    @Option(help: "Micro-batches per optimizer step.") var gradAccum = 1
    @Option(help: "Peak learning rate.") var lr: Float = 5e-4
    @Option(help: "AdamW weight decay.") var weightDecay: Float = 0.01
    @Option(help: "Fraction of steps of linear warmup.") var warmupRatio = 0.0
    @Option(help: "linear, cosine or constant decay.") var schedule = "linear"
    @Option(help: "Truncate inputs to this many tokens (default 128, or the model's max_position_embeddings if lower; above it is an error).") var maxLength:
        Int?
    @Option(help: "Dropout on the adapter input.") var loraDropout: Float = 0
    @Option(help: "Gradient clipping by global norm.") var maxGradNorm: Float = 1
    @Option(help: "Seed (initialization, data order, CoTo draws, dropout).") var seed: UInt64 = 0
    @Option(help: "Threads.") var threads = 2
    @Option(help: "Evaluate every N steps (0: only at the end).") var evalEvery = 0
    @Option(help: "Write a resumable checkpoint every N steps (0: never).") var saveEvery = 0
    @Flag(help: "Continue from OUTPUT/checkpoint.") var resume = false
    @Flag(inversion: .prefixedNo, help: "Shuffle the training data every epoch (seeded); --no-shuffle keeps the file's order.") var shuffle = true
    @Flag(help: "Batches of similar lengths, as HF Trainer's group_by_length: less padding, other batches.") var groupByLength = false
    @Option(help: "A training grid (JSON: model, tasks, methods, variants, seeds, options); --output is the directory of its runs.") var grid: String?
    @Option(help: "With --grid: train only the cells of shard i/n, or `auto` from the scheduler (Slurm array, Kubernetes Indexed Job, RANK/WORLD_SIZE).")
    var shard = "1/1"
    @Option(
        help:
            "With --shard auto: the number of shards (required for a Kubernetes Indexed Job; with a Slurm array the task id is then the shard index from 0, so a resubmitted index keeps its shard)."
    ) var numShards: Int?
    @Option(
        help:
            "With --grid: train the cells in this many local processes side by side (shards i/N of the grid), the machine's cores shared among them; every adapter is byte-identical to the one-process run (same threads, same batch split)."
    ) var jobs = 1
    @Flag(help: "With --grid: retrain cells that finished (or were trained from another configuration) and replace the manifest.") var overwrite = false
    @OptionGroup var out: OutputOptions

    var model: String { modelPath ?? "" }
    var data: String { dataPath ?? "" }

    func validate() throws {
        if grid != nil {
            guard modelPath == nil, dataPath == nil, evalData == nil else { throw ValidationError("with --grid, the grid file gives the model and the data") }
            if let problem = Shard.optionProblem(shard) { throw ValidationError("--shard \(problem)") }
            if let n = numShards, n < 1 { throw ValidationError("--num-shards must be at least 1") }
            guard jobs >= 1 else { throw ValidationError("--jobs must be at least 1") }
            guard jobs == 1 || (shard == "1/1" && numShards == nil) else {
                throw ValidationError("--jobs runs the grid's shards on this machine: give it or --shard, not both")
            }
            return
        }
        guard modelPath != nil, dataPath != nil else { throw ValidationError("give --model and --data (or --grid)") }
        guard shard == "1/1", numShards == nil, !overwrite, jobs == 1 else {
            throw ValidationError("--shard, --num-shards, --jobs and --overwrite go with --grid")
        }
        guard ["lora", "rslora", "dora", "hira"].contains(variant) else { throw ValidationError("--variant must be lora, rslora, dora or hira") }
        guard task == "classification" || task == "causal-lm" else { throw ValidationError("--task must be classification or causal-lm") }
        guard rank >= 1 else { throw ValidationError("--rank must be at least 1") }
        guard initialP >= 0, finalP <= 1, initialP <= finalP else { throw ValidationError("need 0 <= --initial-p <= --final-p <= 1") }
        guard stage1Ratio >= 0 && stage1Ratio <= 1 else { throw ValidationError("--stage1-ratio must be in [0, 1]") }
        guard TrainConfig.Group(rawValue: cotoGroup) != nil else { throw ValidationError("--coto-group must be layer or module") }
        guard Schedule(rawValue: schedule) != nil else { throw ValidationError("--schedule must be linear, cosine or constant") }
        guard batchSize >= 1, gradAccum >= 1, epochs >= 1, (steps ?? 1) >= 1, (maxLength ?? 2) >= 2, threads >= 1 else {
            throw ValidationError("--batch-size, --grad-accum, --epochs, --steps, --threads must be positive and --max-length >= 2")
        }
        guard lr > 0, lr.isFinite, weightDecay >= 0, loraDropout >= 0, loraDropout < 1, warmupRatio >= 0, warmupRatio <= 1 else {
            throw ValidationError("--lr must be positive, --weight-decay >= 0, --lora-dropout in [0, 1), --warmup-ratio in [0, 1]")
        }
    }

    func run() throws {
        if let g = grid { return jobs > 1 ? try runGridLocally(g) : try runGrid(g) }
        try train(config: try configuration())
    }

}

runCommand(Train.self)
