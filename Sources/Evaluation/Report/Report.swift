import Checkpoint
import Foundation

/// `coto-eval report`: joins sweep results (and their shards) and training runs found under run
/// directories into `report.md`, `results.json` and `plots/*.png`, LoRA and CoTo side by side, with the
/// mean and standard deviation over seeds.
public enum Report {
    public struct Output {
        public var markdown: String
        public var results: JSON
        public var plots: [(String, [UInt8])]
        public var warnings: [String]
    }

    /// A sweep's results joined over its shards.
    public struct Joined {
        public var sweep: String
        public var name: String
        public var task: String
        public var adapters: [String]
        public var header: SweepResult
        public var points: [SweepPoint]
        public var values: [String: SweepPoint]
        public var expected: Int
        public var found: Int { sweep == "shapley" ? values.count : points.count }
        public var complete: Bool { found >= expected }
    }

    public struct TrainingRun {
        public var path: String
        public var name: String
        public var task: String
        public var seed: Int?
        public var metrics: RunMetrics
        public var log: [StepLog]
        /// The optimizer steps' own time (the sum of the logged step times: no dev evaluation, no checkpoint
        /// writing); the training loop's time for logs that predate per-step times.
        public var stepSeconds: Double {
            let s = log.reduce(0) { $0 + $1.seconds }
            return s > 0 ? s : metrics.trainSeconds
        }
    }

    // MARK: collecting

    /// What lies under the roots (directories searched recursively, six levels deep): candidate sweep result
    /// files, training run directories and training-grid manifests.
    public static func scan(_ roots: [String]) throws -> (files: [String], runDirs: [String], grids: [String]) {
        var files: [String] = []
        var runDirs: [String] = []
        var grids: [String] = []
        let notSweeps: Set<String> = ["metrics.json", "results.json", "adapter_config.json", "card.json", Adapter.cotoFile, RunRecords.gridFile]
        func walk(_ dir: String, depth: Int) throws {
            let names = try FileSystem.listDirectory(dir).sorted()
            if names.contains(RunRecords.metricsFile) && names.contains(RunRecords.logFile) { runDirs.append(dir) }
            for n in names {
                let p = FileSystem.join(dir, n)
                if FileSystem.isDirectory(p) {
                    if depth < 6 && n != "checkpoint" && n != "plots" { try walk(p, depth: depth + 1) }
                } else if n == RunRecords.gridFile {
                    grids.append(p)
                } else if n.hasSuffix(".json") && !notSweeps.contains(n) {
                    files.append(p)
                }
            }
        }
        for r in roots {
            guard FileSystem.exists(r) else { throw CheckpointError(r, .notFound) }
            if FileSystem.isDirectory(r) {
                try walk(r, depth: 0)
            } else if FileSystem.basename(of: r) == RunRecords.gridFile {
                grids.append(r)
            } else {
                files.append(r)
            }
        }
        return (files, runDirs, grids)
    }

    public static func collect(_ roots: [String]) throws -> (sweeps: [Joined], runs: [TrainingRun], warnings: [String]) {
        let (files, runDirs, _) = try scan(roots)
        let (covered, skipped) = Gather.sweeps(Gather.readSweepFiles(files))
        var warnings = skipped
        var sweeps: [Joined] = []
        for c in covered {
            warnings += c.problems.map { "\(c.title): \($0)" }
            sweeps.append(
                Joined(
                    sweep: c.header.sweep, name: c.header.name, task: c.header.task, adapters: c.header.adapters, header: c.header, points: c.points,
                    values: c.values, expected: c.expected))
        }
        for s in sweeps where !s.complete {
            warnings.append("\(s.sweep) \(s.name) on \(s.task) (\(s.adapters.joined(separator: ", "))): \(s.found) of \(s.expected) points")
        }
        var runs: [TrainingRun] = []
        for d in runDirs {
            let m: RunMetrics
            let log: [StepLog]
            do { (m, log) = (try RunRecords.readMetrics(d), try RunRecords.readLog(d)) } catch {
                warnings.append("\(d): skipped, not a coto-train run directory (\(error))")
                continue
            }
            runs.append(TrainingRun(path: d, name: m.seriesName, task: Sweeps.taskName(m.data), seed: Int(exactly: m.seed), metrics: m, log: log))
        }
        return (sweeps, runs, warnings)
    }

    // MARK: building

    /// What the sections append to: the markdown, the plots (file, PNG bytes) and the results.json parts.
    struct Builder {
        var md: String
        var plots: [(String, [UInt8])] = []
        var results: [(String, JSON)] = []

        mutating func addPlot(_ fig: Figure, _ file: String, alt: String) throws {
            plots.append((file, try fig.render().png()))
            md += "![\(alt)](plots/\(file))\n\n"
        }
    }

    /// `cost`: a cost directory (`CostLog`) whose stages the report sets against their compute floor.
    public static func build(_ roots: [String], title: String = "coto report", cost: CostLog? = nil) throws -> Output {
        let (sweeps, runs, warnings) = try collect(roots)
        var md = "# \(title)\n\n"
        md += "Generated by `coto-eval report` from \(roots.joined(separator: ", ")): \(runs.count) training runs, \(sweeps.count) sweeps.\n"
        md += "Values are mean ± standard deviation over seeds (adapters) where several exist.\n\n"
        if !warnings.isEmpty { md += "**Warnings**\n\n" + warnings.map { "- \($0)" }.joined(separator: "\n") + "\n\n" }
        var b = Builder(md: md)

        try trainingSection(runs, into: &b)
        try interpolationSection(sweeps, into: &b)
        try mergingSection(sweeps, into: &b)
        try pruningSection(sweeps, into: &b)
        try shapleySection(sweeps, into: &b)
        if let cost { costSection(cost, into: &b) }
        let (summaryMD, summaryJSON) = summary(sweeps, runs)
        let (findingsMD, findingsJSON) = findings(sweeps, runs)
        // The findings, then the summary, ahead of the sections.
        let front = findingsMD + summaryMD
        if !front.isEmpty, let at = b.md.range(of: "\n## ") { b.md.insert(contentsOf: "\n" + front, at: at.lowerBound) } else { b.md += front }
        let json = JSON.object(
            [
                ("roots", .array(roots.map { .string($0) })), ("warnings", .array(warnings.map { .string($0) })),
                ("findings", findingsJSON), ("summary", summaryJSON),
            ] + b.results)
        return Output(markdown: b.md, results: json, plots: b.plots, warnings: warnings)
    }

    /// Writes report.md, results.json and plots/ into `dir` (each file atomically).
    public static func write(_ o: Output, to dir: String) throws {
        try FileSystem.makeDirectory(FileSystem.join(dir, "plots"))
        for (name, bytes) in o.plots { try AtomicFileWriter.write(bytes, to: FileSystem.join(FileSystem.join(dir, "plots"), name)) }
        try AtomicFileWriter.write(o.results.pretty + "\n", to: FileSystem.join(dir, "results.json"))
        try AtomicFileWriter.write(o.markdown, to: FileSystem.join(dir, "report.md"))
    }
}
