import ArgumentParser
import Checkpoint
import CotoCLI
import Evaluation
import Foundation
import Model
import Numerics
import Operators

/// Prints the coverage lines and returns the problems (what `gather` lists and `report` checks first).
func checkCoverage(_ roots: [String], print lines: Bool) throws -> [String] {
    let g = try Gather.run(roots)
    if lines {
        for s in g.sweeps {
            let state = s.problems.isEmpty ? "complete" : "INCOMPLETE"
            Console.writeOut(
                "\(s.title): \(state), shards \(s.covered.count) of \(s.count), \(s.found) of \(s.expected) points, configuration \(s.config?.short ?? "none")")
        }
        for gr in g.grids {
            let state = gr.problems.isEmpty ? "complete" : "INCOMPLETE"
            Console.writeOut("grid \(gr.manifestPath): \(state), \(gr.finished.count) of \(gr.manifest.cells.count) cells finished")
        }
    }
    for s in g.skipped { Console.writeErr("warning: \(s)") }
    return g.problems
}

struct GatherCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gather",
        abstract: "Check that every sweep's shards and every training-grid cell are there once, from one configuration.",
        discussion: """
            For each sweep found under the directories: one shard count, every shard i/n present exactly once, one
            configuration hash, each shard holding all of its points. For each training grid (coto_grid.json): every
            cell finished, trained from the grid's configuration. Problems are listed one per line; the exit status
            is 1 if there are any, unless --partial.
            """)
    @Argument(help: "Sweep output directories, training-grid output directories, or result files.") var roots: [String]
    @Flag(help: "Exit 0 even if shards or cells are missing, duplicated or mismatched (they are still listed).") var partial = false

    func run() throws {
        let problems = try checkCoverage(roots, print: true)
        for p in problems { Console.writeErr("problem: \(p)") }
        if !problems.isEmpty && !partial {
            throw CommandError(
                roots.joined(separator: " "),
                "\(problems.count) coverage problem\(problems.count == 1 ? "" : "s") (listed above); rerun those shards, or give --partial")
        }
    }
}
