import Checkpoint
import Foundation
import Model
import Numerics
import Operators

/// `coto-eval search`: a merge method's weights (and density, where it has one) searched by CMA-ES on dev data,
/// optionally per group of G consecutive layers (mergekit-evolve's genome). Genes map to weights |x| and to
/// densities clamped to [0, 1] (as mergekit-evolve does); the objective is the mean over tasks of each task's dev
/// score with its own adapter's head (accuracy; on perplexity data the negative NLL per token), maximized. The
/// state is written after every generation: a killed search resumes from its last finished generation.
public enum MergeSearch {
    public struct Settings: Codable, Sendable, Equatable {
        public var method: String
        /// Candidate evaluations in all (whole generations: rounded up).
        public var budget: Int
        /// Layers per group (nil: one group for the whole adapter).
        public var groups: Int?
        public var seed: UInt64
        /// CMA-ES's initial step size in gene units.
        public var sigma: Double
        public init(method: String, budget: Int, groups: Int? = nil, seed: UInt64 = 0, sigma: Double = 0.3) {
            (self.method, self.budget, self.groups, self.seed, self.sigma) = (method, budget, groups, seed, sigma)
        }
    }

    /// Where each gene goes: per group, one weight per adapter, then its density for methods that have one.
    public struct Layout: Sendable, Equatable {
        public var adapters: Int
        /// The layer indices of each group (modules without a layer index go with group 0).
        public var groups: [[Int]]
        public var density: Bool
        var stride: Int { adapters + (density ? 1 : 0) }
        public var dimension: Int { groups.count * stride }

        public init(adapters: Int, groups: [[Int]], density: Bool) { (self.adapters, self.groups, self.density) = (adapters, groups, density) }

        /// The layers of `inputs` in groups of `size` consecutive indices (one group without `size`).
        public static func of(_ inputs: [Adapter], groupSize size: Int?, density: Bool) -> Layout {
            let layers = Set(inputs.flatMap { $0.modules.compactMap { LoraModule.layerIndex(of: $0.name) } }).sorted()
            guard let size, size >= 1, !layers.isEmpty else { return Layout(adapters: inputs.count, groups: [layers], density: density) }
            var groups: [[Int]] = []
            for l in layers {
                if let last = groups.last?.first, l / size == last / size { groups[groups.count - 1].append(l) } else { groups.append([l]) }
            }
            return Layout(adapters: inputs.count, groups: groups, density: density)
        }

        public func weights(_ x: [Double], group g: Int) -> [Double] { (0..<adapters).map { abs(x[g * stride + $0]) } }
        public func density(_ x: [Double], group g: Int) -> Double? { density ? min(1, max(0, x[g * stride + adapters])) : nil }
        /// The start: the method's default weights and density 0.5 in every group.
        public func start(_ method: MergeMethod) -> [Double] {
            let w = method.defaultWeights(count: adapters)
            return groups.indices.flatMap { _ in w + (density ? [0.5] : []) }
        }
        func group(of module: String) -> Int {
            guard let l = LoraModule.layerIndex(of: module) else { return 0 }
            return groups.firstIndex { $0.contains(l) } ?? 0
        }
    }

    /// One finished generation: every candidate's objective, and the best so far.
    public struct Generation: Codable, Sendable, Equatable {
        public var generation: Int
        public var scores: [Double]
        public var best: Double
    }

    /// What a search writes after every generation (`search-state.json`).
    public struct State: Codable, Sendable, Equatable {
        public var settings: Settings
        /// The configuration hash of the inputs and settings: a state of another search is never resumed.
        public var config: String
        public var es: CMAES
        public var log: [Generation] = []
        public var bestGenes: [Double]? = nil
        public var bestScore: Double? = nil
        /// The candidates of the next generation, asked by the leading shard (nil once the search is finished).
        public var pending: [[Double]]? = nil
    }

