import Checkpoint
import Foundation

/// One labelled example of a dataset task, with the id its split is decided by.
public struct LabeledText: Sendable {
    public var id: String
    public var text: String
    public var label: String
}

public enum Split: String, CaseIterable, Sendable { case train, dev, test }

/// A task built from a corpus: examples split deterministically by a hash of their id
/// (FNV-1a 64 of the id, mod 100: below 80 train, below 90 dev, else test), optionally capped per class.
public struct DatasetTask: Sendable {
    public var name: String
    public var description: String
    public var examples: [Split: [LabeledText]]

    public static func splitOf(_ id: String) -> Split {
        let h = fnv1a64(id) % 100
        return h < 80 ? .train : (h < 90 ? .dev : .test)
    }

    /// Splits `all` by id hash; per split, keeps at most `cap[split]` examples per class, chosen by a
    /// second hash of the id (deterministic, independent of the corpus order), then orders the split by
    /// that hash so classes are interleaved.
    public init(name: String, description: String, examples all: [LabeledText], capPerClass cap: [Split: Int] = [:]) {
        self.name = name
        self.description = description
        var bySplit: [Split: [LabeledText]] = [:]
        for e in all { bySplit[DatasetTask.splitOf(e.id), default: []].append(e) }
        var out: [Split: [LabeledText]] = [:]
        for split in Split.allCases {
            var rows = (bySplit[split] ?? []).map { (fnv1a64("order:" + $0.id), $0) }
            rows.sort { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1.id < $1.1.id }
            if let c = cap[split] {
                var taken: [String: Int] = [:]
                rows = rows.filter { r in
                    let n = taken[r.1.label, default: 0]
                    if n >= c { return false }
                    taken[r.1.label] = n + 1
                    return true
                }
            }
            out[split] = rows.map(\.1)
        }
        examples = out
    }

    public var labels: [String] { Array(Set(examples.values.flatMap { $0.map(\.label) })).sorted() }

    /// Counts per class and split (the dataset card).
    public var card: JSON {
        let labels = self.labels
        var pairs: [(String, JSON)] = [
            ("task", .string(name)), ("description", .string(description)),
            ("labels", .array(labels.map { .string($0) })),
        ]
        for split in Split.allCases {
            let rows = examples[split] ?? []
            var counts: [String: Int] = [:]
            for e in rows { counts[e.label, default: 0] += 1 }
            pairs.append(
                (
                    split.rawValue,
                    .object([
                        ("examples", .int(rows.count)),
                        ("per_class", .object(labels.map { ($0, JSON.int(counts[$0] ?? 0)) })),
                    ])
                ))
        }
        return .object(pairs)
    }

    /// Writes `DIR/NAME-{train,dev,test}.jsonl` (`{"text", "label", "id"}`) atomically.
    public func write(to dir: String) throws -> [String] {
        try DatasetTask.writeSplits(
            name: name,
            rows: examples.mapValues { $0.map { e in JSON.object([("text", .string(e.text)), ("label", .string(e.label)), ("id", .string(e.id))]) } },
            to: dir, every: true)
    }

    /// Writes `DIR/NAME-SPLIT.jsonl` (a JSON record per line) atomically for the splits `rows` has (every split,
    /// empty ones included, with `every`); the paths, in split order.
    static func writeSplits(name: String, rows: [Split: [JSON]], to dir: String, every: Bool) throws -> [String] {
        try FileSystem.makeDirectory(dir)
        var paths: [String] = []
        for split in Split.allCases where every || rows[split] != nil {
            let path = FileSystem.join(dir, "\(name)-\(split.rawValue).jsonl")
            try AtomicFileWriter.write((rows[split] ?? []).map { $0.compact + "\n" }.joined(), to: path)
            paths.append(path)
        }
        return paths
    }
}

func fnv1a64(_ s: String) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
    return h
}

/// WordNet 3.0 data files (`data.noun`, `data.verb`, `data.adj`, `data.adv` of Debian's wordnet-base).
public enum WordNet {
    public static let defaultDirectory = "/usr/share/wordnet"

    /// Lexicographer file numbers → names (WordNet's `lexnames`).
    public static let lexnames: [Int: String] = [
        0: "adj.all", 1: "adj.pert", 2: "adv.all", 3: "noun.Tops", 4: "noun.act", 5: "noun.animal", 6: "noun.artifact",
        7: "noun.attribute", 8: "noun.body", 9: "noun.cognition", 10: "noun.communication", 11: "noun.event",
        12: "noun.feeling", 13: "noun.food", 14: "noun.group", 15: "noun.location", 16: "noun.motive", 17: "noun.object",
        18: "noun.person", 19: "noun.phenomenon", 20: "noun.plant", 21: "noun.possession", 22: "noun.process",
        23: "noun.quantity", 24: "noun.relation", 25: "noun.shape", 26: "noun.state", 27: "noun.substance", 28: "noun.time",
        29: "verb.body", 30: "verb.change", 31: "verb.cognition", 32: "verb.communication", 33: "verb.competition",
        34: "verb.consumption", 35: "verb.contact", 36: "verb.creation", 37: "verb.emotion", 38: "verb.motion",
        39: "verb.perception", 40: "verb.possession", 41: "verb.social", 42: "verb.stative", 43: "verb.weather", 44: "adj.ppl",
    ]
    public static let nounClasses = ["animal", "plant", "artifact", "person", "food", "body", "location", "substance"]

