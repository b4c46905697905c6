import Testing
import Foundation
import TestSupport
import PropertyBased
@testable import Operators
import Checkpoint
import Numerics

enum Fx {
    static func path(_ p: String) -> String { TestPaths.fixture(p) }
    static func adapter(_ n: String) throws -> Adapter { try Adapter.load(path("peft/" + n)) }
}

@Suite struct PEFTMergeOracleTests {
    struct Case: Decodable {
        let adapters: [String]
        let weights: [Double]
        let combination_type: String
        let density: Double?
        let svd_rank: Int?
        let svd_clamp: Double?
        let majority_sign_method: String?
    }

    static func load() throws -> [String: Case] {
        let path = Fx.path("merges/cases.json")
        guard let data = FileManager.default.contents(atPath: path) else { throw CheckpointError(path, .notFound) }
        return try JSONDecoder().decode([String: Case].self, from: data)
    }

    /// The case names; a missing or unparsable cases.json gives one case that fails with the reason, never
    /// zero cases and a green suite.
    static let cases: [String] = {
        do { return try load().keys.sorted() } catch { return ["cases.json unreadable: \(error)"] }
    }()

    /// Every reference file the generator wrote has its case (and the list is not empty).
    @Test func everyReferenceFileHasACase() throws {
        let all = try Self.load()
        let refs = try FileManager.default.contentsOfDirectory(atPath: Fx.path("merges")).filter { $0.hasSuffix(".safetensors") }
            .map { String($0.dropLast(".safetensors".count)) }
        #expect(all.count >= 14)
        #expect(Set(all.keys) == Set(refs), "cases without a reference or references without a case: \(Set(all.keys).symmetricDifference(refs).sorted())")
    }

    @Test(arguments: cases)
    func matchesPEFTAddWeightedAdapter(caseName: String) throws {
        let all = try Self.load()
        let c = try #require(all[caseName], "no case \(caseName)")
        let inputs = try c.adapters.map(Fx.adapter)
        var o = MergeOptions(weights: c.weights)
        o.density = c.density
        o.rank = c.svd_rank
        o.svdClamp = c.svd_clamp
        if let m = c.majority_sign_method { o.majoritySign = TaskVectors.MajoritySign(rawValue: m)! }
        let method = try #require(MergeMethods.named(c.combination_type))
        let merged = try method.merge(inputs, options: o, progress: nil)
        let ref = try SafeTensorsFile(path: Fx.path("merges/\(caseName).safetensors"))
        let refModules = Set(ref.names.filter { $0.hasSuffix(".delta") }.map { String($0.dropLast(6)) })
        #expect(Set(merged.modules.map(\.name)) == refModules)
        #expect(merged.config.r == Int(ref.metadataValue("r")!) && merged.config.loraAlpha == Double(ref.metadataValue("lora_alpha")!)!)
        for m in merged.modules {
            let want = try ref.tensor(m.name + ".delta")
            let err = relErr(m.delta(), want)
            // The clamped SVD depends on the sign convention of each singular pair (the quantile is of signed
            // values), which differs between LAPACK drivers; it is checked loosely, the rest exactly.
            #expect(err <= (c.svd_clamp == nil ? 1e-5 : 1e-5), "\(caseName) \(m.name): relative error \(err)")
            #expect(m.scaling == 1 && m.rank == merged.config.rank(for: m.name))
            if !c.combination_type.contains("svd") {
                // Factor-wise methods: the factors themselves match (and the rank, with cat's zero padding).
                #expect(relErr(m.a.tensor, try ref.tensor(m.name + ".A")) <= 1e-6, "\(caseName) \(m.name) A")
                #expect(relErr(m.b.tensor, try ref.tensor(m.name + ".B")) <= 1e-6, "\(caseName) \(m.name) B")
            } else {
                #expect(m.rank == (try ref.tensor(m.name + ".A")).rows)
            }
        }
    }

