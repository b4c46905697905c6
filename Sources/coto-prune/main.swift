import ArgumentParser
import Checkpoint
import CotoCLI
import Numerics
import Operators

struct Prune: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coto-prune",
        abstract: "Prune a LoRA adapter by layers, modules, rank or magnitude, and report what was removed.",
        discussion: """
            Rules combine and apply in this order: layers, modules, rank, magnitude. Dropped modules are removed
            and listed in exclude_modules, so PEFT loads the result without them; magnitude pruning zeroes entries.

            Layer specs: index lists and ranges (0,2,5-7), every-other (keeps even layers), low, middle, high
            (thirds of the layer range; --num-layers sets the model's layer count if the adapter's last layer
            is not the model's).

            Examples:
              coto-prune runs/coto-s0 --sparsity 0.7 -o pruned/
              coto-prune runs/coto-s0 --drop-layers every-other -o half/
              coto-prune runs/coto-s0 --keep-layers high --keep-modules query,value -o top/
              coto-prune runs/coto-s0 --rank 2 --rank-method svd --json -o r2.safetensors
            """)

    @Argument(help: "Adapter directory or .safetensors file.")
    var input: String

    @Option(name: .shortAndLong, help: "Output adapter directory or .safetensors file.")
    var output: String

    @Option(help: "Fraction of lora_A/lora_B entries to zero by magnitude, in [0, 1].")
    var sparsity: Double?

    @Option(help: "Magnitude threshold per tensor or global.")
    var scope = "tensor"

    @Option(help: "Layers whose modules are dropped.")
    var dropLayers: String?

    @Option(help: "Layers whose modules are kept (the others are dropped).")
    var keepLayers: String?

    @Option(help: "Layer count of the base model for low/middle/high/every-other.")
    var numLayers: Int?

    @Option(help: "Module kinds or name suffixes to drop (comma-separated, e.g. q_proj,value).")
    var dropModules: String?

    @Option(help: "Module kinds or name suffixes to keep (the others are dropped).")
    var keepModules: String?

    @Option(help: "Rank to prune every module to.")
    var rank: Int?

    @Option(help: "Fraction of each module's rank to keep, in (0, 1].")
    var rankFraction: Double?

    @Option(help: "svd (best rank-k of s·B·A) or norm (components with the largest ||b_i||·||a_i||).")
    var rankMethod = "svd"

    @Option(help: "Output dtype: keep, f32, f16 or bf16.")
    var dtype = "keep"

    @OptionGroup var adapterOptions: AdapterInputOptions

    @OptionGroup var out: OutputOptions

    func list(_ s: String?) -> [String]? { s.map { $0.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } } }

    func validate() throws {
        if let s = sparsity, !(s >= 0 && s <= 1) { throw ValidationError("--sparsity must be in [0, 1] (got \(s))") }
        guard PruneOptions.Scope(rawValue: scope) != nil else { throw ValidationError("--scope must be tensor or global") }
        guard PruneOptions.RankMethod(rawValue: rankMethod) != nil else { throw ValidationError("--rank-method must be svd or norm") }
        if let k = rank, k < 1 { throw ValidationError("--rank must be at least 1 (got \(k))") }
        if let f = rankFraction, !(f > 0 && f <= 1) { throw ValidationError("--rank-fraction must be in (0, 1] (got \(f))") }
        if rank != nil && rankFraction != nil { throw ValidationError("give --rank or --rank-fraction, not both") }
        if dropLayers != nil && keepLayers != nil { throw ValidationError("give --drop-layers or --keep-layers, not both") }
        if dropModules != nil && keepModules != nil { throw ValidationError("give --drop-modules or --keep-modules, not both") }
        if let n = numLayers, n < 1 { throw ValidationError("--num-layers must be positive") }
        if sparsity == nil && dropLayers == nil && keepLayers == nil && dropModules == nil && keepModules == nil && rank == nil && rankFraction == nil {
            throw ValidationError("nothing to prune: give --sparsity, --drop-layers/--keep-layers, --drop-modules/--keep-modules or --rank/--rank-fraction")
        }
        _ = try parseOutputDType(dtype)
    }

    func run() throws {
        try checkOutputNotInput(output, inputs: [input])
        let adapter = try Adapter.load(input, alpha: adapterOptions.alpha)
        var o = PruneOptions()
        o.sparsity = sparsity
        o.scope = PruneOptions.Scope(rawValue: scope)!
        o.dropLayers = dropLayers
        o.keepLayers = keepLayers
        o.numLayers = numLayers
        o.dropModules = list(dropModules)
        o.keepModules = list(keepModules)
        o.rank = rank
        o.rankFraction = rankFraction
        o.rankMethod = PruneOptions.RankMethod(rawValue: rankMethod)!
        o.allowNonFinite = adapterOptions.allowNonfinite
        let (pruned, report) = try Pruner.prune(adapter, options: o, progress: operatorProgress(label: "pruning", quiet: !out.chatty))
        try pruned.save(to: output, dtype: try parseOutputDType(dtype))
        if out.json {
            Console.writeOut(JSON.object([("input", .string(input)), ("output", .string(output)), ("report", report.json)]).pretty)
        } else if !out.quiet {
            var rows: [[String]] = []
            for e in report.entries where e.action != "kept" {
                rows.append([
                    e.module, e.layer.map(String.init) ?? "-", e.action, "\(e.zeroed)", "\(e.dropped)", "\(e.rankBefore)→\(e.rankAfter)",
                    fmt(e.normBefore > 0 ? e.normAfter / e.normBefore : 1, 3),
                ])
            }
            if !rows.isEmpty { Console.writeErr(table(["module", "layer", "action", "zeroed", "dropped", "rank", "norm kept"], rows)) }
            Console.writeErr(
                "wrote \(output): \(report.zeroed) of \(report.parameters) parameters zeroed, \(report.dropped) dropped; ||s·BA||_F kept: \(fmt(report.normFractionKept * 100, 4))%"
            )
        }
    }
}

runCommand(Prune.self)
