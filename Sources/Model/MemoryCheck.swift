import Checkpoint
import Foundation

/// Whether a model fits before it is loaded: the inference core holds every weight as Float32 (4 bytes per
/// parameter, whatever the file's dtype), so a model that cannot fit is refused with what it needs and what
/// the machine has, instead of being killed by the kernel half-way through loading. `COTO_MEMORY_CHECK=0`
/// skips the check (swap, or memory freed elsewhere on purpose).
public enum MemoryCheck {
    /// Bytes the loaded model needs: its parameters as Float32, plus 10% and 256 MiB for activations and the
    /// runtime at the sizes coto runs.
    public static func needed(parameters: Int) -> UInt64 {
        let weights = UInt64(max(0, parameters)) * 4
        return weights + weights / 10 + (256 << 20)
    }

    /// `MemAvailable` of a /proc/meminfo text, in bytes (nil if it has none).
    public static func available(meminfo text: String) -> UInt64? {
        for line in text.split(separator: "\n") where line.hasPrefix("MemAvailable:") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            guard parts.count >= 2, let kb = UInt64(parts[1]) else { return nil }
            let unit = parts.count >= 3 ? parts[2].lowercased() : "kb"
            return unit == "kb" ? kb * 1024 : kb
        }
        return nil
    }

    /// This machine's available memory (Linux `/proc/meminfo`; nil elsewhere).
    public static func availableNow() -> UInt64? {
        // /proc files report size 0: read to the end rather than by size.
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) else { return nil }
        return available(meminfo: text)
    }

    /// Refuses a model of `parameters` parameters at `path` that needs more than `available` bytes.
    public static func check(parameters: Int, available: UInt64?, path: String) throws {
        guard let available else { return }
        let need = needed(parameters: parameters)
        guard need > available else { return }
        func gib(_ b: UInt64) -> String { String(format: "%.1f GiB", Double(b) / Double(1 << 30)) }
        throw ModelError(
            path,
            "the model needs about \(gib(need)) of memory (\(parameters) parameters held as Float32) but \(gib(available)) is available; "
                + "free memory or use a machine with more (COTO_MEMORY_CHECK=0 skips this check)")
    }

    /// `check` against this machine, unless COTO_MEMORY_CHECK=0.
    static func checkNow(_ dir: HFModelDir) throws {
        if ProcessInfo.processInfo.environment["COTO_MEMORY_CHECK"] == "0" { return }
        try check(parameters: dir.parameterCount, available: availableNow(), path: dir.path)
    }
}
