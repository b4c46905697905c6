import Foundation
import Testing
import TestSupport
@testable import Checkpoint
@testable import Numerics
@testable import Operators

/// RegMean's closed form on cases with a known answer: one input returns it, equal Grams give the mean, a 2x2
/// case by hand, the normal equations Σ (W* − W_i) G̃_i = 0, full weights and deltas merge alike, the rank-K
/// form is the activation-weighted optimum, a module one input lacks, and a singular sum is a clear error.
@Suite struct RegMeanTests {
    static func delta(_ m: LoraModule) -> [Double] {
        let (out, inF, r) = (m.b.tensor.rows, m.a.tensor.cols, m.rank)
        var d = [Double](repeating: 0, count: out * inF)
        for i in 0..<out {
            for j in 0..<inF { for k in 0..<r { d[i * inF + j] += m.scaling * Double(m.b.tensor[i, k]) * Double(m.a.tensor[k, j]) } }
        }
        return d
    }

    /// A random SPD Gram XᵀX/n of n random rows.
    static func gram(_ rng: inout SeededRNG, dim: Int, rows: Int = 40) -> InputGram {
        let x = (0..<(rows * dim)).map { _ in rng.normal() }
        var g = [Double](repeating: 0, count: dim * dim)
        for t in 0..<rows { for i in 0..<dim { for j in 0..<dim { g[i * dim + j] += x[t * dim + i] * x[t * dim + j] / Double(rows) } } }
        return InputGram(dim: dim, values: g, tokens: rows)
    }

    static func merge(_ ins: [Adapter], _ grams: [InputGram], alpha: Double = 1, rank: Int? = nil) throws -> Adapter {
        var o = MergeOptions(weights: [Double](repeating: 1, count: ins.count))
        o.grams = grams.map { ["l.q": $0] }
        o.regmeanAlpha = alpha
        o.rank = rank
        o.heads = .drop
        return try RegMean().merge(ins, options: o, progress: nil)
    }

