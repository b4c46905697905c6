import ArgumentParser
import Foundation
import Checkpoint
import Numerics
import Operators
#if canImport(Glibc)
import Glibc
#endif

/// Exit codes every coto command uses: 0 success, 64 usage error, 1 any other error.
public enum ExitStatus {
    public static let usage: Int32 = 64
    public static let failure: Int32 = 1
}

/// An error a command raises about a file or option (rendered `error: FILE: cause`).
public struct CommandError: CotoError {
    public let path: String?
    public let message: String
    public init(_ path: String?, _ message: String) {
        self.path = path
        self.message = message
    }
    public var subject: String? { path }
}

public enum Console {
    public static func writeErr(_ s: String) {
        var line = s
        if !line.hasSuffix("\n") { line += "\n" }
        fputs(line, stderr)
        fflush(stderr)
    }

    public static func writeOut(_ s: String) {
        print(s)
    }

    public static var stderrIsTTY: Bool { isatty(2) != 0 }

    /// One line, no newlines inside (a cause is one line).
    static func oneLine(_ s: String) -> String {
        s.split(whereSeparator: { $0 == "\n" || $0 == "\r" }).joined(separator: " ")
    }
}

/// Runs a command: parses arguments (help -> 0, usage errors -> 64 through ArgumentParser), runs it,
/// and renders any other error as one line `error: FILE: cause` with exit status 1.
public func runCommand<C: ParsableCommand>(_ type: C.Type) -> Never {
    let threads = getenv("COTO_THREADS").flatMap { Int(String(cString: $0)) } ?? 2
    // Commands that call BLAS/LAPACK on whole matrices let OpenBLAS use the threads; the model-running
    // commands (coto-eval, coto-bench forward) switch to coto's own parallelism themselves.
    BLAS.setThreads(max(1, threads))
    let costDir = ProcessInfo.processInfo.environment[CostRecord.directoryVariable].flatMap { $0.isEmpty ? nil : $0 }
    let started = Clock.now()
    if costDir != nil { GemmCounter.enable() }
    var command: ParsableCommand
    do {
        command = try type.parseAsRoot()
    } catch {
        type.exit(withError: error)
    }
    do {
        try command.run()
        if let dir = costDir { try writeCostRecord(to: dir, started: started) }
        exit(0)
    } catch let error as CotoError {
        // Every coto error: one line `error: FILE: cause`, its exit status (1).
        Console.writeErr("error: " + Console.oneLine(error.description))
        exit(error.exitCode)
    } catch {
        // ValidationError, CleanExit, ExitCode: ArgumentParser's own rendering and codes.
        type.exit(withError: error)
    }
}

/// Writes this process's `CostRecord` into `dir` (`COTO_COST_DIR`), one file per process.
func writeCostRecord(to dir: String, started: Double) throws {
    let record = CostRecord.current(started: started)
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    do {
        try FileSystem.makeDirectory(dir)
        let name = "\(record.tool)-\(getpid())-\(Int(Date().timeIntervalSince1970 * 1e6)).json"
        try AtomicFileWriter.write(String(decoding: try encoder.encode(record), as: UTF8.self) + "\n", to: FileSystem.join(dir, name))
    } catch {
        throw CommandError(dir, "cannot write this command's cost record (\(CostRecord.directoryVariable)): \(error)")
    }
}

/// Renders progress: a bar with ETA on a TTY (redrawn at most 10 times a second), plain lines otherwise
/// (at most one per 10% or per 5 seconds). Silent when `quiet`.
public final class ProgressRenderer {
    let label: String
    let total: Int
    let unit: String
    let tty: Bool
    let quiet: Bool
    let start: Double
    var lastDraw = 0.0
    var lastPct = -1
    var lastLine = 0.0
    var done = 0
    var drawn = false

    public init(label: String, total: Int, unit: String = "", quiet: Bool = false) {
        self.label = label
        self.total = max(total, 1)
        self.unit = unit
        self.tty = Console.stderrIsTTY
        self.quiet = quiet
        self.start = ProgressRenderer.now()
    }

    public static func now() -> Double { Clock.now() }

    static func format(seconds s: Double) -> String {
        guard s.isFinite else { return "?" }
        let t = Int(s.rounded())
        return t >= 3600 ? "\(t / 3600)h\((t % 3600) / 60)m" : t >= 60 ? "\(t / 60)m\(t % 60)s" : "\(t)s"
    }

    public func update(_ done: Int, detail: String = "") {
        self.done = done
        guard !quiet else { return }
        let t = ProgressRenderer.now()
        let elapsed = t - start
        let frac = min(1, Double(done) / Double(total))
        let eta = frac > 0 ? elapsed * (1 - frac) / frac : .infinity
        // Short jobs stay silent: nothing is shown before a second has passed.
        guard elapsed >= 1 || drawn else { return }
        drawn = true
        if tty {
            guard t - lastDraw >= 0.1 || done >= total else { return }
            lastDraw = t
            let width = 30
            let filled = Int(frac * Double(width))
            let bar = String(repeating: "#", count: filled) + String(repeating: " ", count: width - filled)
            var line = "\r\(label) [\(bar)] \(Int(frac * 100))% \(done)/\(total)\(unit) \(rate(done, elapsed)) ETA \(ProgressRenderer.format(seconds: eta))"
            if !detail.isEmpty { line += " " + detail }
            fputs(line + "\u{1B}[K", stderr)
            fflush(stderr)
        } else {
            let pct = Int(frac * 10) * 10
            guard pct != lastPct || t - lastLine >= 5 else { return }
            lastPct = pct
            lastLine = t
            Console.writeErr(
                "\(label): \(Int(frac * 100))% (\(done)/\(total)\(unit), \(rate(done, elapsed))), elapsed \(ProgressRenderer.format(seconds: elapsed)), ETA \(ProgressRenderer.format(seconds: eta))"
            )
        }
    }

