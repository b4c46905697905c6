import ArgumentParser
import Checkpoint
import CotoCLI
import Evaluation
import Foundation
import Model
import Numerics
import Training

// --grid: every cell's configuration, the manifest, this shard's cells trained, skipped or resumed.

extension Train {
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
        let manifest = GridManifest(
            grid: gridPath, gridSHA256: try SHA256.file(gridPath), version: CotoVersion.string,
            cells: cells.map { .init(name: $0.cell.name, dir: $0.cell.name, config: $0.config.hash) }, shards: shard.count)
        let manifestPath = try TrainGrid.writeManifest(manifest, into: output, overwrite: overwrite)
        let mine = cells.indices.filter(shard.owns)
        for (n, k) in mine.enumerated() {
            var (cell, cmd, config) = cells[k]
            let label = "cell \(cell.name) (\(n + 1) of \(mine.count) in shard \(shard.text))"
            switch try TrainGrid.cellState(name: cell.name, dir: cmd.output, config: config, overwrite: overwrite) {
            case .finished:
                if !out.quiet { Console.writeErr("\(label): finished already (configuration \(config.short)), skipped") }
                continue
            case let .resume(ckpt):
                cmd.resume = true
                if !out.quiet { Console.writeErr("\(label): resuming from \(ckpt)") }
            case .fresh:
                if !out.quiet { Console.writeErr("\(label): training") }
            }
            try cmd.train(config: config)
        }
        if !out.quiet { Console.writeErr("shard \(shard.text) of \(manifestPath): its \(mine.count) of the grid's \(cells.count) cells are done") }
    }
}
