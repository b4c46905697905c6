import Foundation
import Testing
import TestSupport
@testable import Evaluation
import Checkpoint
import Model
import Numerics
import Operators

/// RegMean against PyTorch + PEFT forward hooks (Fixtures/regmean.py): the activation Grams of every adapted
/// layer with each adapter active, on the same tokens, and the merged deltas (merge-b
/// adapts `key`, merge-a does not: its zero delta counts through its Gram). a = 0.9 and 0.5: at a = 1 this model's
/// Grams are singular (its LayerNorms are at their init).
@Suite struct RegMeanPEFTTests {
    static func fx(_ p: String) -> String { TestPaths.fixture(p) }

    static func grams() throws -> ([Adapter], [[String: InputGram]]) {
        let adapters = try ["peft/merge-a", "peft/merge-b"].map { try Adapter.load(fx($0)) }
        var r = RegMeanGrams.Request(model: fx("tiny-bert"), data: [fx("regmean/a.jsonl"), fx("regmean/b.jsonl")])
        (r.examples, r.maxLength) = (10, 24)
        return (adapters, try RegMeanGrams.captureAll(r, adapters: adapters))
    }

    @Test func theGramsAreThoseOfPEFTsForwardHooks() throws {
        let (_, grams) = try Self.grams()
        let ref = try SafeTensorsFile(path: Self.fx("regmean/expected.safetensors"))
        let names = ref.names.filter { $0.hasPrefix("gram.a.") }.map { String($0.dropFirst(7)) }
        #expect(names.count == 6 && Set(grams[0].keys) == Set(names) && Set(grams[1].keys) == Set(names), "\(names)")
        for (k, g) in zip(["a", "b"], grams) {
            for n in names {
                let want = try ref.tensor("gram.\(k).\(n)")
                let got = try #require(g[n])
                #expect(got.tokens > 10 && relErr(got.values.map(Float.init), want.data) < 1e-5, "\(k) \(n)")
            }
        }
    }

    @Test func theMergedDeltasAreRegMeansClosedForm() throws {
        let (adapters, grams) = try Self.grams()
        let ref = try SafeTensorsFile(path: Self.fx("regmean/expected.safetensors"))
        for alpha in [0.9, 0.5] {
            var o = MergeOptions(weights: [1, 1])
            (o.grams, o.regmeanAlpha, o.heads) = (grams, alpha, .drop)
            let merged = try RegMean().merge(adapters, options: o, progress: nil)
            #expect(merged.modules.count == 6)
            for m in merged.modules {
                let err = relErr(m.delta(), try ref.tensor("merged.\(alpha).\(m.name)"))
                #expect(err < 1e-4, "a = \(alpha) \(m.name): \(err)")
            }
        }
        // a = 1: the tiny BERT's LayerNorms are at their init (weight 1, bias 0), so every adapted layer's inputs
        // sum to zero over the features and Σ G is singular: a clear error, not a merge of rounding noise.
        var o = MergeOptions(weights: [1, 1])
        (o.grams, o.heads) = (grams, .drop)
        do {
            _ = try RegMean().merge(adapters, options: o, progress: nil)
            Issue.record("a singular sum of Grams was merged")
        } catch let e as MergeError { #expect(e.message.contains("singular")) }
    }
}
