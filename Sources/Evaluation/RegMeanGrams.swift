import Checkpoint
import Foundation
import Model
import Numerics
import Operators

/// RegMean's activation statistics: for each adapted linear layer, the mean Gram matrix XᵀX / n of its
/// inputs over the real tokens of a task's first examples, with that task's adapter active (the inputs a
/// layer sees depend on the adapters below it). Each example runs alone, so no padding row is ever counted.
public enum RegMeanGrams {
    /// The Grams of every module `modules` names (adapter module names, as in the adapters), keyed by those
    /// names, from the first `examples` records of `data` with `adapter` attached. `task`: classification
    /// records are encoded as the evaluator encodes them; perplexity records as the sequences it scores.
    public static func capture(
        _ evaluator: SweepEvaluator, adapter: Adapter, modules: [String], data: String, task: EvalTask, examples: Int,
        progress: ((Int, Int) -> Void)? = nil
    ) throws -> [String: InputGram] {
        let model = evaluator.model
        try evaluator.load(adapter)
        var accumulators: [String: GramAccumulator] = [:]
        var layers: [AdaptedLinear] = []
        for name in Set(modules).sorted() {
            guard let l = model.linears[model.canonical(name)] else {
                throw EvalError(adapter.source, "module '\(name)' is not a linear layer of the \(model.modelType) model: regmean merges linear layers")
            }
            let acc = GramAccumulator(dim: l.inFeatures)
            accumulators[name] = acc
            l.inputGram = acc
            layers.append(l)
        }
        defer { for l in layers { l.inputGram = nil } }
        let batches = try sequences(evaluator, data: data, task: task, examples: examples)
        guard !batches.isEmpty else { throw EvalError(data, "no examples to take activation statistics from") }
        for (i, b) in batches.enumerated() {
            _ = try model.forward(b, outputLayers: false, head: .none)
            progress?(i + 1, batches.count)
        }
        return accumulators.mapValues(\.gram)
    }

    /// One unpadded batch per example: the first `examples` records of the file.
    static func sequences(_ evaluator: SweepEvaluator, data: String, task: EvalTask, examples: Int) throws -> [Batch] {
        let (model, tok) = (evaluator.model, evaluator.tokenizer)
        switch task {
        case .classification:
            return try TaskData.classification(data).prefix(examples).map { r in
                let e = try encodeChecked(model, tok, text: r.text, pair: r.pair, maxLength: evaluator.maxLength, at: r.place)
                return Batch(ids: [e.ids], typeIds: [e.typeIds])
            }
        case .perplexity:
            guard model is LlamaModel else { throw EvalError(data, "perplexity data needs a decoder model") }
            let (_, seqs) = try Evaluator.perplexitySequences(tok, data, maxLength: evaluator.maxLength)
            return seqs.prefix(examples).map { Batch(ids: [$0.0.input]) }
        default:
            throw EvalError(data, "regmean takes classification or perplexity data (\(task.rawValue) is not supported)")
        }
    }
}

extension RegMeanGrams {
    /// What `coto-merge --method regmean` needs besides the adapters.
    public struct Request: Sendable {
        public var model: String
        /// One data file per adapter, in the adapters' order.
        public var data: [String]
        public var examples = 256
        /// nil: 128, or the model's max_position_embeddings if lower (as the sweeps).
        public var maxLength: Int? = nil
        /// nil: classification on encoders, perplexity on decoders.
        public var task: EvalTask? = nil
        public init(model: String, data: [String]) { (self.model, self.data) = (model, data) }
    }

    /// Every input's Grams for the linear modules any of the adapters adapts (a module an adapter lacks still
    /// gets that adapter's statistics: its zero delta counts through its Gram). `progress`: (input, done, total).
    public static func captureAll(
        _ r: Request, adapters: [Adapter], progress: ((Int, Int, Int) -> Void)? = nil
    ) throws -> [[String: InputGram]] {
        guard r.data.count == adapters.count else {
            throw EvalError(nil, "--data has \(r.data.count) files for \(adapters.count) adapters: give one per adapter, in the same order")
        }
        guard r.examples >= 1 else { throw EvalError(nil, "--examples must be at least 1") }
        let (model, tok) = try ModelRegistry.loadWithTokenizer(r.model)
        let ev = SweepEvaluator(model: model, tokenizer: tok)
        ev.maxLength = try model.inputLimits.maxLength(requested: r.maxLength, fallback: 128, modelDir: r.model)
        let task = r.task ?? (model is LlamaModel ? .perplexity : .classification)
        let modules = Set(adapters.flatMap { $0.modules.filter { !$0.isEmbedding }.map(\.name) }).sorted()
        return try adapters.enumerated().map { i, a in
            try capture(ev, adapter: a, modules: modules, data: r.data[i], task: task, examples: r.examples) { progress?(i, $0, $1) }
        }
    }
}
