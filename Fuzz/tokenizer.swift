import Checkpoint
import Model

/// libFuzzer target: any bytes as tokenizer.json (first byte even) or vocab.txt (odd); a loaded tokenizer
/// encodes a fixed text and the input itself.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTokenizer(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    let text = String(decoding: bytes.prefix(256), as: UTF8.self)
    if data[0] % 2 == 0 {
        guard let json = try? JSON.parse(bytes), let tok = try? TokenizerLoader.load(json: json, path: "fuzz") else { return 0 }
        _ = tok.encode("Hello, wörld! 123 東京 😀", pair: "x", addSpecialTokens: true)
        _ = tok.encode(text, pair: nil, addSpecialTokens: true, maxLength: 16)
    } else {
        var vocab: [String: Int] = [:]
        for (i, line) in String(decoding: bytes, as: UTF8.self).split(separator: "\n").enumerated() where vocab[String(line)] == nil { vocab[String(line)] = i }
        let tok = WordPieceTokenizer(vocab: vocab, lowercase: true, stripAccents: nil, unk: "[UNK]", prefix: "##", maxChars: 100)
        _ = tok.encode(text, pair: "second", addSpecialTokens: true)
    }
    return 0
}
