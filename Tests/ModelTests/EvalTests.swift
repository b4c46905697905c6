import Testing
import Foundation
@testable import Evaluation
@testable import Model
import Checkpoint
import Numerics

@Suite struct EvalTests {
    @Test func miniLMClassificationEqualsPEFTOnWordNet() throws {
        #expect(FileManager.default.fileExists(atPath: MFx.minilm), "run make setup")
        let model = try ModelRegistry.load(MFx.minilm)
        let adapter = try Adapter.load(MFx.path("peft/minilm-noun8"))
        #expect(adapter.labels?.count == 8)
        try model.attach(adapter)
        let tok = try TokenizerLoader.load(modelDir: MFx.minilm)
        var o = EvalOptions()
        o.maxLength = 64
        o.batchSize = 32
        let r = try Evaluator.classification(model: model, tokenizer: tok, data: MFx.path("wordnet/noun8-test.jsonl"), labels: adapter.labels, options: o)
        let ref = try SafeTensorsFile(path: MFx.path("wordnet/minilm-noun8-test-logits.safetensors"))
        let want = Double(ref.metadataValue("accuracy")!)!
        #expect(abs(r.json["accuracy"]!.doubleValue! - want) < 1e-6)
        #expect(r.json["label_source"]?.stringValue == "adapter label list")
        // Per-example logits, batched and padded, equal transformers' to 1e-4.
        let lines = try JSONL.read(MFx.path("wordnet/noun8-test.jsonl"))
        let encs = try lines.map { tok.encode(try JSONL.text($0, "text", path: "")!, pair: nil, addSpecialTokens: true) }
        let out = try model.forward(Batch.padded(encs.map(\.ids), pad: tok.padId), outputLayers: false, head: .classification)
        #expect(Tensor(shape: [encs.count, 8], data: out.logits).maxAbsDiff(try ref.tensor("logits")) <= 1e-4)
    }

    @Test func headBorrowingAndLabelErrors() throws {
        let model = try ModelRegistry.load(MFx.path("tiny-bert"))
        let tok = WordPieceTokenizer(
            vocab: ["[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "a": 4, "b": 5], lowercase: true, stripAccents: nil, unk: "[UNK]", prefix: "##",
            maxChars: 100)
        let dir = NSTemporaryDirectory() + "coto-eval-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let data = dir + "/d.jsonl"
        try "{\"text\": \"a b\", \"label\": \"x\"}\n{\"text\": \"b\", \"label\": \"y\"}\n\n{\"text\": \"a\", \"label\": \"z\"}\n".write(
            toFile: data, atomically: true, encoding: .utf8)
        // The tiny BERT has a 3-way classifier; labels from the data (sorted) fit it.
        let r = try Evaluator.classification(model: model, tokenizer: tok, data: data, labels: nil, options: EvalOptions())
        #expect(r.json["label_source"]?.stringValue == "sorted labels of the evaluation data")
        #expect(r.json["confusion_matrix"]?.arrayValue?.count == 3)
        // A label outside an explicit list: the error names file:line.
        var o = EvalOptions()
        o.labels = ["x", "y", "w"]
        do {
            _ = try Evaluator.classification(model: model, tokenizer: tok, data: data, labels: nil, options: o)
            Issue.record("accepted")
        } catch let e as EvalError { #expect(e.subject == data + ":4" && e.message.contains("'z'")) }
        try "{\"text\": \"a\"}\n".write(toFile: data, atomically: true, encoding: .utf8)
        #expect(throws: EvalError.self) { try Evaluator.classification(model: model, tokenizer: tok, data: data, labels: nil, options: EvalOptions()) }
        try "not json\n".write(toFile: data, atomically: true, encoding: .utf8)
        #expect(throws: EvalError.self) { try JSONL.read(data) }
        try "".write(toFile: data, atomically: true, encoding: .utf8)
        #expect(throws: EvalError.self) { try JSONL.read(data) }
    }

    @Test func smolLM2MultipleChoiceLogLikelihoodsEqualTransformers() throws {
        let dir = try SmolLM2.dir.get()
        let model = try ModelRegistry.load(dir)
        let tok = try TokenizerLoader.load(modelDir: dir)
        let want = try JSONDecoder().decode([[Double]].self, from: Data(contentsOf: URL(fileURLWithPath: MFx.path("wordnet/smollm2-mc-loglik.json"))))
        for (i, r) in try JSONL.read(MFx.path("wordnet/noun-mc.jsonl")).prefix(6).enumerated() {
            let ctx = try JSONL.text(r, "context", path: "")!
            for (j, c) in r.json["choices"]!.arrayValue!.compactMap(\.stringValue).enumerated() {
                let seq = try #require(TaskData.continuationSequence(tok, context: ctx, continuation: c, maxLength: 512))
                let (ll, _) = try Evaluator.logLikelihood(model, seq, at: "choice \(j)")
                #expect(abs(ll - want[i][j]) <= 1e-3, "example \(i) choice \(j): \(ll) vs \(want[i][j])")
            }
        }
    }
}
