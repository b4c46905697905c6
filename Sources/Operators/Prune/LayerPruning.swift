import Checkpoint

/// Layer selection: index lists and ranges ("0,2,5-7"), `every-other` (keeps even layers), `low`,
/// `middle`, `high` (thirds of the layer range). `--drop-layers` drops the selected layers' modules,
/// `--keep-layers` drops every other layer's. Modules without a layer index are never touched.
public enum LayerPruning {
    /// The layers a spec names, given L layers. For `every-other`, `keep` decides the side: kept = even.
    public static func select(_ spec: String, layers L: Int, keep: Bool) throws -> Set<Int> {
        let b1 = Int((Double(L) / 3).rounded())
        let b2 = Int((2 * Double(L) / 3).rounded())
        switch spec.lowercased() {
        case "every-other": return Set((0..<L).filter { ($0 % 2 == 0) == keep })
        case "low": return Set(0..<b1)
        case "middle": return Set(b1..<max(b1, b2))
        case "high": return Set(max(b1, b2)..<max(L, b2))
        case "all": return Set(0..<L)
        default: break
        }
        var out = Set<Int>()
        for part in spec.split(separator: ",").map({ $0.trimmingCharacters(in: " ") }) where !part.isEmpty {
            let ends = part.split(separator: "-", omittingEmptySubsequences: false)
            if ends.count == 2, let a = Int(ends[0]), let b = Int(ends[1]), a >= 0, a <= b {
                out.formUnion(a...b)
            } else if let i = Int(part), i >= 0 {
                out.insert(i)
            } else {
                throw MergeError(nil, "layer spec '\(spec)': '\(part)' is not an index, a range like 2-5, every-other, low, middle or high")
            }
        }
        return out
    }

    static func selectDropped(_ a: Adapter, options o: PruneOptions) throws -> Set<String> {
        if o.dropLayers != nil && o.keepLayers != nil { throw MergeError(nil, "give --drop-layers or --keep-layers, not both") }
        guard let spec = o.dropLayers ?? o.keepLayers else { return [] }
        let L = o.numLayers ?? ((a.layers.max() ?? -1) + 1)
        let sel = try select(spec, layers: L, keep: o.keepLayers != nil)
        if let bad = sel.first(where: { $0 >= L }) { throw MergeError(nil, "layer \(bad) is out of range: the adapter has layers 0...\(L - 1)") }
        return Set(
            a.modules.compactMap { m in
                guard let l = m.layer else { return nil }
                return (o.keepLayers != nil ? !sel.contains(l) : sel.contains(l)) ? m.name : nil
            })
    }
}

extension StringProtocol {
    func trimmingCharacters(in c: Character) -> String {
        var s = Substring(self)
        while s.first == c { s.removeFirst() }
        while s.last == c { s.removeLast() }
        return String(s)
    }
}
