import Numerics

/// The CoTo schedule (SPEC §4): for the optimizer step with 0-based index k of T,
/// p_k = min(initial_p + (final_p − initial_p)·k / end, final_p) with end = ceil(T·stage1_ratio).
/// Per optimizer step each group draws u ~ U[0,1) and is active iff u <= p_k; if none is active the
/// draw is repeated (p = 0: one group is activated uniformly at random). No 1/p rescaling.
public struct CoToScheduler: Sendable {
    public var initialP: Double = 0.1
    public var finalP: Double = 1.0
    public var stage1Ratio: Double = 0.75
    public var totalSteps: Int
    public var enabled = true

    public init(totalSteps: Int, initialP: Double = 0.1, finalP: Double = 1.0, stage1Ratio: Double = 0.75, enabled: Bool = true) {
        self.totalSteps = totalSteps
        self.initialP = initialP
        self.finalP = finalP
        self.stage1Ratio = stage1Ratio
        self.enabled = enabled
    }

    public var end: Int { Int((Double(totalSteps) * stage1Ratio).rounded(.up)) }

    public func p(step k: Int) -> Double {
        guard enabled else { return 1 }
        let e = end
        if e <= 0 { return finalP }
        return min(initialP + (finalP - initialP) * Double(k) / Double(e), finalP)
    }

    /// Active flags for `groups` groups at step k (all true without CoTo; no random numbers drawn then).
    public func draw(step k: Int, groups: Int, rng: inout SeededRNG) -> [Bool] {
        guard enabled, groups > 0 else { return [Bool](repeating: true, count: groups) }
        let p = self.p(step: k)
        if p <= 0 {
            var a = [Bool](repeating: false, count: groups)
            a[rng.int(below: groups)] = true
            return a
        }
        while true {
            let a = (0..<groups).map { _ in rng.uniformDouble() <= p }
            if a.contains(true) { return a }
        }
    }
}
