import Testing
import Foundation
import TestSupport
@testable import Model
@testable import Evaluation
@testable import Checkpoint
@testable import Operators
import Numerics

/// HiRA (W ⊙ (1 + s·B·A)) through every operator: the variant is persisted, honoured or refused.
@Suite struct HiRAVariantTests {
    func tmp() throws -> String { try makeTempDir("coto-variant") }
    func rel(_ x: [Float], _ y: [Float]) -> Double { relErr(x, y) }

    func argmax(_ logits: [Float], width: Int) -> [Int] {
        stride(from: 0, to: logits.count, by: width).map { i in (0..<width).max { logits[i + $0] < logits[i + $1] }! }
    }

    /// The trained MiniLM noun8 adapter run as HiRA, with lora_B scaled so the Hadamard delta is large.
    func bigHiRA() throws -> Adapter {
        var a = try Adapter.load(MFx.path("peft/minilm-noun8"))
        for i in a.modules.indices { a.modules[i].b.tensor = 40 * a.modules[i].b.tensor }
        a.variant = .hira
        return a
    }

    @Test func hiraFusedIntoMiniLMGivesTheUnmergedLogits() throws {
        #expect(FileManager.default.fileExists(atPath: MFx.minilm), "run make setup")
        let hira = try bigHiRA()
        let tok = try TokenizerLoader.load(modelDir: MFx.minilm)
        let lines = try JSONL.read(MFx.path("wordnet/noun8-test.jsonl")).prefix(64)
        let encs = try lines.map { tok.encode(try JSONL.text($0, "text", path: "")!, pair: nil, addSpecialTokens: true) }
        let batch = Batch.padded(encs.map(\.ids), pad: tok.padId)

        let unmerged = try ModelRegistry.load(MFx.minilm)
        try unmerged.attach(hira)
        let x = try unmerged.forward(batch, outputLayers: false, head: .classification).logits
        // The delta is large: switched off (same head), predictions change on many examples.
        unmerged.setActive(false)
        let off = try unmerged.forward(batch, outputLayers: false, head: .classification).logits
        let changed = zip(argmax(x, width: 8), argmax(off, width: 8)).filter { $0 != $1 }.count
        #expect(changed >= 8, "HiRA changes only \(changed) of 64 predictions")
        #expect(rel(x, off) > 0.1)
        // Run as plain LoRA, the same factors give different logits: the variant matters.
        let asLora = try ModelRegistry.load(MFx.minilm)
        try asLora.attach(hira, variant: .lora)
        #expect(rel(try asLora.forward(batch, outputLayers: false, head: .classification).logits, x) > 0.05)

        let dir = try tmp()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = try Fuser.fuse(base: try HFModelDir(path: MFx.minilm), adapters: [hira], options: FuseOptions(), to: dir + "/fused")
        let fused = try ModelRegistry.load(dir + "/fused")
        #expect(fused.hasClassifier)
        let y = try fused.forward(batch, outputLayers: false, head: .classification).logits
        #expect(rel(y, x) <= 1e-5, "fused HiRA vs unmerged: relative error \(rel(y, x))")
        // Fusing it as LoRA (the old behaviour) would be far off.
        var lora = hira
        lora.variant = .lora
        _ = try Fuser.fuse(base: try HFModelDir(path: MFx.minilm), adapters: [lora], options: FuseOptions(), to: dir + "/as-lora")
        let wrong = try ModelRegistry.load(dir + "/as-lora").forward(batch, outputLayers: false, head: .classification).logits
        #expect(rel(wrong, x) > 0.05)
    }

    @Test func hiraSurvivesSaveMergePruneAndConvert() throws {
        let dir = try tmp()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var a = try Adapter.load(MFx.path("peft/minilm-noun8"))
        a.variant = .hira
        var b = a
        for i in b.modules.indices { b.modules[i].a.tensor = 0.5 * b.modules[i].a.tensor }
        // Both forms of storage.
        for out in [dir + "/a", dir + "/a.safetensors"] {
            try a.save(to: out)
            let back = try Adapter.load(out)
            #expect(back.variant == .hira, "\(out)")
            #expect(back.labels == a.labels, "\(out)")
        }
        try b.save(to: dir + "/b")
        let (la, lb) = (try Adapter.load(dir + "/a"), try Adapter.load(dir + "/b"))
        // Every merge method that takes plain LoRA factors keeps HiRA.
        for method in ["interpolate", "task-arithmetic", "linear", "ties", "cat", "svd", "knots", "core_tsv"] {
            var o = MergeOptions(weights: [0.5, 0.5])
            if method == "ties" || method == "knots" { o.density = 0.5 }
            let m = try MergeMethods.named(method)!.merge([la, lb], options: o, progress: nil)
            #expect(m.variant == .hira, "\(method)")
            try m.save(to: dir + "/m-" + method)
            let back = try Adapter.load(dir + "/m-" + method)
            #expect(back.variant == .hira, "\(method) reloaded")
            #expect(back.labels == a.labels, "\(method) labels")
        }
        var o = PruneOptions()
        o.dropLayers = "every-other"
        o.numLayers = 6
        let (p, _) = try Pruner.prune(la, options: o)
        try p.save(to: dir + "/pruned.safetensors")
        let pb = try Adapter.load(dir + "/pruned.safetensors")
        #expect(pb.variant == .hira && pb.labels == a.labels)
        // A file saved as LoRA over a HiRA directory drops the stale declaration.
        var plain = la
        plain.variant = .lora
        try plain.save(to: dir + "/a")
        #expect(try Adapter.load(dir + "/a").variant == .lora)
    }

