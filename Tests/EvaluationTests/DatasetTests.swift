import Testing
import Foundation
import CZlib
@testable import Evaluation
import Model
import Operators
import Checkpoint
import Numerics
import TestSupport

@Suite struct DatasetTests {
    @Test func wordNetTasksFromTheDebianCorpus() throws {
        #expect(FileManager.default.fileExists(atPath: "/usr/share/wordnet/data.noun"), "run make setup (wordnet-base)")
        var total = 0
        for f in ["noun", "verb", "adj", "adv"] { total += try WordNet.read("/usr/share/wordnet/data." + f).count }
        #expect(total == 117_659)  // WordNet 3.0's synsets (SPEC section 5)
        let tasks = try WordNet.tasks(cap: [.train: 30, .dev: 10, .test: 10])
        #expect(tasks.map(\.name) == ["noun8", "pos4", "verb15"])
        #expect(tasks[0].labels == WordNet.nounClasses.sorted() && tasks[1].labels.count == 4 && tasks[2].labels.count == 15)
        for t in tasks {
            for (split, rows) in t.examples {
                #expect(rows.allSatisfy { DatasetTask.splitOf($0.id) == split })
                var counts: [String: Int] = [:]
                for r in rows { counts[r.label, default: 0] += 1 }
                #expect(counts.values.allSatisfy { $0 <= (split == .train ? 30 : 10) })
            }
        }
        // The same synset lands in the same split of every task; "dog" (n02084071) is an animal.
        let dog = tasks[0].examples.values.flatMap { $0 }.first { $0.id == "n02084071" }
        let dogPos = tasks[1].examples.values.flatMap { $0 }.first { $0.id == "n02084071" }
        if let dog { #expect(dog.label == "animal" && dog.text.hasPrefix("dog: ")) }
        if let dogPos { #expect(dogPos.label == "noun") }
        // Deterministic: a second build gives identical files.
        let again = try WordNet.tasks(cap: [.train: 30, .dev: 10, .test: 10])
        #expect(again[2].examples[.test]!.map(\.id) == tasks[2].examples[.test]!.map(\.id))
    }

    @Test func wordNetLanguageTasksFollowNoun8() throws {
        let cap: [Split: Int] = [.train: 20, .dev: 8, .test: 8]
        let noun8 = try #require(try WordNet.tasks(cap: cap).first { $0.name == "noun8" })
        let tasks = try WordNetLM.tasks(cap: cap, choices: 4)
        #expect(tasks.map(\.name) == ["define", "word-choice"])
        let define = tasks[0]
        let choice = tasks[1]
        for split in Split.allCases {
            // define: noun8's synsets in noun8's order, "word:" + " gloss" = noun8's "word: gloss".
            let rows = try #require(define.rows[split])
            let n8 = noun8.examples[split] ?? []
            #expect(rows.map { $0["id"]?.stringValue } == n8.map(\.id))
            #expect(zip(rows, n8).allSatisfy { ($0["prompt"]?.stringValue ?? "") + ($0["completion"]?.stringValue ?? "") == $1.text })
            #expect(rows.allSatisfy { $0["prompt"]?.stringValue?.hasSuffix(":") == true && $0["completion"]?.stringValue?.hasPrefix(" ") == true })
        }
        #expect(choice.rows[.train] == nil)
        for split in [Split.dev, .test] {
            let rows = try #require(choice.rows[split])
            let words = Dictionary(
                uniqueKeysWithValues: (define.rows[split] ?? []).map { ($0["id"]!.stringValue!, String($0["prompt"]!.stringValue!.dropLast())) })
            #expect(rows.count == words.count && rows.count > 40)
            var placed = [0, 0, 0, 0]
            for r in rows {
                let choices = (r["choices"]?.arrayValue ?? []).compactMap(\.stringValue)
                let label = try #require(r["label"]?.intValue)
                let id = try #require(r["id"]?.stringValue)
                // Four distinct words, the labelled one the synset's own; the others are words of this split.
                #expect(choices.count == 4 && Set(choices.map { $0.lowercased() }).count == 4)
                #expect(choices[label] == " " + words[id]!)
                #expect(choices.allSatisfy { c in words.values.contains { " " + $0 == c } })
                #expect(r["context"]?.stringValue?.hasPrefix("Definition: ") == true && r["context"]?.stringValue?.hasSuffix("\nWord:") == true)
                placed[label] += 1
            }
            // The answer's place is spread by the hash, not always first.
            #expect(placed.allSatisfy { $0 > 0 }, "\(placed)")
        }
        #expect(throws: EvalError.self) { try WordNetLM.tasks(cap: cap, choices: 1) }
    }

    @Test func parseErrorsNameFileAndLine() throws {
        let dir = try EFx.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let p = dir + "/data.noun"
        try "  1 licence line\n00001740 03 n 01 entity 0 000 | that which exists\nbroken line without gloss\n".write(
            toFile: p, atomically: true, encoding: .utf8)
        do {
            _ = try WordNet.read(p)
            Issue.record("accepted")
        } catch let e as EvalError { #expect(e.subject == p + ":3") }
        try "  1 licence line\n00001740 03 n 01 entity 0 000 | that which exists\n".write(toFile: p, atomically: true, encoding: .utf8)
        let s = try WordNet.read(p)
        #expect(s.count == 1 && s[0].id == "n00001740" && s[0].text == "entity: that which exists" && s[0].lexfile == 3)
    }

    @Test func fortunesCategories() throws {
        #expect(FileManager.default.fileExists(atPath: Fortunes.defaultDirectory), "run make setup (fortunes)")
        let t = try Fortunes.task(minPerClass: 200, cap: [.train: 20, .dev: 5, .test: 5])
        #expect(t.labels.count >= 10 && t.labels.contains("computers"))
        #expect(t.examples[.train]!.allSatisfy { !$0.text.contains("\n") && $0.text.count <= 400 })
    }
}

/// Sweep result files are typed both ways; files written before the typed records still decode.
