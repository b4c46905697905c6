import Foundation
import Testing
import TestSupport
@testable import Checkpoint
@testable import Numerics
@testable import Operators

/// LoRA-LEGO on cases with a known answer: identical inputs, units that each form their own cluster,
/// clusters whose centroid and both reweightings can be worked out by hand.
@Suite struct LegoTests {
    /// One adapter with one module "l.q" (A [r, in], B [out, r], alpha).
    static func adapter(a: Tensor, b: Tensor, alpha: Double, name: String = "in") -> Adapter {
        var c = LoraConfig()
        c.r = a.rows
        c.loraAlpha = alpha
        c.targetModules = .names(["q"])
        let m = LoraModule(
            name: "l.q", a: AdapterTensor(dtype: .f32, tensor: a), b: AdapterTensor(dtype: .f32, tensor: b), alpha: alpha,
            scaling: alpha / Double(a.rows))
        return Adapter(config: c, modules: [m], otherTensors: [], source: name, configOrigin: "test")
    }

    static func random(_ rng: inout SeededRNG, r: Int, inF: Int, out: Int, alpha: Double) -> Adapter {
        func t(_ rows: Int, _ cols: Int) -> Tensor { Tensor(shape: [rows, cols], data: (0..<(rows * cols)).map { _ in Float(rng.normal()) }) }
        return adapter(a: t(r, inF), b: t(out, r), alpha: alpha)
    }

    /// The rank-1 products s·b_j·a_jᵀ of a module, as flat matrices.
    static func units(_ m: LoraModule) -> [[Float]] {
        (0..<m.rank).map { j in
            let out = m.b.tensor.rows
            let inF = m.a.tensor.cols
            var u = [Float](repeating: 0, count: out * inF)
            for r in 0..<out { for c in 0..<inF { u[r * inF + c] = Float(m.scaling) * m.b.tensor[r, j] * m.a.tensor[j, c] } }
            return u
        }
    }

    static func lego(_ ins: [Adapter], weights: [Double]? = nil, rank: Int? = nil, seed: UInt64 = 0) throws -> Adapter {
        var o = MergeOptions(weights: weights ?? [Double](repeating: 1, count: ins.count))
        o.rank = rank
        o.seed = seed
        return try Lego().merge(ins, options: o, progress: nil)
    }

    /// Copies of one adapter (any positive weights): each cluster holds the copies of one unit, so the centroid is
    /// that unit, no reweighting applies (k = r) and the merge gives the input back, unit for unit up to order.
    @Test(arguments: [1, 2, 3, 4])
    func identicalInputsGiveTheInputBack(seed: UInt64) throws {
        var rng = SeededRNG(seed: seed)
        let x = Self.random(&rng, r: 4, inF: 10, out: 7, alpha: 8)
        let copies = 2 + Int(seed % 3)
        let w = (0..<copies).map { _ in 0.2 + rng.uniformDouble() * 3 }
        let merged = try Self.lego([Adapter](repeating: x, count: copies), weights: w, seed: seed)
        let m = try #require(merged.modules.first)
        #expect(m.rank == 4 && m.scaling == 1 && merged.config.r == 4 && merged.config.loraAlpha == 4)
        #expect(relErr(m.delta(), x.modules[0].delta()) <= 1e-5, "\(relErr(m.delta(), x.modules[0].delta()))")
        var want = Self.units(x.modules[0])
        for u in Self.units(m) {
            let i = try #require(want.firstIndex { relErr(u, $0) <= 1e-5 }, "a merged unit is none of the input's")
            want.remove(at: i)
        }
        #expect(want.isEmpty)
    }

    /// Four distinct units (two rank-2 inputs) into k = 4 clusters: every unit is its own cluster and kept as it
    /// is; only the output reweighting √(r/k) = √(2/4) scales the sum of the inputs' deltas.
    @Test(arguments: [1, 2, 3])
    func unitsInTheirOwnClustersAreKept(seed: UInt64) throws {
        var rng = SeededRNG(seed: seed)
        let x = Self.random(&rng, r: 2, inF: 6, out: 5, alpha: 4)
        let y = Self.random(&rng, r: 2, inF: 6, out: 5, alpha: 2)
        let merged = try Self.lego([x, y], rank: 4, seed: seed)
        let want = Float((2.0 / 4.0).squareRoot()) * (x.modules[0].delta() + y.modules[0].delta())
        #expect(relErr(merged.modules[0].delta(), want) <= 1e-5)
        #expect(merged.modules[0].rank == 4)
    }

