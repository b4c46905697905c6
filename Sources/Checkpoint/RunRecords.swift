import Foundation

/// The records of a coto-train run directory (Docs/formats.md, "Run directories"): `train_log.jsonl`, one
/// `StepLog` per optimizer step, and `metrics.json`, one `RunMetrics`. Written by coto-train, read by the
/// reports and sweeps, through these types only. Non-finite numbers (a diverged loss) are written as null
/// and read back as NaN, as the rest of coto's JSON does.

/// One optimizer step: a line of `train_log.jsonl`.
public struct StepLog: Codable, Sendable, Equatable {
    public var step: Int
    public var loss: Double
    public var lr: Float
    /// CoTo's activation probability at this step (1 without CoTo).
    public var p: Double
    public var activeGroups: [Int]
    public var tokensPerSecond: Double
    /// Wall time of the step (forward, backward, optimizer).
    public var seconds: Double = 0
    /// The dev set's accuracy (causal LM: next-token accuracy) and loss after this step, on the steps where
    /// coto-train evaluated (`--eval-every`); absent elsewhere.
    public var devAccuracy: Double? = nil
    public var devLoss: Double? = nil

    public init(step: Int, loss: Double, lr: Float, p: Double, activeGroups: [Int], tokensPerSecond: Double, seconds: Double = 0) {
        self.step = step
        self.loss = loss
        self.lr = lr
        self.p = p
        self.activeGroups = activeGroups
        self.tokensPerSecond = tokensPerSecond
        self.seconds = seconds
    }

    enum CodingKeys: String, CodingKey {
        case step, loss, lr, p, seconds
        case activeGroups = "active_groups"
        case tokensPerSecond = "tokens_per_s"
        case devAccuracy = "dev_accuracy"
        case devLoss = "dev_loss"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        step = try c.decode(Int.self, forKey: .step)
        loss = try c.decodeIfPresent(Double.self, forKey: .loss) ?? .nan
        lr = try c.decodeIfPresent(Float.self, forKey: .lr) ?? .nan
        p = try c.decodeIfPresent(Double.self, forKey: .p) ?? 1
        activeGroups = try c.decodeIfPresent([Int].self, forKey: .activeGroups) ?? []
        tokensPerSecond = try c.decodeIfPresent(Double.self, forKey: .tokensPerSecond) ?? 0
        seconds = try c.decodeIfPresent(Double.self, forKey: .seconds) ?? 0
        devAccuracy = try c.decodeIfPresent(Double.self, forKey: .devAccuracy)
        devLoss = try c.decodeIfPresent(Double.self, forKey: .devLoss)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(step, forKey: .step)
        try c.encodeFinite(loss, forKey: .loss)
        if lr.isFinite { try c.encode(lr, forKey: .lr) } else { try c.encodeNil(forKey: .lr) }
        try c.encodeFinite(p, forKey: .p)
        try c.encode(activeGroups, forKey: .activeGroups)
        try c.encodeFinite(tokensPerSecond, forKey: .tokensPerSecond)
        try c.encodeFinite(seconds, forKey: .seconds)
        if let devAccuracy { try c.encodeFinite(devAccuracy, forKey: .devAccuracy) }
        if let devLoss { try c.encodeFinite(devLoss, forKey: .devLoss) }
    }
}

/// Where the optimizer steps' time went, over the steps one coto-train process ran (a resumed run: the resumed
/// part). `steps` is their wall time; the workers' phases are worker-seconds, summed over the workers that run
/// side by side (two workers busy for 1 s make 2 s), so forward + backward + idle = workers × the time of the
/// parallel part; `optimizer` and `other` are wall time on the main thread.
public struct TimeBreakdown: Codable, Sendable, Equatable {
    public var workers = 1
    public var steps = 0.0
    /// Forward passes with head and loss, and backward passes (the adapters' share included in both).
    public var forward = 0.0, backward = 0.0
    /// The adapters' own work inside forward and backward.
    public var adapter = 0.0
    /// A worker waiting for the other at the end of a batch.
    public var idle = 0.0
    /// Adding the second worker's gradients into the first's.
    public var merge = 0.0
    /// Clipping, AdamW, and syncing the updated adapters into the model.
    public var optimizer = 0.0
    /// The rest of the steps: forming batches, CoTo's draws, clearing gradients.
    public var other = 0.0
    public init() {}
}

