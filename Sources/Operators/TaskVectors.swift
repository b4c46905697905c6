import Numerics

/// PEFT 0.21's merge functions on flat Float32 tensors: pruning, majority sign, disjoint merge (their
/// math: Docs/methods.md, "Merging").
public enum TaskVectors {
    public enum MajoritySign: String, Sendable, CaseIterable { case total, frequency }

    /// Σ w_i t_i (accumulated in Double).
    public static func weightedSum(_ ts: [[Float]], _ w: [Double]) -> [Float] {
        guard let n = ts.first?.count else { return [] }
        var acc = [Double](repeating: 0, count: n)
        for (t, wi) in zip(ts, w) { for j in 0..<n { acc[j] += wi * Double(t[j]) } }
        return acc.map { Float($0) }
    }

    /// MagPrune's keep probabilities (mergekit `della_magprune`): per row of `cols` entries, rank r = 1…cols
    /// by |x| (equal magnitudes by position), p = (density − ε) + 2ε·(r − 1)/(cols − 1).
    static func dellaProbabilities(_ t: [Float], cols: Int, density: Double, epsilon: Double) -> [Double] {
        var p = [Double](repeating: 0, count: t.count)
        for start in stride(from: 0, to: t.count, by: cols) {
            let idx = (start..<min(t.count, start + cols)).sorted { (abs(t[$0]), $0) < (abs(t[$1]), $1) }
            let n = idx.count
            for (r, i) in idx.enumerated() { p[i] = (density - epsilon) + (n > 1 ? Double(r) / Double(n - 1) : 0) * 2 * epsilon }
        }
        return p
    }

    /// DELLA as mergekit composes it: per task the MagPrune mask (`draw` turns probabilities into a 0/1 mask),
    /// the masked task vector rescaled to the original L1 norm (unless either norm is below 1e-7), then
    /// weighted; `linear`: their sum; else mergekit's sign consensus (sign of the weighted sum, ties to +)
    /// and a division by the agreeing weights (normalize on, zero divisors taken as 1).
    static func della(
        _ ts: [[Float]], weights: [Double], cols: Int, density: Double, epsilon: Double, linear: Bool,
        draw: ([Double]) -> [Float]
    ) -> [Float] {
        let n = ts[0].count
        var wt: [[Float]] = []
        for (t, w) in zip(ts, weights) {
            var masked = t  // density >= 1: mergekit leaves the task vector as it is
            if density < 1 {
                let mask = draw(dellaProbabilities(t, cols: cols, density: density, epsilon: epsilon))
                masked = zip(t, mask).map { $0 * $1 }
                let before = t.reduce(Float(0)) { $0 + abs($1) }
                let after = masked.reduce(Float(0)) { $0 + abs($1) }
                if before >= 1e-7 && after >= 1e-7 {
                    let f = before / after
                    masked = masked.map { $0 * f }
                }
            }
            wt.append(masked.map { Float(Double($0) * w) })
        }
        return linear ? (0..<n).map { j in wt.reduce(Float(0)) { $0 + $1[j] } } : signConsensus(wt, normalizeBy: weights)
    }

    /// mergekit's consensus "sum" over weighted task vectors: per entry, the values whose sign is that of
    /// their sum (ties to +; zeros never agree) are added; with `normalizeBy`, divided by the sum of those
    /// tasks' weights (a zero divisor taken as 1), as its `normalize` does.
    static func signConsensus(_ wt: [[Float]], normalizeBy weights: [Double]?) -> [Float] {
        var out = [Float](repeating: 0, count: wt[0].count)
        for j in out.indices {
            let sum = wt.reduce(Float(0)) { $0 + $1[j] }
            let sign: Float = sum >= 0 ? 1 : -1
            var acc: Float = 0
            var div: Float = 0
            for (i, t) in wt.enumerated() where (t[j] > 0 ? 1 : t[j] < 0 ? -1 : 0) == sign {
                acc += t[j]
                div += Float(weights?[i] ?? 0)
            }
            out[j] = weights == nil ? acc : acc / (div == 0 ? 1 : div)
        }
        return out
    }

    /// mergekit's `magnitude_outliers`: with n entries, keep k = ⌊density·n⌋ of them, after dropping the
    /// max(0, n − k − ⌊γ·n⌋) smallest by |x| (so about γ·n of the largest go too); density ≥ 1 keeps all.
    /// Equal magnitudes are ordered by position (torch.sort leaves their order unspecified).
    public static func magnitudeOutliers(_ t: [Float], density: Double, gamma: Double) -> [Float] {
        guard density < 1 else { return t }
        let n = t.count
        let k = Int(density * Double(n))
        let top = Int(gamma * Double(n))
        let bottom = max(0, n - k - top)
        let order = t.indices.sorted { (abs(t[$0]), $0) < (abs(t[$1]), $1) }
        var out = [Float](repeating: 0, count: n)
        for i in order[bottom..<min(n, bottom + k)] { out[i] = t[i] }
        return out
    }

