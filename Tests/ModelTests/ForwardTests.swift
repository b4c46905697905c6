import Testing
import Foundation
import TestSupport
@testable import Model
import Checkpoint
import Numerics

enum MFx {
    static func path(_ p: String) -> String { TestPaths.fixture(p) }
    static let minilm = TestPaths.minilm
    static let smollm2 = TestPaths.smollm2
    static let refs = try! SafeTensorsFile(path: path("model/tiny_refs.safetensors"))
    static func ids(_ name: String) throws -> [[Int]] {
        let t = try refs.tensor(name)
        return (0..<t.rows).map { r in (0..<t.cols).map { Int(t[r, $0]) } }
    }
}

/// Max |a - b| over the positions where mask is 1 (rows of width w per position).
func maskedMaxDiff(_ a: [Float], _ b: [Float], mask: [[Int]], width w: Int) -> Float {
    var m: Float = 0
    let T = mask[0].count
    for (bi, row) in mask.enumerated() {
        for t in 0..<T where row[t] != 0 {
            for j in 0..<w { m = max(m, abs(a[(bi * T + t) * w + j] - b[(bi * T + t) * w + j])) }
        }
    }
    return m
}

@Suite struct TinyForwardTests {
    static let biasAlphaRefs = Result { try SafeTensorsFile(path: MFx.path("model/bias_alpha_refs.safetensors")) }

    /// ||(ours − our base) − (ref − ref base)|| / ||ref − ref base||: the adapter's effect, compared relatively
    /// (adapters move these tiny models' logits by 1e-3, below an absolute 1e-4 check's resolution).
    static func effectError(_ ours: [Float], _ oursBase: [Float], _ ref: [Float], _ refBase: [Float], mask: [[Int]]? = nil, width: Int = 1) -> Double {
        var d = 0.0
        var n = 0.0
        for i in ours.indices {
            if let mask, mask[i / width / mask[0].count][(i / width) % mask[0].count] == 0 { continue }
            let e = Double(ours[i] - oursBase[i])
            let r = Double(ref[i] - refBase[i])
            d += (e - r) * (e - r)
            n += r * r
        }
        return (d / max(n, 1e-30)).squareRoot()
    }

    @Test(arguments: ["base", "bert-lora", "bert-rslora", "bert-dora", "bert-bias", "bert-embedding", "bert-patterns", "bert-bias-alpha"])
    func bertMatchesTransformers(tag: String) throws {
        let refs = tag == "bert-bias-alpha" ? try Self.biasAlphaRefs.get() : MFx.refs
        let base = try ModelRegistry.load(MFx.path("tiny-bert"))
        let model = try ModelRegistry.load(MFx.path("tiny-bert"))
        if tag != "base" { try model.attach(try Adapter.load(MFx.path("peft/" + tag))) }
        let batch = Batch(ids: try MFx.ids("bert.ids"), mask: try MFx.ids("bert.mask"))
        let out = try model.forward(batch, outputLayers: true, head: .classification)
        let logits = try refs.tensor("bert.\(tag).logits")
        #expect(Tensor(shape: logits.shape, data: out.logits).maxAbsDiff(logits) <= 1e-4, "\(tag) logits")
        #expect(maskedMaxDiff(out.layerStates[0], try refs.tensor("bert.\(tag).hidden0").data, mask: batch.mask, width: 16) <= 1e-4)
        #expect(maskedMaxDiff(out.lastHidden, try refs.tensor("bert.\(tag).hidden_last").data, mask: batch.mask, width: 16) <= 1e-4)
        guard tag != "base" else { return }
        // The adapter's effect on the last hidden states and the logits equals transformers + PEFT's.
        let b = try base.forward(batch, outputLayers: true, head: .classification)
        let hiddenErr = Self.effectError(
            out.lastHidden, b.lastHidden, try refs.tensor("bert.\(tag).hidden_last").data,
            try MFx.refs.tensor("bert.base.hidden_last").data, mask: batch.mask, width: 16)
        // bert-bias (alpha = r, small factors) moves the logits by 1e-6, at Float32 resolution: its effect is only
        // resolved on the hidden states; bert-bias-alpha (alpha = 3.5 r, a visible bias) carries the exact check.
        let tiny = tag == "bert-bias"
        #expect(hiddenErr <= (tiny ? 1e-2 : 1e-3), "\(tag): relative error of the adapter's effect on the hidden states \(hiddenErr)")
        let logitErr = Self.effectError(out.logits, b.logits, logits.data, try MFx.refs.tensor("bert.base.logits").data)
        #expect(logitErr <= (tiny ? 0.2 : 1e-3), "\(tag): relative error of the adapter's effect on the logits \(logitErr)")
    }

