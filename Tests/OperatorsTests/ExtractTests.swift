import Testing
import Foundation
import TestSupport
@testable import Operators
@testable import Checkpoint
import Numerics

/// LoRA extraction (coto-extract) and variant conversion (coto-convert --to-lora).
@Suite struct ExtractTests {
    func tmp() throws -> String { try makeTempDir("coto-extract") }

    /// Extracting from coto-fuse's output recovers the fused adapter's s·B·A (rank ≥ its rank).
    @Test(arguments: ["tiny-bert", "minilm"])
    func extractionFromAFusedModelRecoversTheAdapter(base: String) throws {
        let dir = try tmp()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let basePath = base == "minilm" ? TestPaths.minilm : Fx.path("tiny-bert")
        let adapter = try Adapter.load(Fx.path(base == "minilm" ? "peft/minilm-noun8" : "peft/bert-lora"))
        let model = try HFModelDir(path: basePath)
        _ = try Fuser.fuse(base: model, adapters: [adapter], options: FuseOptions(), to: dir + "/fused")
        var o = ExtractOptions()
        o.rank = adapter.config.r + 2
        o.targets = ["query", "value"]
        let (x, report) = try Extractor.extract(base: model, tuned: try HFModelDir(path: dir + "/fused"), options: o)
        #expect(
            Set(x.modules.map(\.name)).isSuperset(
                of: Set(adapter.modules.map { $0.name.hasPrefix("bert.") && base == "minilm" ? String($0.name.dropFirst(5)) : $0.name })))
        #expect(x.modules.count == adapter.modules.count)
        for m in adapter.modules {
            let got = try #require(x.modules.first { m.name.hasSuffix($0.name) })
            #expect(got.rank == adapter.config.r + 2 && got.scaling == 1)
            let err = relErr(got.delta(), m.delta())
            #expect(err <= 1e-5, "\(m.name): relative error \(err)")
            let e = try #require(report.entries.first { $0.module == got.name })
            #expect(e.relativeError <= 1e-5 && e.energy >= 1 - 1e-5)
        }
        // The saved adapter loads back (rank 6 everywhere) and by energy each module needs at most r.
        try x.save(to: dir + "/x")
        #expect(try Adapter.load(dir + "/x").modules.count == x.modules.count)
        o.rank = nil
        o.energy = 0.999999
        let (y, _) = try Extractor.extract(base: model, tuned: try HFModelDir(path: dir + "/fused"), options: o)
        #expect(y.modules.allSatisfy { $0.rank <= adapter.config.r })
    }

    @Test func fixedRankIsTheBestApproximationAndEnergyPicksPerModuleRanks() throws {
        var rng = SeededRNG(seed: 4)
        // A delta with singular values 8, 4, 2, 1, 0.5, ...: rank-2 keeps (64 + 16) / Σ.
        let n = 12
        func orthonormal(_ k: Int) throws -> Tensor { try LAPACK.qr(Tensor(shape: [n, k], data: (0..<(n * k)).map { _ in Float(rng.normal()) })).q }
        let u = try orthonormal(6)
        let v = try orthonormal(6)
        let s: [Float] = [8, 4, 2, 1, 0.5, 0.25]
        var us = u
        for i in 0..<n { for j in 0..<6 { us[i, j] *= s[j] } }
        let d = BLAS.matmul(us, v, transB: true)
        let f = try Extractor.factor(d, rank: 2, energy: nil, maxRank: 8)
        let total = s.reduce(0) { $0 + Double($1 * $1) }
        #expect(f.rank == 2 && abs(f.energy - 80 / total) < 1e-5)
        #expect(abs(f.error - ((total - 80) / total).squareRoot()) < 1e-5)
        let resid = d - BLAS.matmul(f.b, f.a)
        let direct = (resid.data.reduce(0.0) { $0 + Double($1 * $1) } / total).squareRoot()
        #expect(abs(direct - f.error) < 1e-5, "reported \(f.error), measured \(direct)")
        let g = try Extractor.factor(d, rank: nil, energy: 0.99, maxRank: 8)
        #expect(g.rank == 4)  // (64 + 16 + 4) / 85.33 = 0.984 < 0.99 <= (85) / 85.33
    }

    @Test func extractionErrors() throws {
        let dir = try tmp()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let bert = try HFModelDir(path: Fx.path("tiny-bert"))
        var o = ExtractOptions()
        o.rank = 2
        #expect(throws: MergeError.self) { try Extractor.extract(base: bert, tuned: bert, options: o) }  // nothing differs
        do {
            _ = try Extractor.extract(base: bert, tuned: try HFModelDir(path: Fx.path("tiny-llama")), options: o)
            Issue.record("accepted")
        } catch let e as MergeError {
            #expect(e.description.contains("not in the base") || e.description.contains("not a fine-tune") || e.description.contains("nothing"))
        }
        o.energy = 0.5
        #expect(throws: MergeError.self) { try Extractor.extract(base: bert, tuned: bert, options: o) }  // both --rank and --energy
    }

    /// DoRA and HiRA as LoRA: at full rank the converted adapter fuses to the same weights; at 2r the error
    /// reported is the measured one.
    @Test(arguments: ["dora", "hira"])
    func variantConversionToLoRA(variant: String) throws {
        let dir = try tmp()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let model = try HFModelDir(path: Fx.path("tiny-bert"))
        var a = try Adapter.load(Fx.path(variant == "dora" ? "peft/bert-dora" : "peft/bert-lora"))
        if variant == "hira" { a.variant = .hira }
        let (full, entries) = try VariantConversion.toLoRA(a, base: model, rank: 16)
        #expect(full.variant == .lora && full.modules.allSatisfy { $0.magnitude == nil && $0.rank == 16 } && !full.config.useDora)
        #expect(entries.allSatisfy { $0.relativeError <= 1e-5 })
        _ = try Fuser.fuse(base: model, adapters: [a], options: FuseOptions(), to: dir + "/orig")
        _ = try Fuser.fuse(base: model, adapters: [full], options: FuseOptions(), to: dir + "/conv")
        let x = try SafeTensorsFile(path: dir + "/orig/model.safetensors")
        let y = try SafeTensorsFile(path: dir + "/conv/model.safetensors")
        let base = try SafeTensorsFile(path: Fx.path("tiny-bert/model.safetensors"))
        for m in a.modules {
            let n = m.name + ".weight"
            let w0 = try base.tensor(n)
            let err = relErr(try y.tensor(n) - w0, try x.tensor(n) - w0)
            #expect(err <= 1e-5, "\(n): converted delta off by \(err)")
        }
        // Default rank 2r: a real approximation, its reported error is the measured one.
        let (small, e2) = try VariantConversion.toLoRA(a, base: model)
        for (m, e) in zip(small.modules, e2) {
            #expect(m.rank == 2 * a.config.rank(for: m.name))
            let w0 = try base.tensor(m.name + ".weight")
            let want = try x.tensor(m.name + ".weight") - w0
            #expect(abs(relErr(m.delta(), want) - e.relativeError) < 1e-4, "\(m.name)")
        }
        var plain = a
        plain.variant = .lora
        if variant == "hira" { #expect(throws: MergeError.self) { try VariantConversion.toLoRA(plain, base: model) } }
    }
}

