import Checkpoint
import Foundation
import Numerics

/// A cost directory (`make demo` writes `DEMO_OUT/cost/`): per stage, the wall time the script measured
/// (stages.jsonl, one `{"stage": NAME, "seconds": S}` line per finished stage) and the `CostRecord` of every
/// coto process it ran (stages/NAME/*.json, through `COTO_COST_DIR`), and the machine's sgemm rates at the
/// dominant shapes (rates.json, `coto-bench gemm-rate`).
public struct CostLog: Sendable {
    public struct Stage: Sendable {
        public var name: String
        public var wallSeconds: Double
        public var records: [CostRecord]

        /// Every GEMM of the stage, per shape (only the heaviest shapes each record kept) and in all.
        public var shapes: [GemmCounter.Shape: GemmCounter.Tally] { CostRecord.shapes(of: records) }
        public var gemmFlops: Double { records.reduce(0) { $0 + $1.gemmFlops } }
        public var gemmSeconds: Double { records.reduce(0) { $0 + $1.gemmSeconds } }
        public var cpuSeconds: Double { records.reduce(0) { $0 + $1.cpuSeconds } }
    }

    struct StageTime: Codable {
        var stage: String
        var seconds: Double
    }

    public static let stagesFile = "stages.jsonl"
    public static let recordsDirectory = "stages"
    public static let ratesFile = "rates.json"

    public var stages: [Stage]
    public var rates: GemmRates?

    /// The records under `dir`/stages/NAME/ for every stage (also those stages.jsonl does not time yet).
    public static func records(_ dir: String) throws -> [(String, [CostRecord])] {
        let root = FileSystem.join(dir, recordsDirectory)
        guard FileSystem.isDirectory(root) else { return [] }
        var out: [(String, [CostRecord])] = []
        for name in try FileSystem.listDirectory(root).sorted() where FileSystem.isDirectory(FileSystem.join(root, name)) {
            let sub = FileSystem.join(root, name)
            var recs: [CostRecord] = []
            for f in try FileSystem.listDirectory(sub).sorted() where f.hasSuffix(".json") && !f.hasPrefix(".") {
                let path = FileSystem.join(sub, f)
                do { recs.append(try JSONDecoder().decode(CostRecord.self, from: Data(try FileSystem.readFile(path)))) } catch {
                    throw EvalError(path, "is not a coto cost record: \(error)")
                }
            }
            out.append((name, recs))
        }
        return out
    }

    /// Reads a cost directory: the stages in the order stages.jsonl times them (a stage timed twice, by a
    /// resumed run, counts its last time).
    public static func load(_ dir: String) throws -> CostLog {
        guard FileSystem.isDirectory(dir) else { throw EvalError(dir, "is not a cost directory (make demo writes DEMO_OUT/cost)") }
        let timesPath = FileSystem.join(dir, stagesFile)
        var order: [String] = []
        var walls: [String: Double] = [:]
        if FileSystem.exists(timesPath) {
            let text = String(decoding: try FileSystem.readFile(timesPath), as: UTF8.self)
            for (i, line) in text.split(separator: "\n").enumerated() where !line.trimmingCharacters(in: .whitespaces).isEmpty {
                guard let t = try? JSONDecoder().decode(StageTime.self, from: Data(line.utf8)) else {
                    throw EvalError(timesPath, "line \(i + 1) is not {\"stage\": NAME, \"seconds\": S}")
                }
                let (name, seconds) = (t.stage, t.seconds)
                if walls[name] == nil { order.append(name) }
                walls[name] = seconds
            }
        }
        let recs = Dictionary(try records(dir), uniquingKeysWith: { a, _ in a })
        let stages = order.map { Stage(name: $0, wallSeconds: walls[$0] ?? 0, records: recs[$0] ?? []) }
        let ratesPath = FileSystem.join(dir, ratesFile)
        var rates: GemmRates?
        if FileSystem.exists(ratesPath) {
            do { rates = try JSONDecoder().decode(GemmRates.self, from: Data(try FileSystem.readFile(ratesPath))) } catch {
                throw EvalError(ratesPath, "is not a coto-bench gemm-rate file: \(error)")
            }
        }
        return CostLog(stages: stages, rates: rates)
    }
}
