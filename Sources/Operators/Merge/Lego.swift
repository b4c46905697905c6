import Checkpoint
import Numerics

/// LoRA-LEGO (Zhao et al., "Merging LoRAs like Playing LEGO", ICLR 2025, arXiv 2409.16167), per module:
///
/// 1. Every rank-1 unit of every input is a minimal semantic unit (MSU): row j of A with column j of B,
///    each times √s_i (so the unit's b·aᵀ carries the input's scaling s_i), one vector [√s·a_j ; √s·b_j].
/// 2. The units of all inputs are clustered into k clusters by k-means (k-means++ seeding from `--seed`,
///    10 restarts, the lowest inertia kept; an input's weight is its units' sample weight).
/// 3. Parameter reweighting (norm decay: a mean of units pointing different ways is shorter than they are):
///    each centroid is scaled so its max-norm ‖c‖∞ equals the weighted mean of its members' max-norms.
/// 4. The centroids are the k units of the merged adapter (A = their a parts, B = their b parts, scaling 1).
/// 5. Output reweighting (variance expansion: k units add up more than the r of one input): B is multiplied
///    by √(r / k), r the inputs' rank (their weighted mean when ranks differ).
///
/// The paper's method section was not reachable from here; steps 3 and 5 follow two independent public
/// implementations that agree on both rules (Docs/methods.md names them). `--rank` sets k (default: the
/// largest rank among the inputs that have the module); a module with fewer units than k keeps them all.
public struct Lego: MergeMethod {
    public let name = "lego"
    public let needsPositiveWeights = true
    public init() {}

    /// k-means restarts and iteration cap (scikit-learn's defaults, which one of the references uses).
    static let restarts = 10
    static let maxIterations = 300

    public func merge(_ inputs: [Adapter], options o: MergeOptions, progress: ((OperatorProgress) -> Void)?) throws -> Adapter {
        if let bad = o.weights.first(where: { !($0 > 0) }) {
            throw MergeError(nil, "lego: an input's weight is its units' weight in the clustering and must be positive, got \(bad)")
        }
        var moduleIndex = 0
        return try MergeSupport.perModule(inputs, o, method: name, progress: progress) { name, mods in
            defer { moduleIndex += 1 }
            let (out, inF) = try MergeSupport.sameShape(mods, inputs)
            let units = mods.flatMap { i, m -> [(Int, Int)] in (0..<m.rank).map { (i, $0) } }
            // A module with fewer units than k keeps every unit (as task-arithmetic keeps its full rank).
            let k = min(o.rank ?? mods.map { $0.1.rank }.max() ?? 0, units.count)
            let modOf = Dictionary(uniqueKeysWithValues: mods.map { ($0.0, $0.1) })
            let D = inF + out
            var x = [Float](repeating: 0, count: units.count * D)
            var w = [Double](repeating: 0, count: units.count)
            for (u, (i, j)) in units.enumerated() {
                let m = modOf[i]!
                let rootB = Float(m.scaling.magnitude.squareRoot())
                let rootA = m.scaling < 0 ? -rootB : rootB
                let a = m.a.tensor
                let b = m.b.tensor
                for c in 0..<inF { x[u * D + c] = rootA * a[j, c] }
                for r in 0..<out { x[u * D + inF + r] = rootB * b[r, j] }
                w[u] = o.weights[i]
            }
            var rng = SeededRNG(seed: o.seed &+ 0x9E37_79B9_7F4A_7C15 &* UInt64(moduleIndex + 1))
            let fit = KMeans.fit(x, rows: units.count, dim: D, weights: w, k: k, restarts: Self.restarts, maxIterations: Self.maxIterations, rng: &rng)
            // Parameter reweighting: ‖c‖∞ ← weighted mean of the members' ‖u‖∞.
            func maxNorm(_ v: [Float], row: Int) -> Float { v[(row * D)..<((row + 1) * D)].reduce(0) { max($0, abs($1)) } }
            var num = [Double](repeating: 0, count: k)
            var den = [Double](repeating: 0, count: k)
            for u in 0..<units.count {
                num[fit.labels[u]] += w[u] * Double(maxNorm(x, row: u))
                den[fit.labels[u]] += w[u]
            }
            var centers = fit.centers
            for c in 0..<k {
                let cmax = maxNorm(centers, row: c)
                guard den[c] > 0, cmax > 0 else { continue }
                let f = Float(num[c] / den[c]) / cmax
                for d in 0..<D { centers[c * D + d] *= f }
            }
            // Output reweighting: √(r / k), r the inputs' (weighted mean) rank.
            let rRef = mods.reduce(0.0) { $0 + o.weights[$1.0] * Double($1.1.rank) } / mods.reduce(0.0) { $0 + o.weights[$1.0] }
            let factor = Float((rRef / Double(k)).squareRoot())
            var a = Tensor(zeros: [k, inF])
            var b = Tensor(zeros: [out, k])
            for c in 0..<k {
                for col in 0..<inF { a[c, col] = centers[c * D + col] }
                for r in 0..<out { b[r, c] = factor * centers[c * D + inF + r] }
            }
            return (b, a)
        }
    }
}

/// Weighted k-means (Lloyd) with k-means++ seeding and restarts; deterministic for a given RNG state.
/// Distances in Double. Clusters come out ordered by their lowest member index.
enum KMeans {
    struct Fit {
        var centers: [Float]
        var labels: [Int]
        var inertia: Double
    }

