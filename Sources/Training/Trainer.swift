import Dispatch
import Checkpoint
import Model
import Numerics
#if canImport(Glibc)
import Glibc
#endif

/// What `coto-train` is asked to do (CLI options map one to one).
public struct TrainConfig: Sendable {
    public enum Group: String, Sendable, CaseIterable { case layer, module }
    public var variant: AdaptedLinear.Variant = .lora
    public var rslora = false
    public var dora = false
    public var rank = 8
    public var alpha: Double? = nil
    public var targets: [String] = ["query", "value"]
    public var coto = true
    public var initialP = 0.1, finalP = 1.0, stage1Ratio = 0.75
    public var group: Group = .layer
    public var epochs = 3
    public var steps: Int? = nil
    public var batchSize = 16
    public var gradAccum = 1
    public var lr: Float = 5e-4
    public var weightDecay: Float = 0.01
    public var warmupRatio = 0.0
    public var schedule: Schedule = .linear
    public var maxLength = 128
    public var seed: UInt64 = 0
    public var loraDropout: Float = 0
    public var maxGradNorm: Float = 1.0
    public var evalEvery = 0
    public var saveEvery = 0
    /// Shuffle the data each epoch (seeded). Off: the file's order, every epoch (benchmarks feed a peer the
    /// same batches; curricula).
    public var shuffle = true
    /// BERT classification: each micro-batch is split over this many workers (at most 2), each with its own
    /// activations and gradient buffers and single-threaded BLAS; gradients are summed in a fixed order.
    /// The result depends on the worker count (dropout streams per half), not on timing.
    public var workers = 1
    public init() {}
}

/// One optimizer step's record (train_log.jsonl).
public struct StepLog: Sendable {
    public var step: Int
    public var loss: Double
    public var lr: Float
    public var p: Double
    public var activeGroups: [Int]
    public var tokensPerSecond: Double
    /// Wall time of the step (forward, backward, optimizer).
    public var seconds: Double = 0
    public var json: JSON {
        .object([("step", .int(step)), ("loss", .double(loss)), ("lr", .double(Double(lr))), ("p", .double(p)),
                 ("active_groups", .array(activeGroups.map { JSON.int($0) })), ("tokens_per_s", .double(tokensPerSecond)),
                 ("seconds", .double(seconds))])
    }
}

public enum TrainEvent: Sendable {
    case step(StepLog, total: Int)
    case eval(step: Int, accuracy: Double, loss: Double)
    case saved(step: Int, path: String)
}

