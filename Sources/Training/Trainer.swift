import Dispatch
import Checkpoint
import Evaluation
import Model
import Numerics
#if canImport(Glibc)
import Glibc
#endif

/// Trains adapters (LoRA, rsLoRA, DoRA, HiRA) with or without CoTo: sequence classification on BERT
/// (with its head) or causal language modelling on LLaMA. Base weights are frozen.
public final class AdapterTrainer {
    public let model: AdaptableModel
    public let config: TrainConfig
    /// Classification labels (empty for causal LM).
    public let labels: [String]
    let task: TrainTask
    let linears: [String: TrainLinear]
    /// Trainable modules (canonical name) in a fixed order, their group index.
    public let modules: [String]
    public let groupOf: [String: Int]
    public let groupCount: Int
    let adam: AdamW
    public internal(set) var step = 0
    var rng: SeededRNG
    public internal(set) var log: [StepLog] = []
    /// Where the steps' time went, over the steps `train` ran in this process.
    public internal(set) var time = TimeBreakdown()

    /// Sequence classification on a BERT model.
    public convenience init(model: BertModel, labels: [String], config c: TrainConfig) throws {
        var rng = SeededRNG(seed: c.seed)
        // Head: keep the model's if it fits the labels, else a new one as transformers initializes it.
        if model.classifier?.outFeatures != labels.count {
            let w = (0..<(labels.count * model.H)).map { _ in Float(rng.normal() * 0.02) }
            try model.setClassifier(weight: Tensor(shape: [labels.count, model.H], data: w), bias: Tensor(zeros: [labels.count]))
        }
        try self.init(model: model, labels: labels, config: c, rng: rng) { tls in
            let hd = model.config.hiddenDropout ?? 0.1
            let ad = model.config.attentionDropout ?? 0.1
            let main = try DifferentiableBert(model: model, trainables: tls, hiddenDropout: Float(hd), attentionDropout: Float(ad))
            var replica: DifferentiableBert? = nil
            if c.workers >= 2 {
                replica = try DifferentiableBert(
                    model: model, trainables: tls.mapValues { $0.replica() }, hiddenDropout: Float(hd), attentionDropout: Float(ad))
            }
            return BertClassificationTask(main, classes: labels.count, replica: replica)
        }
    }

    /// Causal language modelling on a LLaMA model (loss on the positions whose target is not −100).
    public convenience init(causalLM model: LlamaModel, config c: TrainConfig) throws {
        try self.init(model: model, labels: [], config: c, rng: SeededRNG(seed: c.seed)) { tls in
            LlamaCausalLMTask(
                DifferentiableLlama(model: model, trainables: tls),
                replica: c.workers >= 2 ? DifferentiableLlama(model: model, trainables: tls.mapValues { $0.replica() }) : nil)
        }
    }

    init(model: AdaptableModel, labels: [String], config c: TrainConfig, rng seeded: SeededRNG, task makeTask: ([String: TrainLinear]) throws -> TrainTask)
        throws
    {
        self.model = model
        self.config = c
        self.labels = labels
        var rng = seeded
        // Adapters on the targeted linears: A Kaiming-uniform (a = √5, bound 1/√in), B zero; DoRA m = ‖W‖_row.
        var tls: [String: TrainLinear] = [:]
        var mods: [String] = []
        let names = model.linears.keys.sorted { (LoraModule.layerIndex(of: $0) ?? Int.max, $0) < (LoraModule.layerIndex(of: $1) ?? Int.max, $1) }
        let lora = c.loraConfig
        for name in names {
            let lin = model.linears[name]!
            let tl = TrainLinear(lin, name: name)
            if lora.targets(name) {
                let r = c.rank
                let bound = 1 / Float(lin.inFeatures).squareRoot()
                let a = (0..<(r * lin.inFeatures)).map { _ in (rng.uniformFloat() * 2 - 1) * bound }
                let b = [Float](repeating: 0, count: lin.outFeatures * r)
                let scaling = Float(LoraConfig.scaling(alpha: lora.loraAlpha, r: r, rslora: lora.useRslora))
                var m: [Float]? = nil
                if c.dora {
                    var row = [Float](repeating: 0, count: lin.inFeatures)
                    m = (0..<lin.outFeatures).map { o in
                        row.withUnsafeMutableBufferPointer { lin.weight.row(o, into: $0.baseAddress!) }
                        var ss = 0.0
                        for v in row { ss += Double(v) * Double(v) }
                        return Float(ss.squareRoot())
                    }
                }
                lin.install(a: a, b: b, rank: r, scaling: scaling, magnitude: m, variant: c.dora ? .dora : c.variant)
                tl.pA = Param(name: name + ".lora_A", value: a)
                tl.pB = Param(name: name + ".lora_B", value: b)
                if let m { tl.pM = Param(name: name + ".lora_magnitude_vector", value: m) }
                tl.dropout = c.loraDropout
                mods.append(name)
            }
            tls[name] = tl
        }
        guard !mods.isEmpty else {
            throw TrainError(
                "--targets",
                "no linear layer matches \(c.targets.joined(separator: ",")) (the model has \(Array(Set(model.linears.keys.map { String($0.split(separator: ".").last!) })).sorted().joined(separator: ", ")))"
            )
        }
        linears = tls
        modules = mods
        var groups: [String: Int] = [:]
        var keys: [String] = []
        for m in mods {
            let key = c.group == .module ? m : (LoraModule.layerIndex(of: m).map { "layer \($0)" } ?? m)
            if !keys.contains(key) { keys.append(key) }
            groups[m] = keys.firstIndex(of: key)!
        }
        groupOf = groups
        groupCount = keys.count
        for (m, g) in groups { tls[m]!.group = g }
        task = try makeTask(tls)
        adam = AdamW(weightDecay: c.weightDecay)
        self.rng = rng
    }

