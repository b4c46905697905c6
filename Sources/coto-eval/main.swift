import ArgumentParser
import Checkpoint
import CotoCLI
import Evaluation
import Model
import Numerics

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coto-eval",
        abstract: "Evaluate a model with an adapter on a task file; generate text.",
        discussion: """
        Tasks (JSONL, one object per line):
          classification    {"text", "label"} (optional "text_pair"): accuracy, macro-F1, loss, confusion matrix
          multiple-choice   {"context", "choices": [...], "label": index}: acc and acc_norm (per byte), as lm-eval-harness
          perplexity        {"text"} or {"prompt", "completion"} (loss on the completion only)

        Examples:
          coto-eval --model minilm/ --adapter runs/coto-s0 --data test.jsonl --task classification
          coto-eval --model minilm/ --adapter merged/ --head runs/nouns --data nouns-test.jsonl --task classification --json
          coto-eval --model smollm2/ --data mc.jsonl --task multiple-choice
          coto-eval generate --model smollm2/ --prompt "The capital of France is" --max-new-tokens 16
        """,
        subcommands: [Run.self, Generate.self],
        defaultSubcommand: Run.self)

    struct ModelOptions: ParsableArguments {
        @Option(help: "Model directory (config.json, safetensors weights, tokenizer.json or vocab.txt).")
        var model: String

        @Option(help: "Adapter directory or .safetensors file applied in the forward pass.")
        var adapter: String?

        @Option(help: "Adapter variant for adapters without a DoRA magnitude: lora or hira (default: what the adapter says).")
        var variant: String?

        @Option(help: "BLAS threads.")
        var threads = 2

        func load() throws -> (AdaptableModel, Tokenizer, Adapter?) {
            Parallel.configure(threads: threads)
            let m = try ModelRegistry.load(model)
            let tok = try TokenizerLoader.load(modelDir: model)
            var a: Adapter? = nil
            if let p = adapter {
                a = try Adapter.load(p)
                try m.attach(a!, variant: (variant ?? a!.variant) == "hira" ? .hira : .lora)
            }
            return (m, tok, a)
        }

        func validate() throws {
            if let v = variant, !["lora", "hira"].contains(v) { throw ValidationError("--variant must be lora or hira") }
            guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
        }
    }

    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "run", abstract: "Evaluate on a task file (the default subcommand).")

        @OptionGroup var modelOptions: ModelOptions

        @Option(help: "Adapter whose classification head (and label list) to use instead.")
        var head: String?

        @Option(help: "JSONL task file.")
        var data: String

        @Option(help: "classification, multiple-choice or perplexity.")
        var task: String

        @Option(help: "Comma-separated label list (classification), overriding the adapter's.")
        var labels: String?

        @Option(help: "Examples per forward pass.")
        var batchSize = 16

        @Option(help: "Truncate inputs to this many tokens.")
        var maxLength = 512

        @OptionGroup var out: OutputOptions

        func validate() throws {
            guard EvalTask(rawValue: task) != nil else { throw ValidationError("--task must be classification, multiple-choice or perplexity (got '\(task)')") }
            guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1") }
            guard maxLength >= 2 else { throw ValidationError("--max-length must be at least 2") }
        }

        func run() throws {
            let (model, tok, adapter) = try modelOptions.load()
            var labelList = adapter?.labels
            let modelLabels = FileSystem.join(modelOptions.model, Adapter.labelsFile)
            if labelList == nil, FileSystem.exists(modelLabels) {
                // A fused model carries its head's label list.
                labelList = try Adapter.load(labelsOnly: modelLabels)
            }
            if let h = head {
                let ha = try Adapter.load(h)
                guard let (w, b) = model.classificationHead(of: ha) else { throw CommandError(h, "has no classification head (classifier/score in modules_to_save)") }
                try model.setClassifier(weight: w, bias: b)
                labelList = ha.labels
            }
            var o = EvalOptions()
            o.batchSize = batchSize
            o.maxLength = maxLength
            o.labels = labels.map { $0.split(separator: ",").map { String($0) } }
            var bar: ProgressRenderer? = nil
            let progress: (Int, Int) -> Void = { done, total in
                if bar == nil { bar = ProgressRenderer(label: "evaluating", total: total, unit: " examples", quiet: !out.chatty) }
                bar?.update(done)
            }
            let result: EvalResult
            switch EvalTask(rawValue: task)! {
            case .classification:
                result = try Evaluator.classification(model: model, tokenizer: tok, data: data, labels: labelList, options: o, progress: progress)
            case .multipleChoice:
                result = try Evaluator.multipleChoice(model: model, tokenizer: tok, data: data, options: o, progress: progress)
            case .perplexity:
                result = try Evaluator.perplexity(model: model, tokenizer: tok, data: data, options: o, progress: progress)
            }
            bar?.finish()
            if out.json {
                var pairs = result.json.objectPairs ?? []
                pairs.insert(("model", .string(modelOptions.model)), at: 0)
                pairs.insert(("adapter", modelOptions.adapter.map(JSON.string) ?? .null), at: 1)
                Console.writeOut(JSON.object(pairs).pretty)
            } else {
                Console.writeOut("\(data): \(result.summary)")
            }
        }
    }

    struct Generate: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Greedy generation with a KV cache (decoder models).")

        @OptionGroup var modelOptions: ModelOptions

        @Option(help: "Prompt text.")
        var prompt: String

        @Option(help: "Maximum new tokens.")
        var maxNewTokens = 32

        @OptionGroup var out: OutputOptions

        func run() throws {
            let (model, tok, _) = try modelOptions.load()
            guard let llama = model as? LlamaModel else { throw CommandError(modelOptions.model, "generation needs a decoder model (llama)") }
            let ids = tok.encode(prompt, pair: nil, addSpecialTokens: false).ids
            var stop = Set<Int>()
            if case let .one(e)? = model.config.eosTokenId { stop.insert(e) }
            if case let .many(es)? = model.config.eosTokenId { stop.formUnion(es) }
            let t0 = ProgressRenderer.now()
            let outIds = try llama.generate(prompt: ids, maxNewTokens: maxNewTokens, stop: stop)
            let dt = ProgressRenderer.now() - t0
            guard let bpe = tok as? ByteLevelBPETokenizer else { throw CommandError(modelOptions.model, "decoding needs a byte-level BPE tokenizer") }
            let text = bpe.decode(outIds)
            if out.json {
                Console.writeOut(JSON.object([("prompt", .string(prompt)), ("prompt_ids", .array(ids.map { JSON.int($0) })),
                                              ("ids", .array(outIds.map { JSON.int($0) })), ("text", .string(text)),
                                              ("tokens_per_second", .double(Double(outIds.count) / max(dt, 1e-9)))]).pretty)
            } else {
                Console.writeOut(prompt + text)
                if out.chatty { Console.writeErr("\(outIds.count) tokens in \(fmt(dt, 3)) s (\(fmt(Double(outIds.count) / max(dt, 1e-9), 3)) tokens/s)") }
            }
        }
    }
}

runCommand(Eval.self)
