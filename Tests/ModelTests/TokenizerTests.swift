import Testing
import Foundation
@testable import Model
import Checkpoint

@Suite struct TokenizerTests {
    struct Line: Decodable {
        let text: String
        let wordpiece: [Int]
        let bpe: [Int]
        /// transformers' own GGUF tokenizer (AutoTokenizer.from_pretrained(gguf_file=...)) on SmolLM2.
        let bpe_transformers_gguf: [Int]
        let wordpiece_pair: [Int]?
        let wordpiece_pair_types: [Int]?
    }

    static func corpus() throws -> [Line] {
        let data = try String(contentsOfFile: MFx.path("tokenizer/corpus.jsonl"), encoding: .utf8)
        return try data.split(separator: "\n").map { try JSONDecoder().decode(Line.self, from: Data($0.utf8)) }
    }

    @Test func wordPieceMatchesHFTokenizersOnTheCorpus() throws {
        #expect(FileManager.default.fileExists(atPath: MFx.minilm), "run make setup")
        let tok = try TokenizerLoader.load(modelDir: MFx.minilm)
        var bad: [String] = []
        for l in try Self.corpus() {
            if tok.encode(l.text, pair: nil, addSpecialTokens: true).ids != l.wordpiece { bad.append(l.text) }
            if let p = l.wordpiece_pair {
                let e = tok.encode(l.text, pair: "second segment here", addSpecialTokens: true)
                if e.ids != p || e.typeIds != l.wordpiece_pair_types! { bad.append("pair: " + l.text) }
            }
        }
        #expect(bad.isEmpty, "\(bad.count) lines differ, first: \(bad.first ?? "")")
    }

    @Test func vocabTxtGivesTheSameIds() throws {
        let a = try TokenizerLoader.load(modelDir: MFx.minilm)
        let b = TokenizerLoader.self
        let dir = NSTemporaryDirectory() + "coto-vocab-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.copyItem(atPath: MFx.minilm + "/vocab.txt", toPath: dir + "/vocab.txt")
        let v = try b.load(modelDir: dir)
        for l in try Self.corpus().prefix(60) {
            #expect(v.encode(l.text, pair: nil, addSpecialTokens: true) == a.encode(l.text, pair: nil, addSpecialTokens: true), "\(l.text)")
        }
    }

    @Test func byteLevelBPEFromTheGGUFMatchesHFTokenizers() throws {
        #expect(FileManager.default.fileExists(atPath: MFx.smollm2), "run make setup")
        let conv = GGUFConverter(gguf: try GGUFFile(path: MFx.smollm2))
        let tok = try TokenizerLoader.load(json: try conv.tokenizerJSON(), path: MFx.smollm2)
        var bad: [String] = []
        var badGGUF: [String] = []
        let corpus = try Self.corpus()
        #expect(corpus.count >= 250)
        for l in corpus {
            let ids = tok.encode(l.text, pair: nil, addSpecialTokens: true).ids
            if ids != l.bpe { bad.append(l.text) }
            // The conversion itself, against an independent one: transformers reading the same GGUF.
            if ids != l.bpe_transformers_gguf { badGGUF.append(l.text) }
        }
        #expect(bad.isEmpty, "\(bad.count) lines differ from HF tokenizers on our tokenizer.json, first: \(bad.first.map { $0.debugDescription } ?? "")")
        #expect(badGGUF.isEmpty, "\(badGGUF.count) lines differ from transformers' GGUF tokenizer, first: \(badGGUF.first.map { $0.debugDescription } ?? "")")
        // And the texts of the logits reference, tokenized by transformers when it loaded the GGUF.
        let ref = try SafeTensorsFile(path: MFx.path("smollm2/reference.safetensors"))
        let want = try JSONDecoder().decode([String: [Int]].self, from: Data(try #require(ref.metadataValue("token_ids")).utf8))
        #expect(want.count == 3)
        for (text, ids) in want { #expect(tok.encode(text, pair: nil, addSpecialTokens: true).ids == ids, "\(text.debugDescription)") }
    }
}

@Suite struct TruncationTests {
    struct Line: Decodable {
        let text: String
        let truncated_pair: [Int]?
        let truncated_pair_types: [Int]?
    }

    @Test func longestFirstPairTruncationMatchesHF() throws {
        let tok = try TokenizerLoader.load(modelDir: MFx.minilm)
        let data = try String(contentsOfFile: MFx.path("tokenizer/corpus.jsonl"), encoding: .utf8)
        var checked = 0
        for l in data.split(separator: "\n") {
            let line = try JSONDecoder().decode(Line.self, from: Data(l.utf8))
            guard let want = line.truncated_pair else { continue }
            let e = tok.encode(line.text, pair: "a second segment of some length here", addSpecialTokens: true, maxLength: 12)
            #expect(e.ids == want && e.typeIds == line.truncated_pair_types!, "\(line.text)")
            checked += 1
        }
        #expect(checked > 20)
    }
}
