import ArgumentParser
import Checkpoint
import CotoCLI
import Numerics
import Operators

struct Fuse: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coto-fuse",
        abstract: "Fuse LoRA adapters into a base model: W' = W + Σ w_i s_i B_i A_i, streamed tensor by tensor.",
        discussion: """
            Handles fan_in_fan_out layers, embeddings, DoRA (m ⊙ (W+ΔW)/||W+ΔW||_row), lora_B biases and
            modules_to_save heads, like PEFT's merge_and_unload. Computes in Float32 and rounds once to the base
            dtype; writes a new model directory (sharded with --max-shard-size) and copies the base's other files.

            Examples:
              coto-fuse --model smollm2/ --adapter runs/coto-s0 -o fused/
              coto-fuse --model base/ --adapter nouns/ --adapter verbs/ --weights 0.5,0.5 -o fused-multi/
            """)

    @Option(help: "Base model directory (config.json + safetensors weights).")
    var model: String

    @Option(help: "Adapter directory or .safetensors file (repeat for several).")
    var adapter: [String]

    @Option(help: "Comma-separated weights, one per adapter (default 1 each).")
    var weights: String?

    @Option(name: .shortAndLong, help: "Output model directory.")
    var output: String

    @Option(help: "Split the output into shards of at most this size (e.g. 2GB).")
    var maxShardSize: String?

    @OptionGroup var adapterOptions: AdapterInputOptions

    @OptionGroup var out: OutputOptions

    func validate() throws {
        guard !adapter.isEmpty else { throw ValidationError("give at least one --adapter") }
        if let w = weights {
            let ws = try parseNumberList(w, option: "--weights")
            guard ws.count == adapter.count else { throw ValidationError("--weights has \(ws.count) values for \(adapter.count) adapters") }
        }
        if let s = maxShardSize, parseByteSize(s) == nil { throw ValidationError("--max-shard-size must be a size like 2GB or 500MB (got '\(s)')") }
    }

    func run() throws {
        try checkOutputNotInput(output, inputs: [model] + adapter)
        // A GGUF base (llama.cpp; Q4_0/Q4_1/Q8_0/F16/BF16/F32) is dequantized tensor by tensor on the fly.
        let base = try HFModelDir.open(model)
        let adapters = try adapter.map { try Adapter.load($0, alpha: adapterOptions.alpha) }
        var o = FuseOptions()
        o.weights = try weights.map { try parseNumberList($0, option: "--weights") }
        o.maxShardSize = maxShardSize.flatMap(parseByteSize)
        o.allowNonFinite = adapterOptions.allowNonfinite
        let report = try Fuser.fuse(base: base, adapters: adapters, options: o, to: output, progress: operatorProgress(label: "fusing", quiet: !out.chatty))
        if out.json {
            Console.writeOut(
                JSON.object([
                    ("model", .string(model)), ("adapters", .array(adapter.map { .string($0) })), ("output", .string(output)),
                    ("fused_modules", .int(report.fusedModules.count)),
                    ("replaced_tensors", .array(report.replacedTensors.map { .string($0) })),
                    ("added_tensors", .array(report.addedTensors.map { .string($0) })),
                    ("files", .array(report.files.map { .string($0) })),
                ]).pretty)
        } else if !out.quiet {
            Console.writeErr(
                "wrote \(output): \(report.fusedModules.count) modules fused, \(report.replacedTensors.count) tensors replaced, \(report.addedTensors.count) added"
            )
        }
    }
}

runCommand(Fuse.self)
