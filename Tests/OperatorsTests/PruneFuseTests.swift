import Testing
import Foundation
import TestSupport
@testable import Operators
import Checkpoint
import Numerics

@Suite struct PruneTests {
    @Test func layerSpecs() throws {
        #expect(try LayerPruning.select("0,2,5-7", layers: 10, keep: false) == [0, 2, 5, 6, 7])
        #expect(try LayerPruning.select("every-other", layers: 6, keep: true) == [0, 2, 4])
        #expect(try LayerPruning.select("every-other", layers: 6, keep: false) == [1, 3, 5])
        #expect(try LayerPruning.select("low", layers: 30, keep: false) == Set(0..<10))
        #expect(try LayerPruning.select("middle", layers: 30, keep: false) == Set(10..<20))
        #expect(try LayerPruning.select("high", layers: 6, keep: false) == [4, 5])
        #expect(throws: MergeError.self) { try LayerPruning.select("3-1", layers: 6, keep: false) }
        #expect(throws: MergeError.self) { try LayerPruning.select("top", layers: 6, keep: false) }
    }

    @Test func dropLayersRemovesModulesAndExcludesThemForPEFT() throws {
        let a = try Fx.adapter("bert-patterns")
        var o = PruneOptions()
        o.dropLayers = "1"
        let (p, r) = try Pruner.prune(a, options: o)
        #expect(p.modules.allSatisfy { $0.layer != 1 })
        #expect(p.modules.contains { $0.name == "bert.pooler.dense" })  // no layer index: untouched
        #expect(r.dropped == a.modules.filter { $0.layer == 1 }.reduce(0) { $0 + $1.a.tensor.count + $1.b.tensor.count })
        let excluded = p.config.json["exclude_modules"]?.arrayValue?.compactMap(\.stringValue) ?? []
        #expect(Set(excluded) == Set(a.modules.filter { $0.layer == 1 }.map(\.name)))
        // Kept modules keep their exact rank and scaling through the rewritten config.
        let t = TempDir()
        try p.save(to: t.path + "/p")
        let back = try Adapter.load(t.path + "/p")
        #expect(back.modules == p.modules)
        for m in back.modules { #expect(m.scaling == a.modules.first { $0.name == m.name }!.scaling) }
    }

    @Test func keepModulesAndUnknownModule() throws {
        let a = try Fx.adapter("bert-patterns")
        var o = PruneOptions()
        o.keepModules = ["query", "value"]
        let (p, _) = try Pruner.prune(a, options: o)
        #expect(Set(p.modules.map(\.kind)) == ["query", "value"])
        o = PruneOptions()
        o.dropModules = ["q_proj"]
        #expect(throws: MergeError.self) { try Pruner.prune(a, options: o) }
    }

    @Test func rankPruningSVDIsOptimalAndKeepsScaling() throws {
        let a = try Fx.adapter("bert-lora")
        for k in [1, 2, 3] {
            var o = PruneOptions()
            o.rank = k
            let (p, r) = try Pruner.prune(a, options: o)
            for (m, orig) in zip(p.modules, a.modules) {
                #expect(m.rank == k && abs(m.scaling - orig.scaling) < 1e-12)
                let (u, s, vt) = try LAPACK.svd(orig.delta())
                let (us, v) = LowRank.top(u: u, s: s, vt: vt, k: k)
                #expect(relErr(m.delta(), BLAS.matmul(us, v)) < 2e-5)
                // Eckart–Young: the kept norm is the root of the kept squared singular values.
                let kept = s.prefix(k).reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
                #expect(abs(m.deltaNorm - kept) < 1e-4 * kept)
            }
            #expect(r.normFractionKept < 1 && r.normFractionKept > 0)
        }
    }

    @Test func rankPruningByNormKeepsTheLargestComponents() throws {
        let a = try Fx.adapter("bert-lora")
        var o = PruneOptions()
        o.rankFraction = 0.5
        o.rankMethod = .norm
        let (p, _) = try Pruner.prune(a, options: o)
        for (m, orig) in zip(p.modules, a.modules) {
            #expect(m.rank == 2)
            // Every kept column of B is a column of the original.
            for j in 0..<2 {
                let col = (0..<m.b.tensor.rows).map { m.b.tensor[$0, j] }
                #expect((0..<orig.rank).contains { i in (0..<orig.b.tensor.rows).map { orig.b.tensor[$0, i] } == col })
            }
        }
    }

    @Test func magnitudeSparsityPerTensorAndGlobal() throws {
        let a = try Fx.adapter("bert-lora")
        var o = PruneOptions()
        o.sparsity = 0.7
        let (p, r) = try Pruner.prune(a, options: o)
        for m in p.modules {
            for t in [m.a.tensor, m.b.tensor] { #expect(t.data.filter { $0 == 0 }.count == Int(0.7 * Double(t.count))) }
        }
        #expect(r.zeroed == a.modules.reduce(0) { $0 + Int(0.7 * Double($1.a.tensor.count)) + Int(0.7 * Double($1.b.tensor.count)) })
        o.scope = .global
        let (g, rg) = try Pruner.prune(a, options: o)
        let total = a.modules.reduce(0) { $0 + $1.a.tensor.count + $1.b.tensor.count }
        #expect(rg.zeroed == Int(0.7 * Double(total)))
        func values(_ x: Adapter) -> [Float] { x.modules.flatMap { m -> [Float] in m.a.tensor.data + m.b.tensor.data } }
        let before = values(a)
        let after = values(g)
        var survivorMin = Float.infinity
        var removedMax: Float = 0
        for (x, y) in zip(before, after) {
            if y == 0 { removedMax = max(removedMax, abs(x)) } else { survivorMin = min(survivorMin, abs(x)) }
        }
        #expect(survivorMin >= removedMax)
        o.sparsity = 1.5
        #expect(throws: MergeError.self) { try Pruner.prune(a, options: o) }
    }
}

@Suite struct FuseTests {
    /// PEFT merge_and_unload + save_pretrained results (Fixtures/fused/*).
    @Test(arguments: [
        ("lora", "tiny-bert", "bert-lora"), ("dora", "tiny-bert", "bert-dora"), ("bias", "tiny-bert", "bert-bias"),
        ("embedding", "tiny-bert", "bert-embedding"), ("patterns", "tiny-bert", "bert-patterns"),
        ("lora-bf16", "tiny-bert-bf16", "bert-lora"),
    ])
    func matchesPEFTMergeAndUnload(name: String, base: String, adapter: String) throws {
        let t = TempDir()
        let model = try HFModelDir(path: Fx.path(base))
        let report = try Fuser.fuse(base: model, adapters: [try Fx.adapter(adapter)], options: FuseOptions(), to: t.path + "/out")
        #expect(!report.fusedModules.isEmpty)
        let ours = try SafeTensorsFile(path: t.path + "/out/model.safetensors")
        let ref = try SafeTensorsFile(path: Fx.path("fused/\(name)/model.safetensors"))
        #expect(Set(ours.names) == Set(ref.names))
        for n in ref.names {
            #expect(ours.info(n)?.dtype == ref.info(n)?.dtype)
            let x = try ours.tensor(n)
            let y = try ref.tensor(n)
            if ref.info(n)?.dtype == .bf16 {
                let differing = zip(x.data, y.data).filter { $0.0.bitPattern != $0.1.bitPattern }.count
                #expect(differing == 0, "\(name) \(n): \(differing) bf16 values differ (max |diff| \(x.maxAbsDiff(y)))")
            } else {
                #expect(x.maxAbsDiff(y) <= 1e-6, "\(name) \(n): max |diff| \(x.maxAbsDiff(y))")
            }
        }
        #expect(FileManager.default.fileExists(atPath: t.path + "/out/config.json"))
    }

    /// The in-place Float32 path (copy of the mapped bytes + one sgemm per adapter with beta 1) gives the
    /// general path's weights: plain, fan_in_fan_out (stored [in, out]) and embedding layouts, two adapters
    /// with weights of both signs; it declines what it does not handle (HiRA, DoRA, other dtypes).
    @Test func inPlaceFastPathEqualsTheGeneralPath() throws {
        var rng = SeededRNG(seed: 11)
        func t(_ r: Int, _ c: Int) -> Tensor { Tensor(shape: [r, c], data: (0..<(r * c)).map { _ in Float(rng.normal() * 0.3) }) }
        func module(_ r: Int, out: Int, inF: Int, embedding: Bool = false) -> LoraModule {
            LoraModule(
                name: "m", a: AdapterTensor(dtype: .f32, tensor: t(r, inF)), b: AdapterTensor(dtype: .f32, tensor: t(out, r)),
                bias: nil, magnitude: nil, isEmbedding: embedding, alpha: Double(2 * r), scaling: 2)
        }
        let store = try SafeTensorsFile(path: Fx.path("tiny-bert/model.safetensors"))
        let cases: [(String, Bool, [LoraModule])] = [
            ("bert.encoder.layer.0.attention.self.query.weight", false, [module(3, out: 16, inF: 16), module(5, out: 16, inF: 16)]),
            ("bert.encoder.layer.0.attention.self.query.weight", true, [module(3, out: 16, inF: 16), module(5, out: 16, inF: 16)]),
            ("bert.encoder.layer.1.intermediate.dense.weight", false, [module(4, out: 32, inF: 16), module(2, out: 32, inF: 16)]),
            ("bert.encoder.layer.1.output.dense.weight", true, [module(4, out: 32, inF: 16)]),  // stored [16, 32] = [in, out]
            ("bert.embeddings.word_embeddings.weight", false, [module(4, out: 16, inF: 64, embedding: true), module(2, out: 16, inF: 64, embedding: true)]),
        ]
        let weights = [0.6, -1.3]
        for (name, fifo, mods) in cases {
            let targets = mods.enumerated().map { Fuser.Target(adapter: $0.offset, module: $0.element, fanInFanOut: fifo) }
            let fast = try #require(try Fuser.fuseF32InPlace(store, name, targets: targets, weights: weights, allowNonFinite: false))
            let got = Tensor(shape: try #require(store.info(name)).shape, data: Storage.decode(fast.withUnsafeBytes { $0 }, dtype: .f32))
            let want = Fuser.fuseWeight(try store.tensor(name), targets: targets, weights: weights)
            #expect(got.maxAbsDiff(want) <= 1e-6, "\(name) fan_in_fan_out \(fifo): \(got.maxAbsDiff(want))")
            #expect(got.maxAbsDiff(try store.tensor(name)) > 0.1, "\(name): the adapters change it")
        }
        var hira = Fuser.Target(adapter: 0, module: module(3, out: 16, inF: 16), fanInFanOut: false)
        hira.hira = true
        #expect(try Fuser.fuseF32InPlace(store, cases[0].0, targets: [hira], weights: [1], allowNonFinite: false) == nil)
        let bf16 = try SafeTensorsFile(path: Fx.path("tiny-bert-bf16/model.safetensors"))
        #expect(
            try Fuser.fuseF32InPlace(
                bf16, cases[0].0, targets: [Fuser.Target(adapter: 0, module: module(3, out: 16, inF: 16), fanInFanOut: false)],
                weights: [1], allowNonFinite: false) == nil)
    }

    /// The BF16/F16 block path gives the general path's bytes exactly (both round W + Δ once from the same
    /// Float32 sums), for two adapters with weights of both signs; it declines the layouts it does not handle.
    @Test(arguments: ["tiny-bert-bf16", "tiny-bert-f16"])
    func halfFastPathEqualsTheGeneralPathBitForBit(base: String) throws {
        var rng = SeededRNG(seed: 12)
        func t(_ r: Int, _ c: Int) -> Tensor { Tensor(shape: [r, c], data: (0..<(r * c)).map { _ in Float(rng.normal() * 0.3) }) }
        func module(_ r: Int, out: Int, inF: Int) -> LoraModule {
            LoraModule(
                name: "m", a: AdapterTensor(dtype: .f32, tensor: t(r, inF)), b: AdapterTensor(dtype: .f32, tensor: t(out, r)),
                bias: nil, magnitude: nil, isEmbedding: false, alpha: Double(2 * r), scaling: 2)
        }
        let store = try SafeTensorsFile(path: Fx.path(base + "/model.safetensors"))
        let dtype = try #require(store.info("bert.encoder.layer.0.attention.self.query.weight")).dtype
        #expect(dtype == (base.hasSuffix("bf16") ? .bf16 : .f16))
        let cases: [(String, [LoraModule])] = [
            ("bert.encoder.layer.0.attention.self.query.weight", [module(3, out: 16, inF: 16), module(5, out: 16, inF: 16)]),
            ("bert.encoder.layer.1.intermediate.dense.weight", [module(4, out: 32, inF: 16)]),
        ]
        for (name, mods) in cases {
            let targets = mods.enumerated().map { Fuser.Target(adapter: $0.offset, module: $0.element, fanInFanOut: false) }
            let fast = try #require(try Fuser.fuseHalfInPlace(store, name, targets: targets, weights: [0.6, -1.3], allowNonFinite: false))
            let want = Storage.encode(Fuser.fuseWeight(try store.tensor(name), targets: targets, weights: [0.6, -1.3]).data, dtype: dtype)
            #expect(fast == want, "\(base) \(name): \(zip(fast, want).filter { $0 != $1 }.count) bytes differ")
            #expect(fast != store.view(try #require(store.info(name))).readBytes(), "the adapters change it")
        }
        let q = cases[0].0
        #expect(
            try Fuser.fuseHalfInPlace(
                store, q, targets: [Fuser.Target(adapter: 0, module: module(3, out: 16, inF: 16), fanInFanOut: true)], weights: [1], allowNonFinite: false)
                == nil)
        var hira = Fuser.Target(adapter: 0, module: module(3, out: 16, inF: 16), fanInFanOut: false)
        hira.hira = true
        #expect(try Fuser.fuseHalfInPlace(store, q, targets: [hira], weights: [1], allowNonFinite: false) == nil)
        let f32 = try SafeTensorsFile(path: Fx.path("tiny-bert/model.safetensors"))
        #expect(
            try Fuser.fuseHalfInPlace(
                f32, q, targets: [Fuser.Target(adapter: 0, module: module(3, out: 16, inF: 16), fanInFanOut: false)], weights: [1], allowNonFinite: false)
                == nil)
    }

