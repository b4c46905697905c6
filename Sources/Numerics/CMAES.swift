import Foundation

/// CMA-ES, the (μ/μ_w, λ) covariance matrix adaptation evolution strategy as Hansen's tutorial states it
/// ("The CMA Evolution Strategy: A Tutorial", 2016, its default parameters and update equations), minimizing.
/// Ask/tell: `ask()` gives the generation's λ candidates (drawn from a generator seeded by the run's seed and
/// the generation, so a search restored from its Codable state asks the same points), `tell` takes their
/// values. Box bounds, where given, are kept by projecting every candidate into the box before it is
/// evaluated; the update uses the projected points, so the mean never leaves the box either.
public struct CMAES: Codable, Sendable, Equatable {
    public let dimension: Int
    public let lambda: Int
    public let seed: UInt64
    public let lower: [Double]?
    public let upper: [Double]?
    public private(set) var generation = 0
    public private(set) var mean: [Double]
    public private(set) var sigma: Double
    /// Covariance, row-major n x n.
    public private(set) var covariance: [Double]
    var pathSigma: [Double]
    var pathC: [Double]
    /// The best point told so far and its value.
    public private(set) var bestPoint: [Double]?
    public private(set) var bestValue: Double = .greatestFiniteMagnitude  // finite: the state encodes as JSON
    public private(set) var evaluations = 0

    public enum Problem: Error, Equatable, CustomStringConvertible {
        case invalid(String)
        public var description: String { if case .invalid(let s) = self { return s } else { return "" } }
    }

    /// `mean`: the start; `sigma`: the initial step size; `lower`/`upper`: optional box (both or neither);
    /// `populationSize`: λ (default 4 + ⌊3 ln n⌋).
    public init(mean: [Double], sigma: Double, lower: [Double]? = nil, upper: [Double]? = nil, seed: UInt64, populationSize: Int? = nil) throws {
        let n = mean.count
        guard n >= 1 else { throw Problem.invalid("CMA-ES needs at least one dimension") }
        guard sigma > 0, sigma.isFinite, mean.allSatisfy(\.isFinite) else { throw Problem.invalid("CMA-ES needs a finite start and a positive step size") }
        guard (lower == nil) == (upper == nil) else { throw Problem.invalid("give both bounds or neither") }
        if let lo = lower, let hi = upper {
            guard lo.count == n, hi.count == n, zip(lo, hi).allSatisfy({ $0 < $1 }) else {
                throw Problem.invalid("bounds must have lower < upper in every dimension")
            }
        }
        let lam = populationSize ?? 4 + Int(3 * log(Double(n)))
        guard lam >= 2 else { throw Problem.invalid("the population needs at least 2 candidates") }
        (dimension, lambda, self.seed, self.lower, self.upper, self.sigma) = (n, lam, seed, lower, upper, sigma)
        self.mean = mean
        covariance = (0..<(n * n)).map { $0 / n == $0 % n ? 1 : 0 }
        pathSigma = [Double](repeating: 0, count: n)
        pathC = [Double](repeating: 0, count: n)
        self.mean = project(mean)
    }

    // MARK: the tutorial's default strategy parameters

    var mu: Int { lambda / 2 }
    var weights: [Double] {
        let raw = (1...mu).map { log(Double(lambda + 1) / 2) - log(Double($0)) }
        let s = raw.reduce(0, +)
        return raw.map { $0 / s }
    }
    var muEff: Double { 1 / weights.reduce(0) { $0 + $1 * $1 } }
    var cSigma: Double { (muEff + 2) / (Double(dimension) + muEff + 5) }
    var dSigma: Double { 1 + 2 * max(0, ((muEff - 1) / (Double(dimension) + 1)).squareRoot() - 1) + cSigma }
    var cC: Double {
        let n = Double(dimension)
        return (4 + muEff / n) / (n + 4 + 2 * muEff / n)
    }
    var c1: Double { 2 / (pow(Double(dimension) + 1.3, 2) + muEff) }
    var cMu: Double { min(1 - c1, 2 * (muEff - 2 + 1 / muEff) / (pow(Double(dimension) + 2, 2) + muEff)) }
    var chiN: Double {
        let n = Double(dimension)
        return n.squareRoot() * (1 - 1 / (4 * n) + 1 / (21 * n * n))
    }

