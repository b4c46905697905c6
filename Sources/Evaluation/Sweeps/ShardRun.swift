import Checkpoint
import Foundation

// Running one shard of a sweep: its configuration (content digests of every input, the options that change
// numbers), whether its result file is there already, and the atomic write of a new one.

extension Sweeps {
    /// The configuration of a sweep (or one shard of it; the shard is not part of it): the model's, adapters'
    /// and data files' content digests, the options that change numbers, the coto version, and what the
    /// sweep computes.
    public static func configuration(of header: SweepResult, model: String, options: [String: String]) throws -> ConfigRecord {
        var inputs = [try InputDigest.model(model)]
        inputs += try header.adapters.map(InputDigest.adapter)
        inputs += try header.data.map { try InputDigest.file($0, role: "data") }
        inputs += try (header.settings.merged ?? []).map { try InputDigest.adapter(String($0.drop { $0 != "=" }.dropFirst())) }
        return ConfigRecord(identity: header.identity, inputs: inputs, options: options)
    }

    public enum ShardStatus: Sendable, Equatable {
        /// No result file yet, or one to replace (--overwrite): run the shard.
        case run
        /// The file is there with this configuration: nothing to do.
        case done
    }

    /// What to do about a shard's result file at `path` before running it: run it (absent, or `overwrite`),
    /// skip it (finished with the same configuration), or refuse (another configuration, or not a result
    /// file: replacing it takes `overwrite`).
    public static func shardStatus(at path: String, config: ConfigRecord, overwrite: Bool) throws -> ShardStatus {
        guard FileSystem.exists(path) else { return .run }
        if overwrite { return .run }
        guard let old = SweepResult.read(path) else {
            throw EvalError(path, "is there but is not a sweep result file; give --overwrite to replace it")
        }
        guard let oldConfig = old.config else {
            throw EvalError(path, "is there without a configuration hash (written before coto 0.14); give --overwrite to recompute it")
        }
        if oldConfig.hash == config.hash { return .done }
        let d = config.differences(from: oldConfig)
        throw EvalError(
            path,
            "was computed from another configuration (\(oldConfig.short), this run's is \(config.short)"
                + (d.isEmpty ? "" : ": \(d.joined(separator: "; "))") + "); give --overwrite to replace it")
    }

    /// What `runShard` did: kept a finished shard of the same configuration, or ran and wrote it.
    public enum ShardOutcome {
        case kept(path: String, config: ConfigRecord, text: String)
        case wrote(path: String, result: SweepResult, text: String)
    }

    /// Runs one shard of a sweep into the run directory `outDir`. `header` is the result before it runs:
    /// its file is looked up first, and a finished shard of the same configuration is not run again
    /// (`shardStatus`); otherwise `evaluate` runs it, and its result, with the configuration, is written
    /// atomically.
    public static func runShard(
        header: SweepResult, model: String, options: [String: String], outDir: String, overwrite: Bool,
        evaluate: () throws -> SweepResult
    ) throws -> ShardOutcome {
        let config = try configuration(of: header, model: model, options: options)
        let path = FileSystem.join(outDir, fileName(header))
        if try shardStatus(at: path, config: config, overwrite: overwrite) == .done {
            let text = String(decoding: try FileSystem.readFile(path), as: UTF8.self)
            return .kept(path: path, config: config, text: text)
        }
        var result = try evaluate()
        guard fileName(result) == fileName(header) else { throw EvalError(path, "internal error: the sweep's result differs from its plan") }
        result.config = config
        try FileSystem.makeDirectory(outDir)
        let text = try result.encoded()
        try AtomicFileWriter.write(text, to: path)
        return .wrote(path: path, result: result, text: text)
    }
}
