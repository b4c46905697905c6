import Dispatch
import Checkpoint
import Model
import Numerics
#if canImport(Glibc)
import Glibc
#endif

/// Resumable checkpoints and the exported adapter of an `AdapterTrainer`.
extension AdapterTrainer {
    /// Removes a checkpoint directory once the run's outputs are written.
    public func discardCheckpoint(at dir: String) {
        if FileSystem.exists(dir) { FileSystem.removeTree(dir) }
    }

    /// Everything a resumed run needs: parameters, AdamW moments and step counts, step, RNG, log.
    public func saveCheckpoint(to dir: String, baseModel: String) throws {
        try FileSystem.makeDirectory(dir)
        try adapter(baseModel: baseModel).save(to: FileSystem.join(dir, "adapter"))
        var entries: [TensorEntry] = []
        var meta: [(String, String)] = [
            ("format", "pt"), ("step", String(step)),
            ("rng", rng.state.map { String($0) }.joined(separator: ",")),
            ("log", try RunRecords.logArray(log)),
        ]
        for p in params {
            let (m, v, st) = p.state
            entries.append(TensorEntry(name: p.name + ".value", tensor: Tensor(shape: [p.value.count], data: p.value)))
            entries.append(TensorEntry(name: p.name + ".m", tensor: Tensor(shape: [m.count], data: m)))
            entries.append(TensorEntry(name: p.name + ".v", tensor: Tensor(shape: [v.count], data: v)))
            meta.append(("step:" + p.name, String(st)))
        }
        // Written last (atomically): a checkpoint directory without it was interrupted.
        try SafeTensorsWriter.write(entries, metadata: meta, to: FileSystem.join(dir, RunRecords.checkpointStateFile))
    }

    public func loadCheckpoint(from dir: String) throws {
        let path = FileSystem.join(dir, RunRecords.checkpointStateFile)
        let f = try SafeTensorsFile(path: path)
        for p in params {
            guard let v = try? f.tensor(p.name + ".value").data, v.count == p.value.count,
                let m = try? f.tensor(p.name + ".m").data, let vv = try? f.tensor(p.name + ".v").data,
                let st = f.metadataValue("step:" + p.name).flatMap(Int.init)
            else {
                throw TrainError(path, "checkpoint does not match this run's configuration (parameter \(p.name))")
            }
            p.value = v
            p.restore(m: m, v: vv, step: st)
        }
        guard let st = f.metadataValue("step").flatMap(Int.init),
            let r = f.metadataValue("rng").map({ $0.split(separator: ",").compactMap { UInt64($0) } }).flatMap(SeededRNG.init(state:))
        else {
            throw TrainError(path, "checkpoint has no step / RNG state")
        }
        step = st
        rng = r
        if let text = f.metadataValue("log") { log = try RunRecords.decodeLogArray(text, path: path) }
        for m in modules { linears[m]!.sync() }
        task.syncHead()
    }

    /// Starts from an existing adapter's parameters (continued training; gradient tests).
    public func load(_ adapter: Adapter) throws {
        for m in adapter.modules {
            let key = model.canonical(m.name)
            guard let tl = linears[key], let pA = tl.pA, let pB = tl.pB, pA.value.count == m.a.tensor.count, pB.value.count == m.b.tensor.count else {
                throw TrainError(adapter.source, "module '\(m.name)' does not match the training configuration (targets / rank)")
            }
            pA.value = m.a.tensor.data
            pB.value = m.b.tensor.data
            if let mag = m.magnitude { tl.pM?.value = mag.tensor.data }
            tl.lin.install(a: pA.value, b: pB.value, rank: m.rank, scaling: Float(m.scaling), magnitude: tl.pM?.value, variant: tl.lin.variant)
        }
        if let head = task as? BertClassificationTask, let (w, b) = model.classificationHead(of: adapter) {
            if w.count == head.trainer.headW.value.count { head.trainer.headW.value = w.data }
            if let b, b.count == head.trainer.headB.value.count { head.trainer.headB.value = b.data }
        }
        task.syncHead()
    }

    /// The trained adapter in PEFT's layout (module names as AutoModelForSequenceClassification has them).
    public func adapter(baseModel: String) -> Adapter {
        var cfg = config.loraConfig
        cfg.targetModules = .names(Array(Set(modules.map { String($0.split(separator: ".").last!) })).sorted())
        let classification = !labels.isEmpty
        cfg.modulesToSave = classification ? BertModel.headNames : nil
        cfg.taskType = classification ? "SEQ_CLS" : "CAUSAL_LM"
        cfg.baseModelNameOrPath = baseModel
        cfg.loraDropout = Double(config.loraDropout)
        let mods = modules.map { name -> LoraModule in
            let l = model.linears[name]!
            return LoraModule(
                name: model.adapterModuleName(name), a: AdapterTensor(dtype: .f32, tensor: Tensor(shape: [l.rank, l.inFeatures], data: l.a!)),
                b: AdapterTensor(dtype: .f32, tensor: Tensor(shape: [l.outFeatures, l.rank], data: l.b!)),
                magnitude: l.magnitude.map { AdapterTensor(dtype: .f32, tensor: Tensor(shape: [l.outFeatures], data: $0)) },
                alpha: cfg.loraAlpha, scaling: Double(l.scaling))
        }
        var head: [(String, AdapterTensor)] = []
        if let t = task as? BertClassificationTask {
            let H = t.trainer.H
            head = [
                ("base_model.model.classifier.bias", AdapterTensor(dtype: .f32, tensor: Tensor(shape: [labels.count], data: t.trainer.headB.value))),
                ("base_model.model.classifier.weight", AdapterTensor(dtype: .f32, tensor: Tensor(shape: [labels.count, H], data: t.trainer.headW.value))),
            ]
        }
        var a = Adapter(config: cfg, modules: mods, otherTensors: head, source: "coto-train", configOrigin: "coto-train")
        a.labels = classification ? labels : nil
        a.variant = config.dora ? .dora : config.variant
        return a
    }
}
