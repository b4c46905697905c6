"""The decoder families as llama.cpp files: tiny random models whose settings llama.cpp represents (what its
GGUF keeps and what its loader assumes: Gemma's query scale = head_dim, Gemma 3's sliding pattern of 6 and
local θ from rope.freq_base_swa, no sliding windows on llama/qwen3/phi3), converted by llama.cpp's own
convert_hf_to_gguf.py (F32), with a PEFT adapter each converted by its convert_lora_to_gguf.py, and
transformers' logits with and without the adapter:

    LLAMA_CPP=/path/to/llama.cpp python Fixtures/generate.py gguf-families

LLAMA_CPP is a llama.cpp source tree (the one vendored in llama-cpp-python's sdist works:
vendor/llama.cpp of llama_cpp_python-0.3.36.tar.gz). The tiny models have no tokenizer, so the converter's
set_vocab is replaced by one that records the vocabulary size only. Writes Fixtures/gguf-families/: <arch>.gguf,
<arch>-lora/ (PEFT), <arch>-lora.gguf (llama.cpp's), refs.safetensors. Oracle only: CI reads the outputs."""
import json
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(ROOT, "gguf-families")
IDS = [[1, 5, 9, 13, 7, 3, 22, 41, 17, 30, 8, 2], [1, 8, 4, 3, 50, 61, 12, 9, 0, 0, 0, 0]]
MASK = [[1] * 12, [1] * 8 + [0] * 4]

RUNNER = r'''
import sys
sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[1] + "/gguf-py")
import conversion.base as base
def set_vocab(self):
    self.gguf_writer.add_vocab_size(self.hparams["vocab_size"])
# Every model class (loaded lazily, most with their own set_vocab) gets the size-only one.
@classmethod
def init_subclass(cls, **kw):
    super(base.TextModel, cls).__init_subclass__(**kw)
    cls.set_vocab = set_vocab
base.TextModel.__init_subclass__ = init_subclass
base.TextModel.set_vocab = set_vocab
script = sys.argv[2]
sys.argv = [script] + sys.argv[3:]
import runpy
runpy.run_path(script, run_name="__main__")
'''


def configs():
    from transformers import (Gemma2Config, Gemma3TextConfig, LlamaConfig, MistralConfig, Phi3Config, Qwen2Config,
                              Qwen3Config)
    common = dict(vocab_size=64, hidden_size=16, intermediate_size=24, num_hidden_layers=3, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=64, initializer_range=0.4)
    return {
        # Llama 3.1 RoPE: llama.cpp keeps it as the rope_freqs tensor.
        "llama": (LlamaConfig, dict(common, head_dim=8, tie_word_embeddings=False,
                                     rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                   "high_freq_factor": 4.0, "original_max_position_embeddings": 64})),
        # Mistral is llama.cpp's llama architecture (no sliding window there, none here).
        "mistral": (MistralConfig, dict(common, head_dim=8, sliding_window=None, tie_word_embeddings=False)),
        "qwen2": (Qwen2Config, dict(common, tie_word_embeddings=False)),
        "qwen3": (Qwen3Config, dict(common, head_dim=8, tie_word_embeddings=True)),
        "gemma2": (Gemma2Config, dict(common, head_dim=8, query_pre_attn_scalar=8, sliding_window=4,
                                       attn_logit_softcapping=2.0, final_logit_softcapping=3.0)),
        # Six layers: llama.cpp's Gemma 3 pattern (five local, one global); local θ 100.
        "gemma3": (Gemma3TextConfig, dict(common, num_hidden_layers=6, head_dim=8, query_pre_attn_scalar=8,
                                           sliding_window=4, sliding_window_pattern=6, rope_local_base_freq=100.0,
                                           rope_theta=10000.0, final_logit_softcapping=4.0)),
        "phi3": (Phi3Config, dict(common, hidden_size=32, partial_rotary_factor=0.5, sliding_window=None,
                                   tie_word_embeddings=False, pad_token_id=0, original_max_position_embeddings=64)),
    }


TARGETS = {"phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]}
DEFAULT_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def run(script, args):
    lcpp = os.environ["LLAMA_CPP"]
    subprocess.run([sys.executable, "-c", RUNNER, lcpp, os.path.join(lcpp, script)] + args, check=True,
                   stdout=subprocess.DEVNULL)


def gguf_families():
    import tempfile
    import torch
    from transformers import AutoModelForCausalLM
    from peft import LoraConfig, PeftModel, TaskType, get_peft_model
    from safetensors.torch import save_file
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    res = {"ids": torch.tensor(IDS), "mask": torch.tensor(MASK)}
    ids, mask = res["ids"], res["mask"]
    tmp = tempfile.mkdtemp()
    for i, (name, (cls, kw)) in enumerate(configs().items()):
        torch.manual_seed(300 + i)
        cfg = cls(**kw)
        model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").eval()
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "norm" in n:
                    p.add_(torch.randn_like(p) * 0.3)
        d = os.path.join(tmp, name)
        model.save_pretrained(d)
        # Gemma 3's converter trims the embedding to the tokenizer's size: give it the full size.
        with open(os.path.join(d, "tokenizer.json"), "w") as f:
            json.dump({"model": {"vocab": {f"t{k}": k for k in range(cfg.vocab_size)}}, "added_tokens": []}, f)
        base = AutoModelForCausalLM.from_pretrained(d, attn_implementation="eager").eval()
        with torch.no_grad():
            res[f"{name}.base.logits"] = base(input_ids=ids, attention_mask=mask).logits
        torch.manual_seed(400 + i)
        peft = get_peft_model(base, LoraConfig(task_type=TaskType.CAUSAL_LM, r=4, lora_alpha=8, init_lora_weights=False,
                                               target_modules=TARGETS.get(name, DEFAULT_TARGETS)))
        ad = os.path.join(OUT, name + "-lora")
        peft.save_pretrained(ad)
        base = AutoModelForCausalLM.from_pretrained(d, attn_implementation="eager")
        m = PeftModel.from_pretrained(base, ad).eval()
        with torch.no_grad():
            res[f"{name}.lora.logits"] = m(input_ids=ids, attention_mask=mask).logits
        run("convert_hf_to_gguf.py", ["--outtype", "f32", "--outfile", os.path.join(OUT, name + ".gguf"), d])
        run("convert_lora_to_gguf.py", ["--outtype", "f32", "--base", d, "--outfile", os.path.join(OUT, name + "-lora.gguf"), ad])
        print(name, "ok")
    save_file({k: v.contiguous() for k, v in res.items()}, os.path.join(OUT, "refs.safetensors"))
    shutil.rmtree(tmp)
