import Foundation
import ArgumentParser
import Checkpoint
import CotoCLI
import Evaluation
import Model
import Numerics
import Operators

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

            Sweeps (classification; each writes a results JSON into --out, a run directory):
              coto-eval interpolate runs/lora-s0 runs/lora-s1 --model minilm/ --data test.jsonl --grid 0:1:0.1 -o sweeps/
              coto-eval merge nouns/ pos/ verbs/ --model minilm/ --task-data nouns-test.jsonl,pos-test.jsonl,verbs-test.jsonl -o sweeps/
              coto-eval prune runs/coto-s0 --model minilm/ --data test.jsonl --sparsity 0,0.5,0.9 --layers all,low,high -o sweeps/
              coto-eval shapley runs/coto-s0 --model minilm/ --data test.jsonl --samples 64 -o sweeps/ --shard 1/2
              coto-eval gather sweeps/ runs/
              coto-eval report runs/ sweeps/ -o report/
            """,
        subcommands: [
            Run.self, Generate.self, Interpolate.self, MergeSweep.self, PruneSweep.self, Shapley.self, Search.self, GatherCommand.self, ReportCommand.self,
        ],
        defaultSubcommand: Run.self)

}

runCommand(Eval.self)
