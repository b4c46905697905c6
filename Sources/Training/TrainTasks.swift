import Dispatch
import Checkpoint
import Model
import Numerics
#if canImport(Glibc)
import Glibc
#endif

// Training tasks: BERT sequence classification (over two workers) and LLaMA causal language modelling,
// each over its differentiable model.

/// The task-specific half of a trainer: the forward/backward pair, the always-trained head.
protocol TrainTask: AnyObject {
    var headParams: [Param] { get }
    func syncHead()
    var layerCount: Int { get }
    /// Loss of the batch; gradients accumulated (scaled by `scale`); backward stops at `lowest`.
    func lossAndGradients(_ batch: [Example], train: Bool, scale: Float, lowest: Int, rng: inout SeededRNG) -> Double
}

final class BertClassificationTask: TrainTask {
    let trainer: DifferentiableBert
    let classes: Int
    /// The second worker: a DifferentiableBert over the same model and adapters with its own saved activations
    /// and gradient-only parameters (the other half of each batch).
    let replica: DifferentiableBert?

    init(_ t: DifferentiableBert, classes: Int, replica: DifferentiableBert? = nil) {
        trainer = t
        self.classes = classes
        self.replica = replica
    }
    var headParams: [Param] { [trainer.headW, trainer.headB] }
    func syncHead() { trainer.syncHead() }
    var layerCount: Int { trainer.layers.count }

    static func run(_ t: DifferentiableBert, _ batch: [Example], classes: Int, train: Bool, scale: Float, lowest: Int, rng: inout SeededRNG) -> Double {
        let typeIds = batch.map { $0.typeIds.count == $0.ids.count ? $0.typeIds : [Int](repeating: 0, count: $0.ids.count) }
        let logits = t.forward(ids: batch.map(\.ids), typeIds: typeIds, train: train, rng: &rng)
        let (loss, d) = AdapterTrainer.crossEntropy(logits, labels: batch.map(\.label), classes: classes, scale: scale)
        t.backward(d, lowestLayer: lowest)
        return loss
    }

    func lossAndGradients(_ batch: [Example], train: Bool, scale: Float, lowest: Int, rng: inout SeededRNG) -> Double {
        guard let replica, batch.count >= 2 else {
            return BertClassificationTask.run(trainer, batch, classes: classes, train: train, scale: scale, lowest: lowest, rng: &rng)
        }
        // Two halves at once; each half's mean loss is weighted by its share so the sum is the batch mean.
        replica.headW.value = trainer.headW.value
        replica.headB.value = trainer.headB.value
        let cut = (batch.count + 1) / 2
        let parts = [Array(batch[..<cut]), Array(batch[cut...])]
        var rngs = [SeededRNG(seed: rng.next()), SeededRNG(seed: rng.next())]
        var losses = [0.0, 0.0]
        let workers = [trainer, replica]
        let classes = classes
        let n = Float(batch.count)
        rngs.withUnsafeMutableBufferPointer { pr in
            losses.withUnsafeMutableBufferPointer { pl in
                let pr = pr
                let pl = pl
                DispatchQueue.concurrentPerform(iterations: 2) { i in
                    pl[i] = BertClassificationTask.run(
                        workers[i], parts[i], classes: classes, train: train,
                        scale: scale * Float(parts[i].count) / n, lowest: lowest, rng: &pr[i])
                }
            }
        }
        replica.moveGradients(into: trainer)
        return (losses[0] * Double(parts[0].count) + losses[1] * Double(parts[1].count)) / Double(batch.count)
    }
}

/// Causal language modelling: transformers' shifted cross-entropy (position t predicts target t+1,
/// −100 ignored), mean over the scored positions; the (tied) LM head is frozen.
final class LlamaCausalLMTask: TrainTask {
    let trainer: DifferentiableLlama
    init(_ t: DifferentiableLlama) { trainer = t }
    var headParams: [Param] { [] }
    func syncHead() {}
    var layerCount: Int { trainer.layers.count }

    func lossAndGradients(_ batch: [Example], train: Bool, scale: Float, lowest: Int, rng: inout SeededRNG) -> Double {
        let model = trainer.model
        let h = trainer.forward(ids: batch.map(\.ids), train: train, rng: &rng)
        let packing = trainer.packing
        let N = packing.rows
        let H = model.H
        let V = model.vocab
        var logits = [Float](repeating: 0, count: N * V)
        h.withUnsafeBufferPointer { ph in
            model.lmHead.withUnsafeBufferPointer { pw in
                logits.withUnsafeMutableBufferPointer { pl in
                    BLAS.sgemm(
                        transA: false, transB: true, m: N, n: V, k: H, a: ph.baseAddress!, lda: H, b: pw.baseAddress!, ldb: H, c: pl.baseAddress!, ldc: V)
                }
            }
        }
        // Position t of sequence b (row starts[b] + t) predicts its target t + 1.
        let labels = batch.map { $0.targets ?? $0.ids }
        var count = 0
        for b in batch.indices { for t in 0..<max(0, packing.lengths[b] - 1) where labels[b][t + 1] != -100 { count += 1 } }
        var dlogits = [Float](repeating: 0, count: logits.count)
        var loss = 0.0
        logits.withUnsafeBufferPointer { pl in
            dlogits.withUnsafeMutableBufferPointer { pd in
                for b in batch.indices {
                    for t in 0..<max(0, packing.lengths[b] - 1) {
                        let y = labels[b][t + 1]
                        guard y != -100 else { continue }
                        let row = (packing.starts[b] + t) * V
                        loss += Kernels.crossEntropy(
                            pl.baseAddress! + row, n: V, target: y, dlogits: pd.baseAddress! + row,
                            divisor: Double(max(count, 1)), scale: scale)
                    }
                }
            }
        }
        guard count > 0 else { return 0 }
        var dh = [Float](repeating: 0, count: N * H)
        dlogits.withUnsafeBufferPointer { pd in
            model.lmHead.withUnsafeBufferPointer { pw in
                dh.withUnsafeMutableBufferPointer { ph in
                    BLAS.sgemm(
                        transA: false, transB: false, m: N, n: H, k: V, a: pd.baseAddress!, lda: V, b: pw.baseAddress!, ldb: H, c: ph.baseAddress!, ldc: H)
                }
            }
        }
        trainer.backward(dh, lowestLayer: lowest)
        return loss / Double(count)
    }
}