    /// The merged adapter of one candidate: per group, the method over the inputs' modules of that group with
    /// the group's weights (and density); heads dropped (each task is scored with its own).
    public static func merge(_ inputs: [Adapter], genes x: [Double], layout: Layout, method: MergeMethod, seed: UInt64) throws -> Adapter {
        var modules: [LoraModule] = []
        var first: Adapter?
        for g in layout.groups.indices {
            let part = inputs.map { a -> Adapter in
                var c = a
                c.modules = a.modules.filter { layout.groups.count == 1 || layout.group(of: $0.name) == g }
                return c
            }
            guard part.contains(where: { !$0.modules.isEmpty }) else { continue }
            var o = MergeOptions(weights: layout.weights(x, group: g))
            (o.density, o.seed, o.heads, o.allowNonFinite) = (layout.density(x, group: g), seed, .drop, true)
            let m = try method.merge(part, options: o, progress: nil)
            modules += m.modules
            if first == nil { first = m }
        }
        guard var out = first else { throw EvalError(nil, "the adapters have no modules to merge") }
        out.modules = modules
        out.config.fit(modules: modules.map { ($0.name, $0.rank, $0.alpha) })
        return out
    }

    /// The objective of a merged adapter: per task its dev score with that task's adapter's head (accuracy, or
    /// −NLL per token on perplexity data), and their mean.
    public static func score(_ ev: SweepEvaluator, merged: Adapter, heads: [Adapter], data: [PreparedData]) throws -> (mean: Double, tasks: [Double]) {
        var values: [Double] = []
        for (t, d) in data.enumerated() {
            try ev.load(merged, head: heads[t])
            let s = try ev.score(d, labels: SweepEvaluator.labels(for: [heads[t]], data: d))
            values.append(d.task == .perplexity ? -s.loss : s.accuracy)
        }
        return (values.reduce(0, +) / Double(max(1, values.count)), values)
    }

    /// Runs (or resumes) a search, or this shard's part of it: `objective` scores a genome (higher is better).
    /// The state goes to `statePath` after every generation (by the leading shard); `SearchShards` says how the
    /// candidates are spread. `progress`: (generation, of generations, best so far).
    public static func run(
        settings: Settings, start: [Double], config: String, statePath: String, overwrite: Bool, shards: SearchShards = .init(),
        progress: ((Int, Int, Double) -> Void)? = nil, objective: ([Double]) throws -> Double
    ) throws -> State {
        let dir = SearchShards.directory(statePath)
        if shards.shard.count > 1 {
            guard !overwrite else {
                throw EvalError(
                    statePath, "--overwrite restarts a search in one process: give it without shards or --jobs, or remove the state and generations/")
            }
            shards.clearFailure(dir)
        } else if overwrite {
            FileSystem.removeTree(dir)
        }
        try FileSystem.makeDirectory(dir)
        do {
            return shards.shard.index == 1
                ? try lead(
                    settings: settings, start: start, config: config, statePath: statePath, overwrite: overwrite, shards: shards, progress: progress,
                    objective: objective)
                : try follow(settings: settings, config: config, statePath: statePath, shards: shards, progress: progress, objective: objective)
        } catch {
            if shards.shard.count > 1 { shards.markFailed(dir, error) }
            throw error
        }
    }

    static func generations(_ settings: Settings, _ es: CMAES) -> Int { max(1, (settings.budget + es.lambda - 1) / es.lambda) }

    static func readState(_ statePath: String) throws -> State? {
        guard FileSystem.exists(statePath) else { return nil }
        guard let old = try? SearchShards.decoder.decode(State.self, from: Data(FileSystem.readFile(statePath))) else {
            throw EvalError(statePath, "is there but is not a search state; give --overwrite to start again")
        }
        return old
    }

    static func ask(_ state: State, _ statePath: String) throws -> [[Double]] {
        do { return try state.es.ask() } catch {
            throw EvalError(statePath, "search: CMA-ES could not sample generation \(state.es.generation + 1): \(error)")
        }
    }

