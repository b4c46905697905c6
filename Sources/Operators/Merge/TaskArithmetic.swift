import Checkpoint
import Numerics

/// The exact delta sum Σ w_i s_i B_i A_i per module, as a concatenation (rank Σ r_i: A = [w_i s_i A_i],
/// B = [B_i]) or, with `--rank K`, its best rank-K factorization (low-rank SVD, never out x in).
/// Mixed ranks, rank patterns, rsLoRA and modules only some inputs have (a missing module is a zero
/// delta) all work.
public struct TaskArithmetic: MergeMethod {
    public let name = "task-arithmetic"
    public init() {}

    public func merge(_ inputs: [Adapter], options o: MergeOptions, progress: ((OperatorProgress) -> Void)?) throws -> Adapter {
        try MergeSupport.perModule(inputs, o, method: name, progress: progress) { _, mods in
            var (b, a) = try Concat.factors(mods, weights: o.weights, source: inputs)
            if let k = o.rank, k < a.rows {
                let t = try LowRank.truncate(b: b, a: a, k: k)
                (b, a) = (t.b, t.a)
            }
            return (b, a)
        }
    }
}

/// Concatenated factors of Σ w_i s_i B_i A_i (shared by task-arithmetic, cat and the svd path).
enum Concat {
    static func factors(_ mods: [(Int, LoraModule)], weights: [Double], source: [Adapter]) throws -> (b: Tensor, a: Tensor) {
        _ = try MergeSupport.sameShape(mods, source)
        return LowRank.stack(mods.map { i, m in (m.b.tensor, Float(weights[i] * m.scaling) * m.a.tensor) })
    }
}