/// A labelled example, tokenized.
public struct Example: Sendable {
    public var ids: [Int]
    public var typeIds: [Int]
    /// Classification label index.
    public var label: Int
    /// Causal LM: the label of each position (−100: not scored), as transformers' `labels`.
    public var targets: [Int]?
    public init(ids: [Int], typeIds: [Int], label: Int) { self.ids = ids; self.typeIds = typeIds; self.label = label; targets = nil }
    public init(ids: [Int], targets: [Int]) { self.ids = ids; typeIds = ids.map { _ in 0 }; label = 0; self.targets = targets }
}

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

    init(_ t: DifferentiableBert, classes: Int, replica: DifferentiableBert? = nil) { trainer = t; self.classes = classes; self.replica = replica }
    var headParams: [Param] { [trainer.headW, trainer.headB] }
    func syncHead() { trainer.syncHead() }
    var layerCount: Int { trainer.layers.count }

    static func run(_ t: DifferentiableBert, _ batch: [Example], classes: Int, train: Bool, scale: Float, lowest: Int, rng: inout SeededRNG) -> Double {
        let padded = Batch.padded(batch.map(\.ids), typeIds: batch.map(\.typeIds), pad: 0)
        let logits = t.forward(ids: padded.ids, typeIds: padded.typeIds, mask: padded.mask, train: train, rng: &rng)
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
        let workers = [trainer, replica], classes = classes, n = Float(batch.count)
        rngs.withUnsafeMutableBufferPointer { pr in losses.withUnsafeMutableBufferPointer { pl in
            let pr = pr, pl = pl
            DispatchQueue.concurrentPerform(iterations: 2) { i in
                pl[i] = BertClassificationTask.run(workers[i], parts[i], classes: classes, train: train,
                                                   scale: scale * Float(parts[i].count) / n, lowest: lowest, rng: &pr[i])
            }
        } }
        replica.moveGradients(into: trainer)
        return (losses[0] * Double(parts[0].count) + losses[1] * Double(parts[1].count)) / Double(batch.count)
    }
}

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
    public private(set) var step = 0
    var rng: SeededRNG
    public private(set) var log: [StepLog] = []

    /// Sequence classification on a BERT model.
    public convenience init(model: BertModel, labels: [String], config c: TrainConfig) throws {
        var rng = SeededRNG(seed: c.seed)
        // Head: keep the model's if it fits the labels, else a new one as transformers initializes it.
        if model.classifier?.outFeatures != labels.count {
            let w = (0..<(labels.count * model.H)).map { _ in Float(rng.normal() * 0.02) }
            try model.setClassifier(weight: Tensor(shape: [labels.count, model.H], data: w), bias: Tensor(zeros: [labels.count]))
        }
        try self.init(model: model, labels: labels, config: c, rng: rng) { tls in
            let hd = model.config.raw(\.hiddenDropout) ?? 0.1, ad = model.config.raw(\.attentionDropout) ?? 0.1
            let main = try DifferentiableBert(model: model, trainables: tls, hiddenDropout: Float(hd), attentionDropout: Float(ad))
            var replica: DifferentiableBert? = nil
            if c.workers >= 2 {
                replica = try DifferentiableBert(model: model, trainables: tls.mapValues { $0.replica() }, hiddenDropout: Float(hd), attentionDropout: Float(ad))
            }
            return BertClassificationTask(main, classes: labels.count, replica: replica)
        }
    }

    /// Causal language modelling on a LLaMA model (loss on the positions whose target is not −100).
    public convenience init(causalLM model: LlamaModel, config c: TrainConfig) throws {
        try self.init(model: model, labels: [], config: c, rng: SeededRNG(seed: c.seed)) { tls in
            LlamaCausalLMTask(DifferentiableLlama(model: model, trainables: tls))
        }
    }

    init(model: AdaptableModel, labels: [String], config c: TrainConfig, rng seeded: SeededRNG, task makeTask: ([String: TrainLinear]) throws -> TrainTask) throws {
        self.model = model
        self.config = c
        self.labels = labels
        var rng = seeded
        // Adapters on the targeted linears: A Kaiming-uniform (a = √5, bound 1/√in), B zero; DoRA m = ‖W‖_row.
        var tls: [String: TrainLinear] = [:]
        var mods: [String] = []
        let names = model.linears.keys.sorted { (LoraModule.layerIndex(of: $0) ?? Int.max, $0) < (LoraModule.layerIndex(of: $1) ?? Int.max, $1) }
        for name in names {
            let lin = model.linears[name]!
            let tl = TrainLinear(lin, name: name)
            let targeted = c.targets == ["all-linear"] || c.targets.contains { name == $0 || name.hasSuffix("." + $0) }
            if targeted {
                let r = c.rank
                let bound = 1 / Float(lin.inFeatures).squareRoot()
                let a = (0..<(r * lin.inFeatures)).map { _ in (rng.uniformFloat() * 2 - 1) * bound }
                let b = [Float](repeating: 0, count: lin.outFeatures * r)
                let alpha = c.alpha ?? Double(r)
                let scaling = Float(c.rslora ? alpha / Double(r).squareRoot() : alpha / Double(r))
                var m: [Float]? = nil
                if c.dora {
                    m = (0..<lin.outFeatures).map { o in
                        var ss = 0.0
                        for i in 0..<lin.inFeatures { let v = Double(lin.weight[o * lin.inFeatures + i]); ss += v * v }
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
            throw TrainError("--targets", "no linear layer matches \(c.targets.joined(separator: ",")) (the model has \(Array(Set(model.linears.keys.map { String($0.split(separator: ".").last!) })).sorted().joined(separator: ", ")))")
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
        logits.withUnsafeBufferPointer { pl in d.withUnsafeMutableBufferPointer { pd in
            for b in 0..<B {
                loss += Kernels.crossEntropy(pl.baseAddress! + b * C, n: C, target: labels[b], dlogits: pd.baseAddress! + b * C,
                                             divisor: Double(B), scale: scale)
            }
        } }
        return (loss / Double(B), d)
    }

    /// One gradient computation on a batch (no update); returns the loss. Used by training and tests.
    public func lossAndGradients(_ batch: [Example], train: Bool, scale: Float = 1) -> Double {
        let active = modules.filter { model.linears[$0]!.active }
        let lowest = active.compactMap { LoraModule.layerIndex(of: $0) }.min() ?? task.layerCount
        return task.lossAndGradients(batch, train: train, scale: scale, lowest: lowest, rng: &rng)
    }

    // MARK: checkpoints

    /// Everything a resumed run needs: parameters, AdamW moments and step counts, step, RNG, log.
    public func saveCheckpoint(to dir: String, baseModel: String) throws {
        try FileSystem.makeDirectory(dir)
        try adapter(baseModel: baseModel).save(to: FileSystem.join(dir, "adapter"))
        var entries: [TensorEntry] = []
        var meta: [(String, String)] = [("format", "pt"), ("step", String(step)),
                                        ("rng", rng.state.map { String($0) }.joined(separator: ",")),
                                        ("log", JSON.array(log.map(\.json)).compact)]
        for p in params {
            let (m, v, st) = p.state
            entries.append(TensorEntry(name: p.name + ".value", tensor: Tensor(shape: [p.value.count], data: p.value)))
            entries.append(TensorEntry(name: p.name + ".m", tensor: Tensor(shape: [m.count], data: m)))
            entries.append(TensorEntry(name: p.name + ".v", tensor: Tensor(shape: [v.count], data: v)))
            meta.append(("step:" + p.name, String(st)))
        }
        try SafeTensorsWriter.write(entries, metadata: meta, to: FileSystem.join(dir, "optimizer.safetensors"))
    }

    public func loadCheckpoint(from dir: String) throws {
        let path = FileSystem.join(dir, "optimizer.safetensors")
        let f = try SafeTensorsFile(path: path)
        for p in params {
            guard let v = try? f.tensor(p.name + ".value").data, v.count == p.value.count,
                  let m = try? f.tensor(p.name + ".m").data, let vv = try? f.tensor(p.name + ".v").data,
                  let st = f.metadataValue("step:" + p.name).flatMap(Int.init) else {
                throw TrainError(path, "checkpoint does not match this run's configuration (parameter \(p.name))")
            }
            p.value = v
            p.restore(m: m, v: vv, step: st)
        }
        guard let st = f.metadataValue("step").flatMap(Int.init),
              let r = f.metadataValue("rng").map({ $0.split(separator: ",").compactMap { UInt64($0) } }).flatMap(SeededRNG.init(state:)) else {
            throw TrainError(path, "checkpoint has no step / RNG state")
        }
        step = st
        rng = r
        if let text = f.metadataValue("log"), let arr = (try? JSON.parse(string: text))?.arrayValue {
            log = arr.map { e in
                StepLog(step: e["step"]?.intValue ?? 0, loss: e["loss"]?.doubleValue ?? 0, lr: Float(e["lr"]?.doubleValue ?? 0),
                        p: e["p"]?.doubleValue ?? 1, activeGroups: e["active_groups"]?.arrayValue?.compactMap(\.intValue) ?? [],
                        tokensPerSecond: e["tokens_per_s"]?.doubleValue ?? 0, seconds: e["seconds"]?.doubleValue ?? 0)
            }
        }
        for m in modules { linears[m]!.sync() }
        task.syncHead()
    }

    /// Starts from an existing adapter's parameters (continued training; gradient tests).
    public func load(_ adapter: Adapter) throws {
        for m in adapter.modules {
            let key = m.name.hasPrefix("bert.") ? String(m.name.dropFirst(5)) : m.name.hasPrefix("model.") ? String(m.name.dropFirst(6)) : m.name
            guard let tl = linears[key], let pA = tl.pA, let pB = tl.pB, pA.value.count == m.a.tensor.count, pB.value.count == m.b.tensor.count else {
                throw TrainError(adapter.source, "module '\(m.name)' does not match the training configuration (targets / rank)")
            }
            pA.value = m.a.tensor.data
            pB.value = m.b.tensor.data
            if let mag = m.magnitude { tl.pM?.value = mag.tensor.data }
            tl.lin.install(a: pA.value, b: pB.value, rank: m.rank, scaling: Float(m.scaling), magnitude: tl.pM?.value, variant: tl.lin.variant)
        }
        if let head = task as? BertClassificationTask {
            if let w = adapter.otherTensors.first(where: { $0.0.hasSuffix("classifier.weight") }), w.1.tensor.count == head.trainer.headW.value.count {
                head.trainer.headW.value = w.1.tensor.data
            }
            if let b = adapter.otherTensors.first(where: { $0.0.hasSuffix("classifier.bias") }), b.1.tensor.count == head.trainer.headB.value.count {
                head.trainer.headB.value = b.1.tensor.data
            }
        }
        task.syncHead()
    }

    /// Gradient of a parameter by PEFT-style name: `<module>.lora_A`, `.lora_B`, `.lora_magnitude_vector`, `classifier.weight|bias`.
    public func gradient(_ name: String) -> [Float]? { params.first { $0.name == name }?.grad }

    public var totalSteps: Int = 0

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
    public func train(_ data: [Example], eval: [Example]?, events: ((TrainEvent) -> Void)? = nil,
                      checkpoint: ((AdapterTrainer) throws -> Void)? = nil) throws {
        try check(data, name: "training")
        if let e = eval { try check(e, name: "evaluation") }
        let c = config
        let perStep = c.batchSize * c.gradAccum
        let stepsPerEpoch = max(1, (data.count + perStep - 1) / perStep)
        let T = c.steps ?? c.epochs * stepsPerEpoch
        totalSteps = T
        let coto = CoToScheduler(totalSteps: T, initialP: c.initialP, finalP: c.finalP, stage1Ratio: c.stage1Ratio, enabled: c.coto)
        let warmup = Int((Double(T) * c.warmupRatio).rounded(.down))
        while step < T {
            let t0 = now()
            // Data order: a shuffle per epoch from the seed, so a resumed run sees the same batches.
            let epoch = step / stepsPerEpoch, within = step % stepsPerEpoch
            var order = Array(data.indices)
            if c.shuffle {
                var drng = SeededRNG(seed: c.seed &+ 0x9E37_79B9 &* UInt64(epoch + 1))
                drng.shuffle(&order)
            }
            let active = coto.draw(step: step, groups: groupCount, rng: &rng)
            for m in modules { model.linears[m]!.active = active[groupOf[m]!] }
            for p in params { p.zeroGrad() }
            var loss = 0.0, tokens = 0
            for micro in 0..<c.gradAccum {
                let start = (within * c.gradAccum + micro) * c.batchSize
                guard start < order.count else { break }
                let batch = order[start..<min(order.count, start + c.batchSize)].map { data[$0] }
                tokens += batch.reduce(0) { $0 + $1.ids.count }
                loss += lossAndGradients(batch, train: true, scale: 1 / Float(c.gradAccum)) / Double(c.gradAccum)
            }
            let activeParams = modules.filter { active[groupOf[$0]!] }.flatMap { m -> [Param] in
                [linears[m]!.pA!, linears[m]!.pB!] + (linears[m]!.pM.map { [$0] } ?? [])
            } + task.headParams
            clipGradNorm(activeParams, maxNorm: c.maxGradNorm)
            let lr = c.lr * c.schedule.factor(step: step, total: T, warmup: warmup)
            for p in activeParams { adam.update(p, lr: lr) }
            for m in modules where active[groupOf[m]!] { linears[m]!.sync() }
            task.syncHead()
            let dt = max(now() - t0, 1e-9)
            let entry = StepLog(step: step + 1, loss: loss, lr: lr, p: coto.p(step: step),
                                activeGroups: (0..<groupCount).filter { active[$0] }, tokensPerSecond: Double(tokens) / dt, seconds: dt)
            log.append(entry)
            step += 1
            model.setActive(true)
            events?(.step(entry, total: T))
            if let e = eval, c.evalEvery > 0, step % c.evalEvery == 0 || step == T {
                let (acc, l) = try evaluate(e)
                events?(.eval(step: step, accuracy: acc, loss: l))
            }
            if c.saveEvery > 0, step % c.saveEvery == 0, step < T { try checkpoint?(self) }
        }
        model.setActive(true)
    }

    /// Accuracy and loss with every adapter active, no dropout (causal LM: accuracy is next-token accuracy).
    public func evaluate(_ data: [Example]) throws -> (Double, Double) {
        model.setActive(true)
        if labels.isEmpty {
            var correct = 0, count = 0, nll = 0.0
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
        var correct = 0, loss = 0.0
        for start in stride(from: 0, to: data.count, by: 32) {
            let batch = Array(data[start..<min(data.count, start + 32)])
            let padded = Batch.padded(batch.map(\.ids), typeIds: batch.map(\.typeIds), pad: 0)
            let out = try model.forward(padded, outputLayers: false, head: .classification)
            let C = out.logitsWidth
            let (l, _) = AdapterTrainer.crossEntropy(out.logits, labels: batch.map(\.label), classes: C, scale: 1)
            loss += l * Double(batch.count)
            for (i, e) in batch.enumerated() {
                let row = out.logits[(i * C)..<((i + 1) * C)]
                if row.indices.max(by: { row[$0] < row[$1] })! - i * C == e.label { correct += 1 }
            }
        }
        return (Double(correct) / Double(data.count), loss / Double(data.count))
    }

    /// The trained adapter in PEFT's layout (module names as AutoModelForSequenceClassification has them).
    public func adapter(baseModel: String) -> Adapter {
        var cfg = LoraConfig()
        cfg.r = config.rank
        cfg.loraAlpha = config.alpha ?? Double(config.rank)
        cfg.useRslora = config.rslora
        cfg.useDora = config.dora
        cfg.targetModules = .names(Array(Set(modules.map { String($0.split(separator: ".").last!) })).sorted())
        let classification = !labels.isEmpty
        cfg.modulesToSave = classification ? ["classifier", "score"] : nil
        cfg.taskType = classification ? "SEQ_CLS" : "CAUSAL_LM"
        let prefix = model is BertModel ? "bert." : "model."
        cfg.baseModelNameOrPath = baseModel
        cfg.loraDropout = Double(config.loraDropout)
        let mods = modules.map { name -> LoraModule in
            let l = model.linears[name]!
            return LoraModule(name: prefix + name, a: AdapterTensor(dtype: .f32, tensor: Tensor(shape: [l.rank, l.inFeatures], data: l.a!)),
                              b: AdapterTensor(dtype: .f32, tensor: Tensor(shape: [l.outFeatures, l.rank], data: l.b!)),
                              magnitude: l.magnitude.map { AdapterTensor(dtype: .f32, tensor: Tensor(shape: [l.outFeatures], data: $0)) },
                              alpha: cfg.loraAlpha, scaling: Double(l.scaling))
        }
        var head: [(String, AdapterTensor)] = []
        if let t = task as? BertClassificationTask {
            let H = t.trainer.H
            head = [("base_model.model.classifier.bias", AdapterTensor(dtype: .f32, tensor: Tensor(shape: [labels.count], data: t.trainer.headB.value))),
                    ("base_model.model.classifier.weight", AdapterTensor(dtype: .f32, tensor: Tensor(shape: [labels.count, H], data: t.trainer.headW.value)))]
        }
        var a = Adapter(config: cfg, modules: mods, otherTensors: head, source: "coto-train", configOrigin: "coto-train")
        a.labels = classification ? labels : nil
        a.variant = config.dora ? .dora : config.variant
        return a
    }

    func now() -> Double { Clock.now() }
}