    /// Two rank-1 inputs a = (2, 0), b = (1, 0) and a = (0, 2), b = (1, 0), s = 1, into one cluster: the centroid
    /// [1, 1 | 1, 0] has max-norm 1 against its members' 2, so it is doubled to [2, 2 | 2, 0]: ΔW = [[4, 4], [0, 0]]
    /// (the plain sum would be [[2, 2], [0, 0]]). With weights 1 and 3 the centroid is [0.5, 1.5 | 1, 0], scaled by
    /// 2 / 1.5: ΔW = [[8/9, 8/3], [0, 0]]. With s = 4 (alpha 4, r 1) every unit is twice as long and ΔW four
    /// times as large. k = 1 against r = 1: no output reweighting.
    @Test func aClusterIsRescaledToItsMembersMaxNorm() throws {
        func pair(alpha: Double) -> [Adapter] {
            [
                Self.adapter(a: Tensor(shape: [1, 2], data: [2, 0]), b: Tensor(shape: [2, 1], data: [1, 0]), alpha: alpha),
                Self.adapter(a: Tensor(shape: [1, 2], data: [0, 2]), b: Tensor(shape: [2, 1], data: [1, 0]), alpha: alpha),
            ]
        }
        let plain = try Self.lego(pair(alpha: 1))
        #expect(relErr(plain.modules[0].delta(), Tensor(shape: [2, 2], data: [4, 4, 0, 0])) <= 1e-6)
        let weighted = try Self.lego(pair(alpha: 1), weights: [1, 3])
        #expect(relErr(weighted.modules[0].delta(), Tensor(shape: [2, 2], data: [8.0 / 9, 8.0 / 3, 0, 0])) <= 1e-6)
        let scaled = try Self.lego(pair(alpha: 4))
        #expect(relErr(scaled.modules[0].delta(), Tensor(shape: [2, 2], data: [16, 16, 0, 0])) <= 1e-6)
    }

    /// Two rank-2 inputs whose units come in two tight, far-apart groups: k = 2 finds the groups, and ΔW is the
    /// sum of the centroids' products (member means, max-norm restored; √(r/k) = 1).
    @Test func tightGroupsBecomeTheirCentroids() throws {
        // Group 1 around a = (3, 0, 0), b = (0, 1); group 2 around a = (0, 0, 3), b = (1, 0).
        let x = Self.adapter(
            a: Tensor(shape: [2, 3], data: [3, 0.1, 0, 0, 0, 3]), b: Tensor(shape: [2, 2], data: [0, 1, 1, 0]), alpha: 2)
        let y = Self.adapter(
            a: Tensor(shape: [2, 3], data: [0, 0.1, 3.2, 3.1, 0, 0]), b: Tensor(shape: [2, 2], data: [1, 0, 0, 1.1]), alpha: 2)
        let merged = try Self.lego([x, y], rank: 2)
        // By hand: s = 1. Group 1: [3, .1, 0 | 0, 1] and [3.1, 0, 0 | 0, 1.1]: mean [3.05, .05, 0 | 0, 1.05], max-norm
        // 3.05, members' 3 and 3.1 -> 3.05: unchanged. Group 2: [0, 0, 3 | 1, 0] and [0, .1, 3.2 | 1, 0]: mean
        // [0, .05, 3.1 | 1, 0], max-norm 3.1, members' 3 and 3.2 -> unchanged.
        func outer(_ b: [Float], _ a: [Float]) -> Tensor {
            Tensor(shape: [b.count, a.count], data: b.flatMap { bi in a.map { bi * $0 } })
        }
        let want = outer([0, 1.05], [3.05, 0.05, 0]) + outer([1, 0], [0, 0.05, 3.1])
        #expect(relErr(merged.modules[0].delta(), want) <= 1e-6, "\(merged.modules[0].delta().data)")
    }