    public struct Synset: Sendable {
        public var id: String  // POS letter + 8-digit offset, e.g. n02084071
        public var lexfile: Int
        public var pos: String  // n, v, a, s, r
        public var words: [String]
        public var gloss: String
        /// "first word: gloss", the input text of every WordNet task.
        public var text: String { "\(words.first ?? ""): \(gloss)" }
    }

    /// Parses one data file; licence lines (two leading spaces) are skipped; errors name `file:line`.
    public static func read(_ path: String) throws -> [Synset] {
        guard FileSystem.exists(path) else {
            throw EvalError(path, "not found (install Debian's wordnet-base: apt-get install wordnet-base)")
        }
        let bytes = try FileSystem.readFile(path, limit: 1 << 30)
        let text = String(decoding: bytes, as: UTF8.self)
        var out: [Synset] = []
        for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            if line.isEmpty || line.hasPrefix("  ") { continue }
            guard let bar = line.firstIndex(of: "|") else { throw EvalError("\(path):\(n + 1)", "no ' | gloss' part") }
            let f = line[..<bar].split(separator: " ")
            guard f.count >= 5, let lex = Int(f[1]), let wcnt = Int(f[3], radix: 16), f.count >= 4 + 2 * wcnt else {
                throw EvalError("\(path):\(n + 1)", "not a WordNet data line (offset lex_filenum ss_type w_cnt word lex_id ...)")
            }
            var words: [String] = []
            for w in 0..<wcnt {
                var word = String(f[4 + 2 * w]).replacingOccurrences(of: "_", with: " ")
                // Adjective markers such as "(p)" are not part of the word.
                if let p = word.firstIndex(of: "("), word.hasSuffix(")") { word = String(word[..<p]) }
                words.append(word)
            }
            let gloss = line[line.index(after: bar)...].trimmingCharacters(in: .whitespaces)
            out.append(Synset(id: String(f[2]) + String(f[0]), lexfile: lex, pos: String(f[2]), words: words, gloss: gloss))
        }
        return out
    }

    /// The three tasks of SPEC section 5 over one corpus.
    public static func tasks(directory dir: String = defaultDirectory, cap: [Split: Int] = [:]) throws -> [DatasetTask] {
        let nouns = try read(FileSystem.join(dir, "data.noun"))
        let verbs = try read(FileSystem.join(dir, "data.verb"))
        let adjs = try read(FileSystem.join(dir, "data.adj"))
        let advs = try read(FileSystem.join(dir, "data.adv"))
        let nounSet = Set(nounClasses)
        let noun8 = nouns.compactMap { s -> LabeledText? in
            guard let name = lexnames[s.lexfile], name.hasPrefix("noun.") else { return nil }
            let cls = String(name.dropFirst(5))
            return nounSet.contains(cls) ? LabeledText(id: s.id, text: s.text, label: cls) : nil
        }
        let verb15 = verbs.compactMap { s -> LabeledText? in
            guard let name = lexnames[s.lexfile], name.hasPrefix("verb.") else { return nil }
            return LabeledText(id: s.id, text: s.text, label: String(name.dropFirst(5)))
        }
        let posName = ["n": "noun", "v": "verb", "a": "adjective", "s": "adjective", "r": "adverb"]
        let pos4 = (nouns + verbs + adjs + advs).map { LabeledText(id: $0.id, text: $0.text, label: posName[$0.pos] ?? $0.pos) }
        return [
            DatasetTask(
                name: "noun8", description: "WordNet noun supersense, 8 classes (\(nounClasses.joined(separator: ", ")))", examples: noun8, capPerClass: cap),
            DatasetTask(name: "pos4", description: "WordNet part of speech, 4 classes (satellite adjectives are adjectives)", examples: pos4, capPerClass: cap),
            DatasetTask(name: "verb15", description: "WordNet verb supersense, 15 classes (verb.body ... verb.weather)", examples: verb15, capPerClass: cap),
        ]
    }
}

/// Debian's fortune cookie files: `%`-separated quotes, one file per category.
public enum Fortunes {
    public static let defaultDirectory = "/usr/share/games/fortunes"

