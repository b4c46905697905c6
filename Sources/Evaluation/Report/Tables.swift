import Checkpoint
import Foundation

// Statistics and table helpers every section shares: mean ± std over seeds, series order, markdown tables.

extension Report {
    static func meanStd(_ v: [Double]) -> (Double, Double) {
        guard !v.isEmpty else { return (.nan, .nan) }
        let m = v.reduce(0, +) / Double(v.count)
        guard v.count > 1 else { return (m, 0) }
        return (m, (v.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(v.count - 1)).squareRoot())
    }

    static func pm(_ v: [Double], _ digits: Int = 4) -> String {
        let (m, s) = meanStd(v)
        if !m.isFinite { return "–" }
        return v.count > 1 ? String(format: "%.\(digits)f ± %.\(digits)f", m, s) : String(format: "%.\(digits)f", m)
    }

    static func stats(_ v: [Double]) -> JSON {
        let (m, s) = meanStd(v)
        return .object([("mean", .double(m)), ("std", .double(s)), ("n", .int(v.count)), ("values", .array(v.map { .double($0) }))])
    }

    /// Series order in tables and legends: plain adapters first, CoTo ones after, each by name.
    static func seriesLess(_ a: String, _ b: String) -> Bool {
        let ra = a.hasPrefix("coto") ? 1 : 0
        let rb = b.hasPrefix("coto") ? 1 : 0
        return ra != rb ? ra < rb : a < b
    }

    static func seriesOrder(_ names: [String]) -> [String] { Array(Set(names)).sorted(by: seriesLess) }

    static func mdTable(_ header: [String], _ rows: [[String]]) -> String {
        var s = "| " + header.joined(separator: " | ") + " |\n|" + header.map { _ in "---|" }.joined() + "\n"
        for r in rows { s += "| " + r.joined(separator: " | ") + " |\n" }
        return s
    }

    static func slug(_ s: String) -> String {
        String(s.lowercased().map { $0.isLetter || $0.isNumber ? $0 : "-" })
    }
}