    static func fit(
        _ x: [Float], rows n: Int, dim D: Int, weights w: [Double], k: Int, restarts: Int, maxIterations: Int, rng: inout SeededRNG
    ) -> Fit {
        var best: Fit? = nil
        for _ in 0..<max(1, restarts) {
            let f = lloyd(x, rows: n, dim: D, weights: w, centers: seed(x, rows: n, dim: D, weights: w, k: k, rng: &rng), k: k, maxIterations: maxIterations)
            if best == nil || f.inertia < best!.inertia { best = f }
        }
        return ordered(best!, k: k, dim: D)
    }

    static func distance(_ x: [Float], _ i: Int, _ c: [Float], _ j: Int, dim D: Int) -> Double {
        var s = 0.0
        for d in 0..<D {
            let t = Double(x[i * D + d]) - Double(c[j * D + d])
            s += t * t
        }
        return s
    }

    /// k-means++: the first center drawn with probability ∝ w, each next one ∝ w·d² to the nearest chosen
    /// center (uniformly among the unchosen points when every d² is 0).
    static func seed(_ x: [Float], rows n: Int, dim D: Int, weights w: [Double], k: Int, rng: inout SeededRNG) -> [Float] {
        var centers = [Float](repeating: 0, count: k * D)
        var chosen = [Bool](repeating: false, count: n)
        var d2 = [Double](repeating: .infinity, count: n)
        func pick(_ p: [Double]) -> Int {
            let total = p.reduce(0, +)
            if total > 0 {
                var r = rng.uniformDouble() * total
                for i in 0..<n where p[i] > 0 {
                    r -= p[i]
                    if r < 0 { return i }
                }
                return p.lastIndex { $0 > 0 }!
            }
            let free = (0..<n).filter { !chosen[$0] }
            return free.isEmpty ? rng.int(below: n) : free[rng.int(below: free.count)]
        }
        for c in 0..<k {
            let i = c == 0 ? pick(w) : pick((0..<n).map { chosen[$0] ? 0 : w[$0] * d2[$0] })
            chosen[i] = true
            for d in 0..<D { centers[c * D + d] = x[i * D + d] }
            for p in 0..<n { d2[p] = min(d2[p], distance(x, p, centers, c, dim: D)) }
        }
        return centers
    }

    /// Lloyd iterations until the assignment stops changing (or the cap). A cluster left empty takes the
    /// point farthest from its center among clusters of two or more.
    static func lloyd(_ x: [Float], rows n: Int, dim D: Int, weights w: [Double], centers start: [Float], k: Int, maxIterations: Int) -> Fit {
        var centers = start
        var labels = [Int](repeating: -1, count: n)
        for _ in 0..<max(1, maxIterations) {
            var changed = false
            var dist = [Double](repeating: 0, count: n)
            for p in 0..<n {
                var bestC = 0
                var bestD = Double.infinity
                for c in 0..<k {
                    let d = distance(x, p, centers, c, dim: D)
                    if d < bestD { (bestC, bestD) = (c, d) }
                }
                if labels[p] != bestC { changed = true }
                labels[p] = bestC
                dist[p] = bestD
            }
            var counts = [Int](repeating: 0, count: k)
            for p in 0..<n { counts[labels[p]] += 1 }
            for c in 0..<k where counts[c] == 0 {
                let candidates = (0..<n).filter { counts[labels[$0]] > 1 }
                guard let far = candidates.max(by: { (dist[$0], -$0) < (dist[$1], -$1) }) else { break }
                counts[labels[far]] -= 1
                labels[far] = c
                counts[c] = 1
                dist[far] = 0
                changed = true
            }
            var sums = [Double](repeating: 0, count: k * D)
            var mass = [Double](repeating: 0, count: k)
            for p in 0..<n {
                let c = labels[p]
                mass[c] += w[p]
                for d in 0..<D { sums[c * D + d] += w[p] * Double(x[p * D + d]) }
            }
            for c in 0..<k where mass[c] > 0 { for d in 0..<D { centers[c * D + d] = Float(sums[c * D + d] / mass[c]) } }
            if !changed { break }
        }
        var inertia = 0.0
        for p in 0..<n { inertia += w[p] * distance(x, p, centers, labels[p], dim: D) }
        return Fit(centers: centers, labels: labels, inertia: inertia)
    }

    /// Renumbers clusters by their lowest member index (a stable unit order in the output).
    static func ordered(_ f: Fit, k: Int, dim D: Int) -> Fit {
        var firstMember = [Int](repeating: Int.max, count: k)
        for (p, c) in f.labels.enumerated() { firstMember[c] = min(firstMember[c], p) }
        let order = (0..<k).sorted { (firstMember[$0], $0) < (firstMember[$1], $1) }
        var newIndex = [Int](repeating: 0, count: k)
        for (i, c) in order.enumerated() { newIndex[c] = i }
        var centers = [Float](repeating: 0, count: k * D)
        for (i, c) in order.enumerated() { for d in 0..<D { centers[i * D + d] = f.centers[c * D + d] } }
        return Fit(centers: centers, labels: f.labels.map { newIndex[$0] }, inertia: f.inertia)
    }
}