    /// Keeps the k = int(density · n) largest magnitudes (density >= 1: unchanged), as `magnitude_based_pruning`.
    /// Equal magnitudes keep the lower index first.
    public static func magnitudePrune(_ t: [Float], density: Double) -> [Float] {
        if density >= 1 { return t }
        let k = Int(density * Double(t.count))
        if k <= 0 { return [Float](repeating: 0, count: t.count) }
        // The k-th largest magnitude by selection (O(n)), then everything above it and, among equal
        // magnitudes, the lowest indices until k are kept.
        let threshold = kthLargest(t.map { abs($0) }, k)
        var out = [Float](repeating: 0, count: t.count)
        var above = 0
        for v in t where abs(v) > threshold { above += 1 }
        var tiesLeft = k - above
        for i in t.indices {
            let m = abs(t[i])
            if m > threshold {
                out[i] = t[i]
            } else if m == threshold && tiesLeft > 0 {
                out[i] = t[i]
                tiesLeft -= 1
            }
        }
        return out
    }

    /// The k-th largest value (1-based) by iterative quickselect with a median-of-three pivot.
    static func kthLargest(_ values: [Float], _ k: Int) -> Float {
        var a = values
        var lo = 0
        var hi = a.count - 1
        let target = k - 1  // index in descending order
        while lo < hi {
            let mid = lo + (hi - lo) / 2
            let pivot = max(min(a[lo], a[hi]), min(max(a[lo], a[hi]), a[mid]))
            var i = lo
            var j = hi
            while i <= j {
                while a[i] > pivot { i += 1 }
                while a[j] < pivot { j -= 1 }
                if i <= j {
                    a.swapAt(i, j)
                    i += 1
                    j -= 1
                }
            }
            if target <= j { hi = j } else if target >= i { lo = i } else { return a[target] }
        }
        return a[target]
    }

    /// Bernoulli keep with probability `density`, optionally rescaled by 1/density (density >= 1: unchanged,
    /// no random numbers drawn), as `random_pruning`. One uniform per element, in order.
    public static func randomPrune(_ t: [Float], density: Double, rescale: Bool, rng: inout SeededRNG) -> [Float] {
        if density >= 1 { return t }
        var out = [Float](repeating: 0, count: t.count)
        for i in t.indices where rng.uniformDouble() < density {
            out[i] = rescale ? Float(Double(t[i]) / density) : t[i]
        }
        return out
    }

    /// `calculate_majority_sign_mask`: per element, sign(t_i) == majority sign, where the majority is the sign
    /// of Σ t_i (total) or of Σ sign(t_i) (frequency), ties to +. Zeros never agree.
    public static func majorityMask(_ ts: [[Float]], method: MajoritySign) -> [[Bool]] {
        guard let n = ts.first?.count else { return [] }
        var majority = [Float](repeating: 0, count: n)
        for j in 0..<n {
            var m: Float = 0
            for t in ts { m += method == .total ? t[j] : sign(t[j]) }
            majority[j] = m >= 0 ? 1 : -1
        }
        return ts.map { t in (0..<n).map { sign(t[$0]) == majority[$0] } }
    }

    @inline(__always) static func sign(_ x: Float) -> Float { x > 0 ? 1 : (x < 0 ? -1 : 0) }

    /// `disjoint_merge`: Σ over agreeing entries / max(count of agreeing entries, 1).
    public static func disjointMerge(_ weighted: [[Float]], mask: [[Bool]]) -> [Float] {
        guard let n = weighted.first?.count else { return [] }
        var out = [Float](repeating: 0, count: n)
        for j in 0..<n {
            var s: Float = 0
            var c: Float = 0
            for (t, m) in zip(weighted, mask) where m[j] {
                s += t[j]
                c += 1
            }
            out[j] = s / max(c, 1)
        }
        return out
    }

    /// Majority sign + weighted disjoint merge in one pass per entry (same result as
    /// `disjointMerge(weighted, mask: majorityMask(pruned))`, without the intermediate tensors).
    static func tiesMerge(_ ts: [[Float]], weights: [Double], majority: MajoritySign) -> [Float] {
        guard let n = ts.first?.count else { return [] }
        let w = weights.map { Float($0) }
        var out = [Float](repeating: 0, count: n)
        out.withUnsafeMutableBufferPointer { o in
            for j in 0..<n {
                var m: Float = 0
                for t in ts { m += majority == .total ? t[j] : sign(t[j]) }
                let maj: Float = m >= 0 ? 1 : -1
                var s: Float = 0
                var c: Float = 0
                for (t, wi) in zip(ts, w) where sign(t[j]) == maj {
                    s += t[j] * wi
                    c += 1
                }
                o[j] = s / max(c, 1)
            }
        }
        return out
    }