/// Merges beyond PEFT, against the reference implementation's own code on a small case.
@Suite struct MergekitMethodTests {
    /// breadcrumbs and breadcrumbs_ties as mergekit 0.1.5 computes them (Fixtures/generate.py beyond-peft: its
    /// magnitude_outliers and get_mask on the dense deltas of merge-a and merge-b); our result at full rank
    /// is the dense merge, so its s·B·A must equal mergekit's merged delta.
    @Test(arguments: [("breadcrumbs", [0.7, 0.3]), ("breadcrumbs_ties", [1.0, 0.6])])
    func breadcrumbsEqualsMergekit(method: String, weights: [Double]) throws {
        let ref = try SafeTensorsFile(path: Fx.path("beyond-peft/merges.safetensors"))
        var o = MergeOptions(weights: weights)
        o.density = 0.5
        o.gamma = 0.1
        o.rank = 16
        let merged = try #require(MergeMethods.named(method)).merge([try Fx.adapter("merge-a"), try Fx.adapter("merge-b")], options: o, progress: nil)
        let names = ref.names.filter { $0.hasPrefix(method + ".") && $0.hasSuffix(".delta") }
        #expect(names.count == 6 && merged.modules.count == names.count)
        for m in merged.modules {
            let want = try ref.tensor("\(method).\(m.name).delta")
            #expect(relErr(m.delta(), want) <= 1e-5, "\(method) \(m.name): \(relErr(m.delta(), want))")
        }
        // The outliers matter: without dropping them (gamma 0) the result is another one.
        o.gamma = 0
        let plain = try #require(MergeMethods.named(method)).merge([try Fx.adapter("merge-a"), try Fx.adapter("merge-b")], options: o, progress: nil)
        #expect(relErr(plain.modules[0].delta(), try ref.tensor("\(method).\(plain.modules[0].name).delta")) > 1e-3)
        // At the default rank (the inputs' r) it is the best rank-r approximation of that merge.
        o.gamma = 0.1
        o.rank = nil
        let low = try #require(MergeMethods.named(method)).merge([try Fx.adapter("merge-a"), try Fx.adapter("merge-b")], options: o, progress: nil)
        #expect(low.modules.allSatisfy { $0.rank == 4 })
    }

