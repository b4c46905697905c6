"""Tiny random models of every decoder family coto runs, a PEFT adapter on each, and transformers' answers:
    python Fixtures/generate.py families      (writes Fixtures/families/<name>/ and Fixtures/families/refs.safetensors)

Each model has head_dim != hidden/heads where the family allows it, GQA, 3 layers, sequences (12 tokens) longer
than every sliding window (4), soft-caps small enough to change the result, weights large enough that the
attention is not uniform, and every norm weight moved away from its init. The adapter (r 4, alpha 8, B not zero)
targets every linear layer of the block (Phi-3: the fused qkv_proj and gate_up_proj). Stored per family:
logits without and with the adapter, the mean next-token NLL with the adapter (coto's perplexity must equal it),
and for qwen3, gemma2 and phi3 the adapter's gradients of that loss. Oracle only: CI reads the outputs."""
import os
import shutil

ROOT = os.path.dirname(os.path.abspath(__file__))
IDS = [[1, 5, 9, 13, 7, 3, 22, 41, 17, 30, 8, 2], [1, 8, 4, 3, 50, 61, 12, 9, 0, 0, 0, 0]]
MASK = [[1] * 12, [1] * 8 + [0] * 4]
GRADIENTS = ["qwen3", "gemma2", "phi3"]


def configs():
    from transformers import (Gemma2Config, Gemma3TextConfig, LlamaConfig, MistralConfig, Phi3Config, Qwen3Config)
    common = dict(vocab_size=64, hidden_size=16, intermediate_size=24, num_hidden_layers=3, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=64, initializer_range=0.4)
    return {
        # Llama 3.1-style RoPE: head_dim 8, θ 10000 → wavelengths 6.3, 63, 628, 6283 against 64/4 and 64/1: every band.
        "llama3": (LlamaConfig, dict(common, head_dim=8, tie_word_embeddings=False,
                                      rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                    "high_freq_factor": 4.0, "original_max_position_embeddings": 64})),
        "mistral": (MistralConfig, dict(common, head_dim=8, sliding_window=4, tie_word_embeddings=False)),
        # Qwen3 with its sliding layers switched on from layer 1 (max_window_layers 1).
        "qwen3": (Qwen3Config, dict(common, head_dim=8, use_sliding_window=True, sliding_window=4, max_window_layers=1,
                                     tie_word_embeddings=True)),
        "gemma2": (Gemma2Config, dict(common, head_dim=8, query_pre_attn_scalar=6, sliding_window=4,
                                       attn_logit_softcapping=2.0, final_logit_softcapping=3.0)),
        # Gemma 3: layers 0 and 1 local (θ 100), layer 2 global (θ 10000, linear scaling 2), a final soft-cap.
        "gemma3": (Gemma3TextConfig, dict(common, head_dim=8, query_pre_attn_scalar=6, sliding_window=4,
                                           sliding_window_pattern=3, rope_local_base_freq=100.0, rope_theta=10000.0,
                                           rope_scaling={"rope_type": "linear", "factor": 2.0},
                                           final_logit_softcapping=4.0)),
        # Phi-3: head_dim = hidden/heads = 8, half of it rotary (partial_rotary_factor 0.5), a window of 5.
        "phi3": (Phi3Config, dict(common, hidden_size=32, partial_rotary_factor=0.5, sliding_window=5,
                                   tie_word_embeddings=False, pad_token_id=0)),
    }


TARGETS = {
    "phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
}
DEFAULT_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def families():
    import torch
    from transformers import AutoModelForCausalLM
    from peft import LoraConfig, PeftModel, TaskType, get_peft_model
    from safetensors.torch import save_file
    res = {"ids": torch.tensor(IDS), "mask": torch.tensor(MASK)}
    ids, mask = res["ids"], res["mask"]
    labels = ids.masked_fill(mask == 0, -100)
    for i, (name, (cls, kw)) in enumerate(configs().items()):
        torch.manual_seed(100 + i)
        cfg = cls(**kw)
        cfg._attn_implementation = "eager"
        model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").eval()
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "norm" in n:  # away from init (Gemma's (1 + w) starts at w = 0, the others at 1)
                    p.add_(torch.randn_like(p) * 0.3)
        d = os.path.join(ROOT, "families", name)
        shutil.rmtree(d, ignore_errors=True)
        model.save_pretrained(d)
        base = AutoModelForCausalLM.from_pretrained(d, attn_implementation="eager").eval()
        with torch.no_grad():
            res[f"{name}.base.logits"] = base(input_ids=ids, attention_mask=mask).logits
        torch.manual_seed(200 + i)
        peft = get_peft_model(base, LoraConfig(task_type=TaskType.CAUSAL_LM, r=4, lora_alpha=8, init_lora_weights=False,
                                               target_modules=TARGETS.get(name, DEFAULT_TARGETS)))
        ad = os.path.join(ROOT, "families", name + "-lora")
        shutil.rmtree(ad, ignore_errors=True)
        peft.save_pretrained(ad)
        base = AutoModelForCausalLM.from_pretrained(d, attn_implementation="eager")
        m = PeftModel.from_pretrained(base, ad, is_trainable=True).eval()
        o = m(input_ids=ids, attention_mask=mask, labels=labels)
        res[f"{name}.lora.logits"] = o.logits.detach()
        res[f"{name}.lora.nll"] = o.loss.detach().reshape(1)
        if name in GRADIENTS:
            o.loss.backward()
            for n, p in m.named_parameters():
                if p.requires_grad and p.grad is not None:
                    res[f"{name}.grad." + n.removeprefix("base_model.model.").replace(".default", "")] = p.grad.detach().contiguous()
        print(name, "logits", tuple(o.logits.shape), "nll", float(o.loss))
    save_file({k: v.contiguous() for k, v in res.items()}, os.path.join(ROOT, "families", "refs.safetensors"))