    func rate(_ done: Int, _ elapsed: Double) -> String {
        let r = Double(done) / max(elapsed, 1e-9)
        return (r >= 100 ? String(Int(r)) : String(format: "%.1f", r)) + "/s"
    }

    public func finish() {
        guard !quiet, drawn else { return }
        if tty {
            fputs("\r\u{1B}[K", stderr)
            fflush(stderr)
        }
        let elapsed = ProgressRenderer.now() - start
        Console.writeErr("\(label): done in \(ProgressRenderer.format(seconds: elapsed))")
    }
}

/// Human-readable byte counts.
public func formatBytes(_ n: Int) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var v = Double(n)
    var u = 0
    while v >= 1024 && u < units.count - 1 {
        v /= 1024
        u += 1
    }
    return u == 0 ? "\(n) B" : String(format: "%.1f %@", v, units[u])
}

/// Fixed-point formatting without Foundation's locale machinery.
public func fmt(_ v: Double, _ digits: Int = 4) -> String {
    guard v.isFinite else { return v.isNaN ? "nan" : (v > 0 ? "inf" : "-inf") }
    return String(format: "%.\(digits)g", v)
}

/// Pads columns of a table for terminal output.
public func table(_ header: [String], _ rows: [[String]]) -> String {
    var widths = header.map(\.count)
    for r in rows { for (i, c) in r.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) } }
    func line(_ cells: [String]) -> String {
        cells.enumerated().map { i, c in i == cells.count - 1 ? c : c + String(repeating: " ", count: widths[i] - c.count) }
            .joined(separator: "  ")
    }
    return ([line(header)] + rows.map(line)).joined(separator: "\n")
}

/// Refuses an output path that is one of the inputs (same path or same inode).
public func checkOutputNotInput(_ output: String, inputs: [String]) throws {
    for i in inputs {
        let a = FileSystem.dirname(of: output) + "/" + FileSystem.basename(of: output)
        let b = FileSystem.dirname(of: i) + "/" + FileSystem.basename(of: i)
        if a == b || FileSystem.sameFile(output, i) {
            throw CommandError(output, "output path is the input \(i); choose another output")
        }
    }
}

/// Parses "a,b,c" into numbers for --weights.
public func parseNumberList(_ s: String, option: String) throws -> [Double] {
    let parts = s.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
    let values = parts.compactMap(Double.init)
    guard !parts.isEmpty, values.count == parts.count, values.allSatisfy(\.isFinite) else {
        throw ValidationError("\(option) must be a comma-separated list of numbers (got '\(s)')")
    }
    return values
}

/// `--dtype keep|f32|f16|bf16` as a DType (nil = keep).
public func parseOutputDType(_ s: String) throws -> DType? {
    if s == "keep" { return nil }
    guard let d = DType(userName: s), [.f32, .f16, .bf16].contains(d) else {
        throw ValidationError("--dtype must be keep, f32, f16 or bf16 (got '\(s)')")
    }
    return d
}

/// Renders operator progress as a bar.
public func operatorProgress(label: String, quiet: Bool) -> (OperatorProgress) -> Void {
    var bar: ProgressRenderer? = nil
    return { p in
        switch p {
        case let .module(name, i, total), let .tensor(name, i, total):
            if bar == nil { bar = ProgressRenderer(label: label, total: total, quiet: quiet) }
            bar?.update(i + 1, detail: name)
        }
    }
}

/// One line per module for adapter summaries.
public func adapterSummaryJSON(_ a: Adapter) -> JSON {
    .object([
        ("r", .int(a.config.r)), ("lora_alpha", .double(a.config.loraAlpha)),
        ("module_count", .int(a.modules.count)), ("parameter_count", .int(a.parameterCount)),
        (
            "modules",
            .array(
                a.modules.map { m in
                    .object([("name", .string(m.name)), ("r", .int(m.rank)), ("scaling", .double(m.scaling)), ("delta_norm", .double(m.deltaNorm))])
                })
        ),
        ("heads", .array(a.otherTensors.map { .string($0.0) })),
    ])
}

/// `--json` and `-q`, shared by the commands that write files.
public struct OutputOptions: ParsableArguments {
    @Flag(help: "Machine-readable JSON summary on stdout.")
    public var json = false

    @Flag(name: .shortAndLong, help: "No progress or summary on stderr.")
    public var quiet = false

    public init() {}

    /// Progress and summaries go to stderr unless --quiet or --json.
    public var chatty: Bool { !quiet && !json }
}

/// Options every command that reads adapters shares.
public struct AdapterInputOptions: ParsableArguments {
    @Option(help: "lora_alpha for bare adapter files that carry no config (default: r).")
    public var alpha: Double?

    @Flag(help: "Proceed even if inputs or the result contain NaN/Inf.")
    public var allowNonfinite = false

    public init() {}

    public func validate() throws {
        if let a = alpha, !(a.isFinite && a > 0) { throw ValidationError("--alpha must be a positive number") }
    }
}
