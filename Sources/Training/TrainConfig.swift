import Checkpoint
import Model

/// What `coto-train` is asked to do (CLI options map one to one).
public struct TrainConfig: Sendable {
    public enum Group: String, Sendable, CaseIterable { case layer, module }
    public var variant: AdaptedLinear.Variant = .lora
    public var rslora = false
    public var dora = false
    public var rank = 8
    /// lora_alpha; nil: 2 × rank (the one default, coto-train's).
    public var alpha: Double? = nil
    public var resolvedAlpha: Double { alpha ?? Double(2 * rank) }
    /// The adapter config these options describe (target matching and scaling follow its rules).
    public var loraConfig: LoraConfig {
        var c = LoraConfig()
        c.r = rank
        c.loraAlpha = resolvedAlpha
        c.useRslora = rslora
        c.useDora = dora
        c.targetModules = .names(targets)
        return c
    }
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
    /// Batches of similar lengths (HF Trainer's `group_by_length`, `AdapterTrainer.lengthGrouped`): less padding,
    /// other batches than the plain shuffle.
    public var groupByLength = false
    /// Each micro-batch is split over this many workers (at most 2), each with its own
    /// activations and gradient buffers and single-threaded BLAS; gradients are summed in a fixed order.
    /// The result depends on the worker count (dropout streams per half), not on timing.
    public var workers = 1
    public init() {}
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
    public init(ids: [Int], typeIds: [Int], label: Int) {
        self.ids = ids
        self.typeIds = typeIds
        self.label = label
        targets = nil
    }
    public init(ids: [Int], targets: [Int]) {
        self.ids = ids
        typeIds = ids.map { _ in 0 }
        label = 0
        self.targets = targets
    }
}
