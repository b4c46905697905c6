import Checkpoint
import Evaluation
import Foundation

/// A training grid (`coto-train --grid grid.json`): tasks × variants × methods × seeds, one coto-train run
/// per cell, each into its own run directory. Cells are sorted (task, variant, method, seed) and cell k
/// belongs to shard k mod n + 1, so a retried array task trains exactly its own cells.
///
///     {
///       "model": "minilm/",
///       "tasks": {"noun8": {"data": "data/noun8-train.jsonl", "eval-data": "data/noun8-dev.jsonl"},
///                 "verb15": {"data": "...", "options": {"steps": 600}}},   a task's options override the grid's
///       "methods": ["lora", "coto"],          default both
///       "variants": ["lora"],                 lora, rslora, dora, hira; default lora
///       "seeds": [0, 1, 2],                   default [0]
///       "options": {"steps": 300, "eval-every": 30, "targets": "query,value"}
///     }
///
/// `options` are coto-train's options by their long names (true/false for flags: `"shuffle": false` is
/// `--no-shuffle`). Relative paths are resolved against the grid file's directory.
public struct TrainGrid: Sendable {
    public struct Task: Sendable, Equatable {
        public var name: String
        public var data: String
        public var evalData: String?
        /// This task's own coto-train options (over the grid's `options`), by long name.
        public var options: [(String, JSON)] = []

        public static func == (a: Task, b: Task) -> Bool {
            a.name == b.name && a.data == b.data && a.evalData == b.evalData && a.options.map(\.0) == b.options.map(\.0)
                && a.options.map(\.1) == b.options.map(\.1)
        }
    }

    public struct Cell: Sendable, Equatable {
        public var task: Task
        public var variant: String
        /// "coto" or "lora".
        public var method: String
        public var seed: UInt64
        /// The run directory's name: task, series (as the report names it) and seed, "noun8-coto-dora-s1".
        public var name: String {
            let coto = method == "coto"
            let series = coto ? (variant == "lora" ? "coto" : "coto-\(variant)") : variant
            return "\(task.name)-\(series)-s\(seed)"
        }
    }

    public var path: String
    public var model: String
    public var tasks: [Task]
    public var methods: [String]
    public var variants: [String]
    public var seeds: [UInt64]
    /// coto-train options shared by every cell (a task's own options override them), by long name.
    public var options: [(String, JSON)]

    /// Options a cell sets itself (or the grid's top level does).
    static let reserved: Set<String> = [
        "model", "data", "eval-data", "output", "seed", "coto", "variant", "resume", "grid", "shard", "num-shards", "overwrite", "jobs",
    ]

    public static func load(_ path: String) throws -> TrainGrid {
        let json: JSON
        do { json = try JSON.parse(FileSystem.readFile(path, limit: 16 << 20)) } catch let e as JSONParseError {
            throw TrainError(path, "not JSON: \(e.description)")
        }
        return try TrainGrid(json: json, path: path)
    }

