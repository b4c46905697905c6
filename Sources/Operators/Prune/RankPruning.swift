import Checkpoint
import Numerics

/// Rank pruning to k = --rank, or round(--rank-fraction · r) (at least 1), per module:
/// `svd`: the best rank-k approximation of s·B·A (Eckart–Young) through the low-rank SVD (never out x in);
/// `norm`: keep the k components i with the largest ||b_i||·||a_i|| (columns of B, rows of A).
/// The module's scaling is unchanged (alpha is set to s·k, or s·√k with rsLoRA).
public enum RankPruning {
    static func target(_ r: Int, _ o: PruneOptions) throws -> Int {
        if let k = o.rank {
            guard k >= 1 else { throw MergeError(nil, "--rank must be at least 1") }
            return min(k, r)
        }
        guard let f = o.rankFraction, f > 0, f <= 1 else { throw MergeError(nil, "--rank-fraction must be in (0, 1]") }
        return max(1, min(r, Int((f * Double(r)).rounded())))
    }

    static func apply(_ m: LoraModule, options o: PruneOptions, rslora: Bool) throws -> LoraModule {
        let k = try target(m.rank, o)
        guard k < m.rank else { return m }
        var b: Tensor
        var a: Tensor
        switch o.rankMethod {
        case .svd:
            guard m.scaling != 0 else { return m }
            (b, a, _) = try LowRank.truncate(b: m.b.tensor, a: m.a.tensor, k: k)
            (b, a) = LowRank.pad(b: b, a: a, to: k)  // a delta of lower rank than k keeps zero components
        case .norm:
            let r = m.rank
            let score: [Double] = (0..<r).map { i in
                var nb = 0.0
                var na = 0.0
                for row in 0..<m.b.tensor.rows { nb += Double(m.b.tensor[row, i]) * Double(m.b.tensor[row, i]) }
                for col in 0..<m.a.tensor.cols { na += Double(m.a.tensor[i, col]) * Double(m.a.tensor[i, col]) }
                return (nb * na).squareRoot()
            }
            let keep = (0..<r).sorted { (score[$0], -$0) > (score[$1], -$1) }.prefix(k).sorted()
            b = Tensor(zeros: [m.b.tensor.rows, k])
            a = Tensor(zeros: [k, m.a.tensor.cols])
            for (j, i) in keep.enumerated() {
                for row in 0..<b.rows { b[row, j] = m.b.tensor[row, i] }
                for col in 0..<a.cols { a[j, col] = m.a.tensor[i, col] }
            }
        }
        var out = m
        out.a = AdapterTensor(dtype: m.a.dtype, tensor: a)
        out.b = AdapterTensor(dtype: m.b.dtype, tensor: b)
        out.alpha = rslora ? m.scaling * Double(k).squareRoot() : m.scaling * Double(k)
        return out
    }
}