    /// Against the public reference implementation's steps with scikit-learn's KMeans (Fixtures/generate.py
    /// `lego`): three inputs of ranks 3, 3, 2 and alphas 6, 3, 8, weights 1, 2, 1, units planted in four tight
    /// groups. k = 4 recovers the groups (same partition as scikit-learn's), and the merged delta after both
    /// reweightings (√(r/k) with r the weighted mean rank 8/3) is the reference's; k = 8 keeps every unit.
    @Test(arguments: [4, 8])
    func matchesTheReferenceOnPlantedGroups(k: Int) throws {
        let f = try SafeTensorsFile(path: TestPaths.fixture("beyond-peft/lego.safetensors"))
        let ins = try (0..<3).map { i in
            Self.adapter(
                a: try f.tensor("in\(i).lora_A"), b: try f.tensor("in\(i).lora_B"), alpha: Double(try f.tensor("in\(i).alpha").data[0]),
                name: "in\(i)")
        }
        #expect(ins.map { $0.modules[0].rank } == [3, 3, 2])
        let merged = try Self.lego(ins, weights: [1, 2, 1], rank: k, seed: 3)
        let want = try f.tensor("lego\(k).delta")
        #expect(relErr(merged.modules[0].delta(), want) <= 1e-5, "k = \(k): \(relErr(merged.modules[0].delta(), want))")
        // The same partition as scikit-learn's (labels up to renaming): units together there are together here.
        let ref = try f.tensor("lego\(k).labels").data.map { Int($0) }
        var x = [Float]()
        for a in ins {
            let m = a.modules[0]
            let root = Float(m.scaling.squareRoot())
            for j in 0..<m.rank {
                x += (0..<m.a.tensor.cols).map { root * m.a.tensor[j, $0] } + (0..<m.b.tensor.rows).map { root * m.b.tensor[$0, j] }
            }
        }
        var rng = SeededRNG(seed: 3)
        let fit = KMeans.fit(x, rows: 8, dim: 11, weights: [1, 1, 1, 2, 2, 2, 1, 1], k: k, restarts: 10, maxIterations: 300, rng: &rng)
        for p in 0..<8 { for q in 0..<8 { #expect((fit.labels[p] == fit.labels[q]) == (ref[p] == ref[q]), "units \(p), \(q)") } }
    }

    @Test func sameSeedSameResult() throws {
        var rng = SeededRNG(seed: 9)
        let ins = (0..<3).map { _ in Self.random(&rng, r: 4, inF: 8, out: 8, alpha: 8) }
        let a = try Self.lego(ins, seed: 5)
        let b = try Self.lego(ins, seed: 5)
        #expect(a.modules[0].a.tensor.data == b.modules[0].a.tensor.data && a.modules[0].b.tensor.data == b.modules[0].b.tensor.data)
        #expect(a.modules[0].rank == 4)
    }

    @Test func refusalsAndMoreClustersThanUnits() throws {
        var rng = SeededRNG(seed: 1)
        let x = Self.random(&rng, r: 2, inF: 4, out: 4, alpha: 2)
        // More clusters than units: every unit is kept (rank 4 of the 4 units), the sum scaled by √(r/k) = √(2/4).
        let all = try Self.lego([x, x], rank: 5)
        #expect(all.modules[0].rank == 4)
        #expect(relErr(all.modules[0].delta(), Float((2.0 / 4.0).squareRoot()) * (2 * x.modules[0].delta())) <= 1e-5)
        #expect(throws: MergeError(nil, "lego: an input's weight is its units' weight in the clustering and must be positive, got 0.0")) {
            try Self.lego([x, x], weights: [1, 0])
        }
        #expect(MergeMethods.named("lego") != nil)
    }
}

extension MergeError: Equatable {
    public static func == (l: MergeError, r: MergeError) -> Bool { l.path == r.path && l.message == r.message }
}
