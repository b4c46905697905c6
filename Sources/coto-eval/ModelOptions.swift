import ArgumentParser
import Checkpoint
import CotoCLI
import Evaluation
import Foundation
import Model
import Numerics
import Operators

extension Eval {
    struct ModelOptions: ParsableArguments {
        @Option(help: "Model directory (config.json, safetensors weights, tokenizer.json or vocab.txt), or a llama.cpp GGUF file.")
        var model: String

        @Option(help: "Adapter directory or .safetensors file applied in the forward pass.")
        var adapter: String?

        @Option(
            help:
                "Run the adapter's factors as this variant instead of the one it declares: lora or hira (default: what the adapter says; DoRA modules stay DoRA)."
        )
        var variant: String?

        @Option(help: "BLAS threads.")
        var threads = 2

        func load() throws -> (AdaptableModel, Tokenizer, Adapter?) {
            Parallel.configure(threads: threads)
            let (m, tok) = try ModelRegistry.loadWithTokenizer(model)
            var a: Adapter? = nil
            if let p = adapter {
                a = try Adapter.load(p)
                try m.attach(a!, variant: variant.flatMap(AdapterVariant.init(rawValue:)))
            }
            return (m, tok, a)
        }

        func validate() throws {
            if let v = variant, !["lora", "hira"].contains(v) { throw ValidationError("--variant must be lora or hira") }
            guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
        }
    }
}
