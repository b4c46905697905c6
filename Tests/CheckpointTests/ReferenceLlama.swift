import Foundation
@testable import Checkpoint
import Numerics

/// A minimal, unoptimized LLaMA forward pass used only to check converted weights against the logits
/// transformers computes on the GGUF (Fixtures/smollm2/reference.safetensors). Not the inference core.
struct ReferenceLlama {
    let w: SafeTensorsFile
    let hidden, layers, heads, kvHeads, headDim: Int
    let eps: Float
    let theta: Double

    init(dir: String) throws {
        let cfg = try JSON.parse(readBytes(dir + "/config.json"))
        w = try SafeTensorsFile(path: dir + "/model.safetensors")
        hidden = cfg["hidden_size"]!.intValue!
        layers = cfg["num_hidden_layers"]!.intValue!
        heads = cfg["num_attention_heads"]!.intValue!
        kvHeads = cfg["num_key_value_heads"]!.intValue!
        headDim = cfg["head_dim"]?.intValue ?? hidden / heads
        eps = Float(cfg["rms_norm_eps"]!.doubleValue!)
        theta = cfg["rope_theta"]!.doubleValue!
    }

    func rmsnorm(_ x: Tensor, _ weight: Tensor) -> Tensor {
        var out = x
        let d = x.cols
        for t in 0..<x.rows {
            var ss: Float = 0
            for j in 0..<d { ss += x[t, j] * x[t, j] }
            let r = 1 / (ss / Float(d) + eps).squareRoot()
            for j in 0..<d { out[t, j] = weight.data[j] * (x[t, j] * r) }
        }
        return out
    }

    func rope(_ x: inout Tensor, nHeads: Int) {
        let half = headDim / 2
        for t in 0..<x.rows {
            for h in 0..<nHeads {
                for i in 0..<half {
                    let invFreq = 1 / pow(theta, Double(2 * i) / Double(headDim))
                    let angle = Float(Double(t) * invFreq)
                    let c = cos(angle)
                    let s = sin(angle)
                    let a = x[t, h * headDim + i]
                    let b = x[t, h * headDim + i + half]
                    x[t, h * headDim + i] = a * c - b * s
                    x[t, h * headDim + i + half] = b * c + a * s
                }
            }
        }
    }

    func linear(_ x: Tensor, _ name: String) throws -> Tensor { BLAS.matmul(x, try w.tensor(name), transB: true) }

    func logits(_ ids: [Int]) throws -> Tensor {
        let embed = try w.tensor("model.embed_tokens.weight")
        let T = ids.count
        var h = Tensor(zeros: [T, hidden])
        for (t, id) in ids.enumerated() { for j in 0..<hidden { h[t, j] = embed[id, j] } }
        let group = heads / kvHeads
        for l in 0..<layers {
            let p = "model.layers.\(l)."
            let x = rmsnorm(h, try w.tensor(p + "input_layernorm.weight"))
            var q = try linear(x, p + "self_attn.q_proj.weight")
            var k = try linear(x, p + "self_attn.k_proj.weight")
            let v = try linear(x, p + "self_attn.v_proj.weight")
            rope(&q, nHeads: heads)
            rope(&k, nHeads: kvHeads)
            var attn = Tensor(zeros: [T, heads * headDim])
            let scale = 1 / Float(headDim).squareRoot()
            for hh in 0..<heads {
                let kv = hh / group
                for t in 0..<T {
                    var scores = [Float](repeating: 0, count: t + 1)
                    for u in 0...t {
                        var s: Float = 0
                        for i in 0..<headDim { s += q[t, hh * headDim + i] * k[u, kv * headDim + i] }
                        scores[u] = s * scale
                    }
                    let m = scores.max()!
                    var z: Float = 0
                    for u in 0...t {
                        scores[u] = exp(scores[u] - m)
                        z += scores[u]
                    }
                    for i in 0..<headDim {
                        var s: Float = 0
                        for u in 0...t { s += scores[u] * v[u, kv * headDim + i] }
                        attn[t, hh * headDim + i] = s / z
                    }
                }
            }
            h = h + (try linear(attn, p + "self_attn.o_proj.weight"))
            let x2 = rmsnorm(h, try w.tensor(p + "post_attention_layernorm.weight"))
            let g = try linear(x2, p + "mlp.gate_proj.weight")
            let u = try linear(x2, p + "mlp.up_proj.weight")
            var act = g
            for i in act.data.indices {
                let a = g.data[i]
                act.data[i] = a / (1 + exp(-a)) * u.data[i]
            }
            h = h + (try linear(act, p + "mlp.down_proj.weight"))
        }
        let final = rmsnorm(h, try w.tensor("model.norm.weight"))
        return BLAS.matmul(final, embed, transB: true)
    }
}