    @Test func peftErrorCases() throws {
        let a = try Fx.adapter("merge-a")
        let c = try Fx.adapter("merge-c")
        // Unequal ranks for the factor-wise methods.
        for name in ["linear", "ties", "dare_linear", "dare_ties", "magnitude_prune"] {
            var o = MergeOptions(weights: [0.5, 0.5])
            o.density = 0.5
            #expect(throws: MergeError.self, "\(name)") { try MergeMethods.named(name)!.merge([a, c], options: o, progress: nil) }
        }
        // Density required.
        #expect(throws: MergeError.self) { try MergeMethods.named("ties")!.merge([a, a], options: MergeOptions(weights: [1, 1]), progress: nil) }
        // Weight count.
        #expect(throws: MergeError.self) { try MergeMethods.named("svd")!.merge([a, c], options: MergeOptions(weights: [1]), progress: nil) }
        // DoRA only with interpolate.
        let d = try Fx.adapter("bert-dora")
        #expect(throws: MergeError.self) { try MergeMethods.named("svd")!.merge([d, d], options: MergeOptions(weights: [1, 1]), progress: nil) }
    }
}

@Suite struct MergeAlgebraTests {
    @Test func interpolateEndpointsReproduceInputsExactly() async throws {
        let a = try Fx.adapter("bert-lora")
        let b = try Fx.adapter("bert-rslora")
        // bert-rslora has other scalings: interpolate refuses, suggesting task-arithmetic.
        #expect(throws: MergeError.self) { try Interpolate().merge([a, b], options: MergeOptions(weights: [0.5, 0.5]), progress: nil) }
        let a2 = try Fx.adapter("bert-lora")
        await propertyCheck(count: 20, input: Gen.int(in: 0...1)) { which in
            let w: [Double] = which == 0 ? [1, 0] : [0, 1]
            var o = MergeOptions(weights: w)
            o.heads = .average
            let m = try! Interpolate().merge([a, a2], options: o, progress: nil)
            #expect(m.modules == a.modules)
            #expect(m.otherTensors.map(\.1) == a.otherTensors.map(\.1))
        }
    }

    @Test func weightsSummingToOneOnIdenticalInputsReproduceTheInput() async throws {
        let a = try Fx.adapter("bert-dora")
        await propertyCheck(count: 30, input: Gen.int(in: -50...150)) { p in
            let l = Double(p) / 100
            let m = try! Interpolate().merge([a, a], options: MergeOptions(weights: [1 - l, l]), progress: nil)
            for (x, y) in zip(m.modules, a.modules) {
                #expect(x.a.tensor.maxAbsDiff(y.a.tensor) <= 1e-6 * 4)
                #expect(x.magnitude!.tensor.maxAbsDiff(y.magnitude!.tensor) <= 1e-5)
            }
        }
    }

    @Test func taskArithmeticIsTheExactDeltaSum() throws {
        // Mixed ranks, rsLoRA, rank/alpha patterns and a module only one input has.
        let inputs = try ["bert-rslora", "bert-patterns", "merge-c"].map(Fx.adapter)
        let w = [0.5, -1.25, 2.0]
        var o = MergeOptions(weights: w)
        o.heads = .first
        let m = try TaskArithmetic().merge(inputs, options: o, progress: nil)
        let names = Set(inputs.flatMap { $0.modules.map(\.name) })
        #expect(Set(m.modules.map(\.name)) == names)
        for mod in m.modules {
            var want: Tensor? = nil
            for (i, a) in inputs.enumerated() {
                guard let x = a.modules.first(where: { $0.name == mod.name }) else { continue }
                let d = Float(w[i]) * x.delta()
                want = want.map { $0 + d } ?? d
            }
            #expect(relErr(mod.delta(), want!) <= 1e-6, "\(mod.name)")
            #expect(mod.rank == inputs.compactMap { $0.modules.first { $0.name == mod.name }?.rank }.reduce(0, +))
        }
        // The saved config reproduces every module's rank and scaling through PEFT's pattern rules.
        let dir = NSTemporaryDirectory() + "coto-ta-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try m.save(to: dir)
        let back = try Adapter.load(dir)
        #expect(back.modules == m.modules)
    }