    /// Iso-C against the paper's `isotropic_sum` lines on merge-a + merge-b + merge-c: where the sum has full
    /// rank 16 and is well conditioned (σ_min/σ_max > 1e-4 in Float32; two of the four query/value modules)
    /// the result is the reference's; everywhere it is isotropic on the sum's numerical span (key, only in
    /// merge-b: rank 4).
    @Test func isoCEqualsTheReferenceAtFullRankAndIsIsotropicOnTheSpan() throws {
        let ref = try SafeTensorsFile(path: Fx.path("beyond-peft/merges.safetensors"))
        let ins = [try Fx.adapter("merge-a"), try Fx.adapter("merge-b"), try Fx.adapter("merge-c")]
        let merged = try #require(MergeMethods.named("iso_c")).merge(ins, options: MergeOptions(weights: [1, 1, 1]), progress: nil)
        var full = 0
        for m in merged.modules {
            let rank = ins.compactMap { $0.modules.first { $0.name == m.name }?.rank }.reduce(0, +)
            var sum = Tensor(zeros: [16, 16])
            for a in ins { if let x = a.modules.first(where: { $0.name == m.name }) { sum = sum + x.delta() } }
            let (_, ss, _) = try LAPACK.svd(sum)
            let d = m.delta()
            let (_, s, _) = try LAPACK.svd(d)
            let nonzero = s.filter { $0 > s[0] * 1e-5 }
            // Isotropic: every singular value on the span equals the mean.
            #expect(nonzero.count <= min(rank, 16) && nonzero.count >= min(rank, 16) - 1, "\(m.name): \(s)")
            #expect(nonzero.allSatisfy { abs($0 - nonzero[0]) <= 1e-4 * nonzero[0] }, "\(m.name): \(s)")
            if rank >= 16 && ss[15] > 1e-4 * ss[0] {
                full += 1
                let want = try ref.tensor("iso_c.\(m.name).delta")
                #expect(relErr(d, want) <= 1e-5, "\(m.name): \(relErr(d, want))")
            }
        }
        #expect(full == 2)
        // The common weight is the paper's α: it scales the result linearly.
        let twice = try IsoC().merge(ins, options: MergeOptions(weights: [2, 2, 2]), progress: nil)
        #expect(relErr(twice.modules[0].delta(), 2 * merged.modules[0].delta()) <= 1e-5)
    }