    func project(_ x: [Double]) -> [Double] {
        guard let lo = lower, let hi = upper else { return x }
        return x.indices.map { min(hi[$0], max(lo[$0], x[$0])) }
    }

    /// B and D of C = B D² Bᵀ (B's columns the eigenvectors, D the square roots of the eigenvalues).
    func eigen() throws -> (b: [Double], d: [Double]) {
        let (values, vectors) = try LAPACK.symmetricEigen(covariance, n: dimension)
        return (vectors, values.map { max($0, 1e-300).squareRoot() })
    }

    /// This generation's λ candidates, inside the bounds.
    public func ask() throws -> [[Double]] {
        let n = dimension
        let (b, d) = try eigen()
        var rng = SeededRNG(seed: seed &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(generation) &+ 1)
        return (0..<lambda).map { _ in
            let z = (0..<n).map { _ in rng.normal() }
            var x = mean
            for i in 0..<n {
                var y = 0.0
                for j in 0..<n { y += b[i * n + j] * d[j] * z[j] }
                x[i] += sigma * y
            }
            return project(x)
        }
    }

    /// Updates the distribution from the generation's candidates (as `ask` gave them) and their values.
    public mutating func tell(_ candidates: [[Double]], _ values: [Double]) throws {
        let n = dimension
        guard candidates.count == lambda, values.count == lambda, candidates.allSatisfy({ $0.count == n }) else {
            throw Problem.invalid("tell needs the generation's \(lambda) candidates of \(n) values and one value each")
        }
        guard values.allSatisfy({ !$0.isNaN }) else { throw Problem.invalid("a candidate's value is NaN") }
        let order = values.indices.sorted { (values[$0], $0) < (values[$1], $1) }
        if values[order[0]] < bestValue { (bestValue, bestPoint) = (values[order[0]], candidates[order[0]]) }
        evaluations += lambda
        let w = weights
        let old = mean
        let ys = order.prefix(mu).map { k in (0..<n).map { (candidates[k][$0] - old[$0]) / sigma } }
        var yw = [Double](repeating: 0, count: n)
        for (wi, y) in zip(w, ys) { for j in 0..<n { yw[j] += wi * y[j] } }
        mean = project((0..<n).map { old[$0] + sigma * yw[$0] })
        // C^{-1/2} y_w = B D⁻¹ Bᵀ y_w.
        let (b, d) = try eigen()
        var bty = [Double](repeating: 0, count: n)
        for j in 0..<n { for i in 0..<n { bty[j] += b[i * n + j] * yw[i] } }
        var cInvHalfY = [Double](repeating: 0, count: n)
        for i in 0..<n { for j in 0..<n { cInvHalfY[i] += b[i * n + j] * bty[j] / d[j] } }
        let cs = cSigma
        let normFactor = (cs * (2 - cs) * muEff).squareRoot()
        for i in 0..<n { pathSigma[i] = (1 - cs) * pathSigma[i] + normFactor * cInvHalfY[i] }
        let psNorm = pathSigma.reduce(0) { $0 + $1 * $1 }.squareRoot()
        let hSigma: Double =
            psNorm / (1 - pow(1 - cs, 2 * Double(generation + 1))).squareRoot() < (1.4 + 2 / (Double(n) + 1)) * chiN ? 1 : 0
        let cc = cC
        for i in 0..<n { pathC[i] = (1 - cc) * pathC[i] + hSigma * (cc * (2 - cc) * muEff).squareRoot() * yw[i] }
        let (a1, aMu) = (c1, cMu)
        let keep = 1 - a1 - aMu + (1 - hSigma) * a1 * cc * (2 - cc)
        for i in 0..<n {
            for j in 0..<n {
                var rankMu = 0.0
                for (wi, y) in zip(w, ys) { rankMu += wi * y[i] * y[j] }
                covariance[i * n + j] = keep * covariance[i * n + j] + a1 * pathC[i] * pathC[j] + aMu * rankMu
            }
        }
        sigma *= exp((cs / dSigma) * (psNorm / chiN - 1))
        generation += 1
    }
}
