import ArgumentParser
import Checkpoint
import CotoCLI
import Numerics
import Operators

struct Extract: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coto-extract",
        abstract: "Extract a LoRA adapter from a full fine-tune: the best rank-k factors of W_tuned − W_base per module.",
        discussion: """
            Per 2-D weight that differs between the two models (embeddings and the LM head only when --targets
            names them): the top-k singular triplets of ΔW = W_tuned − W_base (never a full SVD), B = U_k·S_k,
            A = V_kᵀ, lora_alpha = k, so s·B·A is the best rank-k approximation of ΔW in Frobenius norm. The rank
            is fixed (--rank) or chosen per module as the smallest that keeps a fraction of ‖ΔW‖_F² (--energy),
            at most --max-rank; modules of another rank go into rank_pattern/alpha_pattern. Models are read one
            tensor pair at a time (shards too). The report gives per module the rank, the energy kept and the
            relative reconstruction error ‖ΔW − B·A‖_F / ‖ΔW‖_F, and lists changed tensors LoRA cannot carry.

            Examples:
              coto-extract --base minilm/ --tuned minilm-finetuned/ --rank 16 -o extracted/
              coto-extract --base smollm2/ --tuned smollm2-sft/ --energy 0.9 --max-rank 64 --json -o sft-lora/
              coto-extract --base minilm/ --tuned fused/ --rank 8 --targets query,value -o lora.safetensors
            """)

    @Option(help: "Base model directory (config.json + safetensors weights, sharded or not).")
    var base: String

    @Option(help: "Fine-tuned model directory with the same architecture.")
    var tuned: String

    @Option(name: .shortAndLong, help: "Output adapter directory or .safetensors file.")
    var output: String

    @Option(help: "Rank of every module.")
    var rank: Int?

    @Option(help: "Per module, the smallest rank that keeps this fraction of ‖ΔW‖_F² (0 < E <= 1).")
    var energy: Double?

    @Option(help: "Largest rank --energy may choose.")
    var maxRank = 128

    @Option(help: "Module kinds to extract (last name component, e.g. query,value); default: every 2-D weight but embeddings and the LM head.")
    var targets: String?

    @Option(help: "Output dtype: keep, f32, f16 or bf16.")
    var dtype = "keep"

    @OptionGroup var out: OutputOptions

    func validate() throws {
        if (rank == nil) == (energy == nil) { throw ValidationError("give --rank or --energy (one of them)") }
        if let k = rank, k < 1 { throw ValidationError("--rank must be at least 1 (got \(k))") }
        if let e = energy, !(e > 0 && e <= 1) { throw ValidationError("--energy must be in (0, 1] (got \(e))") }
        guard maxRank >= 1 else { throw ValidationError("--max-rank must be at least 1") }
        _ = try parseOutputDType(dtype)
    }

    func run() throws {
        try checkOutputNotInput(output, inputs: [base, tuned])
        var o = ExtractOptions()
        o.rank = rank
        o.energy = energy
        o.maxRank = maxRank
        o.targets = targets.map { $0.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }
        o.dtype = try parseOutputDType(dtype)
        let (adapter, report) = try Extractor.extract(
            base: try HFModelDir(path: base), tuned: try HFModelDir(path: tuned), options: o,
            progress: operatorProgress(label: "extracting", quiet: !out.chatty))
        try adapter.save(to: output)
        if out.json {
            Console.writeOut(
                JSON.object([
                    ("base", .string(base)), ("tuned", .string(tuned)), ("output", .string(output)),
                    ("report", report.json),
                ]).pretty)
        } else if !out.quiet {
            let rows = report.entries.map { e in
                [e.module, e.shape.map(String.init).joined(separator: "x"), "\(e.rank)", fmt(e.energy * 100, 4) + "%", fmt(e.relativeError, 3)]
            }
            Console.writeErr(table(["module", "shape", "rank", "energy kept", "relative error"], rows))
            if !report.notExtracted.isEmpty {
                Console.writeErr("note: changed but not extracted (not a targeted 2-D weight): \(report.notExtracted.joined(separator: ", "))")
            }
            Console.writeErr(
                "wrote \(output): \(report.entries.count) modules" + (report.unchanged.isEmpty ? "" : ", \(report.unchanged.count) unchanged weights skipped"))
        }
    }
}

runCommand(Extract.self)
