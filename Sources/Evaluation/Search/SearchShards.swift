import Checkpoint
import Foundation

/// A search's generation spread over shards (local processes with `--jobs`, a Slurm array with `--shard auto`).
/// Shard k of n evaluates the candidates i of a generation with i mod n = k − 1 and writes their scores to
/// `generations/g0005-shard-k-of-n.json` beside the state. Shard 1 leads: it waits for its siblings' files,
/// updates CMA-ES, asks the next generation and writes the state holding those candidates; the others wait for
/// that state and evaluate exactly its candidates. So every shard scores the leader's points (even on nodes whose
/// arithmetic differs), and the search equals one process's. A killed shard resumes from the files: a generation
/// whose file is there is not evaluated again, and a shard that fails with an error leaves
/// `failed-shard-k-of-n.txt`, which stops its waiting siblings with its message (a shard killed outright leaves
/// none: its siblings wait for it to be run again, or for `waitTimeout`).
public struct SearchShards: Sendable {
    public var shard: Shard
    /// Seconds a shard waits for a sibling's next file or state without any of them arriving before it gives up
    /// (nil: as long as the scheduler lets it run; a resubmitted sibling then still finds it waiting).
    public var waitTimeout: Double?
    /// Seconds between looks at the directory.
    public var poll: Double
    public init(shard: Shard = .whole, waitTimeout: Double? = nil, poll: Double = 0.2) {
        (self.shard, self.waitTimeout, self.poll) = (shard, waitTimeout, poll)
    }

    /// One shard's scores of one generation.
    struct Part: Codable, Equatable {
        var config: String
        var generation: Int
        var shard: String
        var candidates: [Int]
        var genes: [[Double]]
        var scores: [Double]
    }

    static func directory(_ statePath: String) -> String { FileSystem.join(FileSystem.dirname(of: statePath), "generations") }

    static func partPath(_ dir: String, generation: Int, shard: Shard) -> String {
        FileSystem.join(dir, String(format: "g%04d", generation) + "-shard-\(shard.index)-of-\(shard.count).json")
    }

    static func failurePath(_ dir: String, shard: Shard) -> String { FileSystem.join(dir, "failed-shard-\(shard.index)-of-\(shard.count).txt") }

    static var encoder: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        e.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return e
    }

    /// A search file (state, part) written atomically: keys sorted, non-finite numbers as strings.
    static func write<T: Encodable>(_ value: T, to path: String) throws {
        try AtomicFileWriter.write(String(decoding: try encoder.encode(value), as: UTF8.self) + "\n", to: path)
    }

    static var decoder: JSONDecoder {
        let d = JSONDecoder()
        d.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return d
    }

    /// The part of `shard` for this generation if its file is there and holds these candidates of this search.
    static func readPart(_ dir: String, generation: Int, shard: Shard, config: String, candidates xs: [[Double]]) -> Part? {
        let path = partPath(dir, generation: generation, shard: shard)
        guard FileSystem.exists(path), let bytes = try? FileSystem.readFile(path), let p = try? decoder.decode(Part.self, from: Data(bytes)) else {
            return nil
        }
        let mine = xs.indices.filter(shard.owns)
        guard p.config == config, p.generation == generation, p.candidates == mine, p.scores.count == mine.count, p.genes == mine.map({ xs[$0] }) else {
            return nil
        }
        return p
    }

    /// This shard's scores of generation `generation` (candidates `xs`): read from its file if a run before this
    /// one finished them, else evaluated and written.
    func evaluate(
        _ dir: String, generation: Int, candidates xs: [[Double]], config: String, overwrite: Bool, objective: ([Double]) throws -> Double
    ) throws -> [Int: Double] {
        let mine = xs.indices.filter(shard.owns)
        if !overwrite, let p = Self.readPart(dir, generation: generation, shard: shard, config: config, candidates: xs) {
            return Dictionary(uniqueKeysWithValues: zip(p.candidates, p.scores))
        }
        let scores = try mine.map { try objective(xs[$0]) }
        let part = Part(config: config, generation: generation, shard: shard.text, candidates: mine, genes: mine.map { xs[$0] }, scores: scores)
        try Self.write(part, to: Self.partPath(dir, generation: generation, shard: shard))
        return Dictionary(uniqueKeysWithValues: zip(mine, scores))
    }

    /// The siblings' failure markers there now, with their modification dates: left by an earlier attempt, they
    /// do not stop this one (a marker written or rewritten after this snapshot does).
    func markers(_ dir: String) -> [String: Date] {
        var found: [String: Date] = [:]
        for k in 1...shard.count where k != shard.index {
            let path = Self.failurePath(dir, shard: Shard(index: k, count: shard.count))
            if let date = Self.modified(path) { found[path] = date }
        }
        return found
    }

    static func modified(_ path: String) -> Date? { (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date }

    /// Waits until `ready` returns a value, looking every `poll` seconds; a sibling's failure marker not in
    /// `stale` stops the wait with its message, as does `waitTimeout` seconds without `ready`'s progress count
    /// (how many of the awaited pieces are there) growing.
    func wait<T>(_ dir: String, stale: [String: Date], what: String, _ ready: () throws -> (T?, Int)) throws -> T {
        var (value, seen) = try ready()
        var since = Date()
        while true {
            if let value { return value }
            for k in 1...shard.count where k != shard.index {
                let marker = Self.failurePath(dir, shard: Shard(index: k, count: shard.count))
                if let date = Self.modified(marker), stale[marker] != date {
                    let text = (try? String(contentsOfFile: marker, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
                    throw EvalError(marker, "shard \(k)/\(shard.count) failed: \(text)")
                }
            }
            if let limit = waitTimeout, Date().timeIntervalSince(since) > limit {
                throw EvalError(dir, "shard \(shard.text) waited \(Int(limit)) s for \(what); rerun the missing shard (finished generations are kept)")
            }
            Thread.sleep(forTimeInterval: poll)
            let (v, n) = try ready()
            if n > seen { (seen, since) = (n, Date()) }
            value = v
        }
    }

    /// The scores of every candidate of a generation: this shard's own, then its siblings' files as they arrive.
    func gather(_ dir: String, generation: Int, candidates xs: [[Double]], config: String, own: [Int: Double], stale: [String: Date]) throws -> [Double] {
        var scores = own
        let others = (1...shard.count).filter { $0 != shard.index }.map { Shard(index: $0, count: shard.count) }
        return try wait(dir, stale: stale, what: "the other shards' scores of generation \(generation)") {
            for s in others where !s.ownsAll(of: scores, total: xs.count) {
                if let p = Self.readPart(dir, generation: generation, shard: s, config: config, candidates: xs) {
                    for (i, v) in zip(p.candidates, p.scores) { scores[i] = v }
                }
            }
            let all = xs.indices.compactMap { scores[$0] }
            return (all.count == xs.count ? all : nil, scores.count)
        }
    }

    /// Leaves the marker that stops this shard's waiting siblings.
    func markFailed(_ dir: String, _ error: Error) {
        try? FileSystem.makeDirectory(dir)
        try? AtomicFileWriter.write("\(error)\n", to: Self.failurePath(dir, shard: shard))
    }

    func clearFailure(_ dir: String) { try? FileSystem.remove(Self.failurePath(dir, shard: shard)) }
}

extension Shard {
    /// Whether `scores` already holds every candidate of `total` this shard owns.
    func ownsAll(of scores: [Int: Double], total: Int) -> Bool { (0..<total).filter(owns).allSatisfy { scores[$0] != nil } }
}
