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

    // MARK: statistics

    static func meanStd(_ v: [Double]) -> (Double, Double) {
        guard !v.isEmpty else { return (.nan, .nan) }
        let m = v.reduce(0, +) / Double(v.count)
        guard v.count > 1 else { return (m, 0) }
        return (m, (v.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(v.count - 1)).squareRoot())
    }

    static func pm(_ v: [Double], _ digits: Int = 4) -> String {
        let (m, s) = meanStd(v)
        if !m.isFinite { return "–" }
        return v.count > 1 ? String(format: "%.\(digits)f ± %.\(digits)f", m, s) : String(format: "%.\(digits)f", m)
    }

    static func stats(_ v: [Double]) -> JSON {
        let (m, s) = meanStd(v)
        return .object([("mean", .double(m)), ("std", .double(s)), ("n", .int(v.count)), ("values", .array(v.map { .double($0) }))])
    }

    /// Series order in tables and legends: plain adapters first, CoTo ones after, each by name.
    static func seriesLess(_ a: String, _ b: String) -> Bool {
        let ra = a.hasPrefix("coto") ? 1 : 0
        let rb = b.hasPrefix("coto") ? 1 : 0
        return ra != rb ? ra < rb : a < b
    }

    static func seriesOrder(_ names: [String]) -> [String] { Array(Set(names)).sorted(by: seriesLess) }

    static func mdTable(_ header: [String], _ rows: [[String]]) -> String {
        var s = "| " + header.joined(separator: " | ") + " |\n|" + header.map { _ in "---|" }.joined() + "\n"
        for r in rows { s += "| " + r.joined(separator: " | ") + " |\n" }
        return s
    }

    static func slug(_ s: String) -> String {
        String(s.lowercased().map { $0.isLetter || $0.isNumber ? $0 : "-" })
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

    public static func build(_ roots: [String], title: String = "coto report") throws -> Output {
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

    /// Whether a run converged, by the rule the report states: every dev evaluation in the last 20% of
    /// the steps is within 1 point (0.01) of the run's best dev accuracy. Nil when no evaluation falls in
    /// that window (train with `--eval-every`).
    public static func converged(_ log: [StepLog], steps: Int) -> Bool? {
        let evals = log.compactMap { e in e.devAccuracy.map { (e.step, $0) } }
        guard let best = evals.map(\.1).max() else { return nil }
        let tail = evals.filter { Double($0.0) > 0.8 * Double(steps) }
        guard !tail.isEmpty else { return nil }
        return tail.allSatisfy { $0.1 >= best - 0.01 }
    }

    /// The training runs: per task and series, dev accuracy, convergence, time and throughput, the loss
    /// curves and the dev curves.
    static func trainingSection(_ runs: [TrainingRun], into b: inout Builder) throws {
        if !runs.isEmpty {
            b.md += "## Training\n\n"
            let withCurves = runs.contains { r in r.log.contains { $0.devAccuracy != nil } }
            if withCurves {
                b.md += "Converged: every dev evaluation in the last 20% of the steps is within 1 point of the run's best dev "
                b.md += "accuracy (– when no evaluation falls in that window).\n\n"
            }
            var rows: [[String]] = []
            var tj: [JSON] = []
            let tasks = Array(Set(runs.map(\.task))).sorted()
            for task in tasks {
                for name in seriesOrder(runs.filter { $0.task == task }.map(\.name)) {
                    let rs = runs.filter { $0.task == task && $0.name == name }
                    let acc = rs.compactMap(\.metrics.devAccuracy)
                    let secs = rs.map(\.metrics.trainSeconds)
                    let tps = rs.map(\.metrics.tokensPerSecond)
                    let steps = rs.map(\.metrics.steps)
                    let conv = rs.map { converged($0.log, steps: $0.metrics.steps) }
                    var row = [task, name, String(rs.count), steps.map(String.init).first ?? "–", pm(acc), pm(secs, 1), pm(tps, 0)]
                    if withCurves {
                        let known = conv.compactMap { $0 }
                        row.insert(known.isEmpty ? "–" : "\(known.filter { $0 }.count) of \(rs.count)", at: 5)
                    }
                    rows.append(row)
                    var fields: [(String, JSON)] = [
                        ("task", .string(task)), ("name", .string(name)), ("seeds", .array(rs.map { $0.seed.map(JSON.int) ?? .null })),
                        ("dev_accuracy", stats(acc)), ("train_seconds", stats(secs)), ("tokens_per_second", stats(tps)),
                    ]
                    if withCurves {
                        fields.append(("converged", .array(conv.map { $0.map(JSON.bool) ?? .null })))
                        fields.append(("not_converged", .array(zip(rs, conv).filter { $0.1 == false }.map { .string($0.0.path) })))
                    }
                    tj.append(.object(fields))
                }
            }
            var header = ["task", "adapter", "seeds", "steps", "dev accuracy", "training time (s)", "tokens/s"]
            if withCurves { header.insert("converged", at: 5) }
            b.md += mdTable(header, rows) + "\n"
            let notConverged = runs.filter { converged($0.log, steps: $0.metrics.steps) == false }
            if !notConverged.isEmpty {
                b.md += "**Not converged:** " + notConverged.map { "`\($0.path)`" }.joined(separator: ", ") + "\n\n"
            }
            // Time: one bar group per task.
            var fig = Figure(title: "Training time", xLabel: "task", yLabel: "seconds (mean over seeds)")
            fig.categories = tasks
            fig.bars = true
            for name in seriesOrder(runs.map(\.name)) {
                var x: [Double] = []
                var y: [Double] = []
                var e: [Double] = []
                for (i, t) in tasks.enumerated() {
                    let secs = runs.filter { $0.task == t && $0.name == name }.map(\.metrics.trainSeconds)
                    if secs.isEmpty { continue }
                    let (m, s) = meanStd(secs)
                    x.append(Double(i))
                    y.append(m)
                    e.append(s)
                }
                fig.series.append(.init(name: name, x: x, y: y, err: e))
            }
            try b.addPlot(fig, "training-time.png", alt: "training time")
            for task in tasks {
                var curve = Figure(title: "Training loss: \(task)", xLabel: "optimizer step", yLabel: "loss (mean over seeds, smoothed)")
                for name in seriesOrder(runs.filter { $0.task == task }.map(\.name)) {
                    let rs = runs.filter { $0.task == task && $0.name == name }
                    var byStep: [Int: [Double]] = [:]
                    for r in rs { for e in r.log { byStep[e.step, default: []].append(e.loss) } }
                    let steps = byStep.keys.sorted()
                    let raw = steps.map { meanStd(byStep[$0]!).0 }
                    // Exponential moving average (0.8) so the CoTo and LoRA curves can be told apart.
                    var ema: [Double] = []
                    var acc = raw.first ?? 0
                    for v in raw {
                        acc = 0.8 * acc + 0.2 * v
                        ema.append(acc)
                    }
                    curve.series.append(.init(name: name, x: steps.map(Double.init), y: ema))
                }
                try b.addPlot(curve, "training-loss-\(slug(task)).png", alt: "training loss on \(task)")
            }
            // Dev curves: every run of the task, its seed in the legend.
            for task in tasks where withCurves {
                var dev = Figure(title: "Dev accuracy: \(task)", xLabel: "optimizer step", yLabel: "dev accuracy")
                for name in seriesOrder(runs.filter { $0.task == task }.map(\.name)) {
                    for r in runs.filter({ $0.task == task && $0.name == name }) {
                        let pts = r.log.compactMap { e in e.devAccuracy.map { (Double(e.step), $0) } }
                        if pts.isEmpty { continue }
                        let mark = converged(r.log, steps: r.metrics.steps) == false ? " (not converged)" : ""
                        dev.series.append(.init(name: "\(name) s\(r.seed.map(String.init) ?? "?")\(mark)", x: pts.map(\.0), y: pts.map(\.1)))
                    }
                }
                if !dev.series.isEmpty { try b.addPlot(dev, "dev-accuracy-\(slug(task)).png", alt: "dev accuracy on \(task)") }
            }
            b.results.append(("training", .array(tj)))
        }
    }

    /// Interpolation sweeps: accuracy along the path between two adapters, the midpoint and the barrier.
    static func interpolationSection(_ sweeps: [Joined], into b: inout Builder) throws {
        let interp = sweeps.filter { $0.sweep == "interpolate" }
        if !interp.isEmpty {
            b.md += "## Interpolation\n\nAccuracy along θ(λ) = (1−λ)·A + λ·B between two adapters of the same task (different seeds). "
            b.md += "The barrier is the largest drop below the straight line between the end points"
            b.md += interp.contains { Sweeps.metric($0.header).name == "perplexity" } ? " (for perplexity: the largest rise above it).\n\n" : ".\n\n"
            var rows: [[String]] = []
            var ij: [JSON] = []
            for task in Array(Set(interp.map(\.task))).sorted() {
                let metric = Sweeps.metric(interp.first { $0.task == task }!.header)
                var fig = Figure(title: "Interpolation: \(task)", xLabel: "λ", yLabel: metric.name)
                for name in seriesOrder(interp.filter { $0.task == task }.map(\.name)) {
                    let runs = interp.filter { $0.task == task && $0.name == name }
                    var byL: [Double: [Double]] = [:]
                    var barriers: [Double] = []
                    for r in runs {
                        let pts = Sweeps.curve(r.points, metric)
                        for (l, a) in pts { byL[l, default: []].append(a) }
                        if r.complete, let b = Sweeps.barrier(pts, metric) { barriers.append(b) }
                    }
                    let ls = byL.keys.sorted()
                    fig.series.append(.init(name: name, x: ls, y: ls.map { meanStd(byL[$0]!).0 }, err: ls.map { meanStd(byL[$0]!).1 }))
                    let mid = ls.min { abs($0 - 0.5) < abs($1 - 0.5) }
                    let label = Sweeps.label(task, metricName: metric.name)
                    rows.append([label, name, String(runs.count), pm(byL[0] ?? []), pm(mid.map { byL[$0]! } ?? []), pm(byL[1] ?? []), pm(barriers)])
                    ij.append(
                        .object([
                            ("task", .string(task)), ("name", .string(name)), ("pairs", .int(runs.count)),
                            ("lambda", .array(ls.map { .double($0) })), (metric.name, .array(ls.map { stats(byL[$0]!) })),
                            ("barrier", stats(barriers)),
                        ]))
                }
                try b.addPlot(fig, "interpolation-\(slug(task)).png", alt: "interpolation on \(task)")
            }
            b.md += mdTable(["task", "adapter", "pairs", "λ=0", "λ=0.5", "λ=1", "barrier"], rows) + "\n"
            b.results.append(("interpolation", .array(ij)))
        }
    }

    /// Merge sweeps: every method on every task with its own head, against the individual adapters.
    static func mergingSection(_ sweeps: [Joined], into b: inout Builder) throws {
        let merges = sweeps.filter { $0.sweep == "merge" }
        if !merges.isEmpty {
            b.md += "## Multi-task merging\n\nEvery method merges one adapter per task; each task is scored with its own adapter's head. "
            b.md += "`individual` is each adapter on its own task; the drop is individual − merged (mean over tasks).\n\n"
            var mj: [JSON] = []
            for name in seriesOrder(merges.map(\.name)) {
                let runs = merges.filter { $0.name == name }
                let tasks = Array(Set(runs.flatMap { $0.points.compactMap { $0.task } })).sorted()
                var methods: [String] = ["individual"]
                for r in runs { for p in r.points { if let m = p.method, !methods.contains(m) { methods.append(m) } } }
                func accs(_ m: String, _ t: String) -> [Double] {
                    runs.flatMap { r in r.points.filter { $0.method == m && $0.task == t }.compactMap { $0.accuracy } }
                }
                var rows: [[String]] = []
                for m in methods {
                    let per = tasks.map { accs(m, $0) }
                    let meanAcc = per.allSatisfy { !$0.isEmpty } ? per.map { meanStd($0).0 }.reduce(0, +) / Double(max(1, per.count)) : .nan
                    let drops = tasks.map { meanStd(accs("individual", $0)).0 - meanStd(accs(m, $0)).0 }
                    let meanDrop = drops.reduce(0, +) / Double(max(1, drops.count))
                    rows.append([m] + per.map { pm($0) } + [String(format: "%.4f", meanAcc), m == "individual" ? "–" : String(format: "%.4f", meanDrop)])
                    mj.append(
                        .object([
                            ("name", .string(name)), ("method", .string(m)),
                            ("tasks", .object(tasks.enumerated().map { ($1, stats(per[$0])) })),
                            ("mean_accuracy", .double(meanAcc)), ("mean_drop", .double(meanDrop)),
                        ]))
                }
                b.md += "### \(name) (\(runs.count) set\(runs.count == 1 ? "" : "s") of adapters)\n\n"
                b.md += mdTable(["method"] + tasks + ["mean", "mean drop"], rows) + "\n"
            }
            b.results.append(("merge", .array(mj)))
        }
    }

    /// Pruning sweeps: accuracy against magnitude sparsity, dropped layers, module kinds and rank.
    static func pruningSection(_ sweeps: [Joined], into b: inout Builder) throws {
        let prunes = sweeps.filter { $0.sweep == "prune" }
        if !prunes.isEmpty {
            b.md += "## Pruning\n\nMagnitude pruning of lora_A/lora_B entries, dropping layer sets (`all` drops every adapter: the base "
            b.md += "model with the trained head), dropping module kinds, truncating the rank (SVD).\n\n"
            var pj: [JSON] = []
            var rows: [[String]] = []
            for task in Array(Set(prunes.map(\.task))).sorted() {
                let metric = Sweeps.metric(prunes.first { $0.task == task }!.header)
                for kind in ["sparsity", "layers", "modules", "rank"] {
                    let names = seriesOrder(prunes.filter { $0.task == task }.map(\.name))
                    var values: [String] = []
                    for r in prunes where r.task == task {
                        for p in r.points where p.kind == kind {
                            if let v = p.value, !values.contains(v) { values.append(v) }
                        }
                    }
                    if values.isEmpty { continue }
                    let numeric = values.allSatisfy { Double($0) != nil }
                    if numeric { values.sort { Double($0)! < Double($1)! } }
                    var fig = Figure(
                        title: "Pruning (\(kind)): \(task)",
                        xLabel: [
                            "sparsity": "fraction of adapter entries zeroed", "layers": "adapter layers dropped",
                            "modules": "module kind dropped", "rank": "rank kept",
                        ][kind]!, yLabel: metric.name)
                    if !numeric {
                        fig.categories = values
                        fig.bars = true
                    }
                    for name in names {
                        let runs = prunes.filter { $0.task == task && $0.name == name }
                        var x: [Double] = []
                        var y: [Double] = []
                        var e: [Double] = []
                        for (i, v) in values.enumerated() {
                            let a = runs.flatMap { r in
                                r.points.filter { $0.kind == kind && $0.value == v }.compactMap(metric.value)
                            }
                            if a.isEmpty { continue }
                            let (m, s) = meanStd(a)
                            x.append(numeric ? Double(v)! : Double(i))
                            y.append(m)
                            e.append(s)
                            rows.append([Sweeps.label(task, metricName: metric.name), kind, v, name, pm(a)])
                            pj.append(
                                .object([
                                    ("task", .string(task)), ("kind", .string(kind)), ("value", .string(v)), ("name", .string(name)), (metric.name, stats(a)),
                                ]))
                        }
                        fig.series.append(.init(name: name, x: x, y: y, err: e))
                    }
                    try b.addPlot(fig, "pruning-\(kind)-\(slug(task)).png", alt: "pruning (\(kind)) on \(task)")
                }
            }
            b.md +=
                mdTable(["task", "rule", "value", "adapter", prunes.allSatisfy { Sweeps.metric($0.header).name == "accuracy" } ? "accuracy" : "score"], rows)
                + "\n"
            b.results.append(("pruning", .array(pj)))
        }
    }

    /// Shapley sweeps: per-layer (or per-module) contributions and their spread.
    static func shapleySection(_ sweeps: [Joined], into b: inout Builder) throws {
        let shap = sweeps.filter { $0.sweep == "shapley" }
        if !shap.isEmpty {
            b.md += "## Shapley values\n\nContribution of each adapter group to accuracy (v(S) = accuracy with only the groups in S on), "
            b.md += "estimated through the multilinear extension. Spread = coefficient of variation of the values over groups "
            b.md += "(lower: contributions more even). Efficiency check: Σφ against v(all) − v(none).\n\n"
            var sj: [JSON] = []
            var rows: [[String]] = []
            for task in Array(Set(shap.map(\.task))).sorted() {
                let metric = Sweeps.metric(shap.first { $0.task == task }!.header)
                var fig = Figure(title: "Shapley values: \(task)", xLabel: "adapter group", yLabel: "Shapley value (\(metric.shapleyName))")
                fig.bars = true
                var playersAll: [String] = []
                for name in seriesOrder(shap.filter { $0.task == task }.map(\.name)) {
                    let runs = shap.filter { $0.task == task && $0.name == name && $0.complete }
                    var perPlayer: [[Double]] = []
                    var spreads: [Double] = []
                    var ses: [[Double]] = []
                    var effGap: [Double] = []
                    for r in runs {
                        let players = r.header.players ?? []
                        guard let plan = ShapleyPlan(settings: r.header.settings.plan, players: players.count) else { continue }
                        let est = plan.estimate(scored: r.values, value: metric.shapleyValue)
                        if playersAll.isEmpty { playersAll = players }
                        if perPlayer.isEmpty {
                            perPlayer = [[Double]](repeating: [], count: players.count)
                            ses = perPlayer
                        }
                        guard players.count == perPlayer.count else { continue }
                        for i in players.indices {
                            perPlayer[i].append(est.values[i])
                            ses[i].append(est.standardErrors[i])
                        }
                        let (m, s) = meanStd(est.values)
                        spreads.append(abs(m) > 1e-12 ? s / abs(m) : .nan)
                        effGap.append(est.sum - (est.full - est.empty))
                    }
                    if perPlayer.isEmpty { continue }
                    let means = perPlayer.map { meanStd($0).0 }
                    // Error bars: the std over seeds when there are several, else the estimator's standard error.
                    let errs = perPlayer.indices.map { perPlayer[$0].count > 1 ? meanStd(perPlayer[$0]).1 : (ses[$0].first ?? 0) }
                    fig.series.append(.init(name: name, x: means.indices.map(Double.init), y: means, err: errs))
                    rows.append([
                        Sweeps.label(task, metricName: metric.shapleyName), name, String(runs.count),
                        means.map { String(format: "%.3f", $0) }.joined(separator: " "), pm(spreads, 3), pm(effGap, 4),
                    ])
                    sj.append(
                        .object([
                            ("task", .string(task)), ("name", .string(name)), ("players", .array(playersAll.map { .string($0) })),
                            ("values", .array(perPlayer.map(stats))), ("standard_errors", .array(ses.map { .array($0.map { .double($0) }) })),
                            ("spread", stats(spreads)), ("efficiency_gap", stats(effGap)),
                        ]))
                }
                fig.categories = playersAll.map { $0.replacingOccurrences(of: "layer ", with: "L") }
                try b.addPlot(fig, "shapley-\(slug(task)).png", alt: "Shapley values on \(task)")
            }
            b.md += mdTable(["task", "adapter", "seeds", "φ per group", "spread (CV)", "Σφ − (v(all) − v(none))"], rows) + "\n"
            b.results.append(("shapley", .array(sj)))
        }
    }

    /// The numbers the paper compares for one task and series, one value per seed (or pair of seeds).
    struct SeriesFigures {
        var task: String
        var name: String
        var metric: Sweeps.Metric
        var test: [Double] = []
        var mid: [Double] = []
        var barrier: [Double] = []
        var sparse: [Double] = []
        var half: [Double] = []
        var cv: [Double] = []
        var time: [Double] = []
        /// The fewest examples behind one of the accuracy values (nil for perplexity): one example is the
        /// finest difference such a value can show.
        var examples: Int?
    }

    /// A merge method's mean accuracy over the tasks, one value per set of adapters (seed), per series.
    struct MergeFigures {
        var method: String
        var name: String
        var perSet: [Double]
    }

    /// Test accuracy (magnitude sparsity 0, else the merge sweep's `individual`), the interpolation midpoint and
    /// barrier, the score at the highest magnitude sparsity and with every other layer's adapters dropped, the
    /// Shapley spread and the optimizer steps' time per task and series; the merge methods' mean accuracy per series.
    static func figures(_ sweeps: [Joined], _ runs: [TrainingRun]) -> (series: [SeriesFigures], maxSparsity: String?, merges: [MergeFigures]) {
        var keys: [(String, String)] = []
        func add(_ t: String, _ n: String) { if !keys.contains(where: { $0 == (t, n) }) { keys.append((t, n)) } }
        for s in sweeps where s.sweep != "merge" { add(s.task, s.name) }
        for r in runs { add(r.task, r.name) }
        keys.sort { $0.0 != $1.0 ? $0.0 < $1.0 : seriesLess($0.1, $1.1) }
        // Each task's numbers are of its sweeps' metric (accuracy; perplexity for perplexity sweeps).
        func metric(_ t: String) -> Sweeps.Metric { Sweeps.metric(task: sweeps.first { $0.task == t }?.header.settings.task) }
        func prunePoint(_ t: String, _ n: String, _ kind: String, _ value: String) -> [Double] {
            sweeps.filter { $0.sweep == "prune" && $0.task == t && $0.name == n }.flatMap { s in
                s.points.filter { $0.kind == kind && $0.value == value }.compactMap(metric(t).value)
            }
        }
        let prunePoints: [SweepPoint] = sweeps.filter { $0.sweep == "prune" }.flatMap(\.points)
        let sparsities: [String] = prunePoints.filter { $0.kind == "sparsity" }.compactMap(\.value)
        let maxSparsity = sparsities.max { (Double($0) ?? 0) < (Double($1) ?? 0) }
        var series: [SeriesFigures] = []
        for (t, n) in keys {
            let m = metric(t)
            var f = SeriesFigures(task: t, name: n, metric: m)
            f.test = prunePoint(t, n, "sparsity", "0")
            if f.test.isEmpty {
                f.test = sweeps.filter { $0.sweep == "merge" && $0.name == n }.flatMap { s in
                    s.points.filter { $0.method == "individual" && $0.task == t }.compactMap(m.value)
                }
            }
            for s in sweeps where s.sweep == "interpolate" && s.task == t && s.name == n {
                let pts = Sweeps.curve(s.points, m)
                if let p = pts.min(by: { abs($0.0 - 0.5) < abs($1.0 - 0.5) }) { f.mid.append(p.1) }
                if s.complete, let b = Sweeps.barrier(pts, m) { f.barrier.append(b) }
            }
            f.sparse = maxSparsity.map { prunePoint(t, n, "sparsity", $0) } ?? []
            f.half = prunePoint(t, n, "layers", "every-other")
            if m.higherIsBetter {
                f.examples = sweeps.filter { $0.task == t && $0.name == n && $0.sweep != "shapley" }.flatMap { $0.points.compactMap(\.examples) }.min()
            }
            for s in sweeps where s.sweep == "shapley" && s.task == t && s.name == n && s.complete {
                guard let plan = ShapleyPlan(settings: s.header.settings.plan, players: s.header.players?.count ?? 0) else { continue }
                let est = plan.estimate(scored: s.values, value: m.shapleyValue)
                let (mean, sd) = meanStd(est.values)
                if abs(mean) > 1e-12 { f.cv.append(sd / abs(mean)) }
            }
            f.time = runs.filter { $0.task == t && $0.name == n }.map(\.stepSeconds)
            series.append(f)
        }
        var merges: [MergeFigures] = []
        let mergeSweeps = sweeps.filter { $0.sweep == "merge" }
        var methods: [String] = []
        for s in mergeSweeps { for p in s.points { if let x = p.method, !methods.contains(x) { methods.append(x) } } }
        for method in methods {
            for n in seriesOrder(mergeSweeps.map(\.name)) {
                // Mean over tasks within each set of adapters; one value per set (seed).
                let perSet = mergeSweeps.filter { $0.name == n }.compactMap { s -> Double? in
                    let a = s.points.filter { $0.method == method }.compactMap { $0.accuracy }
                    return a.isEmpty ? nil : a.reduce(0, +) / Double(a.count)
                }
                merges.append(MergeFigures(method: method, name: n, perSet: perSet))
            }
        }
        return (series, maxSparsity, merges)
    }

    /// One row per task and series with the numbers the paper compares (`figures`); and the mean multi-task
    /// accuracy per merge method.
    static func summary(_ sweeps: [Joined], _ runs: [TrainingRun]) -> (String, JSON) {
        let (series, maxSparsity, merges) = figures(sweeps, runs)
        guard !series.isEmpty || !merges.isEmpty else { return ("", .null) }
        var rows: [[String]] = []
        var js: [JSON] = []
        for f in series {
            let label = Sweeps.label(f.task, metricName: f.metric.name)
            rows.append([label, f.name, pm(f.test, 3), pm(f.mid, 3), pm(f.barrier, 3), pm(f.sparse, 3), pm(f.half, 3), pm(f.cv, 2), pm(f.time, 1)])
            js.append(
                .object([
                    ("task", .string(f.task)), ("name", .string(f.name)), ("test_accuracy", stats(f.test)), ("interpolation_midpoint", stats(f.mid)),
                    ("barrier", stats(f.barrier)), ("sparsity", maxSparsity.map(JSON.string) ?? .null), ("accuracy_at_sparsity", stats(f.sparse)),
                    ("accuracy_every_other_layer", stats(f.half)), ("shapley_spread", stats(f.cv)), ("step_seconds", stats(f.time)),
                ]))
        }
        var md = "## Summary\n\n"
        // Perplexity tasks show perplexity in the score columns (their task label says so).
        let scoreHeader = series.allSatisfy { $0.metric.name == "accuracy" } ? "test accuracy" : "test score"
        if !series.isEmpty {
            md +=
                mdTable(
                    [
                        "task", "adapter", scoreHeader, "λ=0.5", "barrier",
                        "sparsity \(maxSparsity ?? "–")", "every other layer", "Shapley spread", "training steps (s)",
                    ], rows) + "\n"
        }
        var mj: [JSON] = []
        if !merges.isEmpty {
            let names = seriesOrder(merges.map(\.name))
            var mrows: [[String]] = []
            for method in merges.map(\.method).reduce(into: [String](), { if !$0.contains($1) { $0.append($1) } }) {
                var row = [method]
                for n in names {
                    let perSet = merges.first { $0.method == method && $0.name == n }?.perSet ?? []
                    row.append(pm(perSet, 3))
                    mj.append(.object([("method", .string(method)), ("name", .string(n)), ("mean_accuracy", stats(perSet))]))
                }
                mrows.append(row)
            }
            md += "Multi-task merge, mean accuracy over the tasks (each with its own head):\n\n" + mdTable(["method"] + names, mrows) + "\n"
        }
        return (md, .object([("tasks", .array(js)), ("merge", .array(mj))]))
    }

    /// Writes report.md, results.json and plots/ into `dir` (each file atomically).
    public static func write(_ o: Output, to dir: String) throws {
        try FileSystem.makeDirectory(FileSystem.join(dir, "plots"))
        for (name, bytes) in o.plots { try AtomicFileWriter.write(bytes, to: FileSystem.join(FileSystem.join(dir, "plots"), name)) }
        try AtomicFileWriter.write(o.results.pretty + "\n", to: FileSystem.join(dir, "results.json"))
        try AtomicFileWriter.write(o.markdown, to: FileSystem.join(dir, "report.md"))
    }
}