    /// Quotes of every category file (files without an extension and with a `.dat` index beside them).
    /// Categories with fewer than `minPerClass` quotes are left out; quotes longer than `maxCharacters`
    /// are skipped (they are ASCII art or long stories, not classification inputs).
    public static func task(
        directory dir: String = defaultDirectory, minPerClass: Int = 200, maxCharacters: Int = 400,
        cap: [Split: Int] = [:]
    ) throws -> DatasetTask {
        guard FileSystem.isDirectory(dir) else {
            throw EvalError(dir, "not found (install Debian's fortunes and fortunes-min)")
        }
        var examples: [LabeledText] = []
        for name in try FileSystem.listDirectory(dir).sorted() where !name.contains(".") {
            let path = FileSystem.join(dir, name)
            guard FileSystem.exists(path + ".dat"), !FileSystem.isDirectory(path) else { continue }
            let bytes = try FileSystem.readFile(path, limit: 1 << 28)
            let text = String(validatingUTF8: bytes.map { CChar(bitPattern: $0) } + [0]) ?? String(bytes.map { Character(Unicode.Scalar($0)) })
            var quotes: [LabeledText] = []
            for chunk in text.components(separatedBy: "\n%\n") {
                let q = chunk.trimmingCharacters(in: .whitespacesAndNewlines)
                let flat = q.split(whereSeparator: { $0 == "\n" || $0 == "\t" }).map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: " ")
                guard !flat.isEmpty, flat.count <= maxCharacters, flat != "%" else { continue }
                quotes.append(LabeledText(id: "\(name):\(fnv1a64(flat))", text: flat, label: name))
            }
            if quotes.count >= minPerClass { examples += quotes }
        }
        guard !examples.isEmpty else { throw EvalError(dir, "no category with at least \(minPerClass) quotes") }
        return DatasetTask(
            name: "fortunes",
            description: "Debian fortunes: category of a quote (files with at least \(minPerClass) quotes of at most \(maxCharacters) characters)",
            examples: examples, capPerClass: cap)
    }
}

/// Language-model tasks over WordNet's noun8 synsets (the same synsets, splits and caps as `noun8`), for decoder
/// models: `define` (prompt "word:", completion " gloss": causal-LM training data, perplexity on held-out
/// glosses) and `word-choice` (multiple choice: which word a gloss defines, among `choices` words of other
/// synsets of the same split, chosen and placed by hashes of the ids).
public enum WordNetLM {
    public struct Files: Sendable {
        public var name: String
        public var description: String
        /// split → JSONL records.
        public var rows: [Split: [JSON]]
    }

    public static func tasks(directory dir: String = WordNet.defaultDirectory, cap: [Split: Int] = [:], choices: Int = 4) throws -> [Files] {
        guard choices >= 2 else { throw EvalError("--choices", "must be at least 2 (got \(choices))") }
        guard let noun8 = try WordNet.tasks(directory: dir, cap: cap).first(where: { $0.name == "noun8" }) else {
            throw EvalError(dir, "no noun8 task")
        }
        // The synsets behind noun8's examples ("word: gloss"), to split the text back into word and gloss.
        var define: [Split: [JSON]] = [:]
        var choice: [Split: [JSON]] = [:]
        for split in Split.allCases {
            let rows = (noun8.examples[split] ?? []).compactMap { e -> (id: String, word: String, gloss: String)? in
                guard let colon = e.text.range(of: ": ") else { return nil }
                return (e.id, String(e.text[..<colon.lowerBound]), String(e.text[colon.upperBound...]))
            }
            define[split] = rows.map { r in
                .object([("prompt", .string(r.word + ":")), ("completion", .string(" " + r.gloss)), ("id", .string(r.id))])
            }
            // Distractors: the words of the next synsets in hash order whose words differ from the answer's and
            // from each other; the answer's place by a hash of the id.
            let order = rows.indices.sorted { fnv1a64("distractor:" + rows[$0].id) < fnv1a64("distractor:" + rows[$1].id) }
            var mc: [JSON] = []
            for (k, i) in order.enumerated() where split != .train {
                var words = [rows[i].word]
                var j = (k + 1) % order.count
                while words.count < choices && j != k {
                    let w = rows[order[j]].word
                    if !words.contains(where: { $0.lowercased() == w.lowercased() }) { words.append(w) }
                    j = (j + 1) % order.count
                }
                guard words.count == choices else { continue }
                let at = Int(fnv1a64("answer:" + rows[i].id) % UInt64(choices))
                words.swapAt(0, at)
                mc.append(
                    .object([
                        ("context", .string("Definition: \(rows[i].gloss)\nWord:")), ("choices", .array(words.map { .string(" " + $0) })),
                        ("label", .int(at)), ("id", .string(rows[i].id)),
                    ]))
            }
            choice[split] = mc
        }
        return [
            Files(name: "define", description: "WordNet noun8 synsets: \"word:\" → \" gloss\" (causal-LM training; perplexity)", rows: define),
            Files(
                name: "word-choice", description: "WordNet noun8 synsets: which of \(choices) words a gloss defines (multiple choice; dev and test)",
                rows: choice.filter { $0.key != .train }),
        ]
    }

    /// Writes `DIR/NAME-SPLIT.jsonl` for every split a task has, atomically; the paths.
    public static func write(_ t: Files, to dir: String) throws -> [String] {
        try DatasetTask.writeSplits(name: t.name, rows: t.rows, to: dir, every: false)
    }
}
