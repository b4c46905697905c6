import Checkpoint
import Foundation
import Model
import Numerics
import Operators

// What every sweep shares: task and series names, the λ grid, the metric a sweep is compared by, file names.
// One file per sweep kind beside this one.

/// The sweeps of `coto-eval`: each returns a results object (JSON) for a run directory; `Report` joins
/// shards and derives barriers, merge tables and Shapley estimates.
public enum Sweeps {
    public static func taskName(_ path: String) -> String {
        var b = FileSystem.basename(of: path)
        for s in [".jsonl", ".json"] where b.hasSuffix(s) { b.removeLast(s.count) }
        for s in ["-test", "-dev", "-train", "_test", "_dev", "_train"] where b.hasSuffix(s) { b.removeLast(s.count) }
        return b
    }

    /// The series an adapter belongs to in reports: `--name`, else from the metrics.json coto-train wrote
    /// beside it ("coto" / "lora", prefixed by the variant when it is not plain LoRA), else "adapter".
    public static func seriesName(_ path: String) -> String {
        let dir = FileSystem.isDirectory(path) ? path : FileSystem.dirname(of: path)
        guard FileSystem.exists(FileSystem.join(dir, RunRecords.metricsFile)), let m = try? RunRecords.readMetrics(dir) else { return "adapter" }
        return m.seriesName
    }

    /// A sweep's result without its points: its kind, series, inputs, shard and settings.
    static func result(_ sweep: String, name: String, adapters: [String], data: [String], shard: Shard, settings: SweepSettings, task: EvalTask)
        -> SweepResult
    {
        var settings = settings
        settings.task = task == .classification ? nil : task.rawValue
        return SweepResult(
            sweep: sweep, name: name, adapters: adapters, data: data, task: data.map(taskName).joined(separator: "+"),
            shard: [shard.index, shard.count], settings: settings)
    }

    /// λ grid "0:1:0.1" (start:stop:step, both ends included) or a list "0,0.5,1".
    public static func parseGrid(_ s: String) -> [Double]? {
        let p = s.split(separator: ":")
        if p.count == 3, let a = Double(p[0]), let b = Double(p[1]), let st = Double(p[2]), st > 0, b >= a, (b - a) / st <= 10_000 {
            let n = Int(((b - a) / st).rounded(.down) + 1e-9)
            var g = (0...n).map { (a + Double($0) * st) }
            g = g.map { ($0 * 1e9).rounded() / 1e9 }
            if let last = g.last, b - last > st * 1e-6 { g.append(b) }
            return g
        }
        let l = s.split(separator: ",").compactMap { Double($0.trimmingCharacters(in: .whitespaces)) }
        return l.count == s.split(separator: ",").count && !l.isEmpty ? l : nil
    }

    /// What a sweep's points are compared by: accuracy (classification; acc for multiple choice) or
    /// perplexity (lower is better). Shapley values of a perplexity sweep are of the log-likelihood per
    /// token (−loss), which adds up over players where perplexity would not.
    public struct Metric: Sendable {
        public var name: String
        public var higherIsBetter: Bool
        public var value: @Sendable (SweepPoint) -> Double?
        public var shapleyName: String
        public var shapleyValue: @Sendable (SweepPoint) -> Double?
    }

    public static func metric(_ r: SweepResult) -> Metric { metric(task: r.settings.task) }

    public static func metric(task: String?) -> Metric {
        if task == EvalTask.perplexity.rawValue {
            return Metric(
                name: "perplexity", higherIsBetter: false, value: { $0.perplexity }, shapleyName: "log-likelihood per token",
                shapleyValue: { $0.loss.map { -$0 } })
        }
        let name = task == EvalTask.multipleChoice.rawValue ? "acc" : "accuracy"
        return Metric(name: name, higherIsBetter: true, value: { $0.accuracy }, shapleyName: name, shapleyValue: { $0.accuracy })
    }

    /// `task` as tables show it: marked with the metric unless it is accuracy ("text (perplexity)").
    public static func label(_ task: String, metricName: String) -> String {
        metricName == "accuracy" ? task : "\(task) (\(metricName))"
    }

    /// `interpolate-coto-noun8-1a2b3c4d[-shard-1-of-4].json`: stable for the same adapters and settings.
    public static func fileName(_ result: SweepResult) -> String {
        let (sweep, name, task) = (result.sweep, result.name, result.task)
        let id = fnv1a64(result.joinKey)
        var shard = ""
        if result.shard.count == 2, result.shard[1] > 1 { shard = "-shard-\(result.shard[0])-of-\(result.shard[1])" }
        let safe = { (s: String) in String(s.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "+" ? $0 : "_" }) }
        return "\(safe(sweep))-\(safe(name))-\(safe(task))-\(String(id & 0xffff_ffff, radix: 16))\(shard).json"
    }
}