    @Test(arguments: ["base", "llama-lora"])
    func llamaMatchesTransformers(tag: String) throws {
        let model = try ModelRegistry.load(MFx.path("tiny-llama"))
        if tag != "base" { try model.attach(try Adapter.load(MFx.path("peft/" + tag))) }
        let batch = Batch(ids: try MFx.ids("llama.ids"), mask: try MFx.ids("llama.mask"))
        let out = try model.forward(batch, outputLayers: true, head: .languageModel)
        #expect(maskedMaxDiff(out.logits, try MFx.refs.tensor("llama.\(tag).logits").data, mask: batch.mask, width: 64) <= 1e-4)
        #expect(maskedMaxDiff(out.layerStates[0], try MFx.refs.tensor("llama.\(tag).hidden0").data, mask: batch.mask, width: 16) <= 1e-4)
        #expect(maskedMaxDiff(out.lastHidden, try MFx.refs.tensor("llama.\(tag).hidden_last").data, mask: batch.mask, width: 16) <= 1e-4)
    }

    @Test func inactiveAdaptersAreExactlyTheBase() throws {
        let base = try ModelRegistry.load(MFx.path("tiny-bert"))
        let model = try ModelRegistry.load(MFx.path("tiny-bert"))
        try model.attach(try Adapter.load(MFx.path("peft/bert-dora")))
        try base.attach(try Adapter.load(MFx.path("peft/bert-dora")))  // same head
        base.detachAll()
        model.setActive(false)
        let batch = Batch(ids: try MFx.ids("bert.ids"), mask: try MFx.ids("bert.mask"))
        #expect(
            try model.forward(batch, outputLayers: false, head: .classification).logits
                == base.forward(batch, outputLayers: false, head: .classification).logits)
    }

    @Test func kvCacheGenerationEqualsFullForward() throws {
        let model = try ModelRegistry.load(MFx.path("tiny-llama")) as! LlamaModel
        let prompt = [1, 5, 9, 13]
        let gen = try model.generate(prompt: prompt, maxNewTokens: 6)
        // Recompute greedily without a cache.
        var seq = prompt
        for _ in 0..<6 {
            let out = try model.forward(Batch(ids: [seq]), outputLayers: false, head: .languageModel)
            let row = Array(out.logits[((seq.count - 1) * 64)..<(seq.count * 64)])
            seq.append(row.indices.max { row[$0] < row[$1] }!)
        }
        #expect(Array(seq.dropFirst(prompt.count)) == gen)
    }
}

@Suite struct RealModelForwardTests {
    @Test func miniLMSentenceEmbeddingsMatchTransformers() throws {
        #expect(FileManager.default.fileExists(atPath: MFx.minilm), "run make setup")
        let ref = try SafeTensorsFile(path: MFx.path("model/minilm_refs.safetensors"))
        let model = try ModelRegistry.load(MFx.minilm) as! BertModel
        let idsT = try ref.tensor("ids")
        let maskT = try ref.tensor("mask")
        let ids = (0..<idsT.rows).map { r in (0..<idsT.cols).map { Int(idsT[r, $0]) } }
        let mask = (0..<maskT.rows).map { r in (0..<maskT.cols).map { Int(maskT[r, $0]) } }
        let out = try model.forward(Batch(ids: ids, mask: mask), outputLayers: false, head: .none)
        let emb = model.meanPool(out, mask: mask)
        let want = try ref.tensor("embeddings")
        #expect(Tensor(shape: want.shape, data: emb).maxAbsDiff(want) <= 1e-4)
    }
}

