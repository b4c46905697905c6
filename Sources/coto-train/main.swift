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
              coto-train --grid grid.json -o runs/ --shard auto         this Slurm array task's / Indexed Job pod's cells
            A finished cell with the same configuration is skipped, a killed one resumes from its checkpoint
            (with "save-every" in the grid's options); `coto-eval gather runs/` checks that every cell finished.
            """)

    @Option(name: .customLong("model"), help: "Model directory (BERT for classification, LLaMA for causal-lm).") var modelPath: String?
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
    @Flag(help: "With --grid: retrain cells that finished (or were trained from another configuration) and replace the manifest.") var overwrite = false
    @OptionGroup var out: OutputOptions

    var model: String { modelPath ?? "" }
    var data: String { dataPath ?? "" }

    func validate() throws {
        if grid != nil {
            guard modelPath == nil, dataPath == nil, evalData == nil else { throw ValidationError("with --grid, the grid file gives the model and the data") }
            if let problem = Shard.optionProblem(shard) { throw ValidationError("--shard \(problem)") }
            if let n = numShards, n < 1 { throw ValidationError("--num-shards must be at least 1") }
            return
        }
        guard modelPath != nil, dataPath != nil else { throw ValidationError("give --model and --data (or --grid)") }
        guard shard == "1/1", numShards == nil, !overwrite else { throw ValidationError("--shard, --num-shards and --overwrite go with --grid") }
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
        if let g = grid { return try runGrid(g) }
        try train(config: try configuration())
    }

    /// One run; `config` is its configuration record (a grid computes it once per cell, with shared digests).
    func train(config: ConfigRecord) throws {
        // Training splits each batch over two workers with single-threaded BLAS each (one thread: BLAS gets it).
        if threads >= 2 {
            Parallel.configure(threads: threads)
        } else {
            Parallel.configure(threads: 1)
            BLAS.setThreads(threads)
        }
        try checkOutputNotInput(output, inputs: [model, data] + (evalData.map { [$0] } ?? []))
        let loaded = try ModelRegistry.load(model)
        let tok = try TokenizerLoader.load(modelDir: model)
        let limits = loaded.inputLimits
        let maxLength = try limits.maxLength(requested: self.maxLength, fallback: 128, modelDir: model)
        if task == "causal-lm" {
            guard let llama = loaded as? LlamaModel else { throw CommandError(model, "causal-LM training runs on decoder models (model_type llama)") }
            try trainCausalLM(llama, tok, maxLength: maxLength, config: config)
            return
        }
        guard let bert = loaded as? BertModel else {
            throw CommandError(model, "classification training runs on BERT models (model_type bert)")
        }
        let (train, dev, labels) = try TrainingData.classification(train: data, eval: evalData, tokenizer: tok, maxLength: maxLength, limits: limits)
        let trainer = try AdapterTrainer(model: bert, labels: labels, config: makeConfig(maxLength: maxLength))
        try runAndSave(trainer, train: train, dev: dev, labels: labels, config: config)
    }

    /// Causal LM: {"text"} (every token after the first scored) or {"prompt", "completion"} (completion only).
    func trainCausalLM(_ llama: LlamaModel, _ tok: Tokenizer, maxLength: Int, config: ConfigRecord) throws {
        let limits = llama.inputLimits
        let train = try TrainingData.causalLM(data, tokenizer: tok, maxLength: maxLength, limits: limits)
        let dev = try evalData.map { try TrainingData.causalLM($0, tokenizer: tok, maxLength: maxLength, limits: limits) }
        let trainer = try AdapterTrainer(causalLM: llama, config: makeConfig(maxLength: maxLength))
        try runAndSave(trainer, train: train, dev: dev, labels: [], config: config)
    }

    func makeConfig(maxLength: Int) -> TrainConfig {
        var c = TrainConfig()
        c.variant = variant == "hira" ? .hira : .lora
        c.rslora = variant == "rslora"
        c.dora = variant == "dora"
        c.rank = rank
        c.alpha = alpha
        c.targets = targets.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }
        c.coto = coto
        c.initialP = initialP
        c.finalP = finalP
        c.stage1Ratio = stage1Ratio
        c.group = TrainConfig.Group(rawValue: cotoGroup)!
        c.epochs = epochs
        c.steps = steps
        c.batchSize = batchSize
        c.gradAccum = gradAccum
        c.lr = lr
        c.weightDecay = weightDecay
        c.warmupRatio = warmupRatio
        c.schedule = Schedule(rawValue: schedule)!
        c.maxLength = maxLength
        c.seed = seed
        c.loraDropout = loraDropout
        c.maxGradNorm = maxGradNorm
        c.evalEvery = evalEvery
        c.saveEvery = saveEvery
        c.shuffle = shuffle
        c.groupByLength = groupByLength
        c.workers = min(threads, 2)
        return c
    }

    func runAndSave(_ trainer: AdapterTrainer, train: [Example], dev: [Example]?, labels: [String], config: ConfigRecord) throws {
        let ckpt = FileSystem.join(output, "checkpoint")
        if resume {
            guard FileSystem.exists(ckpt) else { throw CommandError(ckpt, "no checkpoint to resume from") }
            try trainer.loadCheckpoint(from: ckpt)
        }
        var bar: ProgressRenderer? = nil
        var lastEval: (Int, Double, Double)? = nil
        let t0 = Clock.now()
        try trainer.train(
            train, eval: dev,
            events: { e in
                switch e {
                case let .step(s, total):
                    if bar == nil { bar = ProgressRenderer(label: "training", total: total, unit: " steps", quiet: !out.chatty) }
                    bar?.update(s.step, detail: String(format: "loss %.4f p %.2f %.0f tok/s", s.loss, s.p, s.tokensPerSecond))
                case let .eval(step, acc, loss):
                    lastEval = (step, acc, loss)
                    if out.chatty {
                        Console.writeErr("step \(step): dev \(labels.isEmpty ? "next-token accuracy" : "accuracy") \(fmt(acc, 4)), loss \(fmt(loss, 4))")
                    }
                case .saved: break
                }
            }, checkpoint: { t in try t.saveCheckpoint(to: ckpt, baseModel: model) })
        bar?.finish()
        let trainSeconds = Clock.now() - t0
        if let d = dev, lastEval == nil {
            let (acc, loss) = try trainer.evaluate(d)
            lastEval = (trainer.step, acc, loss)
        }
        // Outputs: the adapter (atomic per file), the log, the metrics; then the checkpoint goes.
        try FileSystem.makeDirectory(output)
        let adapter = trainer.adapter(baseModel: model)
        try adapter.save(to: output)  // writes the variant (coto_adapter.json for HiRA) and the label list
        try AtomicFileWriter.write(try RunRecords.logLines(trainer.log), to: FileSystem.join(output, RunRecords.logFile))
        var metrics = RunMetrics(
            task: task, steps: trainer.step, coto: coto, variant: variant, labels: labels, finalLoss: trainer.log.last?.loss, data: data,
            evalData: evalData, seed: seed, rank: rank, targets: targets, threads: threads, trainSeconds: trainSeconds,
            tokensPerSecond: trainer.log.isEmpty ? 0 : trainer.log.map(\.tokensPerSecond).reduce(0, +) / Double(trainer.log.count),
            devStep: lastEval?.0, devAccuracy: lastEval?.1, devLoss: lastEval?.2, config: config)
        metrics.time = trainer.time
        // metrics.json last: its presence marks a finished run (a training grid skips it on a rerun).
        let metricsText = try RunRecords.metricsJSON(metrics)
        try AtomicFileWriter.write(metricsText, to: FileSystem.join(output, RunRecords.metricsFile))
        trainer.discardCheckpoint(at: ckpt)
        if out.json {
            Console.writeOut(metricsText.trimmingCharacters(in: .newlines))
        } else if out.chatty {
            Console.writeErr(
                "wrote \(output): \(trainer.modules.count) modules, \(trainer.step) steps"
                    + (lastEval.map { String(format: ", dev accuracy %.4f", $0.1) } ?? ""))
        }
    }

    // MARK: configuration and grids

    /// Every option that changes the trained adapter, with its effective value (defaults included).
    var effectiveOptions: [String: String] {
        var o: [String: String] = [
            "task": task, "variant": variant, "rank": String(rank), "alpha": alpha.map { "\($0)" } ?? "default", "targets": targets,
            "coto": String(coto), "epochs": String(epochs), "steps": steps.map(String.init) ?? "epochs", "batch-size": String(batchSize),
            "grad-accum": String(gradAccum), "lr": "\(lr)", "weight-decay": "\(weightDecay)", "warmup-ratio": "\(warmupRatio)", "schedule": schedule,
            "max-length": maxLength.map(String.init) ?? "default", "lora-dropout": "\(loraDropout)", "max-grad-norm": "\(maxGradNorm)",
            "seed": String(seed), "eval-every": String(evalEvery), "shuffle": String(shuffle),
            // A batch is split over up to two workers: their number changes the rounding.
            "workers": String(min(threads, 2)),
        ]
        // Recorded when set, so configurations written before the option existed keep their hash.
        if groupByLength { o["group-by-length"] = "true" }
        if coto {
            o["initial-p"] = "\(initialP)"
            o["final-p"] = "\(finalP)"
            o["stage1-ratio"] = "\(stage1Ratio)"
            o["coto-group"] = cotoGroup
        }
        return o
    }

    func configuration() throws -> ConfigRecord {
        var digests: [String: InputDigest] = [:]
        return try TrainConfig.configuration(model: model, data: data, evalData: evalData, options: effectiveOptions, digests: &digests)
    }

    var parsedShard: Shard {
        get throws {
            try Shard.resolve(option: shard, numShards: numShards, environment: ProcessInfo.processInfo.environment)
        }
    }

    /// `--grid`: writes the manifest (every shard writes the same one), then trains this shard's cells one
    /// after the other: a finished cell of the same configuration is skipped, one with a checkpoint resumes.
    func runGrid(_ gridPath: String) throws {
        let g = try TrainGrid.load(gridPath)
        let shard = try parsedShard
        var digests: [String: InputDigest] = [:]
        var cells: [(cell: TrainGrid.Cell, command: Train, config: ConfigRecord)] = []
        for c in g.cells {
            var cmd: Train
            do { cmd = try Train.parse(g.arguments(c, output: FileSystem.join(output, c.name))) } catch {
                throw CommandError(gridPath, "cell \(c.name): \(Train.message(for: error))")
            }
            (cmd.threads, cmd.out) = (threads, out)
            let config = try TrainConfig.configuration(
                model: cmd.model, data: cmd.data, evalData: cmd.evalData, options: cmd.effectiveOptions, digests: &digests)
            cells.append((c, cmd, config))
        }
        try FileSystem.makeDirectory(output)
        let manifest = GridManifest(
            grid: gridPath, gridSHA256: try SHA256.file(gridPath), version: CotoVersion.string,
            cells: cells.map { .init(name: $0.cell.name, dir: $0.cell.name, config: $0.config.hash) }, shards: shard.count)
        let manifestPath = FileSystem.join(output, RunRecords.gridFile)
        if FileSystem.exists(manifestPath), !overwrite {
            let old = try? JSONDecoder().decode(GridManifest.self, from: Data(FileSystem.readFile(manifestPath, limit: 64 << 20)))
            guard let old, old.cells == manifest.cells else {
                throw CommandError(
                    manifestPath, "holds another grid (other cells or configurations); give --overwrite to retrain into \(output), or choose another --output")
            }
        }
        try AtomicFileWriter.write(try manifest.encoded(), to: manifestPath)
        let mine = cells.indices.filter(shard.owns)
        for (n, k) in mine.enumerated() {
            var (cell, cmd, config) = cells[k]
            let dir = cmd.output
            let label = "cell \(cell.name) (\(n + 1) of \(mine.count) in shard \(shard.text))"
            let metricsPath = FileSystem.join(dir, RunRecords.metricsFile)
            if FileSystem.exists(metricsPath), !overwrite {
                guard let m = try? RunRecords.readMetrics(dir), let done = m.config else {
                    throw CommandError(metricsPath, "is there without a configuration hash; give --overwrite to retrain \(cell.name)")
                }
                guard done.hash == config.hash else {
                    let d = config.differences(from: done)
                    throw CommandError(
                        metricsPath,
                        "was trained from another configuration (\(done.short), the grid's is \(config.short)"
                            + (d.isEmpty ? "" : ": \(d.joined(separator: "; "))")
                            + "); give --overwrite to retrain \(cell.name)")
                }
                if !out.quiet { Console.writeErr("\(label): finished already (configuration \(config.short)), skipped") }
                continue
            }
            let ckpt = FileSystem.join(dir, "checkpoint")
            // A checkpoint is complete once its optimizer state is written (the last file); one killed
            // before that is removed and the cell starts over.
            if overwrite || !FileSystem.exists(FileSystem.join(ckpt, RunRecords.checkpointStateFile)) { FileSystem.removeTree(ckpt) }
            if FileSystem.exists(ckpt) {
                cmd.resume = true
                if !out.quiet { Console.writeErr("\(label): resuming from \(ckpt)") }
            } else if !out.quiet {
                Console.writeErr("\(label): training")
            }
            try cmd.train(config: config)
        }
        if !out.quiet { Console.writeErr("shard \(shard.text) of \(manifestPath): its \(mine.count) of the grid's \(cells.count) cells are done") }
    }
}

runCommand(Train.self)
