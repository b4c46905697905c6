import Checkpoint
import Foundation

extension Report {
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
}