/// SmolLM2 converted once per test process.
enum SmolLM2 {
    static let dir: Result<String, Error> = Result {
        let d = NSTemporaryDirectory() + "coto-smollm2-" + UUID().uuidString
        try GGUFConverter(gguf: try GGUFFile(path: MFx.smollm2)).convert(to: d)
        return d
    }
}

@Suite struct SmolLM2ForwardTests {
    @Test func logitsMatchTransformersOnTheGGUF() throws {
        #expect(FileManager.default.fileExists(atPath: MFx.smollm2), "run make setup")
        let dir = try SmolLM2.dir.get()
        let ref = try SafeTensorsFile(path: MFx.path("smollm2/reference.safetensors"))
        let ids = try ref.tensor("logits:ids").data.map { Int($0) }
        let want = try ref.tensor("logits:last_rows")
        let model = try ModelRegistry.load(dir)
        let out = try model.forward(Batch(ids: [ids]), outputLayers: false, head: .languageModel)
        var worst: Float = 0
        for t in 0..<want.rows { for j in 0..<want.cols { worst = max(worst, abs(out.logits[t * out.logitsWidth + j] - want[t, j])) } }
        #expect(worst <= 1e-4, "max |logit diff| \(worst)")
        // Padded batch: the same sequence next to a longer one gives the same logits on its real tokens.
        let longer = ids + [28, 29, 30]
        let batch = Batch.padded([ids, longer], pad: 0)
        let both = try model.forward(batch, outputLayers: false, head: .languageModel)
        var worstPad: Float = 0
        for t in 0..<ids.count { for j in 0..<32 { worstPad = max(worstPad, abs(both.logits[t * both.logitsWidth + j] - want[t, j])) } }
        #expect(worstPad <= 1e-4)
    }
}

@Suite(.serialized) struct ParallelTests {
    @Test func erfApproximationIsWithinAFewUlpOfErff() {
        var worst: Float = 0
        var x: Float = -6
        while x <= 6 {
            worst = max(worst, abs(Kernels.erfApprox(x) - erff(x)))
            x += 0.001
        }
        #expect(worst < 5e-7)
    }

    /// The vectorizable e^v of GELU's backward: within 1.5e-7 of expf relative over v ∈ [−87, 0] (about 1 ulp),
    /// exact at 0, and 0 < e^v ≤ 1.7e-38 below −87 (clamped).
    @Test func expApproximationIsWithinAnUlpOfExpf() {
        var worst: Float = 0
        var v: Float = -87
        while v <= 0 {
            let e = expf(v)
            worst = max(worst, abs(Kernels.expNegApprox(v) - e) / e)
            v += 0.00037
        }
        #expect(worst <= 1.5e-7, "worst relative error \(worst)")
        #expect(Kernels.expNegApprox(0) == 1)
        #expect(Kernels.expNegApprox(-1000) > 0 && Kernels.expNegApprox(-1000) <= 1.7e-38)
    }

    /// With two threads a loop is cut in two; inside a parallel region (a worker) it runs inline in one piece,
    /// and the region's threads are unmarked again afterwards.
    @Test func nestedLoopsRunInline() {
        Parallel.configure(threads: 2)
        defer { Parallel.configure(threads: 1) }
        let lock = NSLock()
        var outer: [Range<Int>] = []
        Parallel.forEach(100) { r in lock.withLock { outer.append(r) } }
        #expect(outer.count == 2 && outer.map(\.count).reduce(0, +) == 100)
        var nested: [[Range<Int>]] = [[], []]
        Parallel.run(2) { w in
            var mine: [Range<Int>] = []
            Parallel.forEach(100) { r in mine.append(r) }
            lock.withLock { nested[w] = mine }
        }
        #expect(nested == [[0..<100], [0..<100]])
        var after: [Range<Int>] = []
        Parallel.forEach(100) { r in lock.withLock { after.append(r) } }
        #expect(after.count == 2)
    }

