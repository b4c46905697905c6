import Testing
import Foundation
import TestSupport
@testable import Training
import Evaluation
@testable import Model
@testable import Checkpoint
import Numerics

/// Training and inference run one forward pass: the differentiable models (dropout off) give the inference
/// models' logits for BERT classification and LLaMA language modelling, with every adapter variant, on the
/// 4-layer fixture copies with adapters at a scale that changes the output. They share every kernel
/// (Kernels); what differs is only the adapted linear (TrainLinear vs AdaptedLinear), so the tolerance is
/// the Float32 rounding of B·A applied in two orders.
@Suite struct KernelEqualityTests {
    @Test(arguments: ["bert-lora-layer", "bert-dora-layer", "bert-hira-layer", "llama-lora-layer", "llama-dora-layer", "llama-hira-layer"])
    func trainingForwardEqualsInferenceForward(tag: String) throws {
        let (t, batch) = try PartialActivationTests.trainer(tag)
        var rng = SeededRNG(seed: 1)
        let ours: [Float]
        let theirs: [Float]
        // The training models pack the sequences back to back; inference pads them: equal at every real token.
        #expect(Set(batch.map(\.ids.count)).count > 1, "the batch's sequences should differ in length")
        if let task = t.task as? BertClassificationTask {
            let padded = Batch.padded(batch.map(\.ids), typeIds: batch.map(\.typeIds), pad: 0)
            ours = task.trainer.forward(ids: batch.map(\.ids), typeIds: batch.map(\.typeIds), train: false, rng: &rng)
            theirs = try t.model.forward(padded, outputLayers: false, head: .classification).logits
        } else {
            let task = try #require(t.task as? LlamaCausalLMTask)
            let padded = Batch.padded(batch.map(\.ids), pad: 0)
            let h = task.trainer.forward(ids: batch.map(\.ids), train: false, rng: &rng)
            let model = task.trainer.model
            let rows = task.trainer.packing.rows
            #expect(rows == batch.map(\.ids.count).reduce(0, +))
            var logits = [Float](repeating: 0, count: rows * model.vocab)
            h.withUnsafeBufferPointer { ph in
                model.lmHead.withFloat32 { pw in
                    logits.withUnsafeMutableBufferPointer { pl in
                        BLAS.sgemm(
                            transA: false, transB: true, m: rows, n: model.vocab, k: model.H, a: ph.baseAddress!, lda: model.H,
                            b: pw, ldb: model.H, c: pl.baseAddress!, ldc: model.vocab)
                    }
                }
            }
            ours = logits
            // The padded logits at the real tokens, in packed order.
            let all = try t.model.forward(padded, outputLayers: false, head: .languageModel).logits
            let V = model.vocab
            var real: [Float] = []
            for b in batch.indices {
                for t in 0..<batch[b].ids.count {
                    let row = b * padded.length + t
                    real += all[(row * V)..<((row + 1) * V)]
                }
            }
            theirs = real
        }
        #expect(ours.count == theirs.count && !ours.isEmpty)
        let err = relErr(ours, theirs)
        #expect(err <= 1e-6, "\(tag): relative difference \(err)")
        // The adapters matter here: the same batch with every adapter off moves the logits.
        t.model.setActive(false)
        defer { t.model.setActive(true) }
        let off = try t.model.forward(
            tag.hasPrefix("bert") ? Batch.padded(batch.map(\.ids), typeIds: batch.map(\.typeIds), pad: 0) : Batch.padded(batch.map(\.ids), pad: 0),
            outputLayers: false, head: tag.hasPrefix("bert") ? .classification : .languageModel
        ).logits
        #expect(relErr(off, theirs) > 1e-3, "\(tag): adapters do not change the logits (\(relErr(off, theirs)))")
    }
}

/// Training reads task files through the same reader and tokenizes prompt/completion records through the
/// same split as evaluation (TaskData.contextContinuationIds); it keeps the prompt and cuts the end.
@Suite struct TrainingDataTests {
    @Test func promptCompletionIsSplitAsEvaluationSplitsIt() throws {
        #expect(FileManager.default.fileExists(atPath: TestPaths.minilm), "run make setup")
        let tok = try TokenizerLoader.load(modelDir: TestPaths.minilm)
        let limits = try ModelRegistry.load(TestPaths.minilm).inputLimits
        let dir = TempDir("coto-lm-data")
        let path = dir.file("lm.jsonl")
        try "{\"prompt\": \"a dog is a \", \"completion\": \"kind of animal\"}\n{\"text\": \"the cat sat on the mat\"}\n"
            .write(toFile: path, atomically: true, encoding: .utf8)
        let (p, c) = TaskData.contextContinuationIds(tok, context: "a dog is a ", continuation: "kind of animal")
        #expect(!p.isEmpty && !c.isEmpty)
        let ex = try TrainingData.causalLM(path, tokenizer: tok, maxLength: 64, limits: limits)
        #expect(ex.count == 2)
        #expect(ex[0].ids == p + c && ex[0].targets == p.map { _ in -100 } + c)
        #expect(ex[1].targets == ex[1].ids && ex[1].ids.count >= 2)
        // maxLength cuts the end: the prompt stays, one completion token is left to score.
        let short = try TrainingData.causalLM(path, tokenizer: tok, maxLength: p.count + 1, limits: limits)
        #expect(short[0].ids == Array((p + c).prefix(p.count + 1)) && short[0].targets?.filter { $0 != -100 } == [c[0]])
        // Nothing left to score: an error naming the record.
        do {
            _ = try TrainingData.causalLM(path, tokenizer: tok, maxLength: p.count, limits: limits)
            Issue.record("accepted")
        } catch let e as TrainError { #expect(e.subject == path + ":1" && e.message.contains("cut off")) }
    }
}

@Suite struct RoPEKernelTests {
    /// RoPE rotates each (i, i + d/2) pair: the backward (rotation by −θ) undoes the forward, and the
    /// forward keeps every pair's length; a nonzero angle moves the values.
    @Test func backwardUndoesForwardAndLengthsStay() {
        var rng = SeededRNG(seed: 5)
        let (rows, heads, d) = (3, 2, 8)
        let angles = (0..<(rows * d / 2)).map { _ in Float(rng.uniformDouble() * 6) }
        let (cos, sin) = (angles.map { cosf($0) }, angles.map { sinf($0) })
        let x = (0..<(rows * heads * d)).map { _ in Float(rng.normal()) }
        var y = x
        y.withUnsafeMutableBufferPointer { Kernels.ropeForward($0.baseAddress!, rows: rows, heads: heads, headDim: d, cos: cos, sin: sin) }
        #expect(relErr(y, x) > 0.1)
        for r in 0..<rows {
            for h in 0..<heads {
                for i in 0..<(d / 2) {
                    let base = r * heads * d + h * d
                    let before = x[base + i] * x[base + i] + x[base + i + d / 2] * x[base + i + d / 2]
                    let after = y[base + i] * y[base + i] + y[base + i + d / 2] * y[base + i + d / 2]
                    #expect(abs(before - after) <= 1e-5 * max(1, before))
                }
            }
        }
        y.withUnsafeMutableBufferPointer { Kernels.ropeBackward($0.baseAddress!, rows: rows, heads: heads, headDim: d, cos: cos, sin: sin) }
        #expect(relErr(y, x) <= 1e-6)
    }
}
