import Foundation
import Testing
import TestSupport
import Checkpoint
@testable import Evaluation
@testable import Model
import Numerics
import Operators

/// The decoder families against transformers 5.24 on tiny random models (Fixtures/families.py): logits with
/// and without a PEFT adapter on every linear layer, and perplexity through the evaluator's scoring path.
enum FamFx {
    static let names = ["llama3", "mistral", "qwen3", "gemma2", "gemma3", "phi3"]
    static func path(_ p: String) -> String { TestPaths.fixture("families/" + p) }
    static let refs = Result { try SafeTensorsFile(path: path("refs.safetensors")) }
    static func ids(_ name: String) throws -> [[Int]] {
        let t = try refs.get().tensor(name)
        return (0..<t.rows).map { r in (0..<t.cols).map { Int(t[r, $0]) } }
    }
    static func decoder(_ name: String) throws -> LlamaModel {
        try #require(try ModelRegistry.load(path(name)) as? LlamaModel)
    }
}

/// Never asked to encode: the sequences here are token ids already.
struct IdsOnlyTokenizer: Tokenizer {
    func encode(_ text: String, pair: String?, addSpecialTokens: Bool) -> Encoding { Encoding(ids: [], typeIds: []) }
    func encode(_ text: String, pair: String?, addSpecialTokens: Bool, maxLength: Int) -> Encoding { Encoding(ids: [], typeIds: []) }
    var padId: Int { 0 }
    func id(of token: String) -> Int? { nil }
}

@Suite struct FamilyForwardTests {
    @Test(arguments: FamFx.names)
    func logitsMatchTransformersWithAndWithoutTheAdapter(name: String) throws {
        let model = try FamFx.decoder(name)
        let mask = try FamFx.ids("mask")
        let batch = Batch(ids: try FamFx.ids("ids"), mask: mask)
        let base = try model.forward(batch, outputLayers: false, head: .languageModel).logits
        let wantBase = try FamFx.refs.get().tensor("\(name).base.logits").data
        #expect(maskedMaxDiff(base, wantBase, mask: mask, width: 64) <= 1e-4, "\(name) base: \(maskedMaxDiff(base, wantBase, mask: mask, width: 64))")
        let adapter = try Adapter.load(FamFx.path(name + "-lora"))
        try model.attach(adapter)
        let lora = try model.forward(batch, outputLayers: false, head: .languageModel).logits
        let want = try FamFx.refs.get().tensor("\(name).lora.logits").data
        #expect(maskedMaxDiff(lora, want, mask: mask, width: 64) <= 1e-4, "\(name) lora: \(maskedMaxDiff(lora, want, mask: mask, width: 64))")
        // The adapter changes the logits by far more than the tolerance: the comparison sees it.
        #expect(maskedMaxDiff(want, wantBase, mask: mask, width: 64) > 1e-2)
    }

    /// Our perplexity (the sweeps' scoring: scored rows only through the LM head) is transformers' mean NLL.
    @Test(arguments: FamFx.names)
    func perplexityIsTransformersMeanNLL(name: String) throws {
        let model = try FamFx.decoder(name)
        try model.attach(try Adapter.load(FamFx.path(name + "-lora")))
        let ids = try FamFx.ids("ids")
        let mask = try FamFx.ids("mask")
        let seqs = zip(ids, mask).map { row, m -> ScoredSequence in
            let n = m.reduce(0, +)
            return ScoredSequence(input: Array(row[0..<(n - 1)]), first: 0, targets: Array(row[1..<n]), bytes: n)
        }
        let lm = LanguageData(kind: .perplexity, sequences: seqs, batches: [[0, 1]], questions: [], records: 2)
        let ev = SweepEvaluator(model: model, tokenizer: IdsOnlyTokenizer())
        let s = try ev.score(PreparedData(path: name, gold: [], batches: [], lm: lm), labels: [])
        let want = Double(try FamFx.refs.get().tensor("\(name).lora.nll").data[0])
        #expect(abs(s.loss - want) <= 1e-5 * max(1, want), "\(name): \(s.loss) vs \(want)")
        #expect(abs((s.perplexity ?? 0) - exp(want)) <= 1e-4 * exp(want))
    }