    var params: [Param] { modules.flatMap { m -> [Param] in [linears[m]!.pA!, linears[m]!.pB!] + (linears[m]!.pM.map { [$0] } ?? []) } + task.headParams }

    /// Loss and dlogits of softmax cross-entropy (mean over the batch).
    static func crossEntropy(_ logits: [Float], labels: [Int], classes C: Int, scale: Float) -> (Double, [Float]) {
        var loss = 0.0
        var d = [Float](repeating: 0, count: logits.count)
        let B = labels.count
        logits.withUnsafeBufferPointer { pl in
            d.withUnsafeMutableBufferPointer { pd in
                for b in 0..<B {
                    loss += Kernels.crossEntropy(
                        pl.baseAddress! + b * C, n: C, target: labels[b], dlogits: pd.baseAddress! + b * C,
                        divisor: Double(B), scale: scale)
                }
            }
        }
        return (loss / Double(B), d)
    }

    /// One gradient computation on a batch (no update); returns the loss. Used by training and tests.
    public func lossAndGradients(_ batch: [Example], train: Bool, scale: Float = 1) -> Double {
        let active = modules.filter { model.linears[$0]!.active }
        let lowest = active.compactMap { LoraModule.layerIndex(of: $0) }.min() ?? task.layerCount
        return task.lossAndGradients(batch, train: train, scale: scale, lowest: lowest, rng: &rng)
    }

    /// Gradient of a parameter by PEFT-style name: `<module>.lora_A`, `.lora_B`, `.lora_magnitude_vector`, `classifier.weight|bias`.
    public func gradient(_ name: String) -> [Float]? { params.first { $0.name == name }?.grad }

    public var totalSteps: Int = 0

    /// A recorded on/off plan to replay instead of CoTo's draws: entry k holds the active flag of every group
    /// (`groupCount`, in `groupOf` order) at the optimizer step with 0-based index k; at least one group per step.
    /// For re-running a run's exact switches with another seed, or matching another implementation step by step.
    public var activityPlan: [[Bool]]? = nil

    /// Throws (never traps) on an example the model cannot run: ids or type ids outside the tables, more
    /// tokens than max_position_embeddings, a label index outside the head, targets of another length.
    /// Readers check their files with file:line first; this guards callers of the library.
    public func check(_ data: [Example], name: String) throws {
        let limits = model.inputLimits
        for (i, e) in data.enumerated() {
            let place = "\(name) example \(i + 1)"
            try limits.check(ids: e.ids, typeIds: e.typeIds, at: place)
            guard e.typeIds.count == e.ids.count else { throw TrainError(place, "\(e.typeIds.count) type ids for \(e.ids.count) tokens") }
            if let t = e.targets {
                guard t.count == e.ids.count, e.ids.count >= 2 else { throw TrainError(place, "needs at least two tokens and one target per token") }
                if let bad = t.first(where: { $0 != -100 && ($0 < 0 || $0 >= limits.vocab) }) {
                    throw TrainError(place, "target \(bad) is outside the vocabulary of \(limits.vocab)")
                }
            } else if !labels.isEmpty, !(0..<labels.count).contains(e.label) {
                throw TrainError(place, "label index \(e.label) is outside the \(labels.count) labels")
            }
        }
    }

