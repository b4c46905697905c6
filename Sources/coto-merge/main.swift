import ArgumentParser
import Checkpoint
import CotoCLI
import Evaluation
import Numerics
import Operators

struct Merge: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coto-merge",
        abstract: "Merge LoRA adapters: interpolation, exact task arithmetic, and PEFT's combination types.",
        discussion: """
            Inputs are PEFT adapter directories or adapter .safetensors files. OUT ending in .safetensors gets one
            file with the config in its metadata; anything else a PEFT adapter directory.

            Methods: \(MergeMethods.names.joined(separator: ", ")).
              interpolate      every tensor θ = Σ w_i θ_i (weights default 1/n); the paper's linear path
              task-arithmetic  exact Σ w_i s_i B_i A_i (concatenated factors), or its best rank-K (--rank)
              linear ties dare_linear dare_ties magnitude_prune cat svd ties_svd dare_linear_svd dare_ties_svd
              magnitude_prune_svd   peft 0.21 add_weighted_adapter, same math and resulting config (weights default 1)
              breadcrumbs breadcrumbs_ties della della_linear   mergekit's, on the dense deltas, then top-k SVD
              iso_c tsv knots core core_ties core_tsv core_iso_c   low-rank merges from the papers' reference code
              regmean          RegMean: per layer (Σ ΔW_i G̃_i)(Σ G̃_i)⁻¹ from each task's activation Grams (--model, --data
                               one file per input; --examples, --regmean-alpha, --rank), written as a LoRA of rank Σ r_i
              lego             LoRA-LEGO: k-means of the inputs' rank-1 units into --rank clusters per module
                               (default: the largest input rank; at most the module's units), centroids rescaled
                               (max-norm, then √(r/k)); seeded by --seed; weights are the units' weights (> 0)

            Examples:
              coto-merge runs/coto-s0 runs/coto-s1 --lambda 0.5 -o merged/
              coto-merge a.safetensors b.safetensors --method ties --density 0.5 --weights 1,1 -o ties/
              coto-merge nouns/ verbs/ pos/ --method task-arithmetic --rank 16 --heads drop -o multi.safetensors
              coto-merge nouns/ verbs/ --method regmean --model minilm/ --data nouns-train.jsonl,verbs-train.jsonl -o rm/
            """)

    @Argument(help: "Adapters to merge (directories or .safetensors files).")
    var inputs: [String]

    @Option(name: .shortAndLong, help: "Output adapter directory or .safetensors file.")
    var output: String

    @Option(help: "Merge method (mergekit's and PEFT's spellings work: '-' and '_' are the same).")
    var method = "interpolate"

    @Option(name: .customLong("lambda"), help: "With two inputs: weights 1-L and L (any real L; outside [0,1] extrapolates).")
    var lambda: Double?

    @Option(help: "Comma-separated weights, one per input.")
    var weights: String?

    @Option(help: "Fraction of entries kept by ties / dare / magnitude_prune / breadcrumbs / della / knots / core_ties, in [0, 1].")
    var density: Double?

    @Option(help: "Rank of the result (svd family, task-arithmetic, lego).")
    var rank: Int?

    @Option(help: "Clamp SVD factors at this quantile (svd family).")
    var svdClamp: Double?

    @Option(help: "breadcrumbs / breadcrumbs_ties: fraction of the largest-magnitude entries dropped as outliers (mergekit's gamma).")
    var gamma = 0.01

    @Option(help: "della / della_linear: keep probabilities run from density - epsilon to density + epsilon (mergekit's epsilon).")
    var epsilon = 0.15

    @Option(help: "Majority sign for ties: total or frequency.")
    var majoritySign = "total"

    @Option(help: "Seed of the random methods: DARE and DELLA pruning, LoRA-LEGO's clustering.")
    var seed: UInt64 = 0

    @Option(help: "Heads and other modules_to_save tensors: average, first or drop.")
    var heads = "average"

    @Option(help: "Output dtype: keep, f32, f16 or bf16.")
    var dtype = "keep"

    @Option(help: "regmean: the base model the adapters were trained on (directory or GGUF).")
    var model: String?

    @Option(help: "regmean: one data file per input, comma-separated (classification JSONL, or perplexity JSONL on decoders).")
    var data: String?

    @Option(help: "regmean: the first N examples of each data file.")
    var examples = 256

    @Option(help: "regmean: a in G̃ = a·G + (1 - a)·diag(G), in [0, 1] (below 1 when the Grams' sum is singular).")
    var regmeanAlpha = 1.0

    @Option(help: "regmean: tokens per example at most (default 128, or the model's max_position_embeddings if lower).")
    var maxLength: Int?

    @Option(help: "regmean: threads for the forward passes.")
    var threads = 2

    @OptionGroup var adapterOptions: AdapterInputOptions

    @OptionGroup var out: OutputOptions

    func validate() throws {
        guard !inputs.isEmpty else { throw ValidationError("give at least one input adapter") }
        guard MergeMethods.named(method) != nil else {
            throw ValidationError(MergeMethods.unknownMessage(method))
        }
        if lambda != nil && weights != nil { throw ValidationError("give --lambda or --weights, not both") }
        if let l = lambda {
            guard inputs.count == 2 else { throw ValidationError("--lambda needs exactly two inputs (got \(inputs.count)); use --weights") }
            guard l.isFinite else { throw ValidationError("--lambda must be a finite number") }
        }
        if let w = weights {
            let ws = try parseNumberList(w, option: "--weights")
            guard ws.count == inputs.count else { throw ValidationError("--weights has \(ws.count) values for \(inputs.count) inputs") }
        }
        if MergeMethods.named(method)!.needsPositiveWeights {
            let ws = try lambda.map { [1 - $0, $0] } ?? weights.map { try parseNumberList($0, option: "--weights") } ?? []
            if let bad = ws.first(where: { !($0 > 0) }) {
                throw ValidationError("\(method) takes positive weights (each input's units' weight in the clustering); got \(bad)")
            }
        }
        if let d = density, !(d >= 0 && d <= 1) { throw ValidationError("--density must be in [0, 1] (got \(d))") }
        if let k = rank, k < 1 { throw ValidationError("--rank must be at least 1 (got \(k))") }
        if let q = svdClamp, !(q >= 0 && q <= 1) { throw ValidationError("--svd-clamp must be a quantile in [0, 1] (got \(q))") }
        guard gamma >= 0 && gamma < 1 else { throw ValidationError("--gamma must be in [0, 1) (got \(gamma))") }
        guard TaskVectors.MajoritySign(rawValue: majoritySign) != nil else { throw ValidationError("--majority-sign must be total or frequency") }
        guard MergeOptions.Heads(rawValue: heads) != nil else { throw ValidationError("--heads must be average, first or drop") }
        _ = try parseOutputDType(dtype)
        let regmean = MergeMethods.named(method)?.name == "regmean"
        if regmean {
            guard model != nil, data != nil else { throw ValidationError("regmean needs --model and --data (one data file per input)") }
            guard examples >= 1 else { throw ValidationError("--examples must be at least 1") }
            guard regmeanAlpha >= 0 && regmeanAlpha <= 1 else { throw ValidationError("--regmean-alpha must be in [0, 1] (got \(regmeanAlpha))") }
            guard (maxLength ?? 2) >= 2, threads >= 1 else { throw ValidationError("--max-length must be at least 2 and --threads at least 1") }
        } else if model != nil || data != nil {
            throw ValidationError("--model and --data go with --method regmean")
        }
    }

    func run() throws {
        try checkOutputNotInput(output, inputs: inputs)
        let adapters = try inputs.map { try Adapter.load($0, alpha: adapterOptions.alpha) }
        var o = MergeOptions(weights: [])
        if let l = lambda {
            o.weights = [1 - l, l]
        } else if let w = weights {
            o.weights = try parseNumberList(w, option: "--weights")
        } else {
            o.weights = MergeMethods.named(method)!.defaultWeights(count: inputs.count)
        }
        o.density = density
        o.rank = rank
        o.svdClamp = svdClamp
        o.gamma = gamma
        o.epsilon = epsilon
        o.majoritySign = TaskVectors.MajoritySign(rawValue: majoritySign)!
        o.seed = seed
        o.heads = MergeOptions.Heads(rawValue: heads)!
        o.dtype = try parseOutputDType(dtype)
        o.allowNonFinite = adapterOptions.allowNonfinite
        if let model, let data {
            Parallel.configure(threads: threads)
            var r = RegMeanGrams.Request(model: model, data: data.split(separator: ",").map(String.init))
            (r.examples, r.maxLength) = (examples, maxLength)
            let bar = ProgressRenderer(label: "activations", total: inputs.count * examples, unit: "examples", quiet: !out.chatty)
            o.grams = try RegMeanGrams.captureAll(r, adapters: adapters) { i, done, _ in bar.update(i * examples + done) }
            bar.finish()
            o.regmeanAlpha = regmeanAlpha
        }
        let merged = try MergeMethods.named(method)!.merge(adapters, options: o, progress: operatorProgress(label: "merging", quiet: !out.chatty))
        try merged.save(to: output)
        for (a, p) in zip(adapters, inputs) where a.configOrigin.hasPrefix("inferred") && out.chatty {
            Console.writeErr("note: \(p): config \(a.configOrigin)")
        }
        if out.json {
            Console.writeOut(
                JSON.object([
                    ("method", .string(MergeMethods.named(method)?.name ?? method)), ("inputs", .array(inputs.map { .string($0) })),
                    ("weights", .array(o.weights.map { .double($0) })), ("output", .string(output)),
                    ("result", adapterSummaryJSON(merged)),
                ]).pretty)
        } else if !out.quiet {
            Console.writeErr(
                "wrote \(output): \(MergeMethods.named(method)?.name ?? method) of \(inputs.count) adapters, \(merged.modules.count) modules, r=\(merged.config.r), \(merged.parameterCount) parameters"
            )
        }
    }
}

runCommand(Merge.self)