    public init(json: JSON, path: String) throws {
        self.path = path
        guard let top = json.objectPairs else { throw TrainError(path, "a grid is a JSON object") }
        if let k = json.duplicateKey { throw TrainError(path, "key \"\(k)\" appears twice") }
        let known: Set<String> = ["model", "tasks", "methods", "variants", "seeds", "options"]
        if let k = top.map(\.0).first(where: { !known.contains($0) }) {
            throw TrainError(path, "unknown key \"\(k)\" (known: \(known.sorted().joined(separator: ", ")))")
        }
        let base = FileSystem.dirname(of: path)
        func resolve(_ p: String) -> String { p.hasPrefix("/") || base == "." || base.isEmpty ? p : FileSystem.join(base, p) }
        guard let m = json["model"]?.stringValue, !m.isEmpty else { throw TrainError(path, "\"model\" must be a path") }
        model = resolve(m)
        guard let ts = json["tasks"]?.objectPairs, !ts.isEmpty else {
            throw TrainError(path, "\"tasks\" must map task names to {\"data\": ..., \"eval-data\": ...}")
        }
        tasks = try ts.map { name, v in
            guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "." }) else {
                throw TrainError(path, "task name \"\(name)\" must be letters, digits, '_' or '.' (it names run directories)")
            }
            guard let d = v["data"]?.stringValue else { throw TrainError(path, "task \"\(name)\" has no \"data\" path") }
            if let extra = v.objectPairs?.map(\.0).first(where: { $0 != "data" && $0 != "eval-data" && $0 != "options" }) {
                throw TrainError(path, "task \"\(name)\": unknown key \"\(extra)\" (known: data, eval-data, options)")
            }
            if let e = v["eval-data"], e.stringValue == nil { throw TrainError(path, "task \"\(name)\": \"eval-data\" must be a path") }
            let own = try v["options"].map { try Self.options($0, path: path, context: "task \"\(name)\": ") } ?? []
            return Task(name: name, data: resolve(d), evalData: v["eval-data"]?.stringValue.map(resolve), options: own)
        }.sorted { $0.name < $1.name }
        func strings(_ key: String, allowed: [String], default d: [String]) throws -> [String] {
            guard let v = json[key] else { return d }
            guard let a = v.arrayValue, !a.isEmpty, let s = Optional(a.compactMap(\.stringValue)), s.count == a.count else {
                throw TrainError(path, "\"\(key)\" must be a non-empty list of strings")
            }
            if let bad = s.first(where: { !allowed.contains($0) }) {
                throw TrainError(path, "\"\(key)\": unknown value \"\(bad)\" (known: \(allowed.joined(separator: ", ")))")
            }
            guard Set(s).count == s.count else { throw TrainError(path, "\"\(key)\" lists a value twice") }
            return s.sorted()
        }
        methods = try strings("methods", allowed: ["coto", "lora"], default: ["coto", "lora"])
        variants = try strings("variants", allowed: ["dora", "hira", "lora", "rslora"], default: ["lora"])
        if let v = json["seeds"] {
            guard let a = v.arrayValue, !a.isEmpty, let s = Optional(a.compactMap(\.uint64Value)), s.count == a.count else {
                throw TrainError(path, "\"seeds\" must be a non-empty list of non-negative integers")
            }
            guard Set(s).count == s.count else { throw TrainError(path, "\"seeds\" lists a seed twice") }
            seeds = s.sorted()
        } else {
            seeds = [0]
        }
        options = try json["options"].map { try Self.options($0, path: path, context: "") } ?? []
    }

    /// A grid's (or a task's) "options": coto-train options by long name, checked, sorted by name.
    static func options(_ o: JSON, path: String, context: String) throws -> [(String, JSON)] {
        guard let pairs = o.objectPairs else { throw TrainError(path, "\(context)\"options\" must be an object of coto-train options") }
        if let k = o.duplicateKey { throw TrainError(path, "\(context)option \"\(k)\" appears twice") }
        for (k, v) in pairs {
            guard !k.hasPrefix("-") else { throw TrainError(path, "\(context)option \"\(k)\": give the name without dashes") }
            guard !Self.reserved.contains(k) else {
                throw TrainError(
                    path,
                    "\(context)option \"\(k)\" is set by the grid itself (model, tasks, methods, variants, seeds), per cell, or on the command line (threads)")
            }
            switch v {
            case .bool, .number, .string: break
            default: throw TrainError(path, "\(context)option \"\(k)\" must be a string, a number or true/false")
            }
        }
        return pairs.sorted { $0.0 < $1.0 }
    }

    /// The options of a task's cells (its own over the grid's) as command-line arguments, sorted by name.
    public func optionArguments(_ task: Task) -> [String] {
        var merged: [String: JSON] = [:]
        for (k, v) in options + task.options { merged[k] = v }
        var args: [String] = []
        for (k, v) in merged.sorted(by: { $0.key < $1.key }) {
            switch v {
            case .bool(let b): args.append(b ? "--\(k)" : "--no-\(k)")
            case .number(let n): args += ["--\(k)", n]
            case .string(let s): args += ["--\(k)", s]
            default: break
            }
        }
        return args
    }

    /// Every cell, sorted by task, variant, method and seed.
    public var cells: [Cell] {
        var out: [Cell] = []
        for t in tasks { for v in variants { for m in methods { for s in seeds { out.append(Cell(task: t, variant: v, method: m, seed: s)) } } } }
        return out
    }

    /// The coto-train arguments of a cell writing into `output`.
    public func arguments(_ cell: Cell, output: String) -> [String] {
        var a = ["--model", model, "--data", cell.task.data]
        if let e = cell.task.evalData { a += ["--eval-data", e] }
        a += ["--variant", cell.variant, cell.method == "coto" ? "--coto" : "--no-coto", "--seed", String(cell.seed)]
        return a + optionArguments(cell.task) + ["--output", output]
    }
}

