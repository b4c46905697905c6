import ArgumentParser
import Checkpoint
import CotoCLI
import Foundation
import Numerics

extension Bench {
    /// `coto-bench synthetic-model --shape llama3-8b -o DIR [--adapter DIR --rank 16]`: a Hugging Face model
    /// directory of a real model's shapes (Llama-3.1-8B, Llama-3.2-1B) with seeded random weights (std 0.02,
    /// norms 1) in bf16, sharded and indexed as transformers writes it, and optionally a PEFT LoRA adapter of
    /// every projection; for measuring memory and time at the sizes users hold, without a model hub.
    struct SyntheticModel: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "synthetic-model", abstract: "Write a real-shaped bf16 model with random weights (and a LoRA adapter for it).")
        @Option(help: "llama3-8b (Llama-3.1-8B) or llama3-1b (Llama-3.2-1B).") var shape: String
        @Option(name: .shortAndLong, help: "Output model directory.") var output: String
        @Option(help: "Also write a rank-r LoRA adapter (q/k/v/o/gate/up/down of every layer) here.") var adapter: String?
        @Option var rank = 16
        @Option(help: "Largest shard in GB (transformers' default is 5).") var shardGB = 5.0
        @Option var seed: UInt64 = 1

        struct Shape {
            let hidden, ffn, layers, heads, kvHeads, vocab: Int
            let tied: Bool
            let ropeFactor: Double
        }
        static let shapes: [String: Shape] = [
            "llama3-8b": Shape(hidden: 4096, ffn: 14336, layers: 32, heads: 32, kvHeads: 8, vocab: 128256, tied: false, ropeFactor: 8),
            "llama3-1b": Shape(hidden: 2048, ffn: 8192, layers: 16, heads: 32, kvHeads: 8, vocab: 128256, tied: true, ropeFactor: 32),
        ]

        func validate() throws {
            guard Self.shapes[shape] != nil else {
                throw ValidationError("unknown --shape '\(shape)' (have: \(Self.shapes.keys.sorted().joined(separator: ", ")))")
            }
            guard rank >= 1, shardGB > 0 else { throw ValidationError("--rank and --shard-gb must be positive") }
        }

        /// A tensor of seeded uniform values with standard deviation `std` (or all `fill`), encoded lazily.
        static func random(_ name: String, _ shape: [Int], dtype: DType, seed: UInt64, std: Float, fill: Float? = nil) -> TensorEntry {
            TensorEntry(
                name: name, dtype: dtype, shape: shape,
                source: .lazy {
                    let n = shape.reduce(1, *)
                    var values = [Float](repeating: fill ?? 0, count: n)
                    if fill == nil {
                        // Chunks on every core, each with its own stream: the same bytes whatever the core count.
                        let chunk = 1 << 20
                        let a = std * Float(3).squareRoot()
                        values.withUnsafeMutableBufferPointer { v in
                            Parallel.forEach((n + chunk - 1) / chunk, threads: Parallel.cores) { r in
                                for c in r {
                                    var rng = SeededRNG(seed: seed &+ UInt64(c) &* 0x9E37_79B9)
                                    for i in (c * chunk)..<min(n, (c + 1) * chunk) { v[i] = (rng.uniformFloat() * 2 - 1) * a }
                                }
                            }
                        }
                    }
                    return Storage.encode(values, dtype: dtype)
                })
        }

        func run() throws {
            let s = Self.shapes[shape]!
            let hd = s.hidden / s.heads
            var tensors: [TensorEntry] = []
            var seedN = seed &* 1_000_003
            func add(_ name: String, _ shape: [Int], fill: Float? = nil) {
                seedN &+= 1
                tensors.append(Self.random(name, shape, dtype: .bf16, seed: seedN, std: 0.02, fill: fill))
            }
            add("model.embed_tokens.weight", [s.vocab, s.hidden])
            var linears: [(String, Int, Int)] = []
            for i in 0..<s.layers {
                let p = "model.layers.\(i)."
                for (n, out, inF) in [
                    ("self_attn.q_proj", s.heads * hd, s.hidden), ("self_attn.k_proj", s.kvHeads * hd, s.hidden),
                    ("self_attn.v_proj", s.kvHeads * hd, s.hidden), ("self_attn.o_proj", s.hidden, s.heads * hd),
                    ("mlp.gate_proj", s.ffn, s.hidden), ("mlp.up_proj", s.ffn, s.hidden), ("mlp.down_proj", s.hidden, s.ffn),
                ] {
                    add(p + n + ".weight", [out, inF])
                    linears.append((p + n, out, inF))
                }
                add(p + "input_layernorm.weight", [s.hidden], fill: 1)
                add(p + "post_attention_layernorm.weight", [s.hidden], fill: 1)
            }
            add("model.norm.weight", [s.hidden], fill: 1)
            if !s.tied { add("lm_head.weight", [s.vocab, s.hidden]) }
            try FileSystem.makeDirectory(output)
            let config: [String: Any] = [
                "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": s.hidden, "intermediate_size": s.ffn,
                "num_hidden_layers": s.layers, "num_attention_heads": s.heads, "num_key_value_heads": s.kvHeads, "head_dim": hd,
                "vocab_size": s.vocab, "max_position_embeddings": 131072, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
                "rope_scaling": [
                    "rope_type": "llama3", "factor": s.ropeFactor, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                    "original_max_position_embeddings": 8192,
                ],
                "tie_word_embeddings": s.tied, "torch_dtype": "bfloat16", "hidden_act": "silu", "attention_bias": false, "mlp_bias": false,
                "bos_token_id": 128000, "eos_token_id": 128001,
            ]
            try writeJSON(config, to: FileSystem.join(output, "config.json"))
            let t0 = Bench.now()
            let bytes = try writeSharded(tensors, limit: Int(shardGB * 1e9))
            print(String(format: "coto-bench: %@ %@: %d tensors, %.2f GB bf16 in %.1f s", shape, output, tensors.count, Double(bytes) / 1e9, Bench.now() - t0))
            if let adapter { try writeAdapter(linears, to: adapter) }
        }

        /// Shards of at most `limit` bytes (a tensor larger than that alone) and the index, as transformers names them.
        func writeSharded(_ tensors: [TensorEntry], limit: Int) throws -> Int {
            var shards: [[TensorEntry]] = [[]]
            var size = 0
            for t in tensors {
                if size + t.byteCount > limit && !shards[shards.count - 1].isEmpty {
                    shards.append([])
                    size = 0
                }
                shards[shards.count - 1].append(t)
                size += t.byteCount
            }
            var weightMap: [String: String] = [:]
            for (i, shard) in shards.enumerated() {
                let name = String(format: "model-%05d-of-%05d.safetensors", i + 1, shards.count)
                try SafeTensorsWriter.write(shard, to: FileSystem.join(output, name), prefetch: 1)
                for t in shard { weightMap[t.name] = name }
            }
            let total = tensors.reduce(0) { $0 + $1.byteCount }
            try writeJSON(["metadata": ["total_size": total], "weight_map": weightMap], to: FileSystem.join(output, "model.safetensors.index.json"))
            return total
        }

        /// A PEFT LoRA adapter (Float32, as PEFT saves one trained in Float32): A random, B random (not PEFT's
        /// zero init, so the fuse changes every weight), lora_alpha = 2r.
        func writeAdapter(_ linears: [(String, Int, Int)], to dir: String) throws {
            try FileSystem.makeDirectory(dir)
            var entries: [TensorEntry] = []
            var n = seed &* 7_919
            for (name, out, inF) in linears {
                n &+= 2
                entries.append(Self.random("base_model.model." + name + ".lora_A.weight", [rank, inF], dtype: .f32, seed: n, std: 0.02))
                entries.append(Self.random("base_model.model." + name + ".lora_B.weight", [out, rank], dtype: .f32, seed: n + 1, std: 0.02))
            }
            try SafeTensorsWriter.write(entries, to: FileSystem.join(dir, "adapter_model.safetensors"))
            let config: [String: Any] = [
                "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": rank, "lora_alpha": 2 * rank, "lora_dropout": 0.0, "bias": "none",
                "fan_in_fan_out": false, "base_model_name_or_path": output,
                "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
            ]
            try writeJSON(config, to: FileSystem.join(dir, "adapter_config.json"))
            print("coto-bench: adapter \(dir): rank \(rank), \(linears.count) modules")
        }

        func writeJSON(_ object: Any, to path: String) throws {
            let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
            try AtomicFileWriter.write([UInt8](data), to: path)
        }
    }
}