    @Test func lowRankTruncationEqualsDenseSVD() throws {
        let inputs = try ["merge-a", "merge-c"].map(Fx.adapter)
        for k in [1, 3, 8, 12, 20] {
            var o = MergeOptions(weights: [0.7, 0.3])
            o.rank = k
            let m = try TaskArithmetic().merge(inputs, options: o, progress: nil)
            for mod in m.modules {
                let dense = inputs.compactMap { a in a.modules.first { $0.name == mod.name } }
                    .enumerated().map { Float(o.weights[$0.offset]) * $0.element.delta() }.reduce(Tensor(zeros: [16, 16]), +)
                let (u, s, vt) = try LAPACK.svd(dense)
                var us = Tensor(zeros: [16, min(k, s.count)])
                for i in 0..<16 { for j in 0..<us.cols { us[i, j] = u[i, j] * s[j] } }
                var v = Tensor(zeros: [us.cols, 16])
                for i in 0..<us.cols { for j in 0..<16 { v[i, j] = vt[i, j] } }
                let best = BLAS.matmul(us, v)
                #expect(relErr(mod.delta(), best) <= 2e-5, "k=\(k) \(mod.name)")
            }
        }
    }

    @Test func dareDensityOneIsLinearAndSeedsAreReproducible() throws {
        let inputs = try ["merge-a", "merge-b"].map(Fx.adapter)
        var o = MergeOptions(weights: [0.6, 0.4])
        o.density = 1
        let dare = try TaskVectorMerge(.dareLinear).merge(inputs, options: o, progress: nil)
        let lin = try TaskVectorMerge(.linear).merge(inputs, options: o, progress: nil)
        #expect(dare.modules == lin.modules)
        o.density = 0.3
        o.seed = 42
        let x = try TaskVectorMerge(.dareTies).merge(inputs, options: o, progress: nil)
        let y = try TaskVectorMerge(.dareTies).merge(inputs, options: o, progress: nil)
        #expect(x.modules == y.modules)
        o.seed = 43
        #expect(try TaskVectorMerge(.dareTies).merge(inputs, options: o, progress: nil).modules != x.modules)
    }

    @Test func randomPruneKeepsTheDensityAndRescales() {
        var rng = SeededRNG(seed: 1)
        let t = [Float](repeating: 2, count: 100_000)
        for d in [0.1, 0.5, 0.9] {
            let p = TaskVectors.randomPrune(t, density: d, rescale: true, rng: &rng)
            let kept = p.filter { $0 != 0 }
            let frac = Double(kept.count) / Double(t.count)
            // 5 standard deviations of a binomial proportion.
            #expect(abs(frac - d) <= 5 * (d * (1 - d) / Double(t.count)).squareRoot())
            #expect(kept.allSatisfy { abs(Double($0) - 2 / d) < 1e-5 })
            #expect(abs(p.reduce(0.0) { $0 + Double($1) } / Double(t.count) - 2) < 0.05)
        }
    }

    @Test func tiesBuildingBlocksFollowMergeUtils() {
        #expect(TaskVectors.magnitudePrune([1, -5, 3, 0.5], density: 0.5) == [0, -5, 3, 0])
        #expect(TaskVectors.magnitudePrune([1, -5, 3, 0.5], density: 0.6) == [0, -5, 3, 0])  // k = int(2.4) = 2
        #expect(TaskVectors.magnitudePrune([1, -5, 3, 0.5], density: 0.2) == [0, 0, 0, 0])  // k = int(0.8) = 0
        let ts: [[Float]] = [[1, -2, 0], [-3, 1, 0]]
        #expect(TaskVectors.majorityMask(ts, method: .total) == [[false, true, false], [true, false, false]])
        #expect(TaskVectors.majorityMask(ts, method: .frequency) == [[true, false, false], [false, true, false]])
        #expect(TaskVectors.disjointMerge([[2, 4, 0], [6, 0, 0]], mask: [[true, true, false], [true, false, false]]) == [4, 4, 0])
    }

