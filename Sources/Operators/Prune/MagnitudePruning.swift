import Checkpoint
import Numerics

/// Magnitude pruning of lora_A / lora_B entries: the floor(S·n) smallest |x| become 0, per tensor
/// (`--scope tensor`) or under one threshold over every A and B entry of the adapter (`global`).
/// Equal magnitudes: the earlier entry (module order, A before B, row-major) is pruned first.
public enum MagnitudePruning {
    /// Returns zeroed counts per module.
    static func apply(_ modules: inout [LoraModule], sparsity s: Double, scope: PruneOptions.Scope) throws -> [String: Int] {
        guard s >= 0 && s <= 1 else { throw MergeError(nil, "--sparsity must be in [0, 1], got \(s)") }
        var zeroed: [String: Int] = [:]
        switch scope {
        case .tensor:
            for i in modules.indices {
                for part in 0..<2 {
                    var t = part == 0 ? modules[i].a.tensor.data : modules[i].b.tensor.data
                    let n = Int((s * Double(t.count)).rounded(.down))
                    let order = t.indices.sorted { (abs(t[$0]), $0) < (abs(t[$1]), $1) }
                    var z = 0
                    for j in order.prefix(n) {
                        if t[j] != 0 { z += 1 }
                        t[j] = 0
                    }
                    if part == 0 { modules[i].a.tensor.data = t } else { modules[i].b.tensor.data = t }
                    zeroed[modules[i].name, default: 0] += z
                }
            }
        case .global:
            var all: [(Float, Int, Int, Int)] = []  // |x|, module, part, index
            for (i, m) in modules.enumerated() {
                for (j, v) in m.a.tensor.data.enumerated() { all.append((abs(v), i, 0, j)) }
                for (j, v) in m.b.tensor.data.enumerated() { all.append((abs(v), i, 1, j)) }
            }
            let n = Int((s * Double(all.count)).rounded(.down))
            all.sort { ($0.0, $0.1, $0.2, $0.3) < ($1.0, $1.1, $1.2, $1.3) }
            for (_, i, part, j) in all.prefix(n) {
                let was = part == 0 ? modules[i].a.tensor.data[j] : modules[i].b.tensor.data[j]
                if was != 0 { zeroed[modules[i].name, default: 0] += 1 }
                if part == 0 { modules[i].a.tensor.data[j] = 0 } else { modules[i].b.tensor.data[j] = 0 }
            }
        }
        return zeroed
    }
}