extension TrainConfig {
    /// The configuration record of a training run: the model's and data files' digests, every option that
    /// changes the result (`options`: effective values, defaults included), the version. `digests` caches
    /// file digests by path across the cells of a grid.
    public static func configuration(
        model: String, data: String, evalData: String?, options: [String: String], digests: inout [String: InputDigest]
    ) throws -> ConfigRecord {
        func digest(_ p: String, _ role: String, _ make: (String) throws -> InputDigest) throws -> InputDigest {
            if let d = digests[p] { return InputDigest(role: role, path: p, sha256: d.sha256) }
            let d = try make(p)
            digests[p] = d
            return InputDigest(role: role, path: p, sha256: d.sha256)
        }
        var inputs = [try digest(model, "model", InputDigest.model)]
        inputs.append(try digest(data, "data", { try InputDigest.file($0, role: "data") }))
        if let e = evalData { inputs.append(try digest(e, "eval-data", { try InputDigest.file($0, role: "eval-data") })) }
        return ConfigRecord(identity: "coto-train", inputs: inputs, options: options)
    }
}

extension TrainGrid {
    /// Writes the grid's manifest into `output` (every shard writes the same one). A manifest already there
    /// must list the same cells and configurations, unless `overwrite`.
    public static func writeManifest(_ manifest: GridManifest, into output: String, overwrite: Bool) throws -> String {
        try FileSystem.makeDirectory(output)
        let path = FileSystem.join(output, RunRecords.gridFile)
        if FileSystem.exists(path), !overwrite {
            let old = try? JSONDecoder().decode(GridManifest.self, from: Data(FileSystem.readFile(path, limit: 64 << 20)))
            guard let old, old.cells == manifest.cells else {
                throw TrainError(
                    path, "holds another grid (other cells or configurations); give --overwrite to retrain into \(output), or choose another --output")
            }
        }
        try AtomicFileWriter.write(try manifest.encoded(), to: path)
        return path
    }

    /// What a cell's run directory says about it.
    public enum CellState: Sendable, Equatable {
        /// Finished with this configuration: skip it.
        case finished
        /// A complete checkpoint is there: resume from it.
        case resume(checkpoint: String)
        /// Nothing usable: train from the start.
        case fresh
    }

    /// The state of the cell `name` trained into `dir` with `config`. A finished run of another configuration
    /// (or without one) is an error unless `overwrite`; a checkpoint is complete once its optimizer state is
    /// written (the last file), and an incomplete one (or any, with `overwrite`) is removed.
    public static func cellState(name: String, dir: String, config: ConfigRecord, overwrite: Bool) throws -> CellState {
        let metricsPath = FileSystem.join(dir, RunRecords.metricsFile)
        if FileSystem.exists(metricsPath), !overwrite {
            guard let m = try? RunRecords.readMetrics(dir), let done = m.config else {
                throw TrainError(metricsPath, "is there without a configuration hash; give --overwrite to retrain \(name)")
            }
            guard done.hash == config.hash else {
                let d = config.differences(from: done)
                throw TrainError(
                    metricsPath,
                    "was trained from another configuration (\(done.short), the grid's is \(config.short)"
                        + (d.isEmpty ? "" : ": \(d.joined(separator: "; "))") + "); give --overwrite to retrain \(name)")
            }
            return .finished
        }
        let ckpt = FileSystem.join(dir, "checkpoint")
        if overwrite || !FileSystem.exists(FileSystem.join(ckpt, RunRecords.checkpointStateFile)) { FileSystem.removeTree(ckpt) }
        return FileSystem.exists(ckpt) ? .resume(checkpoint: ckpt) : .fresh
    }
}