    /// TSV-M against the reference's steps on merge-c + merge-d (rank 8 each = 16 / 2 tasks, so every kept
    /// triplet is a real one): equal to 1e-5; the result's left and right factors are orthonormal.
    @Test func tsvEqualsTheReference() throws {
        let ref = try SafeTensorsFile(path: Fx.path("beyond-peft/merges.safetensors"))
        let merged = try TSV().merge([try Fx.adapter("merge-c"), try Fx.adapter("merge-d")], options: MergeOptions(weights: [1, 1]), progress: nil)
        #expect(merged.modules.count == 4)
        for m in merged.modules {
            let want = try ref.tensor("tsv.\(m.name).delta")
            #expect(relErr(m.delta(), want) <= 1e-5, "\(m.name): \(relErr(m.delta(), want))")
            let aat = BLAS.matmul(m.a.tensor, m.a.tensor, transB: true)  // A has orthonormal rows
            for i in 0..<aat.rows { for j in 0..<aat.cols { #expect(abs(aat[i, j] - (i == j ? 1 : 0)) <= 1e-4) } }
        }
        // With the weights halved, the singular values halve and the directions stay.
        let half = try TSV().merge([try Fx.adapter("merge-c"), try Fx.adapter("merge-d")], options: MergeOptions(weights: [0.5, 0.5]), progress: nil)
        #expect(relErr(half.modules[0].delta(), 0.5 * merged.modules[0].delta()) <= 1e-5)
    }

    /// DELLA and DELLA-linear against mergekit's own `sparsify(..., della_magprune)` and merge_group steps,
    /// replaying the Bernoulli masks it drew (recorded by the generator): same keep probabilities, same
    /// merged delta. Then the merge end to end with our seeded RNG, and the epsilon bound.
    @Test(arguments: [("della", [1.0, 0.6]), ("della_linear", [0.7, 0.3])])
    func dellaEqualsMergekitWithItsDraws(method: String, weights: [Double]) throws {
        let ref = try SafeTensorsFile(path: Fx.path("beyond-peft/merges.safetensors"))
        let (a, b) = (try Fx.adapter("merge-a"), try Fx.adapter("merge-b"))
        var compared = 0
        for name in Set(a.modules.map(\.name) + b.modules.map(\.name)).sorted() {
            let ds = [a, b].map { ad in ad.modules.first { $0.name == name }?.delta().data ?? [Float](repeating: 0, count: 256) }
            var task = 0
            let got = TaskVectors.della(ds, weights: weights, cols: 16, density: 0.5, epsilon: 0.2, linear: method == "della_linear") { probs in
                defer { task += 1 }
                let want = (try? ref.tensor("\(method).\(name).probs\(task)").data) ?? []
                #expect(want.count == probs.count && zip(probs, want).allSatisfy { abs($0 - Double($1)) <= 1e-6 }, "\(name) task \(task): probabilities")
                return (try? ref.tensor("\(method).\(name).mask\(task)").data) ?? []
            }
            #expect(task == 2)
            let want = try ref.tensor("\(method).\(name).delta")
            #expect(relErr(Tensor(shape: [16, 16], data: got), want) <= 1e-5, "\(method) \(name): \(relErr(Tensor(shape: [16, 16], data: got), want))")
            compared += 1
        }
        #expect(compared == 6)
        var o = MergeOptions(weights: weights)
        o.density = 0.5
        o.epsilon = 0.2
        o.rank = 16
        o.seed = 3
        let merged = try #require(MergeMethods.named(method)).merge([a, b], options: o, progress: nil)
        #expect(merged.modules.count == 6)
        o.epsilon = 0.6
        #expect(throws: MergeError.self) { try MergeMethods.named(method)!.merge([a, b], options: o, progress: nil) }
    }

    @Test func magnitudeOutliersKeepsTheMiddle() {
        let t: [Float] = [0.1, -5, 0.3, 2, -0.2, 9, 0.05, -1, 4, 0.7]  // |t| order: .05 .1 .2 .3 .7 1 2 4 5 9
        // n 10, density 0.4 -> keep 4; gamma 0.2 -> drop the 2 largest (9, -5); bottom = 10 - 4 - 2 = 4.
        #expect(TaskVectors.magnitudeOutliers(t, density: 0.4, gamma: 0.2) == [0, 0, 0, 2, 0, 0, 0, -1, 4, 0.7])
        #expect(TaskVectors.magnitudeOutliers(t, density: 1, gamma: 0.2) == t)
    }
}

/// coto-fuse onto a llama.cpp GGUF base (dequantized tensor by tensor, no converted copy on disk).
@Suite struct GGUFBaseFuseTests {
    /// `HFModelDir.open` on a GGUF derives the side files into a temporary directory it removes when released.
    @Test func aGGUFBaseOwnsItsSideFiles() throws {
        #expect(FileManager.default.fileExists(atPath: TestPaths.smollm2), "run make setup")
        var side = ""
        do {
            let m = try HFModelDir.open(TestPaths.smollm2)
            side = m.path
            #expect(FileManager.default.fileExists(atPath: side + "/config.json") && m.config.modelType == "llama")
        }
        #expect(!side.isEmpty && !FileManager.default.fileExists(atPath: side))
        #expect(try HFModelDir.open(Fx.path("tiny-bert")).path == Fx.path("tiny-bert"))
    }

    @Test func fusingOntoTheGGUFEqualsFusingOntoItsConversion() throws {
        #expect(FileManager.default.fileExists(atPath: TestPaths.smollm2), "run make setup")
        let dir = NSTemporaryDirectory() + "coto-gguf-fuse-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let gguf = try GGUFFile(path: TestPaths.smollm2)
        var rng = SeededRNG(seed: 3)
        func t(_ r: Int, _ c: Int) -> Tensor { Tensor(shape: [r, c], data: (0..<(r * c)).map { _ in Float(rng.normal() * 0.05) }) }
        let mods = [
            LoraModule(
                name: "model.layers.0.self_attn.q_proj", a: AdapterTensor(dtype: .f32, tensor: t(4, 576)), b: AdapterTensor(dtype: .f32, tensor: t(576, 4)),
                alpha: 8, scaling: 2),
            LoraModule(
                name: "model.layers.29.mlp.down_proj", a: AdapterTensor(dtype: .f32, tensor: t(4, 1536)), b: AdapterTensor(dtype: .f32, tensor: t(576, 4)),
                alpha: 8, scaling: 2),
        ]
        var c = LoraConfig()
        c.r = 4
        c.loraAlpha = 8
        let adapter = Adapter(config: c, modules: mods, otherTensors: [], source: "test", configOrigin: "test")
        let side = dir + "/side"
        let base = try HFModelDir(gguf: gguf, sideFilesIn: side)
        #expect(base.config.modelType == "llama" && base.otherFiles.contains("tokenizer.json"))
        let report = try Fuser.fuse(base: base, adapters: [adapter], options: FuseOptions(), to: dir + "/fused")
        #expect(report.fusedModules.count == 2 && report.files.contains("config.json") && report.files.contains("tokenizer.json"))
        let out = try HFModelDir(path: dir + "/fused")
        #expect(out.weights.tensorNames.count == base.weights.tensorNames.count)
        // Fused modules: the GGUF weight (dequantized, q rows un-permuted) + s·B·A; others: the dequantized weight.
        let q = GGUFConverter.unpermute(try gguf.dequantize("blk.0.attn_q.weight"), heads: 9)
        #expect(try out.weights.loadTensor("model.layers.0.self_attn.q_proj.weight").maxAbsDiff(q + mods[0].delta()) <= 1e-6)
        #expect(
            try out.weights.loadTensor("model.layers.29.mlp.down_proj.weight").maxAbsDiff(try gguf.dequantize("blk.29.ffn_down.weight") + mods[1].delta())
                <= 1e-6)
        #expect(try out.weights.loadTensor("model.layers.3.mlp.up_proj.weight") == gguf.dequantize("blk.3.ffn_up.weight"))
        #expect(
            try out.weights.loadTensor("model.layers.5.self_attn.k_proj.weight")
                == GGUFConverter.unpermute(try gguf.dequantize("blk.5.attn_k.weight"), heads: 3))
    }
}