/// A run's summary: `metrics.json`.
public struct RunMetrics: Codable, Sendable, Equatable {
    public var task: String
    public var steps: Int
    public var coto: Bool
    public var variant: String
    public var labels: [String]
    public var finalLoss: Double?
    public var data: String
    public var evalData: String?
    public var seed: UInt64
    public var rank: Int
    public var targets: String
    public var threads: Int
    public var trainSeconds: Double
    public var tokensPerSecond: Double
    public var devStep: Int?
    public var devAccuracy: Double?
    public var devLoss: Double?
    /// What the run was trained from (inputs' digests, options, version); absent before coto 0.14.
    public var config: ConfigRecord?
    /// Where the steps' time went; absent in metrics written before coto-train recorded it.
    public var time: TimeBreakdown? = nil

    public init(
        task: String, steps: Int, coto: Bool, variant: String, labels: [String], finalLoss: Double?, data: String, evalData: String?,
        seed: UInt64, rank: Int, targets: String, threads: Int, trainSeconds: Double, tokensPerSecond: Double,
        devStep: Int? = nil, devAccuracy: Double? = nil, devLoss: Double? = nil, config: ConfigRecord? = nil
    ) {
        self.config = config
        self.task = task
        self.steps = steps
        self.coto = coto
        self.variant = variant
        self.labels = labels
        self.finalLoss = finalLoss
        self.data = data
        self.evalData = evalData
        self.seed = seed
        self.rank = rank
        self.targets = targets
        self.threads = threads
        self.trainSeconds = trainSeconds
        self.tokensPerSecond = tokensPerSecond
        self.devStep = devStep
        self.devAccuracy = devAccuracy
        self.devLoss = devLoss
    }

    enum CodingKeys: String, CodingKey {
        case task, steps, coto, variant, labels, data, seed, rank, targets, threads
        case finalLoss = "final_loss"
        case evalData = "eval_data"
        case trainSeconds = "train_seconds"
        case tokensPerSecond = "tokens_per_second"
        case devStep = "dev_step"
        case devAccuracy = "dev_accuracy"
        case devLoss = "dev_loss"
        case config, time
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(task, forKey: .task)
        try c.encode(steps, forKey: .steps)
        try c.encode(coto, forKey: .coto)
        try c.encode(variant, forKey: .variant)
        try c.encode(labels, forKey: .labels)
        try c.encodeFinite(finalLoss, forKey: .finalLoss)
        try c.encode(data, forKey: .data)
        try c.encode(evalData, forKey: .evalData)
        try c.encode(seed, forKey: .seed)
        try c.encode(rank, forKey: .rank)
        try c.encode(targets, forKey: .targets)
        try c.encode(threads, forKey: .threads)
        try c.encodeFinite(trainSeconds, forKey: .trainSeconds)
        try c.encodeFinite(tokensPerSecond, forKey: .tokensPerSecond)
        if let devStep { try c.encode(devStep, forKey: .devStep) }
        if let devAccuracy { try c.encodeFinite(devAccuracy, forKey: .devAccuracy) }
        if let devLoss { try c.encodeFinite(devLoss, forKey: .devLoss) }
        try c.encodeIfPresent(config, forKey: .config)
        try c.encodeIfPresent(time, forKey: .time)
    }

    /// The series a run belongs to in reports: "coto" or "lora", prefixed by the variant when it is not
    /// plain LoRA ("coto-dora", "hira").
    public var seriesName: String {
        coto ? (variant == "lora" ? "coto" : "coto-\(variant)") : variant
    }
}

/// Reading and writing the run records.
public enum RunRecords {
    public static let logFile = "train_log.jsonl"
    public static let metricsFile = "metrics.json"
    /// A resumable checkpoint's last-written file (AdamW state, parameter values, step, RNG state): a
    /// `checkpoint/` directory without it was interrupted while being written.
    public static let checkpointStateFile = "optimizer.safetensors"
    /// The manifest a training grid writes into its output directory (`coto-train --grid`).
    public static let gridFile = "coto_grid.json"

    static func encoder(pretty: Bool) -> JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = pretty ? [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
        return e
    }