    @Test func twoThreadsGiveTheSameOutputs() throws {
        let model = try ModelRegistry.load(MFx.path("tiny-bert"))
        try model.attach(try Adapter.load(MFx.path("peft/bert-dora")))
        let batch = Batch(ids: try MFx.ids("bert.ids"), mask: try MFx.ids("bert.mask"))
        let one = try model.forward(batch, outputLayers: false, head: .classification)
        Parallel.configure(threads: 2)
        defer { Parallel.configure(threads: 1) }
        let two = try model.forward(batch, outputLayers: false, head: .classification)
        #expect(Tensor(shape: [2, 3], data: one.logits).maxAbsDiff(Tensor(shape: [2, 3], data: two.logits)) <= 1e-6)
        let llama = try ModelRegistry.load(MFx.path("tiny-llama"))
        let lb = Batch(ids: try MFx.ids("llama.ids"), mask: try MFx.ids("llama.mask"))
        let l2 = try llama.forward(lb, outputLayers: false, head: .languageModel)
        #expect(maskedMaxDiff(l2.logits, try MFx.refs.tensor("llama.base.logits").data, mask: lb.mask, width: 64) <= 1e-4)
    }
}

@Suite struct VariantTests {
    @Test func llamaWithBiasesAndLinearRopeScalingMatchesTransformers() throws {
        let model = try ModelRegistry.load(MFx.path("tiny-llama-bias"))
        let batch = Batch(ids: try MFx.ids("llama.ids"), mask: try MFx.ids("llama.mask"))
        let out = try model.forward(batch, outputLayers: false, head: .languageModel)
        #expect(maskedMaxDiff(out.logits, try MFx.refs.tensor("llama-bias.logits").data, mask: batch.mask, width: 64) <= 1e-4)
    }

    @Test func hiraEqualsTheBaseWithTheEffectiveWeight() throws {
        // HiRA: W_eff = W ⊙ (1 + s·B·A). Running the adapter must equal a model whose weights are W_eff.
        let adapter = try Adapter.load(MFx.path("peft/bert-lora"))
        let hira = try ModelRegistry.load(MFx.path("tiny-bert"))
        try hira.attach(adapter, variant: .hira)
        let manual = try ModelRegistry.load(MFx.path("tiny-bert"))
        if let (w, b) = manual.classificationHead(of: adapter) { try manual.setClassifier(weight: w, bias: b) }
        for m in adapter.modules {
            let l = manual.linears[String(m.name.dropFirst("bert.".count))]!
            #expect(m.scaling != 1)  // the fixture exercises the scaling
            let ba = BLAS.matmul(m.b.tensor, m.a.tensor)
            var w = l.weight.toArray()
            for i in w.indices { w[i] *= 1 + Float(m.scaling) * ba.data[i] }
            l.weight = WeightMatrix(w, rows: l.outFeatures, cols: l.inFeatures)
        }
        let batch = Batch(ids: try MFx.ids("bert.ids"), mask: try MFx.ids("bert.mask"))
        let x = try hira.forward(batch, outputLayers: false, head: .classification).logits
        let y = try manual.forward(batch, outputLayers: false, head: .classification).logits
        #expect(Tensor(shape: [2, 3], data: x).maxAbsDiff(Tensor(shape: [2, 3], data: y)) <= 1e-6)
        // And HiRA switched off is the base model (with the same head).
        hira.setActive(false)
        let base = try ModelRegistry.load(MFx.path("tiny-bert"))
        if let (w, b) = base.classificationHead(of: adapter) { try base.setClassifier(weight: w, bias: b) }
        #expect(
            try hira.forward(batch, outputLayers: false, head: .classification).logits == base.forward(batch, outputLayers: false, head: .classification).logits
        )
    }
}
