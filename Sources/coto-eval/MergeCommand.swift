import ArgumentParser
import Checkpoint
import CotoCLI
import Evaluation
import Foundation
import Model
import Numerics
import Operators

struct MergeSweep: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Every merge method on every task, each task scored with its own adapter's head.",
        discussion: "Default weights: 1 per adapter for the TIES family, 1/n for the others (--weights overrides all).")
    @Argument(help: "One adapter per task.") var adapters: [String]
    @Option(help: "Task files in adapter order, or ADAPTER=FILE pairs, comma-separated.") var taskData: String
    @Option(help: "Merge methods, comma-separated.") var methods = "interpolate,task-arithmetic,ties,dare_ties,svd"
    @Option(help: "Weights, comma-separated (default: per method).") var weights: String?
    @Option(help: "Density for the methods that need one (ties, dare, magnitude_prune, breadcrumbs, della, knots, core_ties).") var density = 0.5
    @Option(help: "Seed of DARE's random pruning.") var seed: UInt64 = 0
    @Option(
        help:
            "Adapters merged elsewhere, scored as rows of their own: NAME=DIR pairs, comma-separated (coto-merge --method regmean's output, coto-eval search's best/)."
    ) var merged: String?
    @OptionGroup var sweep: SweepOptions

    func validate() throws {
        guard adapters.count >= 2 else { throw ValidationError("give at least two adapters") }
        for m in methods.split(separator: ",") {
            guard let method = MergeMethods.named(String(m)) else { throw ValidationError(MergeMethods.unknownMessage(String(m))) }
            if method.needsActivations {
                throw ValidationError(
                    "\(method.name) needs each task's activations: merge with coto-merge --method \(method.name) --model --data, then score it")
            }
        }
        guard density > 0, density <= 1 else { throw ValidationError("--density must be in (0, 1]") }
        _ = try mergedPairs()
    }

    /// `--merged`'s NAME=DIR pairs; a name may not be a method of this sweep, `individual` or given twice.
    func mergedPairs() throws -> [(name: String, path: String)] {
        guard let merged else { return [] }
        let taken = Set(methods.split(separator: ",").map { MergeMethods.named(String($0))?.name ?? String($0) } + ["individual"])
        var pairs: [(name: String, path: String)] = []
        for p in merged.split(separator: ",") {
            guard let eq = p.firstIndex(of: "="), eq != p.startIndex, p.index(after: eq) != p.endIndex else {
                throw ValidationError("--merged takes NAME=DIR pairs (got '\(p)')")
            }
            let name = String(p[..<eq])
            guard !taken.contains(name), !pairs.contains(where: { $0.name == name }) else {
                throw ValidationError("--merged: the row name '\(name)' is a method of this sweep, individual, or given twice")
            }
            pairs.append((name, String(p[p.index(after: eq)...])))
        }
        return pairs
    }

    func taskFiles() throws -> [String] {
        let parts = taskData.split(separator: ",").map { String($0) }
        if parts.allSatisfy({ !$0.contains("=") }) {
            guard parts.count == adapters.count else { throw ValidationError("--task-data has \(parts.count) files for \(adapters.count) adapters") }
            return parts
        }
        var map: [String: String] = [:]
        for p in parts {
            guard let eq = p.firstIndex(of: "=") else { throw ValidationError("--task-data: mix of ADAPTER=FILE pairs and plain files") }
            map[String(p[..<eq])] = String(p[p.index(after: eq)...])
        }
        return try adapters.map { a in
            guard let f = map[a] ?? map[FileSystem.basename(of: a)] else { throw ValidationError("--task-data has no file for adapter '\(a)'") }
            return f
        }
    }

    func run() throws {
        let files = try taskFiles()
        let ws = try weights.map { try parseNumberList($0, option: "--weights") }
        if let w = ws, w.count != adapters.count { throw ValidationError("--weights has \(w.count) values for \(adapters.count) adapters") }
        let inputs = try adapters.map(sweep.loadAdapter)
        let extra = try mergedPairs().map { (name: $0.name, adapter: try sweep.loadAdapter($0.path)) }
        let names = Set(adapters.map(Sweeps.seriesName))
        // Canonical names (mergekit's task_arithmetic is task-arithmetic), so either spelling is the same sweep.
        let ms = methods.split(separator: ",").map { MergeMethods.named(String($0))?.name ?? String($0) }
        let name = sweep.name ?? (names.count == 1 ? names.first! : "mixed")
        let shard = try sweep.parsedShard
        try sweep.run(
            "merging",
            header: Sweeps.mergeHeader(
                adapters: inputs.map(\.source), data: files, methods: ms, weights: ws, density: density, seed: seed, name: name, shard: shard,
                task: sweep.evalTask, merged: extra.map { "\($0.name)=\($0.adapter.source)" }),
            { ev in
                try Sweeps.merge(
                    ev, adapters: inputs, data: try files.map { try sweep.prepare(ev, $0) }, methods: ms, weights: ws, density: density, seed: seed, name: name,
                    shard: shard, merged: extra)
            }, summary: { r in pointLines(r) { "\($0.method ?? "") on \($0.task ?? "")" } })
    }
}
