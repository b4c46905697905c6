import ArgumentParser
import Checkpoint
import CotoCLI
import Numerics
import Operators

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coto-convert",
        abstract: "Convert checkpoints: GGUF -> Hugging Face dir; adapter dir <-> adapter file; reshard or recast a model dir.",
        discussion: """
            INPUT kinds and what OUTPUT becomes (adapter -> OUTPUT.gguf: a llama.cpp LoRA adapter for --base BASE.gguf;
            a llama.cpp LoRA adapter .gguf + --base BASE.gguf -> a PEFT adapter):
              model.gguf           -> OUTPUT directory (llama, qwen2, qwen3, gemma2, gemma3, phi3): config.json, model.safetensors (dequantized), tokenizer.json, ...
              PEFT adapter dir     -> OUTPUT.safetensors (one file, config in its metadata) or another adapter dir
              adapter .safetensors -> OUTPUT dir (adapter_config.json + adapter_model.safetensors) or file
              HF model dir         -> OUTPUT dir with the weights resharded (--max-shard-size) and/or recast (--dtype)

            Examples:
              coto-convert SmolLM2-135M-Instruct.Q4_1.gguf -o smollm2/
              coto-convert runs/coto-s0 -o coto-s0.safetensors
              coto-convert lora.safetensors --alpha 16 -o lora-dir/
              coto-convert big-model/ --max-shard-size 2GB --dtype bf16 -o big-model-bf16/
              coto-convert runs/dora --to-lora --base minilm/ --rank 16 -o runs/dora-as-lora
              coto-convert runs/smol-lora -o smol-lora.gguf --base SmolLM2-135M-Instruct.Q4_1.gguf    # for llama.cpp (--lora)
              coto-convert smol-lora.gguf --base SmolLM2-135M-Instruct.Q4_1.gguf -o runs/smol-lora     # and back

            --to-lora (DoRA or HiRA adapter, needs --base): per module the best rank-k LoRA of the adapter's
            effective change of the base weight (what coto-fuse would add), k = 2r unless --rank; the error of
            each module is reported.
            """)

    @Argument(help: "Input checkpoint.")
    var input: String

    @Option(name: .shortAndLong, help: "Output path.")
    var output: String

    @Option(help: "Output dtype: keep, f32, f16 or bf16 (GGUF default: f32).")
    var dtype = "keep"

    @Option(help: "Split weights into shards of at most this size (e.g. 2GB, 500MB).")
    var maxShardSize: String?

    @Option(help: "lora_alpha for a bare adapter file that carries no config (default: r).")
    var alpha: Double?

    @Flag(help: "Turn a DoRA or HiRA adapter into plain LoRA (best rank-k approximation of its effective delta; needs --base).")
    var toLora = false

    @Option(help: "Base model: a directory for --to-lora; the base GGUF for llama.cpp LoRA adapters (either direction).")
    var base: String?

    @Option(help: "Rank of every converted module (for --to-lora; default: 2 x its rank).")
    var rank: Int?

    @Flag(help: "Machine-readable JSON summary on stdout.")
    var json = false

    @Flag(name: .shortAndLong, help: "No progress output.")
    var quiet = false

    func validate() throws {
        if dtype != "keep" {
            guard let d = DType(userName: dtype), [.f32, .f16, .bf16].contains(d) else {
                throw ValidationError("--dtype must be keep, f32, f16 or bf16 (got '\(dtype)')")
            }
        }
        if let s = maxShardSize, parseByteSize(s) == nil {
            throw ValidationError("--max-shard-size must be a size like 2GB, 500MB or 1000000 (got '\(s)')")
        }
        if let a = alpha, !(a.isFinite && a > 0) { throw ValidationError("--alpha must be a positive number") }
        if toLora && base == nil { throw ValidationError("--to-lora needs --base (the model the adapter was trained on)") }
        if !toLora && rank != nil { throw ValidationError("--rank goes with --to-lora") }
        if let k = rank, k < 1 { throw ValidationError("--rank must be at least 1 (got \(k))") }
    }

    var outDType: DType? { dtype == "keep" ? nil : DType(userName: dtype) }

    func run() throws {
        guard FileSystem.exists(input) else { throw CheckpointError(input, .notFound) }
        try checkOutputNotInput(output, inputs: [input])
        var written: [String] = []
        var kind = ""
        var conversion: [VariantConversion.Entry] = []
        let gguf = !FileSystem.isDirectory(input) && Inspection.isGGUF(input) ? try GGUFFile(path: input) : nil
        if let g = gguf, g["general.type"]?.string == "adapter" {
            // llama.cpp LoRA adapter -> PEFT adapter (dir or file).
            kind = "gguf-adapter"
            guard let b = base else { throw CommandError(input, "a llama.cpp LoRA adapter needs --base BASE.gguf (its q/k rows and names are the base's)") }
            let adapter = try GGUFLoRA.read(g, base: try GGUFFile(path: b))
            try adapter.save(to: output, dtype: outDType)
            written = output.hasSuffix(".safetensors") ? [output] : [Adapter.weightsFile, Adapter.configFile]
        } else if let g = gguf {
            kind = "gguf"
            var conv = GGUFConverter(gguf: g)
            conv.dtype = outDType ?? .f32
            conv.maxShardSize = maxShardSize.flatMap(parseByteSize)
            let total = conv.gguf.tensors.count
            let bar = ProgressRenderer(label: "converting", total: total, unit: " tensors", quiet: quiet || json)
            written = try conv.convert(to: output) { event in
                switch event {
                case let .tensor(name, i, _): bar.update(i + 1, detail: name)
                case let .note(n): if !quiet && !json { Console.writeErr("note: \(n)") }
                case .wrote: break
                }
            }
            bar.finish()
        } else if Adapter.isAdapter(path: input)
            || (!FileSystem.isDirectory(input) && input.hasSuffix(".safetensors") && (try? SafeTensorsFile(path: input)) == nil)
        {
            kind = "adapter"
            var adapter = try Adapter.load(input, alpha: alpha)
            if FileSystem.isDirectory(input) && alpha != nil {
                throw CommandError(input, "--alpha applies to a bare adapter file only; this directory has adapter_config.json")
            }
            if toLora, let b = base {
                let (converted, entries) = try VariantConversion.toLoRA(
                    adapter, base: try HFModelDir(path: b), rank: rank,
                    progress: operatorProgress(label: "converting", quiet: quiet || json))
                adapter = converted
                conversion = entries
                if !quiet && !json {
                    Console.writeErr(
                        table(["module", "rank", "relative error"], entries.map { [$0.module, "\($0.rankBefore)→\($0.rank)", fmt($0.relativeError, 3)] }))
                }
            }
            if output.hasSuffix(".gguf") {
                // PEFT adapter -> llama.cpp LoRA adapter.
                guard let b = base, Inspection.isGGUF(b) else {
                    throw CommandError(output, "a llama.cpp LoRA adapter is written against its base: give --base BASE.gguf")
                }
                kind = "adapter-to-gguf"
                try GGUFLoRA.write(adapter, base: try GGUFFile(path: b), to: output, dtype: outDType ?? .f32)
                written = [output]
            } else {
                try adapter.save(to: output, dtype: outDType)
                written =
                    output.hasSuffix(".safetensors")
                    ? [output]
                    : [Adapter.weightsFile, Adapter.configFile, Adapter.labelsFile, Adapter.cotoFile].filter { FileSystem.exists(FileSystem.join(output, $0)) }
            }
            if !quiet && !json && adapter.configOrigin.hasPrefix("inferred") {
                Console.writeErr("note: \(input): config \(adapter.configOrigin)")
            }
        } else if toLora {
            throw CommandError(input, "--to-lora converts an adapter; this is not one")
        } else if FileSystem.isDirectory(input) {
            kind = "model"
            written = try convertModelDir()
        } else {
            throw CommandError(input, "not a GGUF file, adapter or model directory; nothing to convert")
        }
        if json {
            var fields: [(String, JSON)] = [
                ("input", .string(input)), ("kind", .string(kind)), ("output", .string(output)),
                ("files", .array(written.map { .string($0) })),
            ]
            if toLora {
                fields.append(
                    (
                        "to_lora",
                        .array(
                            conversion.map { e in
                                .object([
                                    ("name", .string(e.module)), ("rank_before", .int(e.rankBefore)), ("rank", .int(e.rank)),
                                    ("delta_norm", .double(e.deltaNorm)), ("relative_error", .double(e.relativeError)),
                                ])
                            })
                    ))
            }
            Console.writeOut(JSON.object(fields).pretty)
        } else if !quiet {
            Console.writeErr("wrote \(output): \(written.joined(separator: ", "))")
        }
    }

    /// Reshard and/or recast a model directory, copying every other file.
    func convertModelDir() throws -> [String] {
        let model = try HFModelDir(path: input)
        if FileSystem.exists(output) && !FileSystem.isDirectory(output) { throw CheckpointError(output, .notDirectory) }
        try FileSystem.makeDirectory(output)
        let store = model.weights
        var entries: [TensorEntry] = []
        for name in store.tensorNames {
            var e = try store.entry(name)
            if let d = outDType, e.dtype != d, e.dtype.isFloatingPoint {
                let src = e
                e = TensorEntry(
                    name: name, dtype: d, shape: e.shape,
                    source: .lazy {
                        defer { store.release(src.name) }
                        return Storage.encode(try store.loadTensor(src.name).data, dtype: d)
                    })
            }
            entries.append(e)
        }
        let total = entries.reduce(0) { $0 + $1.byteCount }
        let bar = ProgressRenderer(label: "writing", total: total / 1_000_000 + 1, unit: " MB", quiet: quiet || json)
        var written = try ShardedWriter.write(entries, to: output, maxShardSize: maxShardSize.flatMap(parseByteSize)) { d, _ in
            bar.update(d / 1_000_000)
        }
        bar.finish()
        for f in model.otherFiles + ["config.json"] {
            var bytes = try FileSystem.readFile(FileSystem.join(input, f))
            if f == "config.json", let d = outDType, case var .object(pairs) = model.configJSON {
                let name = d == .f32 ? "float32" : d == .f16 ? "float16" : "bfloat16"
                var found = false
                for k in ["torch_dtype", "dtype"] {
                    if let i = pairs.firstIndex(where: { $0.0 == k }) {
                        pairs[i].1 = .string(name)
                        found = true
                    }
                }
                if !found { pairs.append(("torch_dtype", .string(name))) }
                bytes = Array(JSON.object(pairs).pretty.utf8)
            }
            try AtomicFileWriter.write(bytes, to: FileSystem.join(output, f))
            written.append(f)
        }
        return written
    }
}

runCommand(Convert.self)
