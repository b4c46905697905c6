import Testing
import PropertyBased
@testable import Training
import Numerics

/// `--group-by-length`: HF transformers' `get_length_grouped_indices` on a given order (its randperm replaced
/// by the identity, the outputs below printed by transformers itself), and the rule's invariants.
@Suite struct LengthGroupedTests {
    @Test func equalsTransformersOnTheSameOrder() {
        // get_length_grouped_indices([3,7,7,1,9,2,5,5,8,4], 2): megabatches of 2, the longest (9) first.
        #expect(AdapterTrainer.lengthGrouped(Array(0..<10), lengths: [3, 7, 7, 1, 9, 2, 5, 5, 8, 4], batch: 2) == [4, 0, 2, 3, 1, 5, 6, 7, 8, 9])
        // 40 examples, batch 3: megabatches of min(40 / 12, 50) · 3 = 9, ties kept in order.
        let lengths = (0..<40).map { ($0 * 37) % 23 + 1 }
        #expect(
            AdapterTrainer.lengthGrouped(Array(0..<40), lengths: lengths, batch: 3) == [
                18, 3, 6, 1, 4, 7, 2, 5, 0, 13, 16, 11, 14, 9, 17, 12, 15, 10, 8, 26, 21, 24, 19, 22, 25, 20, 23, 31, 34, 29, 32, 27, 35, 30, 33, 28,
                36, 39, 37, 38,
            ])
    }

    @Test func aPermutationWithTheLongestFirstAndSortedMegabatches() async {
        await propertyCheck(count: 200, input: Gen.int(in: 1...60).array(of: 1...300), Gen.int(in: 1...40)) { lengths, batch in
            var order = Array(lengths.indices)
            var rng = SeededRNG(seed: UInt64(lengths.count * 31 + batch))
            rng.shuffle(&order)
            let g = AdapterTrainer.lengthGrouped(order, lengths: lengths, batch: batch)
            #expect(g.sorted() == Array(lengths.indices))
            #expect(lengths[g[0]] == lengths.max())
            // Within each megabatch, after its first element, lengths never rise; and the megabatches hold the
            // same examples as the cuts of the given order.
            let size = max(1, min(lengths.count / (batch * 4), 50)) * batch
            for start in stride(from: 0, to: g.count, by: size) {
                let part = Array(g[start..<min(g.count, start + size)])
                #expect(zip(part.dropFirst(), part.dropFirst(2)).allSatisfy { lengths[$0] >= lengths[$1] })
                let cut = Set(order[start..<min(order.count, start + size)])
                #expect(Set(part.dropFirst()).isSubset(of: cut))
            }
        }
    }
}
