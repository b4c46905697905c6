import Checkpoint
import Foundation

/// Whether a model fits before it is loaded: the inference core holds a safetensors weight matrix of F32,
/// BF16 or F16 as the file's bytes (mapped in place), every other tensor (GGUF blocks, other dtypes, vectors)
/// as Float32, so a model that cannot fit is refused with what it needs and what the machine has, instead
/// of being killed by the kernel half-way through loading. `COTO_MEMORY_CHECK=0` skips the check (swap, or
/// memory freed elsewhere on purpose).
public enum MemoryCheck {
    /// Bytes the loaded model needs: its weights as held, plus 10% and 256 MiB for activations and the
    /// runtime at the sizes coto runs.
    public static func needed(weightBytes: UInt64) -> UInt64 {
        weightBytes + weightBytes / 10 + (256 << 20)
    }

    /// Bytes of every weight as the model will hold it (see the type's note).
    public static func heldBytes(_ dir: HFModelDir) -> UInt64 {
        var total: UInt64 = 0
        for name in dir.weights.tensorNames {
            guard let info = dir.weights.tensorInfo(name) else { continue }
            let inPlace = info.shape.count == 2 && [.f32, .bf16, .f16].contains(info.dtype) && dir.weights.mappedView(name) != nil
            total += UInt64(info.elementCount) * UInt64(inPlace ? info.dtype.size : 4)
        }
        return total
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

    /// Refuses a model of `parameters` parameters held in `weightBytes` at `path` that needs more than
    /// `available` bytes.
    public static func check(parameters: Int, weightBytes: UInt64, available: UInt64?, path: String) throws {
        guard let available else { return }
        let need = needed(weightBytes: weightBytes)
        guard need > available else { return }
        func gib(_ b: UInt64) -> String { String(format: "%.1f GiB", Double(b) / Double(1 << 30)) }
        throw ModelError(
            path,
            "the model needs about \(gib(need)) of memory (\(parameters) parameters, \(gib(weightBytes)) of weights as held) but \(gib(available)) is available; "
                + "free memory or use a machine with more (COTO_MEMORY_CHECK=0 skips this check)")
    }

    /// `check` against this machine, unless COTO_MEMORY_CHECK=0.
    static func checkNow(_ dir: HFModelDir) throws {
        if ProcessInfo.processInfo.environment["COTO_MEMORY_CHECK"] == "0" { return }
        try check(parameters: dir.parameterCount, weightBytes: heldBytes(dir), available: availableNow(), path: dir.path)
    }
}
