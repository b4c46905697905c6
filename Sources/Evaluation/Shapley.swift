import Checkpoint
import Numerics

/// Shapley values through the multilinear extension (Owen 1972; the sampler of Okhrati & Lipani 2021,
/// as the CoTo paper uses it): φ_i = ∫₀¹ E_{S∼q}[v(S ∪ {i}) − v(S ∖ {i})] dq, where S contains each
/// player independently with probability q. The integral is a midpoint rule over `grid` values
/// q_j = (j + ½)/grid; each q_j gets `perQ` random subsets, and every subset is scored with each player
/// flipped, so one subset costs players + 1 evaluations, many of them shared (the plan lists each
/// distinct coalition once).
public struct ShapleyPlan: Sendable {
    public var players: Int
    public var grid: Int
    public var perQ: Int
    public var seed: UInt64
    /// subsets[j][m]: the m-th subset drawn at q_j.
    public var subsets: [[[Bool]]]

    public init(players: Int, samples: Int, grid: Int, seed: UInt64) {
        self.players = players
        let g = max(1, min(grid, samples))
        let m = max(1, (samples + g - 1) / g)
        self.grid = g
        perQ = m
        self.seed = seed
        var rng = SeededRNG(seed: seed)
        subsets = (0..<g).map { j in
            let q = (Double(j) + 0.5) / Double(g)
            return (0..<m).map { _ in (0..<players).map { _ in rng.uniformDouble() < q } }
        }
    }

    public var samples: Int { grid * perQ }

    /// Every coalition the estimate needs, each once, sorted so that neighbours share long prefixes
    /// (player 0 first: with players = layers bottom-up, a forward pass can resume from shared layers).
    public var coalitions: [[Bool]] {
        var set = Set<[Bool]>()
        for row in subsets {
            for s in row {
                for i in 0..<players {
                    var w = s
                    w[i] = true
                    set.insert(w)
                    w[i] = false
                    set.insert(w)
                }
            }
        }
        set.insert([Bool](repeating: false, count: players))
        set.insert([Bool](repeating: true, count: players))
        return set.sorted { a, b in
            for (x, y) in zip(a, b) where x != y { return !x }
            return false
        }
    }

    public static func key(_ s: [Bool]) -> String { String(s.map { $0 ? "1" : "0" }) }

    public struct Estimate: Sendable {
        public var values: [Double]
        public var standardErrors: [Double]
        public var full: Double
        public var empty: Double
        /// Σ φ_i, to compare with v(all) − v(none) (efficiency).
        public var sum: Double { values.reduce(0, +) }
    }

    /// The estimate from the coalitions' values; stratified standard errors (per-q variances) when each
    /// q has at least two subsets, else the pooled sample variance.
    public func estimate(_ value: ([Bool]) throws -> Double) rethrows -> Estimate {
        var phi = [Double](repeating: 0, count: players)
        var se2 = phi
        var pooled = [[Double]](repeating: [], count: players)
        for row in subsets {
            var marg = [[Double]](repeating: [], count: players)
            for s in row {
                for i in 0..<players {
                    var w = s
                    w[i] = true
                    let with = try value(w)
                    w[i] = false
                    marg[i].append(with - (try value(w)))
                }
            }
            for i in 0..<players {
                let m = marg[i].reduce(0, +) / Double(marg[i].count)
                phi[i] += m / Double(grid)
                if marg[i].count > 1 {
                    let v = marg[i].reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(marg[i].count - 1)
                    se2[i] += v / Double(marg[i].count) / Double(grid * grid)
                }
                pooled[i] += marg[i]
            }
        }
        if perQ < 2 {
            for i in 0..<players {
                let n = Double(pooled[i].count)
                let m = pooled[i].reduce(0, +) / n
                se2[i] = n > 1 ? pooled[i].reduce(0) { $0 + ($1 - m) * ($1 - m) } / (n - 1) / n : 0
            }
        }
        return Estimate(
            values: phi, standardErrors: se2.map { $0.squareRoot() },
            full: try value([Bool](repeating: true, count: players)), empty: try value([Bool](repeating: false, count: players)))
    }

    public var settings: ShapleyPlanSettings {
        ShapleyPlanSettings(players: players, samples: samples, grid: grid, perQ: perQ, seed: seed)
    }

    /// The plan a Shapley results object was run with (its `settings.plan`), for `players` players.
    public init?(settings s: ShapleyPlanSettings?, players: Int) {
        guard let s else { return nil }
        self.init(players: players, samples: s.samples, grid: s.grid, seed: s.seed)
    }

    /// The estimate from scored coalitions (`values` of a results object: bit string → metrics); the
    /// game's value is the accuracy, NaN for a coalition not scored.
    /// The estimate from scored coalitions, v(S) = `value` of S's point (default: accuracy).
    public func estimate(scored: [String: SweepPoint], value: (SweepPoint) -> Double? = { $0.accuracy }) -> Estimate {
        let table = scored.mapValues { value($0) ?? .nan }
        return estimate { table[ShapleyPlan.key($0)] ?? .nan }
    }
}