    /// TIES as the KnOTS and Core Space references compute it (their `topk_values_mask`, `resolve_sign`,
    /// masked mean): per task, with d entries, keep |x| ≥ the (d − ⌊d·density⌋)-th smallest |x| (density ≥ 1
    /// keeps all; equal magnitudes at the threshold all stay); the elected sign of an entry is that of the
    /// sum of the kept values, an exact zero taking the majority sign (the sign of the sum of all elected
    /// signs); the values with the elected sign, weighted, are averaged over those that are nonzero. The
    /// references weight every task by one coefficient; here task i has its own w_i.
    static func svdSpaceTies(_ ts: [[Float]], density: Double, weights: [Double]) -> [Float] {
        guard let n = ts.first?.count, n > 0 else { return [] }
        let pruned: [[Float]] = ts.map { t in
            guard density < 1 else { return t }
            let keepAbove = n - Int(Double(n) * density)  // 1-based rank of the threshold, ascending
            let threshold = kthLargest(t.map { abs($0) }, n - keepAbove + 1)
            return t.map { abs($0) >= threshold ? $0 : 0 }
        }
        var elected = [Float](repeating: 0, count: n)
        for j in 0..<n {
            var sum: Double = 0
            for t in pruned { sum += Double(t[j]) }
            elected[j] = sum > 0 ? 1 : (sum < 0 ? -1 : 0)
        }
        let total = elected.reduce(0) { $0 + Int($1) }
        let majority: Float = total > 0 ? 1 : (total < 0 ? -1 : 0)
        for j in 0..<n where elected[j] == 0 { elected[j] = majority }
        var out = [Float](repeating: 0, count: n)
        for j in 0..<n {
            var sum: Double = 0
            var count = 0
            for (t, w) in zip(pruned, weights) where elected[j] > 0 ? t[j] > 0 : t[j] < 0 {
                let v = Float(w) * t[j]
                if v != 0 {
                    sum += Double(v)
                    count += 1
                }
            }
            out[j] = Float(sum / Double(max(count, 1)))
        }
        return out
    }

    /// The combination functions of merge_utils: task_arithmetic, ties, dare_linear, dare_ties, magnitude_prune.
    public enum Combine: String, Sendable, CaseIterable {
        case taskArithmetic = "task_arithmetic", ties, dareLinear = "dare_linear", dareTies = "dare_ties", magnitudePrune = "magnitude_prune"
        /// mergekit's Model Breadcrumbs (arXiv 2312.06795): each task vector loses its γ largest and its
        /// smallest entries by magnitude (keeping ⌊density·n⌋), then Σ w_i·t_i; `_ties` adds mergekit's sign
        /// consensus (the sign of Σ w_i·t_i, ties to +) over the weighted vectors, without normalizing.
        case breadcrumbs, breadcrumbsTies = "breadcrumbs_ties"
        /// mergekit's DELLA (arXiv 2406.11617): MagPrune keeps each entry with a probability that rises with
        /// its magnitude rank within its row, from density − ε to density + ε, then rescales the tensor to its
        /// L1 norm; `della` adds the sign consensus and divides by the agreeing weights, `della_linear` sums.
        case della, dellaLinear = "della_linear"

        public var needsDensity: Bool { self != .taskArithmetic }
        /// Sign election: TIES, DARE-TIES, breadcrumbs_ties and DELLA's consensus.
        public var electsSigns: Bool { [.ties, .dareTies, .breadcrumbsTies, .della].contains(self) }
    }

    public static func combine(
        _ ts: [[Float]], weights: [Double], how: Combine, density: Double?, majority: MajoritySign,
        gamma: Double = 0.01, epsilon: Double = 0.15, cols: Int = 0, rng: inout SeededRNG
    ) -> [Float] {
        let d = density ?? 1
        switch how {
        case .della, .dellaLinear:
            return della(ts, weights: weights, cols: cols > 0 ? cols : ts[0].count, density: d, epsilon: epsilon, linear: how == .dellaLinear) { probs in
                probs.map { rng.uniformFloat() < Float($0) ? 1 : 0 }
            }
        case .breadcrumbs:
            return weightedSum(ts.map { magnitudeOutliers($0, density: d, gamma: gamma) }, weights)
        case .breadcrumbsTies:
            // mergekit: sparsify, weight, then its sign consensus ("sum"), without normalizing.
            let wt = zip(ts, weights).map { t, w in magnitudeOutliers(t, density: d, gamma: gamma).map { Float(Double($0) * w) } }
            return signConsensus(wt, normalizeBy: nil)
        case .taskArithmetic:
            return weightedSum(ts, weights)
        case .magnitudePrune:
            return weightedSum(ts.map { magnitudePrune($0, density: d) }, weights)
        case .dareLinear:
            return weightedSum(ts.map { randomPrune($0, density: d, rescale: true, rng: &rng) }, weights)
        case .ties, .dareTies:
            let pruned =
                how == .ties
                ? ts.map { magnitudePrune($0, density: d) }
                : ts.map { randomPrune($0, density: d, rescale: true, rng: &rng) }
            return tiesMerge(pruned, weights: weights, majority: majority)
        }
    }
}