    static func close(_ a: [Double], _ b: [Double], _ tol: Double) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy { abs($0 - $1) <= tol * max(1, abs($1)) }
    }

    @Test func oneInputIsReturnedAndEqualGramsGiveTheMean() throws {
        var rng = SeededRNG(seed: 1)
        let a = LegoTests.random(&rng, r: 2, inF: 6, out: 5, alpha: 4)
        let g = Self.gram(&rng, dim: 6)
        let one = try Self.merge([a], [g])
        #expect(Self.close(Self.delta(one.modules[0]), Self.delta(a.modules[0]), 1e-5))
        let b = LegoTests.random(&rng, r: 3, inF: 6, out: 5, alpha: 3)
        let c = LegoTests.random(&rng, r: 1, inF: 6, out: 5, alpha: 1)
        let mean = try Self.merge([a, b, c], [g, g, g])
        let expected = zip(zip(Self.delta(a.modules[0]), Self.delta(b.modules[0])), Self.delta(c.modules[0])).map { ($0.0 + $0.1 + $1) / 3 }
        #expect(Self.close(Self.delta(mean.modules[0]), expected, 1e-5))
        // Lossless: rank Σ r_i at scaling 1.
        #expect(mean.modules[0].rank == 6 && mean.modules[0].scaling == 1)
    }

    @Test func aTwoByTwoCaseByHand() throws {
        // ΔW_1 = [1, 0], ΔW_2 = [0, 1]; G_1 = [[2, 1], [1, 1]], G_2 = I: S = [[3, 1], [1, 2]], S⁻¹ = [[2, −1], [−1, 3]] / 5,
        // Σ ΔW_i G_i = [2, 1] + [0, 1] = [2, 2], ΔW* = [2, 2] S⁻¹ = [2/5, 4/5].
        let one = LegoTests.adapter(a: Tensor(shape: [1, 2], data: [1, 0]), b: Tensor(shape: [1, 1], data: [1]), alpha: 1)
        let two = LegoTests.adapter(a: Tensor(shape: [1, 2], data: [0, 1]), b: Tensor(shape: [1, 1], data: [1]), alpha: 1)
        let g1 = InputGram(dim: 2, values: [2, 1, 1, 1], tokens: 1)
        let g2 = InputGram(dim: 2, values: [1, 0, 0, 1], tokens: 1)
        #expect(Self.close(Self.delta(try Self.merge([one, two], [g1, g2]).modules[0]), [0.4, 0.8], 1e-6))
        // a = 0 keeps the diagonals only: S = diag(3, 2), Σ ΔW_i G̃_i = [2, 1]: ΔW* = [2/3, 1/2].
        #expect(Self.close(Self.delta(try Self.merge([one, two], [g1, g2], alpha: 0).modules[0]), [2.0 / 3, 0.5], 1e-6))
    }

    @Test func theNormalEquationsHoldAndFullWeightsMergeAsDeltas() throws {
        var rng = SeededRNG(seed: 7)
        let (inF, out) = (8, 6)
        let ins = (0..<3).map { i in LegoTests.random(&rng, r: 2 + i, inF: inF, out: out, alpha: 8) }
        let gs = (0..<3).map { _ in Self.gram(&rng, dim: inF) }
        let merged = Self.delta(try Self.merge(ins, gs).modules[0])
        // Σ_i (ΔW* − ΔW_i) G_i = 0.
        var residual = [Double](repeating: 0, count: out * inF)
        for (a, g) in zip(ins, gs) {
            let d = zip(merged, Self.delta(a.modules[0])).map { $0 - $1 }
            let p = BLAS.dgemm(d, g.values, m: out, n: inF, k: inF)
            for j in residual.indices { residual[j] += p[j] }
        }
        #expect(residual.allSatisfy { abs($0) < 1e-4 }, "\(residual.map { abs($0) }.max() ?? 0)")
        // Full weights W_i = W0 + ΔW_i in the dense closed form: W* = (Σ W_i G_i)(Σ G_i)⁻¹ = W0 + ΔW*.
        let w0 = (0..<(out * inF)).map { _ in rng.normal() }
        var num = [Double](repeating: 0, count: out * inF)
        var den = [Double](repeating: 0, count: inF * inF)
        for (a, g) in zip(ins, gs) {
            let w = zip(w0, Self.delta(a.modules[0])).map { $0 + $1 }
            let p = BLAS.dgemm(w, g.values, m: out, n: inF, k: inF)
            for j in num.indices { num[j] += p[j] }
            for j in den.indices { den[j] += g.values[j] }
        }
        let l = try LAPACK.cholesky(den, n: inF)
        // W* = num · S⁻¹: solve S W*ᵀ = numᵀ.
        var numT = [Double](repeating: 0, count: inF * out)
        for i in 0..<out { for j in 0..<inF { numT[j * out + i] = num[i * inF + j] } }
        let wt = try LAPACK.choleskySolve(l, n: inF, numT, nrhs: out)
        let full = (0..<(out * inF)).map { k in wt[(k % inF) * out + k / inF] }
        #expect(Self.close(full, zip(w0, merged).map { $0 + $1 }, 1e-5))
    }

    @Test func theRankKFormIsTheActivationWeightedOptimum() throws {
        var rng = SeededRNG(seed: 3)
        let (inF, out) = (7, 9)
        let ins = (0..<2).map { _ in LegoTests.random(&rng, r: 3, inF: inF, out: out, alpha: 6) }
        let gs = (0..<2).map { _ in Self.gram(&rng, dim: inF) }
        let full = Self.delta(try Self.merge(ins, gs).modules[0])
        let low = try Self.merge(ins, gs, rank: 2).modules[0]
        #expect(low.rank == 2)
        // ||(ΔW* − X) L||² equals the tail of ΔW* L's squared singular values (Eckart–Young in the weighted norm).
        let s = zip(gs[0].values, gs[1].values).map { $0 + $1 }
        let l = try LAPACK.cholesky(s, n: inF)
        let diff = zip(full, Self.delta(low)).map { $0 - $1 }
        let err = BLAS.dgemm(diff, l, m: out, n: inF, k: inF).reduce(0) { $0 + $1 * $1 }
        let sv = try LAPACK.svd(BLAS.dgemm(full, l, m: out, n: inF, k: inF), m: out, n: inF).s
        let tail = sv.dropFirst(2).reduce(0) { $0 + $1 * $1 }
        #expect(abs(err - tail) <= 1e-4 * max(1, tail), "\(err) vs \(tail)")
        // A rank at or above Σ r_i keeps the lossless form.
        #expect(try Self.merge(ins, gs, rank: 6).modules[0].rank == 6)
    }

    @Test func aModuleOneInputLacksIsAZeroDeltaWhoseGramCounts() throws {
        var rng = SeededRNG(seed: 5)
        let a = LegoTests.random(&rng, r: 2, inF: 4, out: 3, alpha: 2)
        var b = LegoTests.random(&rng, r: 2, inF: 4, out: 3, alpha: 2)
        b.modules[0].name = "l.k"
        let ga = Self.gram(&rng, dim: 4)
        let gb = Self.gram(&rng, dim: 4)
        var o = MergeOptions(weights: [1, 1])
        o.grams = [["l.q": ga, "l.k": ga], ["l.q": gb, "l.k": gb]]
        o.heads = .drop
        let m = try RegMean().merge([a, b], options: o, progress: nil)
        let q = try #require(m.modules.first { $0.name == "l.q" })
        // ΔW* = ΔW_a G_a (G_a + G_b)⁻¹: the normal equations with ΔW_b = 0.
        let d = Self.delta(q)
        let lhs = zip(BLAS.dgemm(d, ga.values, m: 3, n: 4, k: 4), BLAS.dgemm(d, gb.values, m: 3, n: 4, k: 4)).map { $0 + $1 }
        #expect(Self.close(lhs, BLAS.dgemm(Self.delta(a.modules[0]), ga.values, m: 3, n: 4, k: 4), 1e-5))
    }

    @Test func missingOrSingularStatisticsAreClearErrors() throws {
        var rng = SeededRNG(seed: 9)
        let a = LegoTests.random(&rng, r: 1, inF: 3, out: 2, alpha: 1)
        let b = LegoTests.random(&rng, r: 1, inF: 3, out: 2, alpha: 1)
        // Feature 2 never varies: Σ G is singular; a < 1 does not fix a zero diagonal, so still an error.
        let flat = InputGram(dim: 3, values: [1, 0.5, 0, 0.5, 1, 0, 0, 0, 0], tokens: 4)
        for alpha in [1.0, 0.5] {
            do {
                _ = try Self.merge([a, b], [flat, flat], alpha: alpha)
                Issue.record("a singular sum was accepted")
            } catch let e as MergeError { #expect(e.message.contains("singular") && e.message.contains("--regmean-alpha")) }
        }
        // Collinear features (off-diagonal 1): singular at a = 1, solvable at a = 0.9.
        let collinear = InputGram(dim: 3, values: [1, 1, 0, 1, 1, 0, 0, 0, 1], tokens: 4)
        #expect(throws: MergeError.self) { try Self.merge([a, b], [collinear, collinear]) }
        #expect(try Self.merge([a, b], [collinear, collinear], alpha: 0.9).modules.count == 1)
        var o = MergeOptions(weights: [1, 1])
        #expect(throws: MergeError.self) { try RegMean().merge([a, b], options: o, progress: nil) }
        o.grams = [["l.q": flat], [:]]
        #expect(throws: MergeError.self) { try RegMean().merge([a, b], options: o, progress: nil) }
        o.grams = [["l.q": InputGram(dim: 2, values: [1, 0, 0, 1], tokens: 1)], ["l.q": flat]]
        #expect(throws: MergeError.self) { try RegMean().merge([a, b], options: o, progress: nil) }
        o.weights = [1, 2]
        #expect(throws: MergeError.self) { try RegMean().merge([a, b], options: o, progress: nil) }
    }
}
