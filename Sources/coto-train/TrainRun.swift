import ArgumentParser
import Checkpoint
import CotoCLI
import Evaluation
import Foundation
import Model
import Numerics
import Training

// One training run: the model and data loaded, the trainer driven with a progress bar, the adapter and its
// run records written.

extension Train {
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
        let (loaded, tok) = try ModelRegistry.loadWithTokenizer(model)
        let limits = loaded.inputLimits
        let maxLength = try limits.maxLength(requested: self.maxLength, fallback: 128, modelDir: model)
        if task == "causal-lm" {
            guard let llama = loaded as? LlamaModel else {
                throw CommandError(model, "causal-LM training runs on decoder models (model_type \(ModelRegistry.decoderTypes.joined(separator: ", ")))")
            }
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
}
