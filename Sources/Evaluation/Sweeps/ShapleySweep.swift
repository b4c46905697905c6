import Checkpoint
import Foundation
import Model
import Numerics
import Operators

// The Shapley sweep: every coalition of a plan scored once, in an order that shares lower layers.

extension Sweeps {
    /// Players: the adapter's layers, or each module.
    public static func players(of adapter: Adapter, group: String) -> [(name: String, modules: Set<String>)] {
        if group == "module" { return adapter.modules.map { ($0.name, [$0.name]) } }
        var byLayer: [Int: Set<String>] = [:]
        var rest: Set<String> = []
        for m in adapter.modules { if let l = m.layer { byLayer[l, default: []].insert(m.name) } else { rest.insert(m.name) } }
        var out = byLayer.keys.sorted().map { (name: "layer \($0)", modules: byLayer[$0]!) }
        if !rest.isEmpty { out.insert((name: "no layer", modules: rest), at: 0) }
        return out
    }

    /// Scores the coalitions owned by this shard (each once, in an order that shares lower layers).
    public static func shapley(
        _ ev: SweepEvaluator, adapter: Adapter, data: PreparedData, group: String, plan: ShapleyPlan, name: String,
        shard: Shard = .whole
    ) throws -> SweepResult {
        let labels = SweepEvaluator.labels(for: [adapter], data: data)
        let players = self.players(of: adapter, group: group)
        guard players.count == plan.players else {
            throw EvalError(adapter.source, "the plan has \(plan.players) players but the adapter has \(players.count) groups")
        }
        try ev.load(adapter)
        let coalitions = plan.coalitions
        let mine = coalitions.indices.filter(shard.owns)
        let switches: [Set<String>] = mine.map { k in
            var on = Set<String>()
            for (i, p) in players.enumerated() where coalitions[k][i] { on.formUnion(p.modules) }
            return on
        }
        let (scores, reused, computed) = try ev.score(
            data, labels: labels, configurations: mine.count,
            configure: { c in
                ev.model.setActive(false)
                ev.model.setActive(true) { key in switches[c].contains { $0 == key || $0.hasSuffix("." + key) } }
            }, batchDone: ev.progress)
        let values = Dictionary(zip(mine, scores).map { (ShapleyPlan.key(coalitions[$0.0]), SweepPoint(score: $0.1)) }, uniquingKeysWith: { a, _ in a })
        ev.model.setActive(true)
        var r = shapleyHeader(adapter: adapter, data: data.path, group: group, plan: plan, name: name, shard: shard, task: data.task)
        (r.layersReused, r.layersComputed) = (reused, computed)
        r.values = values
        return r
    }

    /// A Shapley sweep's result without its values (the players and the plan's size included).
    public static func shapleyHeader(
        adapter: Adapter, data: String, group: String, plan: ShapleyPlan, name: String, shard: Shard, task: EvalTask = .classification
    ) -> SweepResult {
        var r = result(
            "shapley", name: name, adapters: [adapter.source], data: [data], shard: shard, settings: SweepSettings(group: group, plan: plan.settings),
            task: task)
        (r.players, r.coalitions) = (players(of: adapter, group: group).map(\.name), plan.coalitions.count)
        return r
    }
}