    @Test func headsPolicies() throws {
        let a = try Fx.adapter("bert-lora")
        var o = MergeOptions(weights: [0.25, 0.75])
        o.heads = .drop
        let dropped = try Interpolate().merge([a, a], options: o, progress: nil)
        #expect(dropped.otherTensors.isEmpty && dropped.config.modulesToSave == nil)
        o.heads = .first
        #expect(try Interpolate().merge([a, a], options: o, progress: nil).otherTensors.count == 2)
        // A head in one input only: average refuses, naming it.
        let b = try Fx.adapter("merge-a")
        o.heads = .average
        do {
            _ = try TaskArithmetic().merge([a, b], options: o, progress: nil)
            Issue.record("accepted")
        } catch let e as MergeError {
            #expect(e.message.contains("classifier") && e.message.contains("--heads"))
        }
    }

    @Test func nonFiniteInputsAreRefused() throws {
        var a = try Fx.adapter("merge-a")
        a.modules[0].a.tensor.data[0] = .nan
        #expect(throws: MergeError.self) { try TaskArithmetic().merge([a], options: MergeOptions(weights: [1]), progress: nil) }
        var o = MergeOptions(weights: [1])
        o.allowNonFinite = true
        o.heads = .drop
        _ = try TaskArithmetic().merge([a], options: o, progress: nil)
    }
}

@Suite struct SelectionTests {
    @Test func magnitudePruneEqualsSortingReference() async {
        await propertyCheck(count: 200, input: Gen.int(in: -5...5).array(of: 0...60), Gen.int(in: 0...100)) { ints, pct in
            let t = ints.map { Float($0) / 2 }
            let d = Double(pct) / 100
            let k = Int(d * Double(t.count))
            // Reference: stable sort by magnitude descending, lower index first among equals.
            let order = t.indices.sorted { (abs(t[$0]), -$0) > (abs(t[$1]), -$1) }
            var want = [Float](repeating: 0, count: t.count)
            for i in order.prefix(max(0, k)) { want[i] = t[i] }
            if d >= 1 { want = t }
            #expect(TaskVectors.magnitudePrune(t, density: d) == want)
        }
    }
}

/// Method names as users bring them from mergekit and PEFT.
@Suite struct MergeMethodNameTests {
    @Test func spellingsNameTheSameMethod() throws {
        for (given, canonical) in [
            ("task_arithmetic", "task-arithmetic"), ("TASK-ARITHMETIC", "task-arithmetic"), ("iso-c", "iso_c"), ("dare-ties", "dare_ties"),
            ("core-iso-c", "core_iso_c"), ("ties", "ties"), ("Breadcrumbs-Ties", "breadcrumbs_ties"),
        ] {
            #expect(MergeMethods.named(given)?.name == canonical, "\(given)")
        }
        // Every method's own name, and its other spelling, find it.
        for n in MergeMethods.names {
            #expect(MergeMethods.named(n)?.name == n)
            #expect(MergeMethods.named(n.contains("-") ? n.replacingOccurrences(of: "-", with: "_") : n.replacingOccurrences(of: "_", with: "-"))?.name == n)
        }
        #expect(MergeMethods.named("slerp") == nil)
        #expect(MergeMethods.named("") == nil)
    }

    @Test func nearestNameIsSuggested() {
        #expect(MergeMethods.suggestion(for: "tie") == "ties")
        #expect(MergeMethods.suggestion(for: "task_arithmatic") == "task-arithmetic")
        #expect(MergeMethods.suggestion(for: "dare_tie_svd") == "dare_ties_svd")
        #expect(MergeMethods.suggestion(for: "isoc") == "iso_c")
        #expect(MergeMethods.suggestion(for: "slerp") == nil)  // nothing close: no guess
        #expect(MergeMethods.unknownMessage("tie").hasPrefix("unknown merge method 'tie' (did you mean 'ties'?); one of: interpolate, "))
        #expect(MergeMethods.editDistance("kitten", "sitting") == 3)
        #expect(MergeMethods.editDistance("", "abc") == 3 && MergeMethods.editDistance("abc", "") == 3 && MergeMethods.editDistance("", "") == 0)
    }
}
