"""Random blocks of every GGUF type coto dequantizes, and gguf-py's dequantization of them (the oracle):
    python Fixtures/generate.py kquants      (writes Fixtures/gguf/kquants.safetensors)

Per type: `<TYPE>.raw` (the blocks' bytes, U8) and `<TYPE>.values` (F32, gguf-py's `quants.dequantize`).
Random bytes everywhere except the f16 scale fields, which get finite values of every magnitude (random
signs, exponents from 2^-14 to 2^4, subnormals included) so the comparison is bit for bit with no NaN."""
import os

ROOT = os.path.dirname(os.path.abspath(__file__))
# (type, byte offsets of its f16 scale fields within a block)
SCALES = {
    "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0],
    "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208],
}
BLOCKS = 24


def kquants():
    import numpy as np
    import gguf
    from safetensors.numpy import save_file
    rng = np.random.default_rng(7)
    res = {}
    for name, offsets in SCALES.items():
        qtype = gguf.GGMLQuantizationType[name]
        _, size = gguf.GGML_QUANT_SIZES[qtype]
        raw = rng.integers(0, 256, size=(BLOCKS, size), dtype=np.uint8)
        for off in offsets:
            mag = np.ldexp(rng.random(BLOCKS) + 0.5, rng.integers(-16, 5, BLOCKS)) * rng.choice([-1.0, 1.0], BLOCKS)
            raw[:, off:off + 2] = mag.astype(np.float16).view(np.uint8).reshape(BLOCKS, 2)
        values = gguf.quants.dequantize(raw.reshape(-1), qtype).astype(np.float32)
        assert np.isfinite(values).all(), name
        res[name + ".raw"] = raw.reshape(-1)
        res[name + ".values"] = values.reshape(-1)
    path = os.path.join(ROOT, "gguf", "kquants.safetensors")
    save_file(res, path, metadata={"gguf": gguf.__version__ if hasattr(gguf, "__version__") else "gguf-py"})
    print("wrote", path, {k: v.shape for k, v in res.items()})


def kquant_model():
    """A one-layer llama GGUF whose weights are k-quant (and Q5_0, Q8_0) blocks of random bytes, written with
    gguf-py's GGUFWriter in llama.cpp's layout, and the logits transformers computes on it (its GGUF loader
    dequantizes with gguf-py): Fixtures/gguf/kquant-llama.gguf, Fixtures/gguf/kquant-llama-refs.safetensors."""
    import numpy as np
    import gguf
    import torch
    from gguf import GGMLQuantizationType as T
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM
    rng = np.random.default_rng(11)
    H, heads, kv, ffn, vocab = 256, 4, 2, 256, 32
    d = H // heads
    path = os.path.join(ROOT, "gguf", "kquant-llama.gguf")
    w = gguf.GGUFWriter(path, "llama")
    w.add_context_length(64)
    w.add_embedding_length(H)
    w.add_block_count(1)
    w.add_feed_forward_length(ffn)
    w.add_head_count(heads)
    w.add_head_count_kv(kv)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_rope_dimension_count(d)
    w.add_vocab_size(vocab)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_K_M)

    def blocks(qtype, rows, cols, lo=-9, hi=-6):
        n, size = gguf.GGML_QUANT_SIZES[qtype]
        count = rows * cols // n
        raw = rng.integers(0, 256, size=(count, size), dtype=np.uint8)
        for off in SCALES[qtype.name]:
            mag = np.ldexp(rng.random(count) + 0.5, rng.integers(lo, hi, count))
            raw[:, off:off + 2] = mag.astype(np.float16).view(np.uint8).reshape(count, 2)
        return raw.reshape(rows, cols // n * size)

    def quant(name, qtype, rows, cols):
        w.add_tensor(name, blocks(qtype, rows, cols), raw_dtype=qtype)

    def norm(name):
        w.add_tensor(name, (1 + 0.2 * rng.standard_normal(H)).astype(np.float32))

    quant("token_embd.weight", T.Q6_K, vocab, H)
    norm("blk.0.attn_norm.weight")
    # Random q/k blocks need no permuting: any bytes are some permuted matrix.
    quant("blk.0.attn_q.weight", T.Q4_K, heads * d, H)
    quant("blk.0.attn_k.weight", T.Q5_K, kv * d, H)
    quant("blk.0.attn_v.weight", T.Q3_K, kv * d, H)
    quant("blk.0.attn_output.weight", T.Q2_K, H, heads * d)
    norm("blk.0.ffn_norm.weight")
    quant("blk.0.ffn_gate.weight", T.Q4_K, ffn, H)
    quant("blk.0.ffn_up.weight", T.Q5_0, ffn, H)
    quant("blk.0.ffn_down.weight", T.Q6_K, H, ffn)
    norm("output_norm.weight")
    w.add_tensor("output.weight", gguf.quants.quantize(rng.standard_normal((vocab, H)).astype(np.float32) * 0.05, T.Q8_0),
                 raw_dtype=T.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    model = AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path), dtype=torch.float32).eval()
    ids = torch.tensor([[1, 5, 9, 13, 7, 3, 22, 30], [2, 8, 4, 3, 17, 0, 0, 0]])
    mask = torch.tensor([[1] * 8, [1] * 5 + [0] * 3])
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits
    save_file({"ids": ids, "mask": mask, "logits": logits.contiguous()}, os.path.join(ROOT, "gguf", "kquant-llama-refs.safetensors"))
    print("wrote", path, os.path.getsize(path), "bytes; logits", tuple(logits.shape), float(logits.abs().max()))
