import Foundation
import Testing
import TestSupport
@testable import Evaluation
@testable import Checkpoint
@testable import Numerics
import Operators

/// The merge-weight search: a planted problem whose best weights and density are known, a search killed
/// mid-generation resuming to the uninterrupted result, the genome's groups, and per-group merges.
@Suite struct MergeSearchTests {
    struct Killed: Error {}

    /// Best at weights (0.5, 1.2, 0.8) and density 0.3: the objective a merge's dev score stands in for.
    static func planted(_ layout: MergeSearch.Layout) -> ([Double]) -> Double {
        { x in
            let w = layout.weights(x, group: 0)
            let d = layout.density(x, group: 0) ?? 0
            return -(pow(w[0] - 0.5, 2) + pow(w[1] - 1.2, 2) + pow(w[2] - 0.8, 2) + pow(d - 0.3, 2))
        }
    }

    @Test func aPlantedProblemIsSolvedAndAKilledSearchResumes() throws {
        let t = TempDir()
        let layout = MergeSearch.Layout(adapters: 3, groups: [[0, 1]], density: true)
        #expect(layout.dimension == 4)
        let settings = MergeSearch.Settings(method: "ties", budget: 800, seed: 4, sigma: 0.3)
        let start = [1.0, 1, 1, 0.5]
        let f = Self.planted(layout)
        let full = try MergeSearch.run(
            settings: settings, start: start, config: "c", statePath: t.path + "/a/s.json", overwrite: false, objective: f)
        let best = try #require(full.bestGenes)
        let w = layout.weights(best, group: 0)
        #expect(abs(w[0] - 0.5) < 1e-3 && abs(w[1] - 1.2) < 1e-3 && abs(w[2] - 0.8) < 1e-3, "\(w)")
        #expect(abs((layout.density(best, group: 0) ?? 0) - 0.3) < 1e-3)
        #expect(full.es.evaluations >= 800 && full.log.count == full.es.generation)
        // Killed in the middle of generation 5: the state holds 4 generations; the same command resumes there.
        var calls = 0
        #expect(throws: Killed.self) {
            try MergeSearch.run(settings: settings, start: start, config: "c", statePath: t.path + "/b/s.json", overwrite: false) { x in
                calls += 1
                if calls == 4 * full.es.lambda + 3 { throw Killed() }
                return f(x)
            }
        }
        let kept = try JSONDecoder().decode(MergeSearch.State.self, from: Data(contentsOf: URL(fileURLWithPath: t.path + "/b/s.json")))
        #expect(kept.es.generation == 4)
        let resumed = try MergeSearch.run(
            settings: settings, start: start, config: "c", statePath: t.path + "/b/s.json", overwrite: false, objective: f)
        #expect(resumed == full)
        // Another search's state is not resumed.
        #expect(throws: EvalError.self) {
            try MergeSearch.run(
                settings: settings, start: start, config: "other", statePath: t.path + "/b/s.json", overwrite: false, objective: f)
        }
    }

    static func adapter(_ rng: inout SeededRNG, layers: Int, source: String) -> Adapter {
        var c = LoraConfig()
        (c.r, c.loraAlpha, c.targetModules) = (2, 2, .names(["query"]))
        let modules = (0..<layers).map { l in
            LoraModule(
                name: "bert.encoder.layer.\(l).attention.self.query",
                a: AdapterTensor(dtype: .f32, tensor: Tensor(shape: [2, 4], data: (0..<8).map { _ in Float(rng.normal()) })),
                b: AdapterTensor(dtype: .f32, tensor: Tensor(shape: [3, 2], data: (0..<6).map { _ in Float(rng.normal()) })), alpha: 2, scaling: 1)
        }
        return Adapter(config: c, modules: modules, otherTensors: [], source: source, configOrigin: "test")
    }

    @Test func groupsOfLayersGetTheirOwnWeights() throws {
        var rng = SeededRNG(seed: 1)
        let a = Self.adapter(&rng, layers: 6, source: "a")
        let b = Self.adapter(&rng, layers: 6, source: "b")
        let layout = MergeSearch.Layout.of([a, b], groupSize: 4, density: false)
        #expect(layout.groups == [[0, 1, 2, 3], [4, 5]] && layout.dimension == 4)
        #expect(MergeSearch.Layout.of([a, b], groupSize: nil, density: true).groups == [[0, 1, 2, 3, 4, 5]])
        // Weights (0.5, −2) in layers 0–3 (|x|: 2) and (1, 0.25) in 4–5, by task arithmetic: Σ w_i ΔW_i per layer.
        let genes = [0.5, -2, 1, 0.25]
        let m = try MergeSearch.merge([a, b], genes: genes, layout: layout, method: TaskArithmetic(), seed: 0)
        #expect(m.modules.count == 6)
        for (l, mod) in m.modules.enumerated() {
            let (wa, wb): (Float, Float) = l < 4 ? (0.5, 2) : (1, 0.25)
            let want = zip(a.modules[l].delta().data, b.modules[l].delta().data).map { wa * $0 + wb * $1 }
            #expect(relErr(mod.delta().data, want) < 1e-6, "layer \(l)")
        }
        #expect(layout.start(TaskArithmetic()) == [1, 1, 1, 1])
    }

    /// Runs `body(k)` for shards 1…n on threads at once and returns each one's result or error.
    static func concurrently(_ n: Int, _ body: @escaping @Sendable (Int) throws -> MergeSearch.State) -> [Result<MergeSearch.State, Error>] {
        final class Box: @unchecked Sendable {
            var results: [Int: Result<MergeSearch.State, Error>] = [:]
            let lock = NSLock()
        }
        let box = Box()
        let group = DispatchGroup()
        for k in 1...n {
            group.enter()
            Thread {
                let r = Result { try body(k) }
                box.lock.lock()
                box.results[k] = r
                box.lock.unlock()
                group.leave()
            }.start()
        }
        group.wait()
        return (1...n).map { box.results[$0]! }
    }

    static func shards(_ k: Int, _ n: Int) -> SearchShards { SearchShards(shard: Shard(index: k, count: n), waitTimeout: 60, poll: 0.01) }

    /// Three shards at once give the unsharded search's state; a failing shard stops its siblings with its
    /// message, and the search started again resumes to the unsharded state.
    @Test func shardsGiveTheUnshardedSearchAndResume() throws {
        let t = TempDir()
        let layout = MergeSearch.Layout(adapters: 3, groups: [[0]], density: true)
        let settings = MergeSearch.Settings(method: "ties", budget: 60, seed: 2, sigma: 0.3)
        let start = [1.0, 1, 1, 0.5]
        let f = Self.planted(layout)
        let whole = try MergeSearch.run(
            settings: settings, start: start, config: "c", statePath: t.path + "/whole/s.json", overwrite: false, objective: f)
        #expect(whole.es.generation == 8)  // λ = 8 for n = 4: 60 evaluations are 8 generations
        let path = t.path + "/three/s.json"
        let three = Self.concurrently(3) { k in
            try MergeSearch.run(
                settings: settings, start: start, config: "c", statePath: path, overwrite: false, shards: Self.shards(k, 3), objective: f)
        }
        #expect(try three[0].get() == whole)
        // The followers end on the finished state the leader wrote.
        #expect(try three.map { try $0.get().es } == [whole.es, whole.es, whole.es])
        let parts = try FileSystem.listDirectory(t.path + "/three/generations")
        #expect(parts.count == 24 && parts.first == "g0001-shard-1-of-3.json", "\(parts)")

        // Shard 2 of 2 fails in generation 3: its marker stops the waiting leader with its message, the state
        // keeps two generations, and both started again finish the search as one process would.
        let resumed = t.path + "/resumed/s.json"
        final class Calls: @unchecked Sendable { var n = 0 }
        let calls = Calls()
        let failed = Self.concurrently(2) { k in
            try MergeSearch.run(settings: settings, start: start, config: "c", statePath: resumed, overwrite: false, shards: Self.shards(k, 2)) {
                x in
                if k == 2 {
                    calls.n += 1
                    if calls.n == 2 * 4 + 1 { throw EvalError("dev.jsonl", "row 3 is not JSON") }
                }
                return f(x)
            }
        }
        #expect(throws: EvalError.self) { try failed[1].get() }
        if case .failure(let e) = failed[0] {
            #expect("\(e)".contains("shard 2/2 failed: dev.jsonl: row 3 is not JSON"), "\(e)")
        } else {
            Issue.record("the leader did not stop when its sibling failed")
        }
        #expect(try JSONDecoder().decode(MergeSearch.State.self, from: Data(contentsOf: URL(fileURLWithPath: resumed))).es.generation == 2)
        // The marker the failed attempt left does not stop the next one.
        let again = Self.concurrently(2) { k in
            try MergeSearch.run(
                settings: settings, start: start, config: "c", statePath: resumed, overwrite: false, shards: Self.shards(k, 2), objective: f)
        }
        #expect(try again[0].get() == whole && again[1].get().es == whole.es)
        #expect(!FileManager.default.fileExists(atPath: t.path + "/resumed/generations/failed-shard-2-of-2.txt"))
        // Shards refuse --overwrite (a restart in one process).
        #expect(throws: EvalError.self) {
            try MergeSearch.run(
                settings: settings, start: start, config: "c", statePath: resumed, overwrite: true, shards: Self.shards(1, 2), objective: f)
        }
    }
}