    /// The leading shard (or the only process): asks, evaluates its part, gathers the rest, tells, writes the state.
    static func lead(
        settings: Settings, start: [Double], config: String, statePath: String, overwrite: Bool, shards: SearchShards,
        progress: ((Int, Int, Double) -> Void)?, objective: ([Double]) throws -> Double
    ) throws -> State {
        let dir = SearchShards.directory(statePath)
        let stale = shards.markers(dir)
        var state: State
        if !overwrite, let old = try readState(statePath) {
            guard old.config == config, old.settings == settings else {
                throw EvalError(statePath, "holds another search (other inputs or settings); give --overwrite to start again")
            }
            state = old
        } else {
            let es: CMAES
            do { es = try CMAES(mean: start, sigma: settings.sigma, seed: settings.seed) } catch { throw EvalError(nil, "search: \(error)") }
            state = State(settings: settings, config: config, es: es)
        }
        let total = generations(settings, state.es)
        if state.es.generation < total, state.pending == nil {
            state.pending = try ask(state, statePath)
            try SearchShards.write(state, to: statePath)
        }
        while state.es.generation < total, let xs = state.pending {
            let g = state.es.generation + 1
            let own = try shards.evaluate(dir, generation: g, candidates: xs, config: config, overwrite: overwrite, objective: objective)
            let scores = try shards.gather(dir, generation: g, candidates: xs, config: config, own: own, stale: stale)
            for (x, s) in zip(xs, scores) where s > (state.bestScore ?? -.infinity) { (state.bestScore, state.bestGenes) = (s, x) }
            do { try state.es.tell(xs, scores.map { -$0 }) } catch {
                throw EvalError(statePath, "search: generation \(g) cannot update CMA-ES: \(error)")
            }
            state.log.append(Generation(generation: state.es.generation, scores: scores, best: state.bestScore ?? .nan))
            state.pending = state.es.generation < total ? try ask(state, statePath) : nil
            try SearchShards.write(state, to: statePath)
            progress?(state.es.generation, total, state.bestScore ?? .nan)
        }
        return state
    }

    /// A following shard: waits for the leader's state, evaluates its part of the candidates there, and again,
    /// until the state says the search is finished.
    static func follow(
        settings: Settings, config: String, statePath: String, shards: SearchShards, progress: ((Int, Int, Double) -> Void)?,
        objective: ([Double]) throws -> Double
    ) throws -> State {
        let dir = SearchShards.directory(statePath)
        let stale = shards.markers(dir)
        var done = -1
        while true {
            // The leader's state past generation `done` (of this search: another search's state is the leader's to refuse).
            let state: State = try shards.wait(dir, stale: stale, what: "the leading shard's state after generation \(done + 1)") {
                guard let s = try? readState(statePath), s.config == config, s.settings == settings, s.es.generation > done else { return (nil, 0) }
                return (s.es.generation >= generations(settings, s.es) || s.pending != nil ? s : nil, 0)
            }
            let total = generations(settings, state.es)
            if done >= 0 { progress?(state.es.generation, total, state.bestScore ?? .nan) }
            guard state.es.generation < total, let xs = state.pending else { return state }
            _ = try shards.evaluate(dir, generation: state.es.generation + 1, candidates: xs, config: config, overwrite: false, objective: objective)
            done = state.es.generation
        }
    }

    /// The best score per generation.
    public static func plot(_ state: State, title: String) -> Figure {
        var fig = Figure(title: title, xLabel: "generation", yLabel: "best mean dev score")
        fig.series = [
            .init(name: "best so far", x: state.log.map { Double($0.generation) }, y: state.log.map(\.best)),
            .init(name: "generation's best", x: state.log.map { Double($0.generation) }, y: state.log.map { $0.scores.max() ?? .nan }),
        ]
        return fig
    }
}
