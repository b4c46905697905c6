import ArgumentParser
import Checkpoint
import CotoCLI
import Evaluation
import Foundation
import Model
import Numerics
import Operators

extension Eval {
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

        @Option(help: "Truncate inputs to this many tokens (default 512, or the model's max_position_embeddings if lower; above it is an error).")
        var maxLength: Int?

        @OptionGroup var out: OutputOptions

        func validate() throws {
            guard EvalTask(rawValue: task) != nil else { throw ValidationError("--task must be classification, multiple-choice or perplexity (got '\(task)')") }
            guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1") }
            guard (maxLength ?? 2) >= 2 else { throw ValidationError("--max-length must be at least 2") }
        }

        func run() throws {
            let t0 = Clock.now()
            let (model, tok, adapter) = try modelOptions.load()
            let loaded = Clock.now()
            var labelList = adapter?.labels
            let modelLabels = FileSystem.join(modelOptions.model, Adapter.labelsFile)
            if labelList == nil, FileSystem.exists(modelLabels) {
                // A fused model carries its head's label list.
                labelList = try Adapter.load(labelsOnly: modelLabels)
            }
            if let h = head {
                let ha = try Adapter.load(h)
                guard let (w, b) = model.classificationHead(of: ha) else {
                    throw CommandError(h, "has no classification head (classifier/score in modules_to_save)")
                }
                try model.setClassifier(weight: w, bias: b)
                labelList = ha.labels
            }
            var o = EvalOptions()
            o.batchSize = batchSize
            o.maxLength = try model.inputLimits.maxLength(requested: maxLength, fallback: 512, modelDir: modelOptions.model)
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
            let (loadSeconds, evalSeconds) = (loaded - t0, Clock.now() - loaded)
            if out.json {
                var pairs = result.json.objectPairs ?? []
                pairs.insert(("model", .string(modelOptions.model)), at: 0)
                pairs.insert(("adapter", modelOptions.adapter.map(JSON.string) ?? .null), at: 1)
                pairs += [("load_seconds", .double(loadSeconds)), ("eval_seconds", .double(evalSeconds))]
                Console.writeOut(JSON.object(pairs).pretty)
            } else {
                Console.writeOut("\(data): \(result.summary) [load \(String(format: "%.1f", loadSeconds)) s, eval \(String(format: "%.1f", evalSeconds)) s]")
            }
        }
    }
}
