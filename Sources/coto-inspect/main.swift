import ArgumentParser
import Checkpoint
import CotoCLI

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coto-inspect",
        abstract: "Show what a checkpoint holds: tensors, adapter modules, model summary; validate it.",
        discussion: """
            PATH may be a PEFT adapter directory, an adapter .safetensors file, a Hugging Face model directory
            (single or sharded weights), a model.safetensors.index.json, any .safetensors file, or a GGUF file.

            Examples:
              coto-inspect runs/coto-s0
              coto-inspect model.safetensors --stats
              coto-inspect SmolLM2-135M-Instruct.Q4_1.gguf --json
              coto-inspect fused-model/ --validate      # exit 1 on any fault (NaN/Inf, broken index, ...)
            """)

    @Argument(help: "Checkpoint to inspect.")
    var path: String

    @Flag(help: "Per-tensor min/max/mean/std and NaN/Inf counts (reads every value).")
    var stats = false

    @Flag(help: "Check everything (all shards, index totals, NaN/Inf values); exit 1 on any fault.")
    var validate = false

    @Flag(help: "Machine-readable JSON on stdout.")
    var json = false

    @Option(help: "Lines of the tensor table to print (0: all).")
    var limit = 40

    func run() throws {
        var bar: ProgressRenderer? = nil
        let ins = try Inspection.inspect(path, options: .init(stats: stats, validate: validate)) { done, total in
            guard stats || validate, total > 1 else { return }
            if bar == nil { bar = ProgressRenderer(label: "reading", total: total, unit: " tensors", quiet: json) }
            bar?.update(done)
        }
        if json {
            Console.writeOut(ins.json.pretty)
        } else {
            Console.writeOut(render(ins))
        }
        if validate && !ins.faults.isEmpty {
            for f in ins.faults { Console.writeErr("fault: \(f)") }
            throw CommandError(path, "\(ins.faults.count) fault(s) found")
        }
    }

    func render(_ ins: Inspection) -> String {
        let r = ins.json
        var out: [String] = ["\(ins.path): \(ins.kind.rawValue)"]
        func field(_ k: String, _ label: String? = nil) {
            guard let v = r[k], !v.isNull else { return }
            let text: String
            switch v {
            case let .string(s): text = s
            case let .number(n): text = n
            case let .bool(b): text = b ? "yes" : "no"
            case let .array(a): text = a.isEmpty ? "-" : a.map { $0.stringValue ?? $0.compact }.joined(separator: ", ")
            case .object: text = v.compact
            case .null: text = "-"
            }
            out.append("  \(label ?? k): \(text)")
        }
        switch ins.kind {
        case .adapter:
            for k in [
                "config_origin", "base_model", "task_type", "r", "lora_alpha", "use_rslora", "use_dora", "variant", "labels", "module_count", "parameter_count",
                "layers",
            ] { field(k) }
            let mods = r["modules"]?.arrayValue ?? []
            var rows: [[String]] = []
            for m in mods {
                rows.append([
                    m["name"]?.stringValue ?? "", m["layer"]?.intValue.map(String.init) ?? "-", m["kind"]?.stringValue ?? "",
                    m["r"]?.compact ?? "", fmt(m["alpha"]?.doubleValue ?? .nan), fmt(m["scaling"]?.doubleValue ?? .nan),
                    fmt(m["delta_norm"]?.doubleValue ?? .nan),
                    [
                        m["dora"]?.boolValue == true ? "dora" : nil, m["lora_bias"]?.boolValue == true ? "bias" : nil,
                        m["embedding"]?.boolValue == true ? "embedding" : nil,
                    ].compactMap { $0 }.joined(separator: ","),
                ])
            }
            out.append("")
            out.append(table(["module", "layer", "kind", "r", "alpha", "scaling", "||s·BA||_F", "flags"], rows))
            let heads = r["heads"]?.arrayValue ?? []
            if !heads.isEmpty {
                out.append("")
                out.append("heads (modules_to_save): " + heads.map { "\($0["name"]?.stringValue ?? "") \($0["shape"]?.compact ?? "")" }.joined(separator: ", "))
            }
            if let others = r["other_tensors"]?.arrayValue { out.append("other tensors: " + others.compactMap(\.stringValue).joined(separator: ", ")) }
        case .model, .safetensors, .sharded, .gguf:
            for k in [
                "model_type", "architectures", "parameter_count", "hidden_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "vocab_size", "version", "alignment", "weight_files", "tokenizer_files", "other_files",
                "shards", "declared_total_size", "metadata", "tensor_count", "total_bytes", "elements_by_dtype", "tensors_by_type",
            ] {
                if ins.kind == .gguf && k == "metadata" {
                    out.append("  metadata:")
                    for (mk, mv) in r["metadata"]?.objectPairs ?? [] {
                        out.append("    \(mk) = \(mv.stringValue.map { $0.count > 70 ? String($0.prefix(67)).debugDescription + "…" : $0 } ?? mv.compact)")
                    }
                    continue
                }
                field(k)
            }
            let tensors = r["tensors"]?.arrayValue ?? []
            let shown = limit > 0 ? Array(tensors.prefix(limit)) : tensors
            var rows: [[String]] = []
            for t in shown {
                var row = [
                    t["name"]?.stringValue ?? "", t["dtype"]?.stringValue ?? t["type"]?.stringValue ?? "",
                    t["shape"]?.compact ?? "", formatBytes(t["bytes"]?.intValue ?? 0),
                ]
                if let s = t["stats"] {
                    row += [
                        fmt(s["min"]?.doubleValue ?? .nan), fmt(s["max"]?.doubleValue ?? .nan),
                        fmt(s["mean"]?.doubleValue ?? .nan), fmt(s["std"]?.doubleValue ?? .nan),
                        "\(s["nan"]?.intValue ?? 0)/\(s["inf"]?.intValue ?? 0)",
                    ]
                }
                if ins.kind == .gguf { row.append(t["hf_name"]?.stringValue ?? "-") }
                rows.append(row)
            }
            var header = ["tensor", "dtype", "shape", "bytes"]
            if stats { header += ["min", "max", "mean", "std", "nan/inf"] }
            if ins.kind == .gguf { header.append("hf name") }
            out.append("")
            out.append(table(header, rows))
            if shown.count < tensors.count { out.append("… \(tensors.count - shown.count) more (--limit 0 shows all, --json for everything)") }
        }
        if !ins.faults.isEmpty {
            out.append("")
            out.append("faults: \(ins.faults.count)")
        } else if validate {
            out.append("")
            out.append("valid: no faults")
        }
        return out.joined(separator: "\n")
    }
}

runCommand(Inspect.self)
