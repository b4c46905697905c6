import ArgumentParser
import Checkpoint
import CotoCLI
import Evaluation

struct Data: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coto-data",
        abstract: "Build JSONL task files from Debian's corpora (WordNet 3.0, fortunes).",
        discussion: """
            Splits are deterministic: an example goes to train, dev or test by a hash of its id (WordNet: the
            synset, e.g. n02084071), so the same synset is in the same split of every task. Each split can be
            capped per class (the examples kept are chosen by a second hash, not by corpus order). A card with
            the counts per class is printed and saved as card.json.

            Examples:
              coto-data wordnet -o data/                               # noun8, pos4, verb15
              coto-data wordnet -o data/ --cap-train 150 --cap-eval 50
              coto-data fortunes -o data/ --min-per-class 500
              coto-data wordnet-lm -o data/ --cap-train 40 --cap-eval 10   # define, word-choice (decoders)
            """,
        subcommands: [WordNetCommand.self, WordNetLMCommand.self, FortunesCommand.self])

    struct Common: ParsableArguments {
        @Option(name: .shortAndLong, help: "Output directory.") var output: String
        @Option(help: "At most this many training examples per class.") var capTrain: Int?
        @Option(help: "At most this many dev and test examples per class.") var capEval: Int?
        @OptionGroup var out: OutputOptions

        func validate() throws {
            guard (capTrain ?? 1) >= 1, (capEval ?? 1) >= 1 else { throw ValidationError("--cap-train and --cap-eval must be at least 1") }
        }

        var caps: [Split: Int] {
            var c: [Split: Int] = [:]
            if let t = capTrain { c[.train] = t }
            if let e = capEval {
                c[.dev] = e
                c[.test] = e
            }
            return c
        }

        func write(_ tasks: [DatasetTask], source: String) throws {
            var cards: [JSON] = []
            for t in tasks {
                let paths = try t.write(to: output)
                var card = t.card.objectPairs ?? []
                card.append(("files", .array(paths.map { .string($0) })))
                cards.append(.object(card))
                if out.chatty {
                    let rows = t.labels.map { l in [l] + Split.allCases.map { s in String((t.examples[s] ?? []).filter { $0.label == l }.count) } }
                    let totals = ["total"] + Split.allCases.map { String((t.examples[$0] ?? []).count) }
                    Console.writeErr("\(t.name): \(t.description)\n" + table(["class", "train", "dev", "test"], rows + [totals]))
                }
            }
            try finish(cards, files: tasks.count * 3, source: source)
        }

        /// Writes card.json (the tasks' cards under their source) and says what was written.
        func finish(_ cards: [JSON], files: Int, source: String) throws {
            let card = JSON.object([("source", .string(source)), ("tasks", .array(cards))])
            try AtomicFileWriter.write(card.pretty + "\n", to: FileSystem.join(output, "card.json"))
            if out.json {
                Console.writeOut(card.pretty)
            } else if !out.quiet {
                Console.writeOut("wrote \(files) task files and card.json to \(output)")
            }
        }
    }

    struct WordNetCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "wordnet",
            abstract: "noun8 (noun supersense), pos4 (part of speech), verb15 (verb supersense) from WordNet 3.0.")
        @Option(help: "Directory with data.noun, data.verb, data.adj, data.adv.") var wordnet = WordNet.defaultDirectory
        @OptionGroup var common: Common

        func run() throws {
            try common.write(try WordNet.tasks(directory: wordnet, cap: common.caps), source: wordnet)
        }
    }

    struct WordNetLMCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "wordnet-lm",
            abstract: "Decoder tasks on noun8's synsets: define (word: → gloss; causal LM, perplexity), word-choice (multiple choice).",
            discussion: """
                The same synsets, splits and per-class caps as noun8. define-{train,dev,test}.jsonl hold
                {"prompt": "dog:", "completion": " a member of the genus Canis ..."}; word-choice-{dev,test}.jsonl hold
                {"context": "Definition: ...\\nWord:", "choices": [" dog", ...], "label": k}, the other choices being
                words of other synsets of the same split.
                """)
        @Option(help: "Directory with data.noun, data.verb, data.adj, data.adv.") var wordnet = WordNet.defaultDirectory
        @Option(help: "Choices per word-choice question.") var choices = 4
        @OptionGroup var common: Common

        func run() throws {
            let tasks = try WordNetLM.tasks(directory: wordnet, cap: common.caps, choices: choices)
            var cards: [JSON] = []
            var files = 0
            for t in tasks {
                let paths = try WordNetLM.write(t, to: common.output)
                files += paths.count
                let counts = Split.allCases.compactMap { s in t.rows[s].map { (s.rawValue, $0.count) } }
                cards.append(
                    .object(
                        [("task", .string(t.name)), ("description", .string(t.description))] + counts.map { ($0.0, JSON.int($0.1)) }
                            + [("files", .array(paths.map { .string($0) }))]))
                if common.out.chatty {
                    Console.writeErr("\(t.name): \(t.description): " + counts.map { "\($0.0) \($0.1)" }.joined(separator: ", ") + "\n")
                }
            }
            try common.finish(cards, files: files, source: wordnet)
        }
    }

    struct FortunesCommand: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "fortunes", abstract: "Category of a quote, from Debian's fortunes.")
        @Option(help: "Directory of fortune files.") var fortunes = Fortunes.defaultDirectory
        @Option(help: "Leave out categories with fewer quotes.") var minPerClass = 200
        @Option(help: "Skip quotes longer than this many characters.") var maxCharacters = 400
        @OptionGroup var common: Common

        func validate() throws {
            guard minPerClass >= 1, maxCharacters >= 1 else { throw ValidationError("--min-per-class and --max-characters must be at least 1") }
        }

        func run() throws {
            try common.write(
                [try Fortunes.task(directory: fortunes, minPerClass: minPerClass, maxCharacters: maxCharacters, cap: common.caps)],
                source: fortunes)
        }
    }
}

runCommand(Data.self)
