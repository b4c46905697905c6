import Checkpoint
import Model
import Numerics
#if canImport(Glibc)
import Glibc
#endif

// Training tasks: BERT sequence classification and LLaMA causal language modelling, each over its
// differentiable model, each batch split over up to two workers.

/// The task-specific half of a trainer: the forward/backward pair, the always-trained head.
protocol TrainTask: AnyObject {
    var headParams: [Param] { get }
    func syncHead()
    var layerCount: Int { get }
    /// Loss of the batch; gradients accumulated (scaled by `scale`); backward stops at `lowest`.
    func lossAndGradients(_ batch: [Example], train: Bool, scale: Float, lowest: Int, rng: inout SeededRNG) -> Double
    /// The workers' time by phase since the last call (then cleared): `forward`, `backward`, `adapter`,
    /// `idle` and `merge` of a `TimeBreakdown` (the adapters' work: their products and gradients, LoRA dropout,
    /// DoRA's scaling and magnitude gradient, HiRA's weight gradient; HiRA's forward runs on W ⊙ (1 + s·BA),
    /// computed once per step, and counts as the base's).
    func takeTimes() -> TimeBreakdown
}

/// A differentiable model as one worker of a task: its adapted linears (for the adapters' share of time and
/// for merging gradients).
protocol Worker: AnyObject {
    var trainLinears: [TrainLinear] { get }
}

extension Worker {
    /// Seconds the adapters spent since the last call (then cleared).
    func takeAdapterSeconds() -> Double {
        var s = 0.0
        for l in trainLinears {
            s += l.adapterSeconds
            l.adapterSeconds = 0
        }
        return s
    }
}

/// One worker's share of a split batch: its RNG, its result and its times.
final class WorkerSlot<R>: @unchecked Sendable {
    var rng: SeededRNG
    var result: R? = nil
    var forward = 0.0, busy = 0.0
    init(_ rng: SeededRNG) { self.rng = rng }
}

/// Splits batches over one or two workers (the second: the same model and adapters with its own activations
/// and gradient-only parameters) and keeps their times.
final class Workers<W: Worker> {
    let main: W
    let replica: W?
    var times = TimeBreakdown()

    init(_ main: W, replica: W?) {
        self.main = main
        self.replica = replica
    }

    /// Where a batch of sequences with these lengths is cut in two for the workers: the first k examples and
    /// the rest, k (1 ≤ k < n) the first that balances the two parts' tokens best (packed batches cost
    /// about their tokens).
    static func cut(lengths: [Int]) -> Int {
        let total = lengths.reduce(0, +)
        var best = 1
        var bestGap = Int.max
        var prefix = 0
        for k in 1..<max(2, lengths.count) {
            prefix += lengths[k - 1]
            let gap = abs(2 * prefix - total)
            if gap < bestGap { (best, bestGap) = (k, gap) }
        }
        return best
    }

    /// `body(worker, part, rng)` on the batch's two parts at once (cut by `cut(lengths:)`), each with its own
    /// RNG drawn from `rng` in a fixed order, or on the whole batch with `rng` when there is one worker or one
    /// example; the results in part order. `body` returns its result and its forward seconds (the rest of its
    /// time is the backward's).
    func run<R>(_ batch: [Example], rng: inout SeededRNG, _ body: (W, [Example], inout SeededRNG) -> (R, forward: Double)) -> [R] {
        guard let replica, batch.count >= 2 else {
            let t0 = Clock.now()
            let (r, f) = body(main, batch, &rng)
            times.forward += f
            times.backward += Clock.now() - t0 - f
            times.adapter += main.takeAdapterSeconds()
            return [r]
        }
        let cut = Workers.cut(lengths: batch.map(\.ids.count))
        let parts = [Array(batch[..<cut]), Array(batch[cut...])]
        // One slot per worker, each written only by its own thread.
        let slots = [WorkerSlot<R>(SeededRNG(seed: rng.next())), WorkerSlot<R>(SeededRNG(seed: rng.next()))]
        let workers = [main, replica]
        let t0 = Clock.now()
        Parallel.run(2) { i in
            let s = Clock.now()
            (slots[i].result, slots[i].forward) = body(workers[i], parts[i], &slots[i].rng)
            slots[i].busy = Clock.now() - s
        }
        let wall = Clock.now() - t0
        for (w, slot) in zip(workers, slots) {
            times.forward += slot.forward
            times.backward += slot.busy - slot.forward
            times.idle += max(0, wall - slot.busy)
            times.adapter += w.takeAdapterSeconds()
        }
        let m0 = Clock.now()
        for (mine, theirs) in zip(replica.trainLinears, main.trainLinears) { mine.moveGradients(into: theirs) }
        times.merge += Clock.now() - m0
        return slots.compactMap(\.result)
    }

