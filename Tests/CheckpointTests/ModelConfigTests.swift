import Foundation
import Testing
@testable import Checkpoint

/// config.json through the typed `ModelConfig`: the spellings transformers accepts (4.x and 5.x) decode to
/// the same fields, a field of the wrong type is a one-line error naming it.
@Suite struct ModelConfigTests {
    func decode(_ text: String) throws -> ModelConfig { try ModelConfig.decode(Array(text.utf8), path: "m/config.json") }

    @Test func transformers4Spellings() throws {
        let c = try decode(
            #"{"model_type": "llama", "hidden_act": "silu", "rope_theta": 500000, "torch_dtype": "bfloat16", "eos_token_id": [1, 2],"#
                + #" "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,"#
                + #" "original_max_position_embeddings": 8192}}"#)
        #expect(c.hiddenAct == "silu")
        #expect(c.ropeTheta == 500000)
        #expect(c.torchDtype == "bfloat16")
        #expect(c.eosTokenId?.all == [1, 2])
        let r = try #require(c.ropeScaling)
        #expect(r.kind == "llama3")
        #expect(r.factor == 8 && r.lowFreqFactor == 1 && r.highFreqFactor == 4 && r.originalMaxPositionEmbeddings == 8192)
    }

    @Test func transformers5AndGemmaSpellings() throws {
        // transformers 5: rope_parameters holds the type, its parameters and rope_theta; dtype for torch_dtype;
        // Gemma: hidden_activation for hidden_act.
        let c = try decode(
            #"{"model_type": "gemma2", "hidden_activation": "gelu_pytorch_tanh", "dtype": "float32","#
                + #" "rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}}"#)
        #expect(c.hiddenAct == "gelu_pytorch_tanh")
        #expect(c.torchDtype == "float32")
        #expect(c.ropeTheta == 10000)
        #expect(c.ropeScaling?.kind == "linear" && c.ropeScaling?.factor == 2)
        // The transformers 4 key wins where both are there; rope_scaling null falls back to rope_parameters.
        let both = try decode(
            #"{"model_type": "llama", "rope_theta": 20000, "rope_scaling": null, "rope_parameters": {"rope_type": "default", "rope_theta": 30000}}"#)
        #expect(both.ropeTheta == 20000)
        #expect(both.ropeScaling?.kind == "default")
        let plain = try decode(#"{"model_type": "llama", "rope_scaling": {"type": "linear", "factor": 4}}"#)
        #expect(plain.ropeScaling?.kind == "linear")
        #expect(try decode(#"{"model_type": "bert"}"#).ropeScaling?.kind == nil)
    }

    @Test func badFieldsAreOneLineErrors() throws {
        for (text, expected) in [
            (#"{"hidden_size": 8}"#, "no 'model_type'"),
            (#"{"model_type": "llama", "rope_theta": "big"}"#, "'rope_theta' has the wrong type"),
            (#"{"model_type": "llama", "rope_parameters": {"factor": "x"}}"#, "'rope_parameters.factor' has the wrong type"),
            (#"{"model_type": "llama", "hidden_activation": 3}"#, "'hidden_activation' has the wrong type"),
        ] {
            do {
                _ = try decode(text)
                Issue.record("\(text) decoded")
            } catch let e as CheckpointError {
                #expect(e.subject == "m/config.json")
                #expect(e.message.contains(expected), "\(e.message)")
            }
        }
    }
}