    /// Runs the whole training; `data` is tokenized and labelled, `eval` optional.
    public func train(
        _ data: [Example], eval: [Example]?, events: ((TrainEvent) -> Void)? = nil,
        checkpoint: ((AdapterTrainer) throws -> Void)? = nil
    ) throws {
        try check(data, name: "training")
        if let e = eval { try check(e, name: "evaluation") }
        let c = config
        let perStep = c.batchSize * c.gradAccum
        let stepsPerEpoch = max(1, (data.count + perStep - 1) / perStep)
        let T = c.steps ?? c.epochs * stepsPerEpoch
        totalSteps = T
        let coto = CoToScheduler(totalSteps: T, initialP: c.initialP, finalP: c.finalP, stage1Ratio: c.stage1Ratio, enabled: c.coto)
        if let plan = activityPlan {
            guard plan.count >= T else { throw TrainError("activity plan", "has \(plan.count) steps for a run of \(T)") }
            if let k = plan.firstIndex(where: { $0.count != groupCount }) {
                throw TrainError("activity plan", "step \(k + 1) has \(plan[k].count) flags for \(groupCount) groups")
            }
            if let k = plan.firstIndex(where: { !$0.contains(true) }) { throw TrainError("activity plan", "step \(k + 1) switches every group off") }
        }
        let warmup = Int((Double(T) * c.warmupRatio).rounded(.down))
        let lengths = data.map(\.ids.count)
        var epochOrder: (epoch: Int, order: [Int]) = (-1, [])
        while step < T {
            let t0 = now()
            // Data order: a shuffle per epoch from the seed, so a resumed run sees the same batches; formed once
            // per epoch.
            let epoch = step / stepsPerEpoch
            let within = step % stepsPerEpoch
            if epochOrder.epoch != epoch {
                var order = Array(data.indices)
                if c.shuffle {
                    var drng = SeededRNG(seed: c.seed &+ 0x9E37_79B9 &* UInt64(epoch + 1))
                    drng.shuffle(&order)
                }
                if c.groupByLength { order = Self.lengthGrouped(order, lengths: lengths, batch: c.batchSize) }
                epochOrder = (epoch, order)
            }
            let order = epochOrder.order
            let active = activityPlan?[step] ?? coto.draw(step: step, groups: groupCount, rng: &rng)
            for m in modules { model.linears[m]!.active = active[groupOf[m]!] }
            for p in params { p.zeroGrad() }
            var loss = 0.0
            var tokens = 0
            for micro in 0..<c.gradAccum {
                let start = (within * c.gradAccum + micro) * c.batchSize
                guard start < order.count else { break }
                let batch = order[start..<min(order.count, start + c.batchSize)].map { data[$0] }
                tokens += batch.reduce(0) { $0 + $1.ids.count }
                loss += lossAndGradients(batch, train: true, scale: 1 / Float(c.gradAccum)) / Double(c.gradAccum)
            }
            let t1 = now()
            let activeParams =
                modules.filter { active[groupOf[$0]!] }.flatMap { m -> [Param] in
                    [linears[m]!.pA!, linears[m]!.pB!] + (linears[m]!.pM.map { [$0] } ?? [])
                } + task.headParams
            clipGradNorm(activeParams, maxNorm: c.maxGradNorm)
            let lr = c.lr * c.schedule.factor(step: step, total: T, warmup: warmup)
            for p in activeParams { adam.update(p, lr: lr) }
            for m in modules where active[groupOf[m]!] { linears[m]!.sync() }
            task.syncHead()
            let dt = max(now() - t0, 1e-9)
            account(task.takeTimes(), step: dt, optimizer: now() - t1)
            let entry = StepLog(
                step: step + 1, loss: loss, lr: lr, p: coto.p(step: step),
                activeGroups: (0..<groupCount).filter { active[$0] }, tokensPerSecond: Double(tokens) / dt, seconds: dt)
            log.append(entry)
            step += 1
            model.setActive(true)
            events?(.step(entry, total: T))
            if let e = eval, c.evalEvery > 0, step % c.evalEvery == 0 || step == T {
                let (acc, l) = try evaluate(e)
                (log[log.count - 1].devAccuracy, log[log.count - 1].devLoss) = (acc, l)
                events?(.eval(step: step, accuracy: acc, loss: l))
            }
            if c.saveEvery > 0, step % c.saveEvery == 0, step < T { try checkpoint?(self) }
        }
        model.setActive(true)
    }

