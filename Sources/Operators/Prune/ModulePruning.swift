import Checkpoint

/// Module pruning by kind (the last name component: q_proj, value, dense...) or by a name suffix
/// (`attention.output.dense`). `--drop-modules` drops the matches, `--keep-modules` everything else.
public enum ModulePruning {
    static func matches(_ m: LoraModule, _ pattern: String) -> Bool {
        m.kind == pattern || m.name == pattern || m.name.hasSuffix("." + pattern)
    }

    static func selectDropped(_ a: Adapter, options o: PruneOptions) throws -> Set<String> {
        if o.dropModules != nil && o.keepModules != nil { throw MergeError(nil, "give --drop-modules or --keep-modules, not both") }
        guard let list = o.dropModules ?? o.keepModules else { return [] }
        for p in list where !a.modules.contains(where: { matches($0, p) }) {
            let kinds = Array(Set(a.modules.map(\.kind))).sorted().joined(separator: ", ")
            throw MergeError(a.source, "no module matches '\(p)' (this adapter has: \(kinds))")
        }
        let keep = o.keepModules != nil
        return Set(a.modules.filter { m in list.contains { matches(m, $0) } != keep }.map(\.name))
    }
}
