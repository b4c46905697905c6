import Checkpoint
import Foundation

// The result file of a sweep (`coto-eval interpolate|merge|prune|shapley`, Docs/formats.md "Task files and
// sweep results"), typed: `Sweeps` builds a `SweepResult`, coto-eval writes it, the report reads it.
// Non-finite numbers are written as null and read back as absent (nil).

/// One evaluated point: the score, and the coordinates of its sweep (interpolation: `lambda`; merge:
/// `method`, `task`, `adapter`; prune: `kind`, `value`, `normFractionKept`, `zeroed`, `dropped`).
public struct SweepPoint: Codable, Sendable, Equatable {
    public var accuracy: Double?
    public var macroF1: Double?
    public var loss: Double?
    public var examples: Int?
    public var lambda: Double?
    public var method: String?
    public var task: String?
    public var adapter: String?
    public var kind: String?
    public var value: String?
    public var normFractionKept: Double?
    public var zeroed: Int?
    public var dropped: Int?
    /// Perplexity sweeps: exp(loss); multiple choice: acc_norm; both: the tokens scored.
    public var perplexity: Double?
    public var accNorm: Double?
    public var tokens: Int?

    public init(score: Score) {
        accuracy = score.accuracy
        macroF1 = score.macroF1
        loss = score.loss
        examples = score.examples
        perplexity = score.perplexity
        accNorm = score.accNorm
        tokens = score.tokens
    }

    enum CodingKeys: String, CodingKey {
        case accuracy, loss, examples, lambda, method, task, adapter, kind, value, zeroed, dropped, perplexity, tokens
        case macroF1 = "macro_f1"
        case normFractionKept = "norm_fraction_kept"
        case accNorm = "acc_norm"
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        for (v, k) in [
            (accuracy, CodingKeys.accuracy), (macroF1, .macroF1), (loss, .loss), (lambda, .lambda), (normFractionKept, .normFractionKept),
            (perplexity, .perplexity), (accNorm, .accNorm),
        ]
        where v != nil {
            try c.encodeFinite(v, forKey: k)
        }
        try c.encodeIfPresent(examples, forKey: .examples)
        try c.encodeIfPresent(method, forKey: .method)
        try c.encodeIfPresent(task, forKey: .task)
        try c.encodeIfPresent(adapter, forKey: .adapter)
        try c.encodeIfPresent(kind, forKey: .kind)
        try c.encodeIfPresent(value, forKey: .value)
        try c.encodeIfPresent(zeroed, forKey: .zeroed)
        try c.encodeIfPresent(dropped, forKey: .dropped)
        try c.encodeIfPresent(tokens, forKey: .tokens)
    }
}

/// The sampling plan of a Shapley sweep as written in its settings.
public struct ShapleyPlanSettings: Codable, Sendable, Equatable {
    public var players: Int
    public var samples: Int
    public var grid: Int
    public var perQ: Int
    public var seed: UInt64

    enum CodingKeys: String, CodingKey {
        case players, samples, grid, seed
        case perQ = "per_q"
    }
}

/// What a sweep was asked to do (the fields of its kind; the others absent).
public struct SweepSettings: Codable, Sendable, Equatable {
    /// interpolate: the λ grid.
    public var grid: [Double]?
    /// merge: methods, weights (nil: each method's sweep default), density, seed.
    public var methods: [String]?
    public var weights: [Double]?
    public var density: Double?
    public var seed: UInt64?
    /// merge: adapters merged elsewhere (`coto-merge`, `coto-eval search`) scored as rows, as NAME=PATH.
    public var merged: [String]?
    /// prune: the points as `kind=value`.
    public var points: [String]?
    /// shapley: the player grouping and the plan.
    public var group: String?
    public var plan: ShapleyPlanSettings?
    /// What the points score: absent for classification, "perplexity" or "multiple-choice".
    public var task: String?

    public init(
        grid: [Double]? = nil, methods: [String]? = nil, weights: [Double]? = nil, density: Double? = nil, seed: UInt64? = nil,
        points: [String]? = nil, group: String? = nil, plan: ShapleyPlanSettings? = nil, task: String? = nil
    ) {
        self.task = task
        self.grid = grid
        self.methods = methods
        self.weights = weights
        self.density = density
        self.seed = seed
        self.points = points
        self.group = group
        self.plan = plan
    }

