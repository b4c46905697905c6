import Checkpoint
import Foundation

/// `coto-eval gather` and the report's first step: proves that every sweep's shards are there exactly once
/// with one configuration, and joins them in the order an unsharded run would have written its points.
public enum Gather {
    /// One result file of a sweep.
    public struct Part: Sendable {
        public var path: String
        public var result: SweepResult
        public var shard: Shard
    }

    /// A sweep and the files found for it.
    public struct SweepCoverage: Sendable {
        public var header: SweepResult
        public var parts: [Part]
        /// Points (or coalitions) of the whole sweep.
        public var expected: Int
        /// What is wrong, one sentence each (empty: complete and consistent).
        public var problems: [String]
        /// The parts joined: the shard count and configuration used (the first file's, by path), and which
        /// shard indices they cover.
        public var count: Int
        public var config: ConfigRecord?
        public var covered: [Int]
        /// Every point in unsharded order (present shards only), and Shapley's coalitions.
        public var points: [SweepPoint]
        public var values: [String: SweepPoint]

        /// "interpolate coto on noun8 (runs/a, runs/b)".
        public var title: String { "\(header.sweep) \(header.name) on \(header.task) (\(header.adapters.joined(separator: ", ")))" }
        public var found: Int { header.sweep == "shapley" ? values.count : points.count }
    }

    /// Groups result files by sweep (everything but the shard and the results) and checks each group:
    /// one shard count, every index 1…n present exactly once, one configuration hash (a sharded sweep's
    /// files must carry one), and each file holding exactly the points its shard owns.
    public static func sweeps(_ files: [(path: String, result: SweepResult)]) -> (sweeps: [SweepCoverage], skipped: [String]) {
        var groups: [String: [Part]] = [:]
        var order: [String] = []
        var skipped: [String] = []
        for (path, r) in files {
            guard r.expectedPoints != nil else {
                skipped.append("\(path): unknown sweep '\(r.sweep)', skipped")
                continue
            }
            guard let shard = r.shardPosition else {
                skipped.append("\(path): shard \(r.shard) is not [index, count] with 1 <= index <= count, skipped")
                continue
            }
            let key = r.joinKey
            if groups[key] == nil { order.append(key) }
            groups[key, default: []].append(Part(path: path, result: r, shard: shard))
        }
        return (order.map { check(groups[$0]!.sorted { $0.path < $1.path }) }, skipped)
    }

    static func check(_ parts: [Part]) -> SweepCoverage {
        let first = parts[0]
        let expected = first.result.expectedPoints ?? 0
        let n = first.shard.count
        var problems: [String] = []
        // One shard count.
        let counts = Set(parts.map(\.shard.count))
        if counts.count > 1 {
            let listed = parts.map { "\($0.path) is \($0.shard.text)" }.joined(separator: ", ")
            problems.append("mixed shard counts \(counts.sorted().map(String.init).joined(separator: ", ")): \(listed)")
        }
        // One configuration: the one most files carry is the reference (ties: the first file's by path).
        var usable = parts.filter { $0.shard.count == n }
        let votes = Dictionary(grouping: usable) { $0.result.config?.hash ?? "" }
        let reference = usable.first { p in votes[p.result.config?.hash ?? ""]!.count == votes.values.map(\.count).max() }!
        let config = reference.result.config
        let hashes = Set(usable.map { $0.result.config?.hash ?? "none" })
        if hashes.count > 1 || (n > 1 && config == nil) {
            for p in usable where p.result.config?.hash != config?.hash || p.result.config == nil {
                let why: String
                if let mine = p.result.config, let ref = config {
                    let d = mine.differences(from: ref)
                    why = "configuration \(mine.short) differs from \(reference.path)'s \(ref.short)" + (d.isEmpty ? "" : " (\(d.joined(separator: "; ")))")
                } else if p.result.config == nil {
                    why = "carries no configuration hash (written before coto 0.14; rerun its shard)"
                } else {
                    why = "has a configuration hash but \(reference.path) has none"
                }
                problems.append("\(p.path): \(why)")
            }
            usable = usable.filter { $0.result.config?.hash == config?.hash }
        }
        // Every index once.
        var byIndex: [Int: Part] = [:]
        for p in usable {
            if let seen = byIndex[p.shard.index] {
                problems.append("shard \(p.shard.text) is there twice: \(seen.path) and \(p.path)")
            } else {
                byIndex[p.shard.index] = p
            }
        }
        let missing = (1...n).filter { byIndex[$0] == nil }
        if !missing.isEmpty {
            problems.append("missing shard\(missing.count > 1 ? "s" : "") \(missing.map { "\($0)/\(n)" }.joined(separator: ", ")) of \(n)")
        }
        // Each file holds its points.
        for (i, p) in byIndex.sorted(by: { $0.key < $1.key }) {
            let owned = p.shard.ownedCount(of: expected)
            if p.result.foundPoints != owned {
                problems.append("\(p.path): shard \(p.shard.text) holds \(p.result.foundPoints) of its \(owned) points")
                byIndex[i] = nil
            }
        }
        // Join in unsharded order: point k is the (k / n)-th point of shard k mod n + 1.
        var points: [SweepPoint] = []
        var values: [String: SweepPoint] = [:]
        for k in 0..<expected {
            if let p = byIndex[k % n + 1], let ps = p.result.points, k / n < ps.count { points.append(ps[k / n]) }
        }
        for (_, p) in byIndex.sorted(by: { $0.key < $1.key }) {
            for (key, v) in p.result.values ?? [:] where values[key] == nil { values[key] = v }
        }
        var header = first.result
        header.shard = [1, 1]
        header.points = nil
        header.values = nil
        return SweepCoverage(
            header: header, parts: parts, expected: expected, problems: problems, count: n, config: config, covered: byIndex.keys.sorted(),
            points: points, values: values)
    }

