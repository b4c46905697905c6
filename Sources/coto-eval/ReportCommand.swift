import ArgumentParser
import Checkpoint
import CotoCLI
import Evaluation
import Foundation
import Model
import Numerics
import Operators

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Join sweep results (and shards) and training runs into report.md, results.json and plots/*.png.")
    @Argument(help: "Run directories (searched recursively) or result files.") var runs: [String]
    @Option(name: .shortAndLong, help: "Report directory.") var output: String
    @Option(help: "Title of report.md.") var title = "coto report"
    @Option(help: "A cost directory (make demo writes DEMO_OUT/cost): each stage's time against its compute floor.") var cost: String?
    @Flag(help: "Render even if shards or grid cells are missing, duplicated or mismatched (report.md lists them).") var partial = false
    @OptionGroup var out: OutputOptions

    func run() throws {
        // The gather check first: a report from part of a sweep is only written when asked for.
        let problems = try checkCoverage(runs, print: false)
        if !problems.isEmpty && !partial {
            for p in problems { Console.writeErr("problem: \(p)") }
            throw CommandError(
                runs.joined(separator: " "),
                "\(problems.count) coverage problem\(problems.count == 1 ? "" : "s") (listed above); rerun those shards, or give --partial")
        }
        let costLog = try cost.map(CostLog.load)
        let r = try Report.build(runs, title: title, cost: costLog)
        try Report.write(r, to: output)
        for w in r.warnings where out.chatty { Console.writeErr("warning: \(w)") }
        if out.json {
            Console.writeOut(r.results.pretty)
        } else if !out.quiet {
            Console.writeOut("wrote \(FileSystem.join(output, "report.md")), results.json and \(r.plots.count) plots")
            if let costLog { Console.writeOut("cost: " + Report.costSummary(costLog)) }
        }
    }
}