    func take() -> TimeBreakdown {
        defer { times = TimeBreakdown() }
        return times
    }
}

final class BertClassificationTask: TrainTask {
    let trainer: DifferentiableBert
    let classes: Int
    let workers: Workers<DifferentiableBert>

    init(_ t: DifferentiableBert, classes: Int, replica: DifferentiableBert? = nil) {
        trainer = t
        self.classes = classes
        workers = Workers(t, replica: replica)
    }
    var headParams: [Param] { [trainer.headW, trainer.headB] }
    func syncHead() { trainer.syncHead() }
    var layerCount: Int { trainer.layers.count }
    func takeTimes() -> TimeBreakdown { workers.take() }

    /// Mean loss of `batch` on one worker; gradients scaled by `scale`; returns the loss and the forward's seconds.
    static func run(_ t: DifferentiableBert, _ batch: [Example], classes: Int, train: Bool, scale: Float, lowest: Int, rng: inout SeededRNG)
        -> (Double, forward: Double)
    {
        let t0 = Clock.now()
        let typeIds = batch.map { $0.typeIds.count == $0.ids.count ? $0.typeIds : [Int](repeating: 0, count: $0.ids.count) }
        let logits = t.forward(ids: batch.map(\.ids), typeIds: typeIds, train: train, rng: &rng)
        let (loss, d) = AdapterTrainer.crossEntropy(logits, labels: batch.map(\.label), classes: classes, scale: scale)
        let forward = Clock.now() - t0
        t.backward(d, lowestLayer: lowest)
        return (loss, forward)
    }

    func lossAndGradients(_ batch: [Example], train: Bool, scale: Float, lowest: Int, rng: inout SeededRNG) -> Double {
        if let replica = workers.replica {
            replica.headW.value = trainer.headW.value
            replica.headB.value = trainer.headB.value
        }
        // Each part's mean loss is weighted by its share so the sum is the batch mean.
        let n = Double(batch.count)
        let classes = classes
        let losses = workers.run(batch, rng: &rng) { w, part, r -> (Double, forward: Double) in
            let (l, f) = BertClassificationTask.run(
                w, part, classes: classes, train: train, scale: scale * Float(Double(part.count) / n), lowest: lowest, rng: &r)
            return (l * Double(part.count) / n, f)
        }
        if let replica = workers.replica, batch.count >= 2 {
            for (mine, theirs) in [(replica.headW, trainer.headW), (replica.headB, trainer.headB)] {
                for i in mine.grad.indices { theirs.grad[i] += mine.grad[i] }
                mine.zeroGrad()
            }
        }
        return losses.reduce(0, +)
    }
}

/// Causal language modelling: transformers' shifted cross-entropy (position t predicts target t+1,
/// −100 ignored), mean over the scored positions of the whole batch; the (tied) LM head is frozen.
final class LlamaCausalLMTask: TrainTask {
    let trainer: DifferentiableLlama
    let workers: Workers<DifferentiableLlama>
    init(_ t: DifferentiableLlama, replica: DifferentiableLlama? = nil) {
        trainer = t
        workers = Workers(t, replica: replica)
    }
    var headParams: [Param] { [] }
    func syncHead() {}
    var layerCount: Int { trainer.layers.count }
    func takeTimes() -> TimeBreakdown { workers.take() }

