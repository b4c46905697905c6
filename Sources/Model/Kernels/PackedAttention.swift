import Numerics
#if canImport(Glibc)
import Glibc
#endif

extension Kernels {
    /// Sequences of different lengths stored back to back without padding: sequence b is rows
    /// starts[b]..<starts[b] + lengths[b] of every [rows, width] activation. Row-wise work (linears, norms,
    /// activations) runs over all rows at once, attention over each sequence on its own, so no padding
    /// position is ever computed; a padded batch with its key mask gives the same values at the real tokens.
    public struct Packing: Sendable {
        public let lengths: [Int]
        public let starts: [Int]
        public let rows: Int
        public init(lengths: [Int]) {
            self.lengths = lengths
            var s: [Int] = []
            var r = 0
            for n in lengths {
                s.append(r)
                r += n
            }
            starts = s
            rows = r
        }
        public var count: Int { lengths.count }
        /// Where each sequence's [heads, T, T] attention probabilities start in one buffer, and its size.
        public func probabilityStarts(heads: Int) -> (starts: [Int], count: Int) {
            var s: [Int] = []
            var r = 0
            for n in lengths {
                s.append(r)
                r += heads * n * n
            }
            return (s, r)
        }
    }

    /// Self-attention over packed sequences (each sequence attends to itself only, causally when asked):
    /// `attentionForward` on every sequence, with `probs` and `dropout` laid out by `probabilityStarts`.
    public static func attentionForward(
        packed p: Packing, q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>,
        heads: Int, kvHeads: Int, headDim: Int, causal: Bool, options: AttentionOptions = AttentionOptions(),
        probs: UnsafeMutablePointer<Float>? = nil, dropout: UnsafePointer<Float>? = nil
    ) {
        let ps = p.probabilityStarts(heads: heads).starts
        for b in 0..<p.count where p.lengths[b] > 0 {
            let n = p.lengths[b]
            let shape = AttentionShape(B: 1, T: n, S: n, heads: heads, kvHeads: kvHeads, headDim: headDim, causal: causal, options: options)
            let r = p.starts[b]
            attentionForward(
                q: q + r * heads * headDim, k: k + r * kvHeads * headDim, v: v + r * kvHeads * headDim, out: out + r * heads * headDim, shape,
                keyValid: [[Int](repeating: 1, count: n)], probs: probs.map { $0 + ps[b] }, dropout: dropout.map { $0 + ps[b] })
        }
    }

    /// The backward of `attentionForward(packed:)`: dq, dk, dv [rows, heads·d / kvHeads·d], new arrays.
    public static func attentionBackward(
        packed p: Packing, dctx: [Float], q: [Float], k: [Float], v: [Float], probs: [Float], dropout: [Float]?,
        heads: Int, kvHeads: Int, headDim: Int, options: AttentionOptions = AttentionOptions()
    ) -> (dq: [Float], dk: [Float], dv: [Float]) {
        var dq = [Float](repeating: 0, count: p.rows * heads * headDim)
        var dk = [Float](repeating: 0, count: p.rows * kvHeads * headDim)
        var dv = dk
        let ps = p.probabilityStarts(heads: heads).starts
        let drop = dropout ?? []
        dctx.withUnsafeBufferPointer { pdc in
            q.withUnsafeBufferPointer { pq in
                k.withUnsafeBufferPointer { pk in
                    v.withUnsafeBufferPointer { pv in
                        probs.withUnsafeBufferPointer { pp in
                            drop.withUnsafeBufferPointer { pd in
                                dq.withUnsafeMutableBufferPointer { pdq in
                                    dk.withUnsafeMutableBufferPointer { pdk in
                                        dv.withUnsafeMutableBufferPointer { pdv in
                                            for b in 0..<p.count where p.lengths[b] > 0 {
                                                let n = p.lengths[b]
                                                let (qo, ko) = (p.starts[b] * heads * headDim, p.starts[b] * kvHeads * headDim)
                                                attentionBackward(
                                                    dctx: pdc.baseAddress! + qo, q: pq.baseAddress! + qo, k: pk.baseAddress! + ko, v: pv.baseAddress! + ko,
                                                    probs: pp.baseAddress! + ps[b], dropout: dropout == nil ? nil : pd.baseAddress! + ps[b],
                                                    dq: pdq.baseAddress! + qo, dk: pdk.baseAddress! + ko, dv: pdv.baseAddress! + ko,
                                                    AttentionShape(
                                                        B: 1, T: n, S: n, heads: heads, kvHeads: kvHeads, headDim: headDim, causal: false,
                                                        options: options))
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return (dq, dk, dv)
    }
}