    /// Adds one step to `time`: its wall time `step`, the workers' phases, the optimizer's wall time; the rest
    /// (outside the workers' parallel part, the merge and the optimizer) is `other`.
    func account(_ w: TimeBreakdown, step: Double, optimizer: Double) {
        let workers = config.workers >= 2 ? 2 : 1
        time.workers = workers
        time.steps += step
        time.forward += w.forward
        time.backward += w.backward
        time.adapter += w.adapter
        time.idle += w.idle
        time.merge += w.merge
        time.optimizer += optimizer
        let parallel = (w.forward + w.backward + w.idle) / Double(workers)
        time.other += max(0, step - parallel - w.merge - optimizer)
    }

    /// HF transformers' `group_by_length` (`get_length_grouped_indices`) on an epoch's order: cut it into
    /// megabatches of m·batch examples (m = min(n / (4·batch), 50), at least 1), sort each by length, longest
    /// first (ties keep their order), then swap the first element of the megabatch holding the longest example
    /// with the first megabatch's, so the longest batch comes first (a memory peak shows at once).
    public static func lengthGrouped(_ order: [Int], lengths: [Int], batch: Int) -> [Int] {
        guard !order.isEmpty, batch > 0 else { return order }
        let mult = max(1, min(order.count / (batch * 4), 50))
        let size = mult * batch
        var mega: [[Int]] = stride(from: 0, to: order.count, by: size).map { start in
            let part = Array(order[start..<min(order.count, start + size)])
            return part.indices.sorted { a, b in
                lengths[part[a]] != lengths[part[b]] ? lengths[part[a]] > lengths[part[b]] : a < b
            }.map { part[$0] }
        }
        let maxima = mega.map { lengths[$0[0]] }
        if let longest = maxima.max(), let top = maxima.firstIndex(of: longest), top != 0 {
            (mega[0][0], mega[top][0]) = (mega[top][0], mega[0][0])
        }
        return mega.flatMap { $0 }
    }

    /// Accuracy and loss with every adapter active, no dropout (causal LM: accuracy is next-token accuracy).
    public func evaluate(_ data: [Example]) throws -> (Double, Double) {
        model.setActive(true)
        if labels.isEmpty {
            var correct = 0
            var count = 0
            var nll = 0.0
            for e in data {
                guard let y = e.targets else { continue }
                let out = try model.forward(Batch(ids: [e.ids]), outputLayers: false, head: .languageModel)
                let V = out.logitsWidth
                for t in 0..<(e.ids.count - 1) where y[t + 1] != -100 {
                    let row = out.logits[(t * V)..<((t + 1) * V)]
                    nll += Kernels.crossEntropy(row, target: y[t + 1])
                    if row.indices.max(by: { row[$0] < row[$1] })! - t * V == y[t + 1] { correct += 1 }
                    count += 1
                }
            }
            return (Double(correct) / Double(max(count, 1)), nll / Double(max(count, 1)))
        }
        // The classification scorer coto-eval uses (accuracy, mean cross-entropy).
        // Batches of similar lengths (less padding; padded positions never change a result), as the sweeps do.
        var metrics = ClassificationMetrics(labels: labels)
        let order = data.indices.sorted { (data[$0].ids.count, $0) < (data[$1].ids.count, $1) }
        for start in stride(from: 0, to: order.count, by: 32) {
            let batch = order[start..<min(order.count, start + 32)].map { data[$0] }
            let padded = Batch.padded(batch.map(\.ids), typeIds: batch.map(\.typeIds), pad: 0)
            let out = try model.forward(padded, outputLayers: false, head: .classification)
            metrics.add(out, gold: batch.map(\.label))
        }
        return (metrics.accuracy, metrics.loss)
    }

    func now() -> Double { Clock.now() }
}