    /// The positions of `e` that are scored, with their targets: t predicts its target t + 1 when that is not −100.
    static func scored(_ e: Example) -> [(position: Int, target: Int)] {
        let y = e.targets ?? e.ids
        return y.count < 2 ? [] : (0..<(y.count - 1)).compactMap { t in y[t + 1] == -100 ? nil : (t, y[t + 1]) }
    }

    /// Summed loss of `batch`'s scored positions on one worker, gradients of the loss summed and divided by
    /// `divisor` (the whole batch's scored positions) times `scale`; returns it and the forward's seconds.
    static func run(_ t: DifferentiableLlama, _ batch: [Example], train: Bool, scale: Float, divisor: Int, lowest: Int, rng: inout SeededRNG)
        -> (Double, forward: Double)
    {
        let t0 = Clock.now()
        let model = t.model
        let h = t.forward(ids: batch.map(\.ids), train: train, rng: &rng)
        let packing = t.packing
        let N = packing.rows
        let H = model.H
        let V = model.vocab
        // Only the scored rows go through the LM head (position t of sequence b, row starts[b] + t, predicts its
        // target t + 1 when that is not −100): prompt rows and each sequence's last row cost nothing there.
        var rows: [Int] = []
        var targets: [Int] = []
        for (b, e) in batch.enumerated() {
            for (p, y) in scored(e) {
                rows.append(packing.starts[b] + p)
                targets.append(y)
            }
        }
        let S = rows.count
        guard S > 0 else { return (0, Clock.now() - t0) }
        var hs = [Float](repeating: 0, count: S * H)
        for (i, r) in rows.enumerated() { for c in 0..<H { hs[i * H + c] = h[r * H + c] } }
        var logits = [Float](repeating: 0, count: S * V)
        hs.withUnsafeBufferPointer { ph in
            logits.withUnsafeMutableBufferPointer { pl in model.lmHead.multiplyTransposed(ph.baseAddress!, rows: S, into: pl.baseAddress!) }
        }
        let cap = model.spec.finalSoftcap
        if let cap { logits.withUnsafeMutableBufferPointer { Kernels.softcapForward($0.baseAddress!, count: $0.count, cap: cap) } }
        var dlogits = [Float](repeating: 0, count: logits.count)
        var loss = 0.0
        logits.withUnsafeBufferPointer { pl in
            dlogits.withUnsafeMutableBufferPointer { pd in
                for i in 0..<S {
                    loss += Kernels.crossEntropy(
                        pl.baseAddress! + i * V, n: V, target: targets[i], dlogits: pd.baseAddress! + i * V,
                        divisor: Double(max(divisor, 1)), scale: scale)
                }
                // Back through Gemma's final soft-cap c·tanh(z/c).
                if let cap { Kernels.softcapBackward(pd.baseAddress!, capped: pl.baseAddress!, count: pd.count, cap: cap) }
            }
        }
        let forward = Clock.now() - t0
        var dhs = [Float](repeating: 0, count: S * H)
        dlogits.withUnsafeBufferPointer { pd in
            dhs.withUnsafeMutableBufferPointer { ph in model.lmHead.multiply(pd.baseAddress!, rows: S, into: ph.baseAddress!) }
        }
        var dh = [Float](repeating: 0, count: N * H)
        for (i, r) in rows.enumerated() { for c in 0..<H { dh[r * H + c] = dhs[i * H + c] } }
        t.backward(dh, lowestLayer: lowest)
        return (loss, forward)
    }

    func lossAndGradients(_ batch: [Example], train: Bool, scale: Float, lowest: Int, rng: inout SeededRNG) -> Double {
        let count = batch.reduce(0) { $0 + LlamaCausalLMTask.scored($1).count }
        guard count > 0 else { return 0 }
        let sums = workers.run(batch, rng: &rng) { w, part, r in
            LlamaCausalLMTask.run(w, part, train: train, scale: scale, divisor: count, lowest: lowest, rng: &r)
        }
        return sums.reduce(0, +) / Double(count)
    }
}
