import Testing
import Foundation
import TestSupport
import Checkpoint
import Numerics

/// The bad-input matrix: every command, the mistakes users make. Each case: the exit code (64 usage,
/// 1 other), one line `error: ...` naming the file or option, and nothing written.
@Suite struct BadInputMatrixTests {
    struct Case {
        let name: String
        let tool: String
        let args: [String]
        let status: Int32
        let mentions: String
    }

    static func setUp(_ t: TempDir) throws -> [String: String] {
        var p: [String: String] = [:]
        let fm = FileManager.default
        // Truncated safetensors, empty adapter, NaN adapter, README as a checkpoint, JSONL files.
        let model = try Data(contentsOf: URL(fileURLWithPath: CLI.fixture("tiny-bert/model.safetensors")))
        p["truncated"] = t.path + "/truncated.safetensors"
        _ = fm.createFile(atPath: p["truncated"]!, contents: model.prefix(model.count - 100))
        p["empty"] = t.path + "/empty.safetensors"
        try SafeTensorsWriter.write([], to: p["empty"]!)
        var nan = try Adapter.load(CLI.fixture("peft/merge-a"))
        nan.modules[0].b.tensor.data[3] = .nan
        p["nan"] = t.path + "/nan"
        try nan.save(to: p["nan"]!)
        p["emptyjsonl"] = t.path + "/empty.jsonl"
        _ = fm.createFile(atPath: p["emptyjsonl"]!, contents: Data())
        p["badjsonl"] = t.path + "/bad.jsonl"
        _ = fm.createFile(atPath: p["badjsonl"]!, contents: Data("{\"text\": \"a\", \"label\": \"x\"}\n{not json}\n".utf8))
        p["labels"] = t.path + "/labels.jsonl"
        _ = fm.createFile(atPath: p["labels"]!, contents: Data("{\"text\": \"a b\", \"label\": \"x\"}\n{\"text\": \"a\", \"label\": \"zzz\"}\n".utf8))
        // Inputs the model cannot take: empty text, words past the embedding table, a text pair for a model
        // with one token type, a label outside the training labels, causal-LM texts the same way.
        func write(_ name: String, _ lines: [String]) -> String {
            let path = t.path + "/" + name
            _ = fm.createFile(atPath: path, contents: Data((lines.joined(separator: "\n") + "\n").utf8))
            return path
        }
        p["emptytext"] = write("emptytext.jsonl", [#"{"text": "a b", "label": "x"}"#, #"{"text": "  ", "label": "y"}"#])
        p["bigwords"] = write("bigwords.jsonl", [#"{"text": "a b", "label": "x"}"#, #"{"text": "zzextra a", "label": "y"}"#])
        p["pairs"] = write("pairs.jsonl", [#"{"text": "a b", "text_pair": "b", "label": "x"}"#])
        p["devlabel"] = write("devlabel.jsonl", [#"{"text": "a b", "label": "x"}"#, #"{"text": "b", "label": "nope"}"#])
        // tiny BERT whose vocab.txt is longer than its embedding table (64 rows).
        p["bigvocab"] = t.path + "/bigvocab"
        try fm.createDirectory(atPath: p["bigvocab"]!, withIntermediateDirectories: true)
        for f in ["config.json", "model.safetensors"] { try fm.copyItem(atPath: CLI.fixture("tiny-bert/" + f), toPath: p["bigvocab"]! + "/" + f) }
        let vocab = try String(contentsOfFile: CLI.fixture("tiny-bert/vocab.txt"), encoding: .utf8)
        try (vocab + (vocab.hasSuffix("\n") ? "" : "\n") + "zzextra\nzzmore\n").write(toFile: p["bigvocab"]! + "/vocab.txt", atomically: true, encoding: .utf8)
        // tiny BERT with one token type (type_vocab_size 1): a text pair has type id 1.
        p["onetype"] = t.path + "/onetype"
        try fm.createDirectory(atPath: p["onetype"]!, withIntermediateDirectories: true)
        let src = try SafeTensorsFile(path: CLI.fixture("tiny-bert/model.safetensors"))
        var entries: [TensorEntry] = []
        for n in src.names {
            var tensor = try src.tensor(n)
            if n.hasSuffix("token_type_embeddings.weight") { tensor = Tensor(shape: [1, tensor.cols], data: Array(tensor.data.prefix(tensor.cols))) }
            entries.append(TensorEntry(name: n, tensor: tensor))
        }
        try SafeTensorsWriter.write(entries, to: p["onetype"]! + "/model.safetensors")
        let cfg = try String(contentsOfFile: CLI.fixture("tiny-bert/config.json"), encoding: .utf8)
        try cfg.replacingOccurrences(of: "\"type_vocab_size\": 2", with: "\"type_vocab_size\": 1").write(
            toFile: p["onetype"]! + "/config.json", atomically: true, encoding: .utf8)
        try fm.copyItem(atPath: CLI.fixture("tiny-bert/vocab.txt"), toPath: p["onetype"]! + "/vocab.txt")
        // tiny LLaMA (64-row embedding table, 64 positions) with a 70-word tokenizer.
        p["llama"] = t.path + "/llama"
        try fm.createDirectory(atPath: p["llama"]!, withIntermediateDirectories: true)
        for f in ["config.json", "model.safetensors"] { try fm.copyItem(atPath: CLI.fixture("tiny-llama/" + f), toPath: p["llama"]! + "/" + f) }
        try (["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + (0..<66).map { "w\($0)" }).joined(separator: "\n").write(
            toFile: p["llama"]! + "/vocab.txt", atomically: true, encoding: .utf8)
        p["lmgood"] = write("lmgood.jsonl", [#"{"text": "w1 w2 w3 w4"}"#])
        p["lmempty"] = write("lmempty.jsonl", [#"{"text": "w1 w2 w3"}"#, #"{"text": ""}"#])
        p["lmbig"] = write("lmbig.jsonl", [#"{"text": "w1 w2 w3"}"#, #"{"prompt": "w1 w2", "completion": " w65"}"#])
        p["out"] = t.path + "/out"
        return p
    }

    @Test func everyCommandRejectsBadInputWithOneLineAndWritesNothing() throws {
        let t = TempDir()
        let p = try Self.setUp(t)
        let A = CLI.fixture("peft/merge-a")
        let C = CLI.fixture("peft/merge-c")
        let bert = CLI.fixture("tiny-bert")
        let minilm = TestPaths.minilm
        let out = p["out"]!
        let missing = t.path + "/missing"
        let cases: [Case] = [
            // Missing paths.
            Case(name: "inspect missing", tool: "coto-inspect", args: [missing], status: 1, mentions: missing),
            Case(name: "merge missing input", tool: "coto-merge", args: [A, missing, "-o", out], status: 1, mentions: missing),
            Case(name: "prune missing", tool: "coto-prune", args: [missing, "--sparsity", "0.5", "-o", out], status: 1, mentions: missing),
            Case(name: "fuse missing model", tool: "coto-fuse", args: ["--model", missing, "--adapter", A, "-o", out], status: 1, mentions: missing),
            Case(name: "convert missing", tool: "coto-convert", args: [missing, "-o", out], status: 1, mentions: missing),
            Case(
                name: "eval missing data", tool: "coto-eval", args: ["--model", bert, "--data", missing, "--task", "classification"], status: 1,
                mentions: missing),
            Case(name: "train missing model", tool: "coto-train", args: ["--model", missing, "--data", p["labels"]!, "-o", out], status: 1, mentions: missing),
            // A directory where a file is expected, and the reverse.
            Case(
                name: "eval data is a directory", tool: "coto-eval", args: ["--model", bert, "--data", t.path, "--task", "perplexity"], status: 1,
                mentions: "is a directory"),
            Case(
                name: "fuse model is a file", tool: "coto-fuse", args: ["--model", p["empty"]!, "--adapter", A, "-o", out], status: 1,
                mentions: "not a directory"),
            Case(name: "adapter dir without config", tool: "coto-prune", args: [t.path, "--sparsity", "0.5", "-o", out], status: 1, mentions: t.path),
            // Wrong file type, truncated file, empty adapter.
            Case(
                name: "inspect a text file", tool: "coto-inspect", args: [CLI.root + "/README.md"], status: 1, mentions: "not a safetensors, GGUF or index file"
            ),
            Case(name: "merge a GGUF", tool: "coto-merge", args: [A, CLI.fixture("gguf/tiny.gguf"), "-o", out], status: 1, mentions: "tiny.gguf"),
            Case(name: "truncated safetensors", tool: "coto-inspect", args: [p["truncated"]!], status: 1, mentions: "truncated"),
            Case(name: "empty adapter", tool: "coto-prune", args: [p["empty"]!, "--sparsity", "0.5", "-o", out], status: 1, mentions: "no LoRA tensors"),
            // Adapter for another base; mixed ranks; NaN.
            Case(
                name: "fuse adapter for another base", tool: "coto-fuse", args: ["--model", CLI.fixture("tiny-llama"), "--adapter", A, "-o", out], status: 1,
                mentions: "bert.encoder"),
            Case(
                name: "eval adapter for another base", tool: "coto-eval",
                args: ["--model", bert, "--adapter", CLI.fixture("peft/llama-lora"), "--data", p["labels"]!, "--task", "classification"], status: 1,
                mentions: "model.layers.0"),
            Case(
                name: "mixed ranks for ties", tool: "coto-merge", args: [A, C, "--method", "ties", "--density", "0.5", "-o", out], status: 1, mentions: "same r"
            ),
            Case(name: "NaN in an adapter", tool: "coto-merge", args: [A, p["nan"]!, "-o", out], status: 1, mentions: "NaN"),
            Case(name: "NaN into fuse", tool: "coto-fuse", args: ["--model", bert, "--adapter", p["nan"]!, "-o", out], status: 1, mentions: "NaN"),
            // Out-of-range numbers and unknown names (usage errors).
            Case(name: "lambda with three inputs", tool: "coto-merge", args: [A, A, A, "--lambda", "0.5", "-o", out], status: 64, mentions: "--lambda"),
            Case(name: "weights count", tool: "coto-merge", args: [A, C, "--weights", "1,2,3", "-o", out], status: 64, mentions: "--weights"),
            Case(name: "density", tool: "coto-merge", args: [A, C, "--method", "ties", "--density", "-0.1", "-o", out], status: 64, mentions: "density"),
            Case(name: "sparsity", tool: "coto-prune", args: [A, "--sparsity", "1.5", "-o", out], status: 64, mentions: "--sparsity"),
            Case(name: "rank", tool: "coto-prune", args: [A, "--rank", "0", "-o", out], status: 64, mentions: "--rank"),
            Case(
                name: "unknown method", tool: "coto-merge", args: [A, C, "--method", "average", "-o", out], status: 64,
                mentions: "unknown merge method 'average'"),
            Case(
                name: "lego negative weight", tool: "coto-merge", args: [A, C, "--method", "lego", "--weights", "1,-1", "-o", out], status: 64,
                mentions: "positive"),
            Case(name: "lego lambda 1", tool: "coto-merge", args: [A, C, "--method", "lego", "--lambda", "1", "-o", out], status: 64, mentions: "positive"),
            Case(name: "unknown task", tool: "coto-eval", args: ["--model", bert, "--data", p["labels"]!, "--task", "qa"], status: 64, mentions: "--task"),
            Case(name: "unknown target module", tool: "coto-prune", args: [A, "--drop-modules", "q_proj", "-o", out], status: 1, mentions: "q_proj"),
            Case(
                name: "train unknown target", tool: "coto-train",
                args: ["--model", minilm, "--data", p["labels"]!, "--targets", "q_proj", "--steps", "1", "-o", out], status: 1, mentions: "q_proj"),
            // Empty or malformed JSONL, labels outside the set.
            Case(
                name: "empty jsonl", tool: "coto-eval", args: ["--model", bert, "--data", p["emptyjsonl"]!, "--task", "perplexity"], status: 1,
                mentions: "empty"),
            Case(
                name: "malformed jsonl", tool: "coto-eval", args: ["--model", bert, "--data", p["badjsonl"]!, "--task", "perplexity"], status: 1,
                mentions: p["badjsonl"]! + ":2"),
            Case(
                name: "label not in the set", tool: "coto-eval",
                args: ["--model", bert, "--adapter", CLI.fixture("peft/bert-lora"), "--data", p["labels"]!, "--task", "classification", "--labels", "x,y,w"],
                status: 1, mentions: p["labels"]! + ":2"),
            // Inputs the model cannot take (training, evaluation, causal LM): one line naming file:line, nothing written.
            Case(
                name: "train max-length above the positions", tool: "coto-train",
                args: ["--model", minilm, "--data", p["labels"]!, "--max-length", "1000", "--steps", "1", "-o", out], status: 1,
                mentions: "max_position_embeddings 512"),
            Case(
                name: "train empty text", tool: "coto-train", args: ["--model", bert, "--data", p["emptytext"]!, "--steps", "1", "-o", out], status: 1,
                mentions: p["emptytext"]! + ":2: empty text"),
            Case(
                name: "train token id outside the table", tool: "coto-train",
                args: ["--model", p["bigvocab"]!, "--data", p["bigwords"]!, "--steps", "1", "-o", out], status: 1, mentions: p["bigwords"]! + ":2: token id 64"),
            Case(
                name: "train type id outside the table", tool: "coto-train",
                args: ["--model", p["onetype"]!, "--data", p["pairs"]!, "--steps", "1", "-o", out], status: 1, mentions: p["pairs"]! + ":1: token type id 1"),
            Case(
                name: "train dev label not in the label list", tool: "coto-train",
                args: ["--model", bert, "--data", p["labels"]!, "--eval-data", p["devlabel"]!, "--steps", "1", "-o", out], status: 1,
                mentions: p["devlabel"]! + ":2: label 'nope'"),
            Case(
                name: "causal LM max-length above the positions", tool: "coto-train",
                args: ["--model", p["llama"]!, "--data", p["lmgood"]!, "--task", "causal-lm", "--max-length", "65", "--steps", "1", "-o", out], status: 1,
                mentions: "max_position_embeddings 64"),
            Case(
                name: "causal LM empty text", tool: "coto-train",
                args: ["--model", p["llama"]!, "--data", p["lmempty"]!, "--task", "causal-lm", "--steps", "1", "-o", out], status: 1,
                mentions: p["lmempty"]! + ":2: empty text"),
            Case(
                name: "causal LM token id outside the table", tool: "coto-train",
                args: ["--model", p["llama"]!, "--data", p["lmbig"]!, "--task", "causal-lm", "--steps", "1", "-o", out], status: 1,
                mentions: p["lmbig"]! + ":2: token id"),
            Case(
                name: "eval max-length above the positions", tool: "coto-eval",
                args: ["--model", minilm, "--data", p["labels"]!, "--task", "classification", "--max-length", "513"], status: 1,
                mentions: "max_position_embeddings 512"),
            Case(
                name: "eval empty text", tool: "coto-eval", args: ["--model", bert, "--data", p["emptytext"]!, "--task", "classification"], status: 1,
                mentions: p["emptytext"]! + ":2: empty text"),
            Case(
                name: "eval token id outside the table", tool: "coto-eval",
                args: ["--model", p["bigvocab"]!, "--data", p["bigwords"]!, "--task", "classification"], status: 1, mentions: p["bigwords"]! + ":2: token id 64"
            ),
            Case(
                name: "eval type id outside the table", tool: "coto-eval", args: ["--model", p["onetype"]!, "--data", p["pairs"]!, "--task", "classification"],
                status: 1, mentions: p["pairs"]! + ":1: token type id 1"),
            Case(
                name: "eval perplexity token id outside the table", tool: "coto-eval",
                args: ["--model", p["llama"]!, "--data", p["lmbig"]!, "--task", "perplexity"], status: 1, mentions: p["lmbig"]! + ":2: token id"),
            Case(
                name: "sweep token id outside the table", tool: "coto-eval",
                args: ["prune", CLI.fixture("peft/bert-lora"), "--model", p["bigvocab"]!, "--data", p["bigwords"]!, "--sparsity", "0", "-o", out], status: 1,
                mentions: p["bigwords"]! + ":2: token id 64"),
            // Sweeps, reports, data sets.
            Case(
                name: "sweep bad grid", tool: "coto-eval",
                args: ["interpolate", A, A, "--model", bert, "--data", p["labels"]!, "--grid", "1:0:0.1", "-o", out], status: 64, mentions: "--grid"),
            Case(
                name: "sweep bad shard", tool: "coto-eval",
                args: ["prune", A, "--model", bert, "--data", p["labels"]!, "--sparsity", "0.5", "--shard", "3/2", "-o", out], status: 64, mentions: "--shard"),
            Case(
                name: "sweep missing adapter", tool: "coto-eval", args: ["shapley", missing, "--model", bert, "--data", p["labels"]!, "-o", out], status: 1,
                mentions: missing),
            Case(
                name: "merge sweep task files", tool: "coto-eval", args: ["merge", A, C, "--model", bert, "--task-data", p["labels"]!, "-o", out], status: 64,
                mentions: "--task-data"),
            Case(
                name: "sweep label outside the head", tool: "coto-eval",
                args: ["prune", CLI.fixture("peft/bert-lora"), "--model", bert, "--data", p["labels"]!, "--sparsity", "0", "-o", out], status: 1,
                mentions: p["labels"]!),
            Case(name: "report missing run dir", tool: "coto-eval", args: ["report", missing, "-o", out], status: 1, mentions: missing),
            Case(name: "data without wordnet", tool: "coto-data", args: ["wordnet", "--wordnet", missing, "-o", out], status: 1, mentions: missing),
            Case(name: "data bad cap", tool: "coto-data", args: ["fortunes", "--cap-train", "0", "-o", out], status: 64, mentions: "--cap-train"),
            // Output equal to an input; an output directory nobody can write (even root cannot write /proc).
            Case(name: "output is the input", tool: "coto-prune", args: [A, "--sparsity", "0.5", "-o", A], status: 1, mentions: "output path is the input"),
            Case(
                name: "read-only output dir", tool: "coto-merge", args: [A, A, "-o", "/proc/coto-readonly/out.safetensors"], status: 1,
                mentions: "/proc/coto-readonly"),
            Case(
                name: "read-only output dir (convert)", tool: "coto-convert", args: [A, "-o", "/proc/coto-out.safetensors"], status: 1,
                mentions: "/proc/coto-out.safetensors"),
        ]
        var failures: [String] = []
        for c in cases {
            let r = try CLI.run(c.tool, c.args)
            let lines = r.err.split(separator: "\n", omittingEmptySubsequences: true)
            let ok =
                r.status == c.status
                && (c.status == 64 ? r.err.contains(c.mentions) : (lines.count == 1 && lines[0].hasPrefix("error: ") && r.err.contains(c.mentions)))
                && !FileManager.default.fileExists(atPath: out)
            if !ok { failures.append("\(c.name): status \(r.status), stderr: \(r.err.prefix(300))") }
        }
        #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
        #expect(cases.count >= 50)
    }
}
