import Foundation
import Model

/// Classification metrics: accuracy, macro-F1 (over the classes present in gold or predictions, as
/// scikit-learn), mean cross-entropy, confusion matrix [gold][predicted].
public struct ClassificationMetrics {
    public var labels: [String]
    public var confusion: [[Int]]
    public var lossSum = 0.0
    public var count = 0

    public init(labels: [String]) {
        self.labels = labels
        confusion = [[Int]](repeating: [Int](repeating: 0, count: labels.count), count: labels.count)
    }

    public mutating func add(gold: Int, logits: ArraySlice<Float>) {
        let l = Array(logits)
        lossSum += Kernels.crossEntropy(logits, target: gold)
        let pred = l.indices.max { l[$0] < l[$1] } ?? 0
        confusion[gold][pred] += 1
        count += 1
    }

    /// Scores a batch: the head's output (one row of logits per example, `out.logitsWidth` wide) against
    /// the gold class indices, row by row. Evaluation, sweeps and training's evaluation all score here.
    public mutating func add(_ out: ForwardOutput, gold: [Int]) {
        let w = out.logitsWidth
        for (i, g) in gold.enumerated() { add(gold: g, logits: out.logits[(i * w)..<((i + 1) * w)]) }
    }

    public var accuracy: Double { count == 0 ? 0 : Double((0..<labels.count).reduce(0) { $0 + confusion[$1][$1] }) / Double(count) }
    public var loss: Double { count == 0 ? 0 : lossSum / Double(count) }

    public var macroF1: Double {
        var f1s: [Double] = []
        for c in labels.indices {
            let tp = Double(confusion[c][c])
            let goldN = Double(confusion[c].reduce(0, +))
            let predN = Double(confusion.reduce(0) { $0 + $1[c] })
            if goldN == 0 && predN == 0 { continue }
            let p = predN > 0 ? tp / predN : 0
            let r = goldN > 0 ? tp / goldN : 0
            f1s.append(p + r > 0 ? 2 * p * r / (p + r) : 0)
        }
        return f1s.isEmpty ? 0 : f1s.reduce(0, +) / Double(f1s.count)
    }
}

/// log-softmax of one logits row at `target`.
public func logProb(_ row: ArraySlice<Float>, _ target: Int) -> Double {
    -Kernels.crossEntropy(row, target: target)
}
