import ArgumentParser
import Checkpoint
import CotoCLI
import Evaluation
import Foundation
import Model
import Numerics
import Operators

struct Interpolate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Accuracy along (1-λ)A + λB (every adapter tensor and the heads); reports the barrier.")
    @Argument(help: "Adapter A (λ = 0).") var a: String
    @Argument(help: "Adapter B (λ = 1).") var b: String
    @Option(help: "Classification JSONL.") var data: String
    @Option(help: "λ values: start:stop:step or a list.") var grid = "0:1:0.1"
    @OptionGroup var sweep: SweepOptions

    func validate() throws {
        guard Sweeps.parseGrid(grid) != nil else { throw ValidationError("--grid must be start:stop:step or a comma-separated list (got '\(grid)')") }
    }

    func run() throws {
        let (A, B) = (try sweep.loadAdapter(a), try sweep.loadAdapter(b))
        let g = Sweeps.parseGrid(grid)!
        let name = sweep.name ?? Sweeps.seriesName(a)
        let shard = try sweep.parsedShard
        try sweep.run(
            "interpolating",
            header: Sweeps.interpolateHeader(a: A.source, b: B.source, data: data, grid: g, name: name, shard: shard, task: sweep.evalTask),
            { ev in
                try Sweeps.interpolate(ev, a: A, b: B, data: try sweep.prepare(ev, data), grid: g, name: name, shard: shard)
            },
            summary: { r in
                let barrier =
                    r.shard.last == 1 ? Sweeps.barrier(r).map { "\nbarrier \(fmt($0, 4)) (\(Sweeps.metric(r).name))" } ?? "" : ""
                return pointLines(r) { "λ=\(fmt($0.lambda ?? .nan, 2))" } + barrier
            })
    }
}