    @Test func mixingHiRAWithLoRAIsRefusedEverywhere() throws {
        let lora = try Adapter.load(MFx.path("peft/minilm-noun8"))
        var hira = lora
        hira.variant = .hira
        for method in ["interpolate", "task-arithmetic", "ties", "svd"] {
            var o = MergeOptions(weights: [0.5, 0.5])
            o.density = 0.5
            do {
                _ = try MergeMethods.named(method)!.merge([hira, lora], options: o, progress: nil)
                Issue.record("\(method) accepted")
            } catch let e as MergeError { #expect(e.message.contains("HiRA"), "\(e)") }
        }
        let dir = try tmp()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            _ = try Fuser.fuse(base: try HFModelDir(path: MFx.minilm), adapters: [hira, lora], options: FuseOptions(), to: dir + "/x")
            Issue.record("fuse accepted")
        } catch let e as MergeError { #expect(e.message.contains("HiRA")) }
        #expect(!FileManager.default.fileExists(atPath: dir + "/x/model.safetensors"))
    }

    @Test func declaredVariantsAreChecked() throws {
        let dir = try tmp()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Adapter.load(MFx.path("peft/bert-lora")).save(to: dir + "/l")
        for (text, needle) in [
            ("{\"variant\": \"hirra\"}", "unknown adapter variant"), ("[1]", "not a JSON object"),
            ("{\"variant\": \"dora\"}", "lora_magnitude_vector"), ("{}", "variant"),
        ] {
            try text.write(toFile: dir + "/l/coto_adapter.json", atomically: true, encoding: .utf8)
            do {
                _ = try Adapter.load(dir + "/l")
                Issue.record("accepted \(text)")
            } catch let e as CheckpointError { #expect(e.path.hasSuffix("coto_adapter.json") && e.message.contains(needle), "\(e)") }
        }
        // HiRA with a DoRA magnitude is a contradiction.
        try FileManager.default.copyItem(atPath: MFx.path("peft/bert-dora"), toPath: dir + "/d")
        try "{\"variant\": \"hira\"}".write(toFile: dir + "/d/coto_adapter.json", atomically: true, encoding: .utf8)
        #expect(throws: CheckpointError.self) { try Adapter.load(dir + "/d") }
        #expect(try Adapter.load(MFx.path("peft/bert-dora")).variant == .dora)
    }
}

/// Label lists travel through merge and prune; differing lists are refused unless the heads go.
@Suite struct LabelPropagationTests {
    @Test func labelsSurviveMergeAndPruneAndDifferingListsAreRefused() throws {
        let a = try Adapter.load(MFx.path("peft/minilm-noun8"))
        let labels = try #require(a.labels)
        var b = a
        for i in b.modules.indices { b.modules[i].b.tensor = 0.5 * b.modules[i].b.tensor }
        for method in ["interpolate", "task-arithmetic", "ties"] {
            var o = MergeOptions(weights: [0.5, 0.5])
            o.density = 0.5
            #expect(try MergeMethods.named(method)!.merge([a, b], options: o, progress: nil).labels == labels, "\(method)")
        }
        var o = PruneOptions()
        o.sparsity = 0.5
        #expect(try Pruner.prune(a, options: o).0.labels == labels)
        // A different order of the same classes is a different head.
        var c = b
        c.labels = labels.reversed()
        do {
            _ = try Interpolate().merge([a, c], options: MergeOptions(weights: [0.5, 0.5]), progress: nil)
            Issue.record("accepted")
        } catch let e as MergeError { #expect(e.message.contains("label list") && e.message.contains("--heads drop")) }
        var drop = MergeOptions(weights: [0.5, 0.5])
        drop.heads = .drop
        let dropped = try Interpolate().merge([a, c], options: drop, progress: nil)
        #expect(dropped.labels == nil && dropped.otherTensors.isEmpty)
        var first = MergeOptions(weights: [0.5, 0.5])
        first.heads = .first
        #expect(try Interpolate().merge([c, a], options: first, progress: nil).labels == c.labels)
    }
}
