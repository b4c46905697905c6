import Foundation

// Shards of a sweep's points: `--shard i/n`, or `auto` from a scheduler's environment.

/// `--shard i/n`: point k of a sweep belongs to shard (k mod n) + 1.
public struct Shard: Sendable, Equatable {
    public var index: Int
    public var count: Int
    public init(index: Int, count: Int) {
        self.index = index
        self.count = count
    }
    public static let whole = Shard(index: 1, count: 1)

    public static func parse(_ s: String) -> Shard? {
        let p = s.split(separator: "/")
        guard p.count == 2, let i = Int(p[0]), let n = Int(p[1]), n >= 1, i >= 1, i <= n else { return nil }
        return Shard(index: i, count: n)
    }

    public func owns(_ k: Int) -> Bool { k % count == index - 1 }

    /// The value of a `--shard` option: `i/n`, or `auto` (from the scheduler's environment, with `numShards`
    /// if given). Malformed text is a one-line error.
    public static func resolve(option: String, numShards: Int?, environment: [String: String]) throws -> Shard {
        if option == "auto" { return try fromEnvironment(environment, numShards: numShards) }
        guard let s = parse(option) else { throw EvalError("--shard", optionProblem(option) ?? "") }
        return s
    }

    /// What is wrong with a `--shard` value (nil: `i/n` or `auto`).
    public static func optionProblem(_ option: String) -> String? {
        option == "auto" || parse(option) != nil ? nil : "must be i/n with 1 <= i <= n, or auto (got '\(option)')"
    }

    /// How many of `total` points (indices 0..<total) this shard owns.
    public func ownedCount(of total: Int) -> Int { total >= index ? (total - index) / count + 1 : 0 }

    /// "2/4".
    public var text: String { "\(index)/\(count)" }

    /// This process's shard from a scheduler's environment (`--shard auto`), first found of: a Slurm job
    /// array (`SLURM_ARRAY_TASK_ID`), a Kubernetes Indexed Job (`JOB_COMPLETION_INDEX`, 0-based, with
    /// `numShards`), or `RANK`/`WORLD_SIZE`. Points go to shards by index mod n over the sorted grid, so a
    /// retried task redoes exactly its own.
    ///
    /// Slurm: with `numShards` the array task id is the shard index from 0 (`--array=0-3 --num-shards 4`), so
    /// a resubmitted subset (`sbatch --array=2`) is still shard 3 of 4; without it the array itself is the
    /// shard grid (`SLURM_ARRAY_TASK_COUNT`, or `_MIN`/`_MAX`/`_STEP`: `--array=1-8:2` gives shards 1…4 of 4).
    public static func fromEnvironment(_ env: [String: String], numShards: Int?) throws -> Shard {
        func int(_ key: String) throws -> Int? {
            guard let v = env[key] else { return nil }
            guard let i = Int(v.trimmingCharacters(in: .whitespaces)) else { throw EvalError("--shard auto", "\(key)=\(v) is not an integer") }
            return i
        }
        func shard(_ i: Int, _ n: Int, from what: String) throws -> Shard {
            guard n >= 1, i >= 1, i <= n else { throw EvalError("--shard auto", "\(what) gives shard \(i) of \(n)") }
            if let m = numShards, m != n { throw EvalError("--shard auto", "--num-shards \(m) but \(what) says \(n) tasks") }
            return Shard(index: i, count: n)
        }
        if let id = try int("SLURM_ARRAY_TASK_ID") {
            if let m = numShards {
                guard id >= 0, id < m else {
                    throw EvalError(
                        "--shard auto",
                        "SLURM_ARRAY_TASK_ID \(id) is not a shard index below --num-shards \(m) (with --num-shards, submit --array=0-\(m - 1) or part of it)")
                }
                return Shard(index: id + 1, count: m)
            }
            let lo = try int("SLURM_ARRAY_TASK_MIN") ?? 0
            let step = try int("SLURM_ARRAY_TASK_STEP") ?? 1
            guard step >= 1, id >= lo, (id - lo) % step == 0 else {
                throw EvalError("--shard auto", "SLURM_ARRAY_TASK_ID \(id) is not on the array's grid (min \(lo), step \(step))")
            }
            let n: Int
            if let c = try int("SLURM_ARRAY_TASK_COUNT") {
                n = c
            } else if let hi = try int("SLURM_ARRAY_TASK_MAX") {
                n = (hi - lo) / step + 1
            } else {
                throw EvalError("--shard auto", "SLURM_ARRAY_TASK_ID is set but not SLURM_ARRAY_TASK_COUNT or SLURM_ARRAY_TASK_MAX (give --num-shards)")
            }
            return try shard((id - lo) / step + 1, n, from: "the Slurm array")
        }
        if let idx = try int("JOB_COMPLETION_INDEX") {
            guard let n = numShards else { throw EvalError("--shard auto", "JOB_COMPLETION_INDEX is set: give --num-shards (the Job's completions)") }
            return try shard(idx + 1, n, from: "JOB_COMPLETION_INDEX")
        }
        if let rank = try int("RANK") {
            guard let n = try int("WORLD_SIZE") else { throw EvalError("--shard auto", "RANK is set but not WORLD_SIZE") }
            return try shard(rank + 1, n, from: "RANK/WORLD_SIZE")
        }
        throw EvalError(
            "--shard auto",
            "no scheduler index in the environment: SLURM_ARRAY_TASK_ID (Slurm job array), JOB_COMPLETION_INDEX with --num-shards (Kubernetes Indexed Job) or RANK with WORLD_SIZE"
        )
    }
    public var suffix: String { count == 1 ? "" : "-shard-\(index)-of-\(count)" }
}
