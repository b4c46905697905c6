import ArgumentParser
import Checkpoint
import CotoCLI
import Evaluation
import Foundation
import Model
import Numerics
import Operators

extension Eval {
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
            guard let llama = model as? LlamaModel else {
                throw CommandError(modelOptions.model, "generation needs a decoder model (model_type \(ModelRegistry.decoderTypes.joined(separator: ", ")))")
            }
            let ids = tok.encode(prompt, pair: nil, addSpecialTokens: false).ids
            let stop = Set(model.config.eosTokenId?.all ?? [])
            let t0 = ProgressRenderer.now()
            let outIds = try llama.generate(prompt: ids, maxNewTokens: maxNewTokens, stop: stop)
            let dt = ProgressRenderer.now() - t0
            guard let bpe = tok as? ByteLevelBPETokenizer else { throw CommandError(modelOptions.model, "decoding needs a byte-level BPE tokenizer") }
            let text = bpe.decode(outIds)
            if out.json {
                Console.writeOut(
                    JSON.object([
                        ("prompt", .string(prompt)), ("prompt_ids", .array(ids.map { JSON.int($0) })),
                        ("ids", .array(outIds.map { JSON.int($0) })), ("text", .string(text)),
                        ("tokens_per_second", .double(Double(outIds.count) / max(dt, 1e-9))),
                    ]).pretty)
            } else {
                Console.writeOut(prompt + text)
                if out.chatty { Console.writeErr("\(outIds.count) tokens in \(fmt(dt, 3)) s (\(fmt(Double(outIds.count) / max(dt, 1e-9), 3)) tokens/s)") }
            }
        }
    }
}
