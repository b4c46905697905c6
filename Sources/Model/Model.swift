import Checkpoint
import Numerics

/// A batch of token sequences, right-padded to one length T.
public struct Batch: Sendable {
    public var ids: [[Int]]
    public var typeIds: [[Int]]?
    /// 1 for real tokens, 0 for padding.
    public var mask: [[Int]]
    public var count: Int { ids.count }
    public var length: Int { ids.first?.count ?? 0 }

    public init(ids: [[Int]], typeIds: [[Int]]? = nil, mask: [[Int]]? = nil) {
        self.ids = ids
        self.typeIds = typeIds
        self.mask = mask ?? ids.map { $0.map { _ in 1 } }
    }

    /// Right-pads sequences of different lengths with `pad`.
    public static func padded(_ seqs: [[Int]], typeIds: [[Int]]? = nil, pad: Int) -> Batch {
        let T = seqs.map(\.count).max() ?? 0
        let ids = seqs.map { $0 + [Int](repeating: pad, count: T - $0.count) }
        let mask = seqs.map { [Int](repeating: 1, count: $0.count) + [Int](repeating: 0, count: T - $0.count) }
        let types = typeIds.map { $0.map { $0 + [Int](repeating: 0, count: T - $0.count) } }
        return Batch(ids: ids, typeIds: types, mask: mask)
    }
}

/// What a forward pass returns: row-major [B, T, hidden] states (and optionally every layer's) and
/// the head output.
public struct ForwardOutput {
    public var batch: Int
    public var length: Int
    public var hidden: Int
    /// Last layer, [B*T*hidden].
    public var lastHidden: [Float]
    /// Output of each layer (index 0 = after layer 0) when asked for.
    public var layerStates: [[Float]] = []
    /// Sequence-classification logits [B, labels] (when the model has a classification head),
    /// or LM logits [B*T, vocab].
    public var logits: [Float] = []
    public var logitsWidth = 0
}

/// An architecture that runs from an HF model directory with adapters in the forward pass.
public protocol AdaptableModel: AnyObject {
    var config: ModelConfig { get }
    var modelType: String { get }
    /// Every adapter-capable linear layer by its canonical name (without the task prefix).
    var linears: [String: AdaptedLinear] { get }
    var embeddings: [String: AdaptedEmbedding] { get }
    /// Sets (or replaces) the classification head: weight [labels, hidden], bias [labels] or nil.
    func setClassifier(weight: Tensor, bias: Tensor?) throws
    var hasClassifier: Bool { get }
    /// The current classification head (weight [labels, hidden], bias), if any.
    var classifierHead: (Tensor, Tensor?)? { get }
    func forward(_ batch: Batch, outputLayers: Bool, head: Head) throws -> ForwardOutput
}

public enum Head: Sendable { case none, classification, languageModel }

/// Hidden states of one batch after the embeddings and after each layer, keyed by which adapters were
/// on in each layer, so that runs differing only in higher layers reuse the lower ones (Shapley sweeps).
public final class PrefixCache {
    var ids: [[Int]] = []
    var typeIds: [[Int]]? = nil
    var masks: [[Int]] = []
    var embeddingSignature: [Bool] = []
    var layerSignatures: [[Bool]] = []
    /// states[0]: after the embeddings; states[i + 1]: after layer i.
    var states: [[Float]] = []
    /// Layers taken from the cache and layers computed, over the cache's life.
    public internal(set) var reused = 0, computed = 0

    public init() {}

    /// Forgets everything (call after changing adapter weights).
    public func clear() {
        ids = []
        layerSignatures = []
        states = []
    }

    /// Starts a forward pass of `batch` whose layers have adapters switched as `signatures` (one per layer):
    /// returns the first layer to compute and, when it is above 0, the hidden state to start from (the
    /// output of the layer below, kept from an earlier pass of the same batch). A different batch or
    /// embedding adapter starts over. The pass then `record`s each layer it computes.
    func begin(ids: [[Int]], typeIds: [[Int]]?, masks: [[Int]], embeddingSignature: [Bool], signatures: [[Bool]]) -> (start: Int, state: [Float]?) {
        if self.ids != ids || self.typeIds != typeIds || self.masks != masks || self.embeddingSignature != embeddingSignature {
            (self.ids, self.typeIds, self.masks, self.embeddingSignature) = (ids, typeIds, masks, embeddingSignature)
            layerSignatures = []
            states = []
        }
        var start = 0
        while start < layerSignatures.count && start < signatures.count && layerSignatures[start] == signatures[start] { start += 1 }
        layerSignatures.removeSubrange(start...)
        if states.count > start + 1 { states.removeSubrange((start + 1)...) }
        reused += start
        computed += signatures.count - start
        return (start, start > 0 ? states[start] : nil)
    }

    /// The embeddings' output of the batch begun (kept once).
    func recordEmbeddings(_ x: [Float]) { if states.isEmpty { states = [x] } }

    /// The output of the next layer, computed with `signature`.
    func record(_ x: [Float], signature: [Bool]) {
        states.append(x)
        layerSignatures.append(signature)
    }

