import ArgumentParser
import Checkpoint
import CotoCLI
import Evaluation
import Foundation
import Model
import Numerics
import Operators

struct PruneSweep: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prune", abstract: "Pruning curves: magnitude sparsity, dropped layer sets and module kinds, rank.")
    @Argument(help: "Adapter.") var adapter: String
    @Option(help: "Classification JSONL.") var data: String
    @Option(help: "Magnitude sparsities, comma-separated.") var sparsity: String?
    @Option(help: "tensor or global magnitude threshold.") var scope = "tensor"
    @Option(
        help: "Layer sets to drop: all, every-other, low, middle, high, index ranges like 0-2, or lists like 0;2;4 (comma-separated points; 'none' keeps all).")
    var layers: String?
    @Option(help: "Module kinds to drop one at a time, comma-separated (query,key,value).") var modules: String?
    @Option(help: "Ranks to truncate to, comma-separated.") var ranks: String?
    @Option(help: "Rank method: svd or norm.") var rankMethod = "svd"
    @OptionGroup var sweep: SweepOptions

    func validate() throws {
        guard sparsity != nil || layers != nil || modules != nil || ranks != nil else {
            throw ValidationError("give --sparsity, --layers, --modules or --ranks")
        }
        guard PruneOptions.Scope(rawValue: scope) != nil else { throw ValidationError("--scope must be tensor or global") }
        guard PruneOptions.RankMethod(rawValue: rankMethod) != nil else { throw ValidationError("--rank-method must be svd or norm") }
    }

    func run() throws {
        let sp = try sparsity.map { try parseNumberList($0, option: "--sparsity") } ?? []
        if sp.contains(where: { $0 < 0 || $0 >= 1 }) { throw ValidationError("--sparsity values must be in [0, 1)") }
        let rk =
            try ranks.map {
                try parseNumberList($0, option: "--ranks").map { v -> Int in
                    guard v >= 1, v == v.rounded() else { throw ValidationError("--ranks must be positive integers") }
                    return Int(v)
                }
            } ?? []
        // Commas separate points, so an index list inside one point is written 0;2;4.
        let ls = layers.map { $0.split(separator: ",").map { $0.replacingOccurrences(of: ";", with: ",") } } ?? []
        let ms = modules.map { $0.split(separator: ",").map(String.init) } ?? []
        let A = try sweep.loadAdapter(adapter)
        let pts = Sweeps.prunePoints(
            sparsities: sp, scope: PruneOptions.Scope(rawValue: scope)!, layers: ls, modules: ms, ranks: rk,
            rankMethod: PruneOptions.RankMethod(rawValue: rankMethod)!)
        let name = sweep.name ?? Sweeps.seriesName(adapter)
        let shard = try sweep.parsedShard
        try sweep.run(
            "pruning", header: Sweeps.pruneHeader(adapter: A.source, data: data, points: pts, name: name, shard: shard, task: sweep.evalTask),
            { ev in try Sweeps.prune(ev, adapter: A, data: try sweep.prepare(ev, data), points: pts, name: name, shard: shard) },
            summary: { r in pointLines(r) { "\($0.kind ?? "") \($0.value ?? "")" } })
    }
}