    /// One compact JSON line per step.
    public static func logLines(_ log: [StepLog]) throws -> String {
        let e = encoder(pretty: false)
        return try log.map { String(decoding: try e.encode($0), as: UTF8.self) }.joined(separator: "\n") + "\n"
    }

    /// The compact JSON array of a log (a checkpoint's metadata).
    public static func logArray(_ log: [StepLog]) throws -> String {
        String(decoding: try encoder(pretty: false).encode(log), as: UTF8.self)
    }

    public static func decodeLogArray(_ text: String, path: String) throws -> [StepLog] {
        do { return try JSONDecoder().decode([StepLog].self, from: Data(text.utf8)) } catch {
            throw CheckpointError(path, .invalid("the training log in the checkpoint does not decode: \(error)"))
        }
    }

    public static func metricsJSON(_ m: RunMetrics) throws -> String {
        String(decoding: try encoder(pretty: true).encode(m), as: UTF8.self) + "\n"
    }

    /// `train_log.jsonl` of a run directory; a line that does not decode is an error naming it.
    public static func readLog(_ dir: String) throws -> [StepLog] {
        let path = FileSystem.join(dir, logFile)
        let text = String(decoding: try FileSystem.readFile(path, limit: 1 << 30), as: UTF8.self)
        let d = JSONDecoder()
        var out: [StepLog] = []
        for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() where !line.isEmpty {
            do { out.append(try d.decode(StepLog.self, from: Data(line.utf8))) } catch {
                throw CheckpointError("\(path):\(i + 1)", .invalid("not a step record: \(error)"))
            }
        }
        return out
    }

    /// `metrics.json` of a run directory.
    public static func readMetrics(_ dir: String) throws -> RunMetrics {
        let path = FileSystem.join(dir, metricsFile)
        do { return try JSONDecoder().decode(RunMetrics.self, from: Data(try FileSystem.readFile(path, limit: 1 << 24))) } catch let e as CheckpointError {
            throw e
        } catch {
            throw CheckpointError(path, .invalid("not a coto-train metrics file: \(error)"))
        }
    }
}

extension KeyedEncodingContainer {
    /// A finite number, or null (coto's JSON records write non-finite numbers as null).
    public mutating func encodeFinite(_ v: Double?, forKey key: Key) throws {
        if let v, v.isFinite { try encode(v, forKey: key) } else { try encodeNil(forKey: key) }
    }
}

/// A training grid's manifest (`coto_grid.json` in the grid's output directory): every cell, the run
/// directory it trains into and the configuration hash its metrics.json must carry. Every shard writes
/// the same manifest; `coto-eval gather` checks the cells against it.
public struct GridManifest: Codable, Sendable, Equatable {
    public struct Cell: Codable, Sendable, Equatable {
        /// "noun8-coto-s0".
        public var name: String
        /// The run directory, relative to the manifest's directory.
        public var dir: String
        /// The configuration hash of the cell (`ConfigRecord.hash`).
        public var config: String
        public init(name: String, dir: String, config: String) { (self.name, self.dir, self.config) = (name, dir, config) }
    }
    /// The grid file, as given, and the SHA-256 of its bytes.
    public var grid: String
    public var gridSHA256: String
    public var version: String
    /// Cells in grid order (cell k belongs to shard k mod n + 1).
    public var cells: [Cell]
    /// The shard count n of the latest run that wrote the manifest (the cells do not depend on it).
    public var shards: Int

    public init(grid: String, gridSHA256: String, version: String, cells: [Cell], shards: Int) {
        (self.grid, self.gridSHA256, self.version, self.cells, self.shards) = (grid, gridSHA256, version, cells, shards)
    }

    enum CodingKeys: String, CodingKey {
        case grid, version, cells, shards
        case gridSHA256 = "grid_sha256"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        grid = try c.decode(String.self, forKey: .grid)
        gridSHA256 = try c.decode(String.self, forKey: .gridSHA256)
        version = try c.decode(String.self, forKey: .version)
        cells = try c.decode([Cell].self, forKey: .cells)
        shards = try c.decodeIfPresent(Int.self, forKey: .shards) ?? 1
    }

    public func encoded() throws -> String {
        String(decoding: try RunRecords.encoder(pretty: true).encode(self), as: UTF8.self) + "\n"
    }
}