    @Test func weightedFuseOfTwoAdaptersIsTheSumOfDeltas() throws {
        let t = TempDir()
        let model = try HFModelDir(path: Fx.path("tiny-bert"))
        let a = try Fx.adapter("merge-a")
        let b = try Fx.adapter("merge-b")
        var o = FuseOptions()
        o.weights = [0.5, 2]
        _ = try Fuser.fuse(base: model, adapters: [a, b], options: o, to: t.path + "/out")
        let out = try SafeTensorsFile(path: t.path + "/out/model.safetensors")
        let name = "bert.encoder.layer.0.attention.self.query"
        let want =
            try model.weights.loadTensor(name + ".weight") + 0.5 * a.modules.first { $0.name == name }!.delta()
            + 2 * b.modules.first { $0.name == name }!.delta()
        #expect(try out.tensor(name + ".weight").maxAbsDiff(want) < 1e-6)
    }

    @Test func refusesItsOwnDirectoryAndForeignAdapters() throws {
        let model = try HFModelDir(path: Fx.path("tiny-bert"))
        #expect(throws: MergeError.self) {
            try Fuser.fuse(base: model, adapters: [try Fx.adapter("bert-lora")], options: FuseOptions(), to: Fx.path("tiny-bert"))
        }
        let llama = try HFModelDir(path: Fx.path("tiny-llama"))
        let t = TempDir()
        do {
            _ = try Fuser.fuse(base: llama, adapters: [try Fx.adapter("bert-lora")], options: FuseOptions(), to: t.path + "/x")
            Issue.record("accepted")
        } catch let e as MergeError { #expect(e.message.contains("bert.encoder.layer.0.attention.self.query")) }
        #expect(!FileManager.default.fileExists(atPath: t.path + "/x/model.safetensors"))
    }
}

@Suite struct FuseShardingTests {
    @Test func shardedBaseGivesShardedOutput() throws {
        let t = TempDir()
        let model = try HFModelDir(path: Fx.path("tiny-bert-sharded"))
        let r = try Fuser.fuse(base: model, adapters: [try Fx.adapter("bert-lora")], options: FuseOptions(), to: t.path + "/out")
        #expect(r.files.contains("model.safetensors.index.json"))
        let out = try HFModelDir(path: t.path + "/out")
        let ref = try SafeTensorsFile(path: Fx.path("fused/lora/model.safetensors"))
        for n in ref.names { #expect(try out.weights.loadTensor(n).maxAbsDiff(ref.tensor(n)) <= 1e-6, "\(n)") }
    }
}
