import ArgumentParser
import Checkpoint
import CotoCLI
import Evaluation
import Foundation
import Model
import Numerics
import Operators

struct Shapley: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Shapley value of each adapter group (layer or module) by the multilinear extension.",
        discussion:
            "Samples are spread over a grid of inclusion probabilities q; each distinct coalition is scored once, in an order that lets the forward pass reuse lower layers."
    )
    @Argument(help: "Adapter.") var adapter: String
    @Option(help: "Classification JSONL.") var data: String
    @Option(help: "Random subsets (over all q).") var samples = 64
    @Option(help: "Number of q values in (0, 1) (midpoints).") var grid = 8
    @Option(help: "Players: layer or module.") var group = "layer"
    @Option(help: "Seed of the subsets.") var seed: UInt64 = 0
    @OptionGroup var sweep: SweepOptions

    func validate() throws {
        guard samples >= 1, grid >= 1 else { throw ValidationError("--samples and --grid must be at least 1") }
        guard group == "layer" || group == "module" else { throw ValidationError("--group must be layer or module") }
    }

    func run() throws {
        let A = try sweep.loadAdapter(adapter)
        let players = Sweeps.players(of: A, group: group)
        let plan = ShapleyPlan(players: players.count, samples: samples, grid: grid, seed: seed)
        let name = sweep.name ?? Sweeps.seriesName(adapter)
        let shard = try sweep.parsedShard
        try sweep.run(
            "shapley", unit: " batches (every coalition)",
            header: Sweeps.shapleyHeader(adapter: A, data: data, group: group, plan: plan, name: name, shard: shard, task: sweep.evalTask),
            { ev in try Sweeps.shapley(ev, adapter: A, data: try sweep.prepare(ev, data), group: group, plan: plan, name: name, shard: shard) },
            summary: { r in
                guard r.shard.last == 1 else { return "\(r.values?.count ?? 0) coalitions scored (shard \(r.shard.map(String.init).joined(separator: "/")))" }
                let m = Sweeps.metric(r)
                let est = plan.estimate(scored: r.values ?? [:], value: m.shapleyValue)
                var lines = players.enumerated().map { "\($1.name): φ = \(fmt(est.values[$0], 4)) ± \(fmt(est.standardErrors[$0], 4))" }
                lines.append(
                    "Σφ = \(fmt(est.sum, 4)); v(all) − v(none) = \(fmt(est.full - est.empty, 4)); layers reused \(r.layersReused ?? 0), computed \(r.layersComputed ?? 0)"
                )
                return lines.joined(separator: "\n")
            })
    }
}