    /// A training grid's cells against its manifest.
    public struct GridCoverage: Sendable {
        public var manifestPath: String
        public var manifest: GridManifest
        /// Cells whose run directory holds metrics.json with the cell's configuration.
        public var finished: [String]
        public var problems: [String]
    }

    /// Checks every cell of a grid manifest: finished (metrics.json there) and trained from the cell's
    /// configuration. An unfinished cell names its shard under the shard count `shards` if known, and a
    /// checkpoint left by a killed task.
    public static func grid(_ manifestPath: String) -> GridCoverage {
        let base = FileSystem.dirname(of: manifestPath)
        guard let bytes = try? FileSystem.readFile(manifestPath, limit: 64 << 20),
            let m = try? JSONDecoder().decode(GridManifest.self, from: Data(bytes))
        else {
            return GridCoverage(
                manifestPath: manifestPath, manifest: GridManifest(grid: "", gridSHA256: "", version: "", cells: [], shards: 1), finished: [],
                problems: ["\(manifestPath): not a training-grid manifest"])
        }
        var finished: [String] = []
        var problems: [String] = []
        for (k, cell) in m.cells.enumerated() {
            let owner = m.shards > 1 ? " (shard \(k % m.shards + 1)/\(m.shards))" : ""
            let dir = FileSystem.join(base, cell.dir)
            let metricsPath = FileSystem.join(dir, RunRecords.metricsFile)
            guard FileSystem.exists(metricsPath) else {
                // A complete checkpoint has its optimizer state (coto-train writes it last).
                let ckpt = FileSystem.join(FileSystem.join(dir, "checkpoint"), RunRecords.checkpointStateFile)
                problems.append(
                    "cell \(cell.name)\(owner) is not finished: no \(metricsPath)"
                        + (FileSystem.exists(ckpt) ? " (a checkpoint is there: rerun its shard to resume)" : ""))
                continue
            }
            guard let metrics = try? RunRecords.readMetrics(dir) else {
                problems.append("cell \(cell.name): \(metricsPath) is not a coto-train metrics file")
                continue
            }
            guard let config = metrics.config else {
                problems.append("cell \(cell.name): \(metricsPath) carries no configuration hash")
                continue
            }
            guard config.hash == cell.config else {
                problems.append("cell \(cell.name): \(dir) was trained from another configuration (\(config.short), the grid's is \(cell.config.prefix(12)))")
                continue
            }
            finished.append(cell.name)
        }
        return GridCoverage(manifestPath: manifestPath, manifest: m, finished: finished, problems: problems)
    }

    /// Everything under the roots: sweeps and training grids, with their problems.
    public struct Outcome: Sendable {
        public var sweeps: [SweepCoverage]
        public var grids: [GridCoverage]
        /// Files found but not understood (unknown sweeps, malformed shards).
        public var skipped: [String]
        /// Every problem, prefixed by its sweep or grid.
        public var problems: [String] {
            sweeps.flatMap { s in s.problems.map { "\(s.title): \($0)" } } + grids.flatMap { g in g.problems.map { "grid \(g.manifestPath): \($0)" } }
        }
    }

    public static func run(_ roots: [String]) throws -> Outcome {
        let (files, _, grids) = try Report.scan(roots)
        let (sweeps, skipped) = self.sweeps(readSweepFiles(files))
        return Outcome(sweeps: sweeps, grids: grids.map(grid), skipped: skipped)
    }

    /// Reads every sweep result file under `roots` (directories searched recursively, as the report does).
    /// Files that are not sweep results are not errors here: run directories hold other JSON.
    public static func readSweepFiles(_ paths: [String]) -> [(path: String, result: SweepResult)] {
        paths.compactMap { f in
            SweepResult.read(f).map { (f, $0) }
        }
    }
}