    /// The kept output of layer i (for a pass that reports every layer's output).
    func state(afterLayer i: Int) -> [Float] { states[i + 1] }
}

/// An error of the inference core: a model directory or file it cannot run, or an input it refuses
/// (subject: the path, or "input" for a batch).
public struct ModelError: CotoError, Equatable {
    public let subject: String?
    public let message: String
    public init(_ subject: String?, _ message: String) {
        self.subject = subject
        self.message = message
    }
    static func fail(_ path: String, _ m: String) -> ModelError { ModelError(path, m) }
}

/// `[model_type: constructor]`.
public enum ModelRegistry {
    public static let constructors: [String: (HFModelDir) throws -> AdaptableModel] = {
        var c: [String: (HFModelDir) throws -> AdaptableModel] = ["bert": { try BertModel(dir: $0) }]
        for t in DecoderFamilies.modelTypes { c[t] = { try LlamaModel(dir: $0) } }
        return c
    }()

    /// The decoder families' model types (what causal-LM tasks and training run on).
    public static var decoderTypes: [String] { DecoderFamilies.modelTypes }

    /// The model at `path`: a Hugging Face directory, or a llama.cpp GGUF file (dequantized as it loads).
    public static func load(_ path: String) throws -> AdaptableModel { try loadWithTokenizer(path, tokenizer: false).0 }

    /// The model and its tokenizer (a GGUF's from its `tokenizer.ggml.*` metadata).
    public static func loadWithTokenizer(_ path: String) throws -> (AdaptableModel, Tokenizer) {
        let (m, t) = try loadWithTokenizer(path, tokenizer: true)
        guard let t else { throw ModelError(path, "no tokenizer") }
        return (m, t)
    }

    static func loadWithTokenizer(_ path: String, tokenizer: Bool) throws -> (AdaptableModel, Tokenizer?) {
        let dir = try HFModelDir.open(path)
        guard let make = constructors[dir.config.modelType] else {
            throw ModelError(path, "model_type '\(dir.config.modelType)' is not supported (\(constructors.keys.sorted().joined(separator: ", ")))")
        }
        try MemoryCheck.checkNow(dir)
        let model = try make(dir)
        // A GGUF's side files (config, tokenizer) live in a directory `dir` removes when released.
        return (model, tokenizer ? try TokenizerLoader.load(modelDir: dir.path) : nil)
    }
}

extension AdaptableModel {
    /// Attaches an adapter's LoRA modules (and its classification head, if it has one) as the variant the
    /// adapter declares (`variant` overrides it: `.hira` runs LoRA factors as HiRA, `.lora` the reverse).
    /// Module names are matched with and without the task prefix (`bert.`, `model.`).
    public func attach(_ adapter: Adapter, variant override: AdapterVariant? = nil) throws {
        let variant = override ?? adapter.variant
        for m in adapter.modules {
            let key = canonical(m.name)
            if m.isEmbedding {
                if variant == .hira { throw ModelError(adapter.source, "module '\(m.name)' is an embedding: HiRA adapts linear layers only") }
                guard let e = embeddings[key] else { throw ModelError(adapter.source, "module '\(m.name)': no such embedding in the \(modelType) model") }
                try e.attach(m)
            } else {
                guard let l = linears[key] else { throw ModelError(adapter.source, "module '\(m.name)': no such linear layer in the \(modelType) model") }
                try l.attach(m, variant: variant)
            }
        }
        if let (w, b) = classificationHead(of: adapter) { try setClassifier(weight: w, bias: b) }
    }

    public func detachAll() {
        for l in linears.values { l.detach() }
    }

    /// The names a classification head has in PEFT's modules_to_save (BERT: classifier, LLaMA: score).
    public static var headNames: [String] { ["classifier", "score"] }

    /// The head tensors of an adapter (modules_to_save `classifier` / `score`), if any.
    public func classificationHead(of adapter: Adapter) -> (Tensor, Tensor?)? {
        for head in Self.headNames {
            let w = adapter.otherTensors.first { $0.0.hasSuffix("." + head + ".weight") || $0.0 == head + ".weight" }
            let b = adapter.otherTensors.first { $0.0.hasSuffix("." + head + ".bias") || $0.0 == head + ".bias" }
            if let w { return (w.1.tensor, b?.1.tensor) }
        }
        return nil
    }

    /// A module name as this model keys its layers: without the task prefix PEFT's names carry
    /// (`bert.`, `model.`, `base_model.model.`) when the rest names a layer.
    public func canonical(_ name: String) -> String {
        for p in ["bert.", "model.", "base_model.model."] where name.hasPrefix(p) {
            let rest = String(name.dropFirst(p.count))
            if linears[rest] != nil || embeddings[rest] != nil { return rest }
        }
        return name
    }

    /// The module name an adapter for this model's task model carries (AutoModelForSequenceClassification
    /// on BERT: `bert.` + name; LLaMA: `model.` + name).
    public func adapterModuleName(_ canonical: String) -> String {
        (modelType == "bert" ? "bert." : "model.") + canonical
    }