    /// Generation with the KV cache (sliding windows and per-layer RoPE over cached keys) gives the greedy
    /// tokens a full forward pass gives.
    @Test(arguments: ["mistral", "gemma3", "phi3"])
    func cachedDecodingEqualsFullPasses(name: String) throws {
        let model = try FamFx.decoder(name)
        let prompt = [1, 5, 9, 13, 7, 3]
        let fast = try model.generate(prompt: prompt, maxNewTokens: 8)
        var seq = prompt
        for _ in 0..<8 {
            let out = try model.forward(Batch(ids: [seq], mask: [seq.map { _ in 1 }]), outputLayers: false, head: .languageModel)
            let last = Array(out.logits[((seq.count - 1) * 64)..<(seq.count * 64)])
            seq.append(last.indices.max { last[$0] < last[$1] }!)
        }
        #expect(fast == Array(seq[prompt.count...]))
    }

    @Test func familyConfigErrorsNameTheKey() throws {
        let t = TempDir()
        let cases: [(String, Any, String)] = [
            ("rope_parameters", ["rope_type": "yarn", "factor": 4.0, "rope_theta": 10000.0], "rope scaling 'yarn' is not supported"),
            ("sliding_window", "wide", "'sliding_window' has the wrong type"),
            ("hidden_activation", "relu", "hidden_act 'relu' is not supported"),
            ("layer_types", ["sliding_attention", "chunked_attention", "full_attention"], "layer type 'chunked_attention'"),
            ("layer_types", ["full_attention"], "layer_types has 1 entries for 3 layers"),
        ]
        for (i, (key, value, expected)) in cases.enumerated() {
            let d = t.path + "/case\(i)"
            try FileManager.default.copyItem(atPath: FamFx.path("gemma2"), toPath: d)
            let url = URL(fileURLWithPath: d + "/config.json")
            var cfg = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
            cfg[key] = value
            try JSONSerialization.data(withJSONObject: cfg).write(to: url)
            do {
                _ = try ModelRegistry.load(d)
                Issue.record("\(key): loaded")
            } catch let e as CotoError {
                #expect(e.message.contains(expected), "\(key): \(e.message)")
                #expect(e.subject?.hasSuffix("config.json") == true || e.subject == d, "\(String(describing: e.subject))")
            }
        }
    }
}

/// `coto-fuse` names every family's modules: the fused model (W + s·B·A streamed by tensor name, Phi-3's fused
/// projections included) gives the logits of the base with the adapter attached, and transformers'.
@Suite struct FamilyFuseTests {
    @Test(arguments: FamFx.names)
    func fusedModelEqualsTheAdapterInTheForward(name: String) throws {
        let t = TempDir()
        let adapter = try Adapter.load(FamFx.path(name + "-lora"))
        let report = try Fuser.fuse(base: try HFModelDir(path: FamFx.path(name)), adapters: [adapter], options: FuseOptions(), to: t.path + "/fused")
        #expect(report.fusedModules.count == adapter.modules.count)
        let fused = try #require(try ModelRegistry.load(t.path + "/fused") as? LlamaModel)
        let mask = try FamFx.ids("mask")
        let logits = try fused.forward(Batch(ids: try FamFx.ids("ids"), mask: mask), outputLayers: false, head: .languageModel).logits
        let want = try FamFx.refs.get().tensor("\(name).lora.logits").data
        #expect(maskedMaxDiff(logits, want, mask: mask, width: 64) <= 1e-4, "\(name): \(maskedMaxDiff(logits, want, mask: mask, width: 64))")
    }
}
