import Foundation
import Testing
@testable import Numerics

/// CMA-ES on functions with known minima (tolerances from the algorithm's linear convergence on these), the
/// box never left, the tutorial's default parameters, and a run restored from its state asking the same points.
@Suite struct CMAESTests {
    static func run(_ es: inout CMAES, generations: Int, _ f: ([Double]) -> Double, check: ([Double]) -> Void = { _ in }) throws {
        for _ in 0..<generations {
            let xs = try es.ask()
            xs.forEach(check)
            try es.tell(xs, xs.map(f))
        }
    }

    @Test func theDefaultParametersAreTheTutorials() throws {
        let es = try CMAES(mean: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0], sigma: 1, seed: 0)
        // n = 10: λ = 4 + ⌊3 ln 10⌋ = 10, μ = 5, μ_eff = 1/Σw² ≈ 3.17 (Hansen 2016, Table 1).
        #expect(es.lambda == 10 && es.mu == 5)
        #expect(abs(es.weights.reduce(0, +) - 1) < 1e-12 && es.weights == es.weights.sorted(by: >))
        #expect(abs(es.muEff - 3.1672) < 1e-3)
        #expect(abs(es.chiN - 3.0847) < 1e-3)
    }

    @Test func theSphereConvergesLinearly() throws {
        var es = try CMAES(mean: [3, -2, 1, 4, -1], sigma: 2, seed: 1)
        try Self.run(&es, generations: 250) { $0.reduce(0) { $0 + $1 * $1 } }
        #expect(es.bestValue < 1e-12, "\(es.bestValue)")
        #expect(es.mean.allSatisfy { abs($0) < 1e-5 })
    }

    @Test func rosenbrockReachesItsValley() throws {
        func rosen(_ x: [Double]) -> Double {
            var s = 0.0
            for i in 0..<(x.count - 1) {
                let a = x[i + 1] - x[i] * x[i]
                let b = 1 - x[i]
                s += 100 * a * a + b * b
            }
            return s
        }
        var es = try CMAES(mean: [0, 0, 0, 0], sigma: 0.5, seed: 2)
        try Self.run(&es, generations: 1200, rosen)
        #expect(es.bestValue < 1e-10, "\(es.bestValue)")
        #expect(es.bestPoint.map { $0.allSatisfy { abs($0 - 1) < 1e-4 } } == true)
    }

    @Test func aBoundedQuadraticEndsOnItsBoxAndNeverLeavesIt() throws {
        // Minimum of (x − c)² at c = (2, −3, 0.5) outside the box [0, 1]³ in two coordinates: the constrained
        // minimum is (1, 0, 0.5).
        let c = [2.0, -3, 0.5]
        let lo = [0.0, 0, 0]
        let hi = [1.0, 1, 1]
        var es = try CMAES(mean: [0.5, 0.5, 0.5], sigma: 0.3, lower: lo, upper: hi, seed: 3)
        var outside = 0
        try Self.run(&es, generations: 200, { x in zip(x, c).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) } }) { x in
            if zip(x, zip(lo, hi)).contains(where: { $0 < $1.0 || $0 > $1.1 }) { outside += 1 }
        }
        #expect(outside == 0)
        let best = try #require(es.bestPoint)
        #expect(abs(best[0] - 1) < 1e-6 && abs(best[1]) < 1e-6 && abs(best[2] - 0.5) < 1e-4, "\(best)")
    }

    @Test func aRestoredSearchAsksWhatTheUninterruptedOneAsks() throws {
        let f = { (x: [Double]) in x.enumerated().reduce(0.0) { $0 + Double($1.offset + 1) * $1.element * $1.element } }
        var straight = try CMAES(mean: [1, 1, 1], sigma: 0.5, seed: 9)
        try Self.run(&straight, generations: 7, f)
        var first = try CMAES(mean: [1, 1, 1], sigma: 0.5, seed: 9)
        try Self.run(&first, generations: 4, f)
        var resumed = try JSONDecoder().decode(CMAES.self, from: try JSONEncoder().encode(first))
        try Self.run(&resumed, generations: 3, f)
        #expect(resumed == straight)
        #expect(try resumed.ask() == straight.ask())
        // Another seed asks other points.
        #expect(try CMAES(mean: [1, 1, 1], sigma: 0.5, seed: 10).ask() != CMAES(mean: [1, 1, 1], sigma: 0.5, seed: 9).ask())
    }

    @Test func badSettingsAreRefused() {
        #expect(throws: CMAES.Problem.self) { try CMAES(mean: [], sigma: 1, seed: 0) }
        #expect(throws: CMAES.Problem.self) { try CMAES(mean: [0], sigma: 0, seed: 0) }
        #expect(throws: CMAES.Problem.self) { try CMAES(mean: [0, 0], sigma: 1, lower: [0, 1], upper: [1, 1], seed: 0) }
        #expect(throws: CMAES.Problem.self) { try CMAES(mean: [0, 0], sigma: 1, lower: [0, 0], seed: 0) }
    }
}