    /// Turns every adapter module on or off; `filter` selects by canonical name.
    public func setActive(_ on: Bool, where filter: (String) -> Bool = { _ in true }) {
        for (n, l) in linears where filter(n) { l.active = on }
        for (n, e) in embeddings where filter(n) { e.active = on }
    }
}

/// Loads a tensor as Float32 with an expected shape (errors name the file and tensor).
func load(_ store: TensorStore, _ name: String, shape: [Int]) throws -> [Float] {
    guard let info = store.tensorInfo(name) else { throw CheckpointError(store.location, .tensorNotFound(name)) }
    guard info.shape == shape else {
        throw ModelError(store.location, "tensor '\(name)' has shape \(info.shape), the config implies \(shape)")
    }
    return try store.loadTensor(name).data
}

/// A weight matrix [rows, cols] with its shape checked: the file's bytes in place where the store maps them
/// and their dtype allows (F32, BF16, F16), else decoded to owned Float32.
func loadMatrix(_ store: TensorStore, _ name: String, rows: Int, cols: Int) throws -> WeightMatrix {
    guard let info = store.tensorInfo(name) else { throw CheckpointError(store.location, .tensorNotFound(name)) }
    guard info.shape == [rows, cols] else {
        throw ModelError(store.location, "tensor '\(name)' has shape \(info.shape), the config implies \([rows, cols])")
    }
    if let v = store.mappedView(name) {
        if let m = v.withBytes({ WeightMatrix(mapped: $0, dtype: v.dtype, rows: rows, cols: cols, owner: v.mapping) }) { return m }
        return v.withBytes { WeightMatrix(decoding: $0, dtype: v.dtype, rows: rows, cols: cols) }
    }
    return WeightMatrix(try store.loadTensor(name).data, rows: rows, cols: cols)
}

func optionalMatrix(_ store: TensorStore, _ name: String, rows: Int, cols: Int) throws -> WeightMatrix? {
    store.tensorInfo(name) == nil ? nil : try loadMatrix(store, name, rows: rows, cols: cols)
}

func optionalTensor(_ store: TensorStore, _ name: String, shape: [Int]) throws -> [Float]? {
    store.tensorInfo(name) == nil ? nil : try load(store, name, shape: shape)
}

/// What one input sequence may hold for a model: token ids inside the embedding table, type ids inside
/// the token-type table (BERT), at most max_position_embeddings tokens. Checked where data enters
/// (training and evaluation readers, with file:line), so a bad input is an error, never a trap.
public struct InputLimits: Sendable, Equatable {
    public var vocab: Int
    public var maxPositions: Int?
    public var typeVocab: Int?

    public init(vocab: Int, maxPositions: Int?, typeVocab: Int?) {
        self.vocab = vocab
        self.maxPositions = maxPositions
        self.typeVocab = typeVocab
    }

    /// The truncation length to use: `requested` (an error above max_position_embeddings, naming the
    /// model's config.json), or `fallback` lowered to max_position_embeddings.
    public func maxLength(requested: Int?, fallback: Int, modelDir: String) throws -> Int {
        guard let mp = maxPositions else { return requested ?? fallback }
        if let r = requested {
            guard r <= mp else {
                throw ModelError(
                    modelDir.hasSuffix(".json") || modelDir.hasSuffix(".gguf") ? modelDir : modelDir + "/config.json",
                    "--max-length \(r) exceeds the model's max_position_embeddings \(mp)")
            }
            return r
        }
        return min(fallback, mp)
    }

    /// Throws, naming `place` ("file:line"), when this sequence cannot run through the model.
    public func check(ids: [Int], typeIds: [Int]?, at place: String) throws {
        func fail(_ m: String) -> ModelError { ModelError(place, m) }
        guard !ids.isEmpty else { throw fail("the text gives no tokens") }
        if let mp = maxPositions, ids.count > mp { throw fail("\(ids.count) tokens exceed max_position_embeddings \(mp) (lower --max-length)") }
        if let bad = ids.first(where: { $0 < 0 || $0 >= vocab }) {
            throw fail("token id \(bad) is outside the model's embedding table of \(vocab) (tokenizer and model do not match)")
        }
        if let t = typeIds, let tv = typeVocab, let bad = t.first(where: { $0 < 0 || $0 >= tv }) {
            throw fail("token type id \(bad) is outside the model's \(tv) token types (type_vocab_size; a text_pair needs 2)")
        }
    }
}

extension AdaptableModel {
    /// The model's input limits from its config (BERT: type_vocab_size, default 2, as transformers).
    public var inputLimits: InputLimits {
        InputLimits(
            vocab: config.vocabSize ?? 0, maxPositions: modelType == "bert" ? (config.maxPositionEmbeddings ?? 512) : config.maxPositionEmbeddings,
            typeVocab: modelType == "bert" ? (config.typeVocabSize ?? 2) : nil)
    }
}