    enum CodingKeys: String, CodingKey { case grid, methods, weights, density, seed, merged, points, group, plan, task }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        grid = try c.decodeIfPresent([Double].self, forKey: .grid)
        methods = try c.decodeIfPresent([String].self, forKey: .methods)
        weights = try? c.decodeIfPresent([Double].self, forKey: .weights)  // files before typed records: "default"
        density = try c.decodeIfPresent(Double.self, forKey: .density)
        seed = try c.decodeIfPresent(UInt64.self, forKey: .seed)
        merged = try c.decodeIfPresent([String].self, forKey: .merged)
        points = try c.decodeIfPresent([String].self, forKey: .points)
        group = try c.decodeIfPresent(String.self, forKey: .group)
        plan = try c.decodeIfPresent(ShapleyPlanSettings.self, forKey: .plan)
        task = try c.decodeIfPresent(String.self, forKey: .task)
    }
}

/// A sweep's result file (or one shard of it).
public struct SweepResult: Codable, Sendable, Equatable {
    public var sweep: String
    /// The series (coto, lora, ...).
    public var name: String
    public var adapters: [String]
    public var data: [String]
    public var task: String
    /// [index, count] of the shard (index from 1).
    public var shard: [Int]
    public var settings: SweepSettings
    public var points: [SweepPoint]?
    /// shapley: the players, the number of coalitions in the plan, the forward passes' layer reuse and the
    /// scored coalitions by bit string (player 0 first).
    public var players: [String]?
    public var coalitions: Int?
    public var layersReused: Int?
    public var layersComputed: Int?
    public var values: [String: SweepPoint]?
    /// What the points were computed from (inputs' digests, options, version) and its hash; every shard of a
    /// sweep carries the same one. Absent in files written before coto 0.14.
    public var config: ConfigRecord?

    enum CodingKeys: String, CodingKey {
        case sweep, name, adapters, data, task, shard, settings, points, players, coalitions, values, config
        case layersReused = "layers_reused"
        case layersComputed = "layers_computed"
    }

    /// The result file at `path`, or nil if it cannot be read or is not one.
    public static func read(_ path: String) -> SweepResult? {
        guard let bytes = try? FileSystem.readFile(path, limit: 1 << 30) else { return nil }
        return try? JSONDecoder().decode(SweepResult.self, from: Data(bytes))
    }

    /// Pretty JSON with sorted keys (the file coto-eval writes).
    public func encoded() throws -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try e.encode(self), as: UTF8.self) + "\n"
    }

    /// What the sweep computes, paths aside (the part of the configuration hash that is not an input or an
    /// option): the kind, the series, the task and the settings.
    var identity: String {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        let settingsText = (try? e.encode(settings)).map { String(decoding: $0, as: UTF8.self) } ?? ""
        return [sweep, name, task, settingsText].joined(separator: "\u{1}")
    }

    /// [index, count] as a shard, when well formed.
    public var shardPosition: Shard? {
        guard shard.count == 2, shard[1] >= 1, shard[0] >= 1, shard[0] <= shard[1] else { return nil }
        return Shard(index: shard[0], count: shard[1])
    }

    /// The number of points (interpolation, merge, pruning) or coalitions (Shapley) the whole sweep has,
    /// from its settings; nil for an unknown sweep.
    public var expectedPoints: Int? {
        switch sweep {
        case "interpolate": return settings.grid?.count ?? 0
        case "prune": return settings.points?.count ?? 0
        case "merge": return ((settings.methods?.count ?? 0) + (settings.merged?.count ?? 0) + 1) * adapters.count
        case "shapley": return coalitions ?? 0
        default: return nil
        }
    }

    /// The points (or coalitions) this file holds.
    public var foundPoints: Int { sweep == "shapley" ? values?.count ?? 0 : points?.count ?? 0 }

    /// The identity of a sweep across its shards: everything but the shard and the results.
    var joinKey: String {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        let parts = [
            sweep, name, adapters.joined(separator: "|"), data.joined(separator: "|"),
            (try? e.encode(settings)).map { String(decoding: $0, as: UTF8.self) } ?? "",
        ]
        return parts.joined(separator: "\u{1}")
    }
}
