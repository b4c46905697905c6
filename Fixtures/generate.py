#!/usr/bin/env python3
"""Generates the committed reference fixtures with the real libraries (the oracle).

Run from the repository root with a venv holding torch, transformers, peft 0.21, safetensors, numpy, gguf:
    python Fixtures/generate.py            # writes Fixtures/*
    python Fixtures/generate.py smollm2 GGUF_PATH   # reference tensors/logits of the real SmolLM2 GGUF
    python Fixtures/generate.py coto-trajectory     # PEFT + the seed's CoTo callback, step by step
    python Fixtures/generate.py lego                # LoRA-LEGO as the public reference computes it (sklearn)
    python Fixtures/generate.py families            # tiny Llama 3/Mistral/Qwen3/Gemma 2/Gemma 3/Phi-3 + adapters (families.py)
    LLAMA_CPP=DIR python Fixtures/generate.py gguf-families  # the families as llama.cpp GGUFs + LoRA GGUFs (gguf_families.py)
    python Fixtures/generate.py kquants             # random blocks of every GGUF quant type, gguf-py's values (kquants.py)
    python Fixtures/generate.py regmean             # RegMean's activation Grams and merges, PEFT forward hooks (regmean.py)
CI never runs this; the outputs are committed and compared by the Swift tests.
"""
import json, os, sys, shutil
import numpy as np

ROOT = os.path.dirname(os.path.abspath(__file__))


def out(*p):
    path = os.path.join(ROOT, *p)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path


def codecs():
    """Float32 -> bf16 (torch), f16 (numpy) bit patterns, and f8 decodes (torch), for the Swift codec tests."""
    import torch
    from safetensors.numpy import save_file
    rng = np.random.default_rng(0)
    special = np.array([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, 65504.0, 65520.0, 65519.99, 1e-8, 6e-8,
                        5.96e-8, 2.98e-8, 2.9802322e-08, 6.1e-5, 6.103515625e-05, 3.0e38, -3.0e38, 1.17549435e-38,
                        1e-45, 3.3895314e38, 3.4028235e38, 0.1, 1 / 3, 1.00390625, 1.01171875, 1.0078125, 256.5],
                       dtype=np.float32)
    # Random bit patterns cover every exponent, subnormals and NaN payloads.
    bits = rng.integers(0, 2**32, size=4000, dtype=np.uint64).astype(np.uint32)
    x = np.concatenate([special, bits.view(np.float32), rng.standard_normal(2000).astype(np.float32)])
    t = torch.from_numpy(x.copy())
    bf16 = t.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    f16 = x.astype(np.float16).view(np.uint16)
    codes = np.arange(256, dtype=np.uint8)
    e4m3 = torch.from_numpy(codes.copy()).view(torch.float8_e4m3fn).to(torch.float32).numpy()
    e5m2 = torch.from_numpy(codes.copy()).view(torch.float8_e5m2).to(torch.float32).numpy()
    save_file({"input": x, "bf16": bf16, "f16": f16, "f8_e4m3": e4m3, "f8_e5m2": e5m2},
              out("codecs.safetensors"), metadata={"format": "np"})


def safetensors_reference():
    """Files written by the reference writer: the Swift writer must produce identical bytes."""
    import torch
    from safetensors.numpy import save_file
    from safetensors.torch import save_file as save_torch
    rng = np.random.default_rng(1)
    tensors = {
        "z.last": rng.standard_normal((3, 5)).astype(np.float32),
        "a.first": rng.standard_normal((7,)).astype(np.float64),
        "m.half": rng.standard_normal((2, 3)).astype(np.float16),
        "b.int": rng.integers(-100, 100, (4, 2)).astype(np.int32),
        "c.long": rng.integers(-1000, 1000, (3,)).astype(np.int64),
        "d.u8": rng.integers(0, 255, (5,)).astype(np.uint8),
        "e.i8": rng.integers(-100, 100, (5,)).astype(np.int8),
        "f.bool": rng.integers(0, 2, (3,)).astype(np.bool_),
        "g.i16": rng.integers(-100, 100, (3,)).astype(np.int16),
        "h.u16": rng.integers(0, 1000, (3,)).astype(np.uint16),
        "i.u32": rng.integers(0, 1000, (3,)).astype(np.uint32),
        "j.u64": rng.integers(0, 1000, (3,)).astype(np.uint64),
        "k.scalar": np.array(3.5, dtype=np.float32),
        "l.empty": np.zeros((0, 4), dtype=np.float32),
        "name with \"quotes\" and \u00e9": np.ones((2,), dtype=np.float32),
    }
    save_file(tensors, out("safetensors", "reference_numpy.safetensors"), metadata={"format": "pt"})
    save_file({"x": np.arange(6, dtype=np.float32).reshape(2, 3)}, out("safetensors", "reference_nometa.safetensors"))
    tt = {"w": torch.arange(12, dtype=torch.float32).reshape(3, 4).to(torch.bfloat16),
          "f8a": torch.tensor([0.5, -2.0, 448.0]).to(torch.float8_e4m3fn),
          "f8b": torch.tensor([0.5, -2.0, 57344.0]).to(torch.float8_e5m2)}
    save_torch(tt, out("safetensors", "reference_torch.safetensors"), metadata={"format": "pt"})


def tiny_models():
    import torch
    from transformers import BertConfig, BertForSequenceClassification, LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    bc = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                    max_position_embeddings=32, type_vocab_size=2, num_labels=3)
    bert = BertForSequenceClassification(bc).eval()
    d = out("tiny-bert", "x")
    shutil.rmtree(os.path.dirname(d), ignore_errors=True)
    bert.save_pretrained(os.path.dirname(d))
    bert.save_pretrained(os.path.dirname(out("tiny-bert-sharded", "x")), max_shard_size="8KB")
    bert.to(torch.bfloat16).save_pretrained(os.path.dirname(out("tiny-bert-bf16", "x")))
    bert = BertForSequenceClassification.from_pretrained(os.path.dirname(d)).eval()
    bert.to(torch.float16).save_pretrained(os.path.dirname(out("tiny-bert-f16", "x")))

    torch.manual_seed(1)
    lc = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=True)
    llama = LlamaForCausalLM(lc).eval()
    llama.save_pretrained(os.path.dirname(out("tiny-llama", "x")))


def peft_adapters():
    """PEFT adapters on the tiny models, with non-zero B so every tensor carries information."""
    import torch
    from transformers import BertForSequenceClassification, LlamaForCausalLM
    from peft import LoraConfig, get_peft_model, TaskType
    variants = {
        "lora": dict(r=4, lora_alpha=8, target_modules=["query", "value"], modules_to_save=["classifier"]),
        "rslora": dict(r=4, lora_alpha=8, use_rslora=True, target_modules=["query", "value"]),
        "patterns": dict(r=4, lora_alpha=8, target_modules=["query", "key", "value", "dense"],
                         rank_pattern={"layer.1.attention.self.query": 2, "output.dense": 3},
                         alpha_pattern={"key": 16, "dense": 5}),
        "dora": dict(r=2, lora_alpha=4, use_dora=True, target_modules=["query", "value"]),
        "bias": dict(r=2, lora_alpha=2, lora_bias=True, target_modules=["query"]),
        "embedding": dict(r=2, lora_alpha=4, target_modules=["word_embeddings", "query"]),
    }
    summary = {}
    for name, kw in variants.items():
        torch.manual_seed(2)
        base = BertForSequenceClassification.from_pretrained(os.path.join(ROOT, "tiny-bert")).eval()
        cfg = LoraConfig(task_type=TaskType.SEQ_CLS, init_lora_weights=False, **kw)
        model = get_peft_model(base, cfg)
        d = os.path.join(ROOT, "peft", "bert-" + name)
        shutil.rmtree(d, ignore_errors=True)
        model.save_pretrained(d)
        summary["bert-" + name] = module_summary(model)
    torch.manual_seed(3)
    base = LlamaForCausalLM.from_pretrained(os.path.join(ROOT, "tiny-llama")).eval()
    model = get_peft_model(base, LoraConfig(task_type=TaskType.CAUSAL_LM, r=4, lora_alpha=16, init_lora_weights=False,
                                            target_modules=["q_proj", "v_proj", "down_proj"]))
    d = os.path.join(ROOT, "peft", "llama-lora")
    shutil.rmtree(d, ignore_errors=True)
    model.save_pretrained(d)
    summary["llama-lora"] = module_summary(model)
    with open(out("peft", "expected.json"), "w") as f:
        json.dump(summary, f, indent=1, sort_keys=True)


def bias_alpha():
    """A lora_bias adapter with lora_alpha != r (the bias is scaled too: PEFT adds s * lora_B.bias) and the
    tiny BERT's logits and hidden states with it, in their own small reference file."""
    import torch
    from transformers import BertForSequenceClassification
    from peft import LoraConfig, get_peft_model, TaskType, PeftModel
    from safetensors.torch import save_file
    torch.manual_seed(12)
    base = BertForSequenceClassification.from_pretrained(os.path.join(ROOT, "tiny-bert")).eval()
    cfg = LoraConfig(task_type=TaskType.SEQ_CLS, init_lora_weights=False, r=2, lora_alpha=7, lora_bias=True,
                     target_modules=["query", "value"])
    model = get_peft_model(base, cfg)
    with torch.no_grad():  # a bias large enough to move the logits visibly
        for n, p in model.named_parameters():
            if "lora_B" in n and n.endswith("bias"):
                p.copy_(torch.randn_like(p) * 0.5)
    d = os.path.join(ROOT, "peft", "bert-bias-alpha")
    shutil.rmtree(d, ignore_errors=True)
    model.save_pretrained(d)
    ids = torch.tensor([[2, 5, 9, 13, 7, 3], [2, 8, 4, 3, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    m = PeftModel.from_pretrained(BertForSequenceClassification.from_pretrained(os.path.join(ROOT, "tiny-bert")).eval(), d).eval()
    with torch.no_grad():
        o = m(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    save_file({"bert.bert-bias-alpha.logits": o.logits.contiguous(), "bert.bert-bias-alpha.hidden0": o.hidden_states[1].contiguous(),
               "bert.bert-bias-alpha.hidden_last": o.hidden_states[-1].contiguous()}, out("model", "bias_alpha_refs.safetensors"))


def merge_inputs():
    """Adapters for the merge oracle: no modules_to_save (PEFT refuses to merge two heads)."""
    import torch
    from transformers import BertForSequenceClassification
    from peft import LoraConfig, get_peft_model
    specs = {
        "merge-a": (5, dict(r=4, lora_alpha=8, target_modules=["query", "value"])),
        "merge-b": (6, dict(r=4, lora_alpha=16, target_modules=["query", "value", "key"])),
        "merge-c": (7, dict(r=8, lora_alpha=8, target_modules=["query", "value"])),
    }
    for name, (seed, kw) in specs.items():
        torch.manual_seed(seed)
        base = BertForSequenceClassification.from_pretrained(os.path.join(ROOT, "tiny-bert")).eval()
        model = get_peft_model(base, LoraConfig(init_lora_weights=False, **kw))
        d = os.path.join(ROOT, "peft", name)
        shutil.rmtree(d, ignore_errors=True)
        model.save_pretrained(d)


MERGE_CASES = [
    # (case name, adapters, weights, combination_type, kwargs)
    ("linear", ["merge-a", "merge-b"], [0.7, 0.3], "linear", {}),
    ("linear_negative", ["merge-a", "merge-b"], [1.0, -0.5], "linear", {}),
    ("ties", ["merge-a", "merge-b"], [0.7, 0.3], "ties", {"density": 0.5}),
    ("ties_frequency", ["merge-a", "merge-b"], [0.7, 0.3], "ties", {"density": 0.5, "majority_sign_method": "frequency"}),
    ("dare_linear_d1", ["merge-a", "merge-b"], [0.7, 0.3], "dare_linear", {"density": 1.0}),
    ("dare_ties_d1", ["merge-a", "merge-b"], [0.7, 0.3], "dare_ties", {"density": 1.0}),
    ("magnitude_prune", ["merge-a", "merge-b"], [0.7, 0.3], "magnitude_prune", {"density": 0.5}),
    ("cat", ["merge-a", "merge-c"], [0.7, 0.3], "cat", {}),
    ("svd", ["merge-a", "merge-c"], [0.7, 0.3], "svd", {}),
    ("svd_rank2", ["merge-a", "merge-b"], [0.7, 0.3], "svd", {"svd_rank": 2}),
    ("svd_clamp", ["merge-a", "merge-b"], [0.7, 0.3], "svd", {"svd_clamp": 0.9}),
    ("ties_svd", ["merge-a", "merge-c"], [0.7, 0.3], "ties_svd", {"density": 0.5}),
    ("dare_linear_svd_d1", ["merge-a", "merge-b"], [0.7, 0.3], "dare_linear_svd", {"density": 1.0}),
    ("dare_ties_svd_d1", ["merge-a", "merge-b"], [0.7, 0.3], "dare_ties_svd", {"density": 1.0}),
    ("magnitude_prune_svd", ["merge-a", "merge-b"], [0.7, 0.3], "magnitude_prune_svd", {"density": 0.5}),
]


def merges():
    """PEFT add_weighted_adapter results: per module the merged A, B and delta (get_delta_weight)."""
    import torch
    from transformers import BertForSequenceClassification
    from peft import PeftModel
    from peft.tuners.lora import LoraLayer
    from safetensors.torch import save_file
    cases = {}
    for case, adapters, weights, ctype, kw in MERGE_CASES:
        base = BertForSequenceClassification.from_pretrained(os.path.join(ROOT, "tiny-bert")).eval()
        model = PeftModel.from_pretrained(base, os.path.join(ROOT, "peft", adapters[0]), adapter_name=adapters[0])
        for a in adapters[1:]:
            model.load_adapter(os.path.join(ROOT, "peft", a), adapter_name=a)
        model.add_weighted_adapter(adapters, weights, "merged", combination_type=ctype, **kw)
        res = {}
        for n, m in model.named_modules():
            if isinstance(m, LoraLayer) and "merged" in m.lora_A:
                key = n.removeprefix("base_model.model.")
                res[key + ".A"] = m.lora_A["merged"].weight.detach().contiguous()
                res[key + ".B"] = m.lora_B["merged"].weight.detach().contiguous()
                res[key + ".delta"] = m.get_delta_weight("merged").detach().contiguous()
        cfg = model.peft_config["merged"]
        save_file(res, out("merges", case + ".safetensors"), metadata={"r": str(cfg.r), "lora_alpha": str(cfg.lora_alpha)})
        cases[case] = {"adapters": adapters, "weights": weights, "combination_type": ctype, **kw}
    with open(out("merges", "cases.json"), "w") as f:
        json.dump(cases, f, indent=1)


def fused():
    """PEFT merge_and_unload + save_pretrained of the tiny BERT with adapters (f32 and bf16 bases)."""
    import torch
    from transformers import BertForSequenceClassification
    from peft import PeftModel
    for name, base_dir, adapter in [("lora", "tiny-bert", "bert-lora"), ("dora", "tiny-bert", "bert-dora"),
                                    ("bias", "tiny-bert", "bert-bias"), ("embedding", "tiny-bert", "bert-embedding"),
                                    ("patterns", "tiny-bert", "bert-patterns"), ("lora-bf16", "tiny-bert-bf16", "bert-lora")]:
        base = BertForSequenceClassification.from_pretrained(os.path.join(ROOT, base_dir), dtype="auto").eval()
        model = PeftModel.from_pretrained(base, os.path.join(ROOT, "peft", adapter)).merge_and_unload()
        d = os.path.join(ROOT, "fused", name)
        shutil.rmtree(d, ignore_errors=True)
        model.save_pretrained(d)
        for extra in os.listdir(d):
            if extra not in ("model.safetensors",):
                os.remove(os.path.join(d, extra))


def module_summary(model):
    """Per LoRA module: r, scaling and ||s B A||_F as PEFT computes them (delta from get_delta_weight)."""
    from peft.tuners.lora import LoraLayer
    res = {}
    for n, m in model.named_modules():
        if isinstance(m, LoraLayer) and "default" in m.r:
            key = n.removeprefix("base_model.model.")
            delta = m.get_delta_weight("default").float()
            res[key] = {"r": m.r["default"], "scaling": float(m.scaling["default"]),
                        "delta_norm": float(delta.norm()), "dora": bool(m.use_dora.get("default", False))}
    return res


def tiny_gguf():
    """A small GGUF with every metadata value type and the tensor types we dequantize."""
    import gguf
    from gguf.quants import quantize, dequantize
    rng = np.random.default_rng(4)
    path = out("gguf", "tiny.gguf")
    w = gguf.GGUFWriter(path, arch="llama")
    w.add_uint8("test.u8", 200); w.add_int8("test.i8", -5); w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -300); w.add_uint32("test.u32", 4000000000); w.add_int32("test.i32", -7)
    w.add_float32("test.f32", 1.5); w.add_uint64("test.u64", 2**40 + 3); w.add_int64("test.i64", -(2**40))
    w.add_float64("test.f64", 2.25); w.add_bool("test.bool", True); w.add_string("test.str", "h\u00e9llo")
    w.add_array("test.arr_i32", [1, -2, 3]); w.add_array("test.arr_str", ["a", "bc"])
    expected = {}
    for name, qt in [("t.f32", gguf.GGMLQuantizationType.F32), ("t.f16", gguf.GGMLQuantizationType.F16),
                     ("t.q8_0", gguf.GGMLQuantizationType.Q8_0), ("t.q4_0", gguf.GGMLQuantizationType.Q4_0),
                     ("t.q4_1", gguf.GGMLQuantizationType.Q4_1)]:
        x = rng.standard_normal((3, 64)).astype(np.float32)
        if qt == gguf.GGMLQuantizationType.F32:
            q = x
        elif qt == gguf.GGMLQuantizationType.F16:
            q = x.astype(np.float16)
        else:
            q = quantize(x, qt)
        w.add_tensor(name, q, raw_dtype=qt)
        expected[name] = dequantize(q, qt).astype(np.float32).reshape(3, 64) if qt not in (
            gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16) else q.astype(np.float32)
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
    from safetensors.numpy import save_file
    save_file(expected, out("gguf", "tiny_expected.safetensors"))


def smollm2(gguf_path):
    """Reference for the real SmolLM2 GGUF: dequantized tensors (slices) and logits, as transformers loads it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    d, f = os.path.dirname(gguf_path), os.path.basename(gguf_path)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, torch_dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    texts = ["The quick brown fox jumps over the lazy dog.", "Hello, world! 123 caf\u00e9", "  spaces\tand\nnewlines"]
    ids = [tok(t)["input_ids"] for t in texts]
    sd = model.state_dict()
    ref = {}
    for name in ["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
                 "model.layers.0.self_attn.k_proj.weight", "model.layers.0.self_attn.v_proj.weight",
                 "model.layers.29.mlp.down_proj.weight", "model.norm.weight", "model.layers.3.input_layernorm.weight"]:
        t = sd[name].float()
        ref["slice:" + name] = t.reshape(t.shape[0], -1)[:4, :16].contiguous().numpy()
        ref["sum:" + name] = np.array([float(t.double().sum()), float(t.double().abs().sum())], dtype=np.float64)
    with torch.no_grad():
        x = torch.tensor([ids[0]])
        logits = model(x).logits[0]
    ref["logits:ids"] = np.array(ids[0], dtype=np.int64)
    ref["logits:last_rows"] = logits[:, :32].contiguous().numpy()
    from safetensors.numpy import save_file
    save_file(ref, out("smollm2", "reference.safetensors"),
              metadata={"config": json.dumps(model.config.to_dict(), sort_keys=True, default=str),
                        "token_ids": json.dumps({t: i for t, i in zip(texts, ids)})})


def verify_converted(gguf_path, converted_dir):
    """transformers on our converted directory must give the logits and token ids it gives on the GGUF."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    d, f = os.path.dirname(gguf_path), os.path.basename(gguf_path)
    ref = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, torch_dtype=torch.float32).eval()
    ours = AutoModelForCausalLM.from_pretrained(converted_dir, torch_dtype=torch.float32).eval()
    tref = AutoTokenizer.from_pretrained(d, gguf_file=f)
    tours = AutoTokenizer.from_pretrained(converted_dir)
    texts = ["The quick brown fox jumps over the lazy dog.", "Hello, world! 123 caf\u00e9", "  spaces\tand\nnewlines",
             "<|im_start|>user\nWhat is 2+2?<|im_end|>"]
    for t in texts:
        a, b = tref(t)["input_ids"], tours(t)["input_ids"]
        assert a == b, (t, a, b)
    x = torch.tensor([tref(texts[0])["input_ids"]])
    with torch.no_grad():
        la, lb = ref(x).logits, ours(x).logits
    diff = (la - lb).abs().max().item()
    print(f"token ids identical on {len(texts)} texts; max |logit diff| = {diff:.3g}")
    assert diff <= 1e-4, diff


def verify_adapter(base_dir, original_dir, ours_dir):
    """PEFT loads an adapter we wrote and gives the outputs it gives with the original."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoModelForCausalLM
    from peft import PeftModel
    cfg = json.load(open(os.path.join(original_dir, "adapter_config.json")))
    cls = AutoModelForCausalLM if cfg.get("task_type") == "CAUSAL_LM" else AutoModelForSequenceClassification
    x = torch.tensor([[1, 5, 9, 13, 2, 7]])
    outs = []
    for d in (original_dir, ours_dir):
        torch.manual_seed(0)
        base = cls.from_pretrained(base_dir).eval()
        m = PeftModel.from_pretrained(base, d).eval()
        with torch.no_grad():
            outs.append(m(x).logits)
    diff = (outs[0] - outs[1]).abs().max().item()
    print(f"{ours_dir}: max |logit diff| vs original = {diff:.3g}")
    assert diff <= 1e-5, diff


def verify_deltas(base_dir, adapter_dir, inspect_json):
    """PEFT loads an adapter coto wrote (merge/prune output) with every module's delta as coto reports it."""
    import torch, warnings
    from transformers import AutoModelForSequenceClassification
    from peft import PeftModel
    from peft.tuners.lora import LoraLayer
    ours = {m["name"]: m for m in json.load(open(inspect_json))["modules"]}
    base = AutoModelForSequenceClassification.from_pretrained(base_dir).eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = PeftModel.from_pretrained(base, adapter_dir)
    missing = [str(w.message) for w in caught if "missing" in str(w.message).lower() or "unexpected" in str(w.message).lower()]
    assert not missing, missing
    seen = set()
    for n, m in model.named_modules():
        if isinstance(m, LoraLayer) and "default" in m.r:
            key = n.removeprefix("base_model.model.")
            seen.add(key)
            d = float(m.get_delta_weight("default").float().norm())
            assert abs(d - ours[key]["delta_norm"]) <= 1e-5 * max(1, d), (key, d, ours[key]["delta_norm"])
    assert seen == set(ours), (sorted(seen ^ set(ours)))
    print(f"{adapter_dir}: PEFT loads {len(seen)} modules, no missing/unexpected keys, deltas match coto's")


def tokenizer_corpus():
    """A few hundred lines: WordNet glosses plus hand-made hard cases."""
    lines = [
        "Héllo wörld, naïve café résumé Ångström", "北京欢迎你 and 東京 mixed with English", "emoji 😀👍🏽 family 👨‍👩‍👧 flags 🇫🇷",
        "punctuation!!! ??? ... --- ;;; :) (parens) [brackets] {braces}", "  leading and   multiple   spaces  ",
        "tabs\tand\nnewlines\r\nmixed", "numbers 1234567 3.14159 -42 1e10 0x1F 1,000,000", "def f(x): return x**2 + 1  # code",
        "if (a && b || !c) { printf(\"%d\\n\", a[i]); }", "URL https://example.com/path?q=1&r=2#frag", "e-mail: someone@example.org",
        "CamelCaseWords and snake_case_words and kebab-case-words", "don't won't it's we're they've I'm you'll he'd",
        "ÀÉÎÕÜ àéîõü ßæøœ ÇÑ", "Ελληνικά Русский текст العربية עברית हिन्दी", "ｆｕｌｌｗｉｄｔｈ　ｓｐａｃｅ", "zero\u200bwidth\u200djoiner",
        "control\x07chars\x1bhere", "", " ", "a", "supercalifragilisticexpialidocious " * 3,
        "<|im_start|>user\nhello<|im_end|>", "[CLS] [SEP] [MASK] [PAD] [UNK]", "   \n\n   trailing   ",
    ]
    glosses = []
    with open("/usr/share/wordnet/data.noun", encoding="latin-1") as f:
        for i, line in enumerate(f):
            if line.startswith("  ") or "|" not in line:
                continue
            if i % 331 == 0:
                glosses.append(line.split("|", 1)[1].strip())
            if len(glosses) >= 250:
                break
    return lines + glosses


def tokenizer_refs(minilm_dir, smollm2_converted):
    """Ids from HF tokenizers for the corpus: MiniLM (WordPiece) and the converted SmolLM2 (byte-level BPE)."""
    from tokenizers import Tokenizer
    corpus = tokenizer_corpus()
    bert = Tokenizer.from_file(os.path.join(minilm_dir, "tokenizer.json"))
    bert.no_truncation(); bert.no_padding()
    bpe = Tokenizer.from_file(os.path.join(smollm2_converted, "tokenizer.json"))
    with open(out("tokenizer", "corpus.jsonl"), "w") as f:
        for line in corpus:
            e1 = bert.encode(line)
            e2 = bpe.encode(line)
            pair = bert.encode(line, "second segment here") if len(line) % 7 == 0 else None
            rec = {"text": line, "wordpiece": e1.ids, "bpe": e2.ids}
            if len(line) % 5 == 0:
                bert.enable_truncation(max_length=12, strategy="longest_first")
                t = bert.encode(line, "a second segment of some length here")
                rec["truncated_pair"] = t.ids
                rec["truncated_pair_types"] = t.type_ids
                bert.no_truncation()
            if pair is not None:
                rec["wordpiece_pair"] = pair.ids
                rec["wordpiece_pair_types"] = pair.type_ids
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")


def peft_factors(name):
    """{module: (scaling, B, A)} of a committed PEFT adapter directory (plain LoRA, one r and alpha)."""
    from safetensors.torch import load_file
    d = os.path.join(ROOT, "peft", name)
    cfg = json.load(open(os.path.join(d, "adapter_config.json")))
    t = load_file(os.path.join(d, "adapter_model.safetensors"))
    return {k[len("base_model.model."):-len(".lora_A.weight")]: (cfg["lora_alpha"] / cfg["r"], t[k.replace("lora_A", "lora_B")], t[k])
            for k in t if k.endswith(".lora_A.weight")}


def beyond_peft_merges():
    """Dense merged deltas of the merge-* adapters computed by the reference implementations' own code:
    mergekit 0.1.5's `magnitude_outliers` and `get_mask`, combined as its GeneralizedTaskArithmeticMerge.
    merge_group does (breadcrumbs: no normalize, no rescale); Iso-C as the paper's `isotropic_sum`."""
    import torch
    from safetensors.torch import save_file
    from mergekit.sparsify import magnitude_outliers
    from mergekit.merge_methods.generalized_task_arithmetic import get_mask

    def deltas(name):
        return {m: s * (b @ a) for m, (s, b, a) in peft_factors(name).items()}
    da, db = deltas("merge-a"), deltas("merge-b")
    res = {}
    for case, weights, ties in (("breadcrumbs", [0.7, 0.3], False), ("breadcrumbs_ties", [1.0, 0.6], True)):
        for m in sorted(set(da) | set(db)):
            ds = [d.get(m, torch.zeros_like(next(iter(da.values())))) for d in (da, db)]
            sp = torch.stack([magnitude_outliers(x.clone(), density=0.5, gamma=0.1) for x in ds])
            w = torch.tensor(weights, dtype=sp.dtype).view(-1, 1, 1)
            sp = sp * w
            if ties:
                mixed = (sp * get_mask(sp, method="sum", mask_dtype=sp.dtype)).sum(0)
            else:
                mixed = sp.sum(0)
            res[f"{case}.{m}.delta"] = mixed.contiguous()
    # Iso-C with the reference code's lines (danielm1405/iso-merging `isotropic_sum`): the sum of the three
    # adapters' deltas, thin SVD, every singular value replaced by their mean.
    dc = deltas("merge-c")
    for m in sorted(set(da) | set(db) | set(dc)):
        z = torch.zeros_like(next(iter(da.values())))
        cum = da.get(m, z) + db.get(m, z) + dc.get(m, z)
        u, sv, v = torch.linalg.svd(cum, full_matrices=False)
        iso = torch.ones_like(sv) * sv.mean()
        res[f"iso_c.{m}.delta"] = torch.linalg.multi_dot((u, torch.diag(iso), v)).contiguous()
    # TSV-M with the reference's steps (per-task thin SVD truncated to min(m, n) / T, concatenation, polar
    # factors by SVD, U_perp diag(s) V_perp) on merge-c and merge-d (r = 8 = 16 / 2: every kept triplet is
    # a real one). merge-d is made here (PEFT, seed 9, r 8, alpha 16 on query/value).
    from transformers import BertForSequenceClassification
    from peft import LoraConfig, get_peft_model
    torch.manual_seed(9)
    md = get_peft_model(BertForSequenceClassification.from_pretrained(os.path.join(ROOT, "tiny-bert")).eval(),
                        LoraConfig(init_lora_weights=False, r=8, lora_alpha=16, target_modules=["query", "value"]))
    dd = os.path.join(ROOT, "peft", "merge-d")
    shutil.rmtree(dd, ignore_errors=True)
    md.save_pretrained(dd)
    for f in os.listdir(dd):
        if f == "README.md":
            os.remove(os.path.join(dd, f))
    d4 = deltas("merge-d")
    for m in sorted(dc):
        mats = [dc[m], d4[m]]
        decs = [torch.linalg.svd(x, full_matrices=False) for x in mats]
        k = max(1, int(min(mats[0].shape) * (1 / len(mats))))
        left = torch.cat([u[:, :k] for u, _, _ in decs], 1)
        vals = torch.cat([s[:k] for _, s, _ in decs])
        right = torch.cat([v[:k] for _, _, v in decs], 0)
        lu, _, lv = torch.linalg.svd(left, full_matrices=False)
        ru, _, rv = torch.linalg.svd(right, full_matrices=False)
        res[f"tsv.{m}.delta"] = torch.linalg.multi_dot((lu @ lv, torch.diag(vals), ru @ rv)).contiguous()
    # DELLA and DELLA-linear (mergekit's della_magprune through its `sparsify`, l1 rescale; consensus and
    # normalize as merge_group does). Its Bernoulli draws are recorded (torch.bernoulli wrapped) with their
    # probabilities, so the test can replay them.
    from mergekit.sparsify import sparsify, SparsificationMethod, RescaleNorm
    drawn = []
    bernoulli = torch.bernoulli
    def recording(p, *args, **kwargs):
        m = bernoulli(p, *args, **kwargs)
        drawn.append((p.clone(), m.clone()))
        return m
    torch.manual_seed(21)
    torch.bernoulli = recording
    try:
        for case, weights, linear in (("della", [1.0, 0.6], False), ("della_linear", [0.7, 0.3], True)):
            for m in sorted(set(da) | set(db)):
                z = torch.zeros_like(next(iter(da.values())))
                drawn.clear()
                sp = torch.stack([sparsify(x.clone(), density=0.5, method=SparsificationMethod.della_magprune, epsilon=0.2,
                                           rescale_norm=RescaleNorm.l1) for x in (da.get(m, z), db.get(m, z))])
                for i, (p, msk) in enumerate(drawn):
                    res[f"{case}.{m}.probs{i}"] = p.float().contiguous()
                    res[f"{case}.{m}.mask{i}"] = msk.float().contiguous()
                w = torch.tensor(weights, dtype=sp.dtype).view(-1, 1, 1)
                sp = sp * w
                if linear:
                    mixed = sp.sum(0)
                else:
                    mask = get_mask(sp, method="sum", mask_dtype=sp.dtype)
                    mixed = (sp * mask).sum(0)
                    divisor = (w * mask).sum(0)
                    divisor[divisor == 0] = 1
                    mixed = mixed / divisor
                res[f"{case}.{m}.delta"] = mixed.contiguous()
    finally:
        torch.bernoulli = bernoulli
    save_file(res, out("beyond-peft", "merges.safetensors"),
              metadata={"density": "0.5", "gamma": "0.1", "weights.breadcrumbs": "0.7,0.3", "weights.breadcrumbs_ties": "1.0,0.6"})


def svd_space_merges():
    """KnOTS (gstoica27/KnOTS `SVDMerger` with `ties_masking` and `masked_merge`) and Core Space merging
    (apanariello4/core-space-merging `MatrixPerLayerMerger`, merge_space "core") on merge-a, merge-b,
    merge-c (ranks 4, 4, 8: mixed; key only in merge-b) and merge-c + merge-d (ranks 8, 8: TSV's per-task rank is a real one),
    following the references' steps: float64 SVDs, their top-k rule (keep |x| >= the (d - int(d K))-th
    smallest |x|), sign of the summed values with zeros given the majority sign, mean over the entries that
    agree, and the scaling coefficient alpha applied as they apply it. A module an input lacks is a zero
    delta (KnOTS) or left out of the stacks (Core). Written to beyond-peft/spaces.safetensors."""
    import torch
    from safetensors.torch import save_file

    def factors(name):
        return {m: ((s * b).double(), a.double()) for m, (s, b, a) in peft_factors(name).items()}

    def topk_mask(rows, K):
        # rows: [T, d]; the references' rule; K >= 1 keeps everything.
        if K >= 1:
            return torch.ones_like(rows, dtype=torch.bool)
        d = rows.shape[1]
        kth = rows.abs().kthvalue(d - int(d * K), dim=1, keepdim=True).values
        return rows.abs() >= kth

    def elect(pruned):
        sign = torch.sign(pruned.sum(0))
        sign[sign == 0] = torch.sign(sign.sum())
        return torch.where(sign.unsqueeze(0) > 0, pruned > 0, pruned < 0)

    def disjoint_mean(x):
        count = (x != 0).sum(0).double()
        return x.sum(0) / count.clamp(min=1)

    res = {}
    fa, fb, fc, fd = factors("merge-a"), factors("merge-b"), factors("merge-c"), factors("merge-d")
    trio = (fa, fb, fc)
    names = sorted(set(fa) | set(fb) | set(fc))
    dim = 16

    # KnOTS-TIES: per module the SVD of [dW_1 ... dW_T] (columns), sV_i = diag(s) V_i; one global vector per
    # task over every module (sorted names); TIES masks on it; mean of alpha * masked over the nonzero ones.
    for case, K, alpha in (("knots", 0.3, 0.8), ("knots_full", 1.0, 1.0)):
        Us, blocks = {}, {}
        for m in names:
            ds = [(f[m][0] @ f[m][1]) if m in f else torch.zeros(dim, dim, dtype=torch.float64) for f in trio]
            u, s, vh = torch.linalg.svd(torch.cat(ds, 1), full_matrices=False)
            keep = s > 1e-5
            u, s, vh = u[:, keep], s[keep], vh[keep]
            Us[m] = u
            # An input without the module has an exactly zero block (its SVD block is rounding noise, which
            # the masked mean would count as a nonzero entry).
            blocks[m] = [torch.diag(s) @ v if m in f else torch.zeros_like(v) for v, f in zip(torch.split(vh, dim, dim=1), trio)]
        reps = torch.stack([torch.cat([blocks[m][i].reshape(-1) for m in names]) for i in range(3)])
        pruned = reps * topk_mask(reps, K)
        masked = pruned * elect(pruned)
        merged = disjoint_mean(masked * alpha)
        off = 0
        for m in names:
            n = blocks[m][0].numel()
            sv = merged[off:off + n].reshape(blocks[m][0].shape)
            off += n
            res[f"{case}.{m}.delta"] = (Us[m] @ sv).float().contiguous()

    # Core space: U_B of [B_1 ... B_T], V_A of [A_1; ...; A_T], M_i = U_B^T B_i A_i V_A^T; merge the M_i;
    # delta = alpha * U_B M V_A.
    def core(fs, m):
        present = [f[m] for f in fs if m in f]
        ub = torch.linalg.svd(torch.cat([b for b, _ in present], 1), full_matrices=False)[0]
        va = torch.linalg.svd(torch.cat([a for _, a in present], 0), full_matrices=False)[2]
        return ub, [ub.T @ b @ a @ va.T for b, a in present], va

    def iso(x):
        u, s, v = torch.linalg.svd(x, full_matrices=False)
        return u @ torch.diag(torch.ones_like(s) * s.mean()) @ v

    def tsv(ms):
        T = len(ms)
        decs = [torch.linalg.svd(x, full_matrices=False) for x in ms]
        k = int(decs[0][1].shape[0] * (1 / T))
        left = torch.cat([u[:, :k] for u, _, _ in decs], 1)
        vals = torch.cat([s[:k] for _, s, _ in decs])
        right = torch.cat([v[:k] for _, _, v in decs], 0)
        lu, _, lv = torch.linalg.svd(left, full_matrices=False)
        ru, _, rv = torch.linalg.svd(right, full_matrices=False)
        return (lu @ lv) @ torch.diag(vals) @ (ru @ rv)

    for case, fs, alpha in (("core", trio, 0.8), ("core_ties", trio, 0.8), ("core_iso_c", trio, 0.8), ("core_tsv", (fc, fd), 0.8)):
        for m in sorted(set().union(*fs)):
            ub, ms, va = core(fs, m)
            if case == "core":
                merged = sum(ms)
            elif case == "core_ties":
                flat = torch.stack([x.reshape(-1) for x in ms])
                pruned = flat * topk_mask(flat, 0.4)
                merged = disjoint_mean(pruned * elect(pruned)).reshape(ms[0].shape)
            elif case == "core_iso_c":
                merged = iso(sum(ms))
            else:
                merged = tsv(ms)
            res[f"{case}.{m}.delta"] = (alpha * (ub @ merged @ va)).float().contiguous()
    save_file(res, out("beyond-peft", "spaces.safetensors"),
              metadata={"knots": "density 0.3, weights 0.8", "knots_full": "density 1, weights 1", "core": "weights 0.8",
                        "core_ties": "density 0.4, weights 0.8", "core_iso_c": "weights 0.8", "core_tsv": "merge-c + merge-d, weights 0.8"})


def f32_gguf(src, dst):
    """The GGUF with every tensor dequantized to F32 (same metadata): a llama.cpp base whose weights are
    exactly the dequantized ones transformers and coto run, so llama.cpp's own noise is all that is left."""
    from gguf import GGUFReader, GGUFWriter, GGUFValueType
    import gguf
    r = GGUFReader(src)
    w = GGUFWriter(dst, r.fields["general.architecture"].contents())
    for name, f in r.fields.items():
        if name.startswith("GGUF.") or name in ("general.architecture", "general.alignment"):
            continue
        if f.types[0] == GGUFValueType.ARRAY:
            w.add_key_value(name, f.contents(), f.types[0], sub_type=f.types[-1])
        else:
            w.add_key_value(name, f.contents(), f.types[0])
    for t in r.tensors:
        a = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        w.add_tensor(t.name, a.reshape([int(x) for x in reversed(t.shape)]))
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()


def verify_llamacpp_lora(gguf_path, converted_dir, coto_bin, work, mult=1.0):
    """llama.cpp itself (llama-cpp-python) runs SmolLM2 with adapters coto-convert wrote: the change of its
    logits from the adapter against transformers + PEFT's on the dequantized base (which equals coto-eval's
    forward to 1e-4, ForwardTests). LoRA and rsLoRA, mixed ranks (rank_pattern) on q, k, v, o and down
    (TARGETS=... to choose). Use an F32 base GGUF (`f32-gguf`) to compare without the Q4_1 noise. Printed
    beside the delta's error: how far the two systems' base logits are apart (the floor any comparison of
    theirs has) and llama.cpp with the same adapter's B set to zero against llama.cpp without it."""
    import subprocess, torch
    from transformers import AutoModelForCausalLM
    from peft import LoraConfig, get_peft_model, PeftModel
    from llama_cpp import Llama
    text = "The quick brown fox jumps over the lazy dog. Adapters change what a model says next, one token at a time."
    for name, rslora in (("lora", False), ("rslora", True)):
        torch.manual_seed(5)
        base = AutoModelForCausalLM.from_pretrained(converted_dir, dtype=torch.float32).eval()
        cfg = LoraConfig(r=8, lora_alpha=16, use_rslora=rslora, init_lora_weights=False,
                         target_modules=os.environ.get("TARGETS", "q_proj,k_proj,v_proj,o_proj,down_proj").split(","),
                         rank_pattern={k: v for k, v in {"k_proj": 4, "down_proj": 2}.items() if k in os.environ.get("TARGETS", "k_proj,down_proj")}, task_type="CAUSAL_LM")
        m = get_peft_model(base, cfg)
        with torch.no_grad():
            for n, p in m.named_parameters():
                if "lora_B" in n:
                    p.mul_(mult)  # how large a change (PEFT's init_lora_weights=False draws are small)
        d = os.path.join(work, name)
        m.save_pretrained(d)
        g = os.path.join(work, name + ".gguf")
        subprocess.run([os.path.join(coto_bin, "coto-convert"), d, "--base", gguf_path, "-q", "-o", g], check=True)
        with torch.no_grad():
            for n, p in m.named_parameters():
                if "lora_B" in n:
                    p.zero_()
        dz = os.path.join(work, name + "-zero")
        m.save_pretrained(dz)
        gz = os.path.join(work, name + "-zero.gguf")
        subprocess.run([os.path.join(coto_bin, "coto-convert"), dz, "--base", gguf_path, "-q", "-o", gz], check=True)
        llm = Llama(model_path=gguf_path, n_ctx=256, logits_all=True, n_threads=2, verbose=False)
        toks = llm.tokenize(text.encode(), add_bos=False)
        def run(lora):
            l = Llama(model_path=gguf_path, lora_path=lora, n_ctx=256, logits_all=True, n_threads=2, verbose=False) if lora else llm
            l.reset(); l.eval(toks)
            return np.array(l.scores[:len(toks)], dtype=np.float64)
        lb, la, lz = run(None), run(g), run(gz)
        ids = torch.tensor([toks])
        with torch.no_grad():
            tb = AutoModelForCausalLM.from_pretrained(converted_dir, dtype=torch.float32).eval()(ids).logits[0].double().numpy()
            pm = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(converted_dir, dtype=torch.float32).eval(), d).eval()
            ta = pm(ids).logits[0].double().numpy()
        dl, dt = la - lb, ta - tb
        rel = np.linalg.norm(dl - dt) / np.linalg.norm(dt)
        top_adapted = (la.argmax(-1) == ta.argmax(-1)).mean()
        top_base = (lb.argmax(-1) == tb.argmax(-1)).mean()
        changed = (ta.argmax(-1) != tb.argmax(-1)).mean()
        print(f"{name}: {len(toks)} positions; |delta logits| (transformers+PEFT) {np.linalg.norm(dt):.1f}, adapter changes top-1 at "
              f"{changed:.0%} of positions; llama.cpp delta vs transformers+PEFT delta: relative error {rel:.4f}; "
              f"top-1 agreement with the adapter {top_adapted:.1%} (base alone: {top_base:.1%}); "
              f"llama.cpp base vs dequantized base max |logit diff| {np.abs(lb - tb).max():.3f}; "
              f"|llama.cpp delta - reference delta| {np.linalg.norm(dl - dt):.2f}, against |llama.cpp base - reference base| "
              f"{np.linalg.norm(lb - tb):.2f} and |llama.cpp with the zero adapter - without| {np.linalg.norm(lz - lb):.2f}")


def gguf_tokenizer_ids(gguf_path):
    """Adds to tokenizer/corpus.jsonl the ids of transformers' own GGUF tokenizer for SmolLM2 (its GGUF ->
    tokenizer conversion, independent of ours): the field "bpe_transformers_gguf"."""
    from transformers import AutoTokenizer
    d, f = os.path.dirname(gguf_path), os.path.basename(gguf_path)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    path = out("tokenizer", "corpus.jsonl")
    recs = [json.loads(l) for l in open(path, encoding="utf-8") if l.strip()]
    for r in recs:
        r["bpe_transformers_gguf"] = tok(r["text"])["input_ids"]
    with open(path, "w", encoding="utf-8") as fh:
        for r in recs:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")


def model_refs(minilm_dir):
    """Logits and hidden states of the tiny models (with and without PEFT adapters, padded batch) and
    MiniLM sentence embeddings."""
    import torch
    from transformers import BertForSequenceClassification, LlamaForCausalLM, AutoModel, AutoTokenizer
    from peft import PeftModel
    from safetensors.torch import save_file
    res = {}
    bert_ids = torch.tensor([[2, 5, 9, 13, 7, 3], [2, 8, 4, 3, 0, 0]])
    bert_mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    for adapter in [None, "bert-lora", "bert-rslora", "bert-dora", "bert-bias", "bert-embedding", "bert-patterns"]:
        m = BertForSequenceClassification.from_pretrained(os.path.join(ROOT, "tiny-bert")).eval()
        if adapter:
            m = PeftModel.from_pretrained(m, os.path.join(ROOT, "peft", adapter)).eval()
        with torch.no_grad():
            o = m(input_ids=bert_ids, attention_mask=bert_mask, output_hidden_states=True)
        tag = adapter or "base"
        res[f"bert.{tag}.logits"] = o.logits
        res[f"bert.{tag}.hidden0"] = o.hidden_states[1]
        res[f"bert.{tag}.hidden_last"] = o.hidden_states[-1]
    llama_ids = torch.tensor([[1, 5, 9, 13, 7, 3], [1, 8, 4, 3, 0, 0]])
    llama_mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    for adapter in [None, "llama-lora"]:
        m = LlamaForCausalLM.from_pretrained(os.path.join(ROOT, "tiny-llama")).eval()
        if adapter:
            m = PeftModel.from_pretrained(m, os.path.join(ROOT, "peft", adapter)).eval()
        with torch.no_grad():
            o = m(input_ids=llama_ids, attention_mask=llama_mask, output_hidden_states=True)
        tag = adapter or "base"
        res[f"llama.{tag}.logits"] = o.logits
        res[f"llama.{tag}.hidden0"] = o.hidden_states[1]
        res[f"llama.{tag}.hidden_last"] = o.hidden_states[-1]
    # A Qwen2-style variant: attention biases and linear RoPE scaling.
    torch.manual_seed(4)
    from transformers import LlamaConfig
    cfg = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=1, max_position_embeddings=64, tie_word_embeddings=False, attention_bias=True,
                      rope_scaling={"rope_type": "linear", "factor": 2.0}, rope_theta=500.0)
    v = LlamaForCausalLM(cfg).eval()
    vd = os.path.join(ROOT, "tiny-llama-bias")
    shutil.rmtree(vd, ignore_errors=True)
    v.save_pretrained(vd)
    v = LlamaForCausalLM.from_pretrained(vd).eval()
    with torch.no_grad():
        res["llama-bias.logits"] = v(input_ids=llama_ids, attention_mask=llama_mask).logits
    res["bert.ids"] = bert_ids; res["bert.mask"] = bert_mask; res["llama.ids"] = llama_ids; res["llama.mask"] = llama_mask
    save_file({k: v.contiguous() for k, v in res.items()}, out("model", "tiny_refs.safetensors"))
    # MiniLM: sentence-transformers mean pooling (before its Normalize module), padded batch.
    tok = AutoTokenizer.from_pretrained(minilm_dir)
    model = AutoModel.from_pretrained(minilm_dir).eval()
    sents = ["A man is playing a guitar.", "The quick brown fox jumps over the lazy dog.", "Émigrés drink café au lait in 東京!", "short"]
    enc = tok(sents, padding=True, return_tensors="pt")
    with torch.no_grad():
        h = model(**enc).last_hidden_state
    m = enc["attention_mask"].unsqueeze(-1).float()
    emb = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
    save_file({"ids": enc["input_ids"], "mask": enc["attention_mask"], "embeddings": emb.contiguous(),
               "last_hidden": h.contiguous()}, out("model", "minilm_refs.safetensors"), metadata={"sentences": json.dumps(sents)})


LEX = {"03": "animal", "20": "plant", "06": "artifact", "18": "person", "13": "food", "08": "body", "15": "location", "27": "substance"}


def wordnet_tasks():
    """Small WordNet noun-supersense files (8 classes) and a multiple-choice file, from the Debian corpus."""
    import random, hashlib
    rows = []
    for line in open("/usr/share/wordnet/data.noun", encoding="latin-1"):
        if line.startswith("  "):
            continue
        parts = line.split(" ")
        if parts[1] not in LEX:
            continue
        n = int(parts[3], 16)
        word = parts[4].replace("_", " ")
        gloss = line.split("|", 1)[1].strip()
        rows.append((parts[0], word, gloss, LEX[parts[1]]))
    rng = random.Random(0)
    rng.shuffle(rows)
    by = {}
    for r in rows:
        by.setdefault(r[3], []).append(r)
    train, test = [], []
    for lab, rs in sorted(by.items()):
        train += rs[:100]
        test += rs[100:125]
    rng.shuffle(train); rng.shuffle(test)
    with open(out("wordnet", "noun8-train.jsonl"), "w") as f:
        for _, w, g, l in train: f.write(json.dumps({"text": f"{w}: {g}", "label": l}) + "\n")
    with open(out("wordnet", "noun8-test.jsonl"), "w") as f:
        for _, w, g, l in test: f.write(json.dumps({"text": f"{w}: {g}", "label": l}) + "\n")
    labels = sorted(LEX.values())
    with open(out("wordnet", "noun-mc.jsonl"), "w") as f:
        for _, w, g, l in test[:40]:
            choices = [l] + [x for x in rng.sample(labels, 4) if x != l][:3]
            rng.shuffle(choices)
            f.write(json.dumps({"context": f"{w} ({g.split(';')[0]}) is a kind of", "choices": [" " + c for c in choices],
                                "label": choices.index(l)}) + "\n")


def minilm_adapter(minilm_dir):
    """A LoRA + classifier adapter on MiniLM trained with PEFT on noun8-train (the real-model eval fixture),
    and transformers' logits on noun8-test."""
    import torch
    from transformers import AutoTokenizer, AutoModelForSequenceClassification
    from peft import LoraConfig, get_peft_model, TaskType
    from safetensors.torch import save_file
    torch.manual_seed(0)
    labels = sorted(LEX.values())
    tok = AutoTokenizer.from_pretrained(minilm_dir)
    model = AutoModelForSequenceClassification.from_pretrained(minilm_dir, num_labels=len(labels))
    model = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, r=4, lora_alpha=8, target_modules=["query", "value"]))
    train = [json.loads(l) for l in open(out("wordnet", "noun8-train.jsonl"))]
    test = [json.loads(l) for l in open(out("wordnet", "noun8-test.jsonl"))]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    model.train()
    for epoch in range(4):
        for i in range(0, len(train), 32):
            b = train[i:i + 32]
            enc = tok([r["text"] for r in b], padding=True, truncation=True, max_length=64, return_tensors="pt")
            y = torch.tensor([labels.index(r["label"]) for r in b])
            loss = model(**enc, labels=y).loss
            loss.backward(); opt.step(); opt.zero_grad()
    model.eval()
    d = os.path.join(ROOT, "peft", "minilm-noun8")
    shutil.rmtree(d, ignore_errors=True)
    model.save_pretrained(d)
    json.dump(labels, open(os.path.join(d, "coto_labels.json"), "w"))
    with torch.no_grad():
        enc = tok([r["text"] for r in test], padding=True, truncation=True, max_length=64, return_tensors="pt")
        logits = model(**enc).logits
    acc = float((logits.argmax(-1) == torch.tensor([labels.index(r["label"]) for r in test])).float().mean())
    save_file({"logits": logits.contiguous()}, out("wordnet", "minilm-noun8-test-logits.safetensors"), metadata={"accuracy": str(acc)})
    print("minilm noun8 test accuracy", acc)


def smollm2_mc(converted_dir):
    """lm-evaluation-harness-style log-likelihoods of each choice with transformers on the converted SmolLM2."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(converted_dir)
    model = AutoModelForCausalLM.from_pretrained(converted_dir, dtype=torch.float32).eval()
    res = []
    for line in open(out("wordnet", "noun-mc.jsonl")):
        r = json.loads(line)
        lls = []
        for c in r["choices"]:
            ctx, cont = r["context"], c
            whole = tok(ctx + cont, add_special_tokens=False)["input_ids"]
            cids = tok(ctx, add_special_tokens=False)["input_ids"]
            cont_ids = whole[len(cids):]
            inp = torch.tensor([(cids + cont_ids)[:-1]])
            with torch.no_grad():
                lp = torch.log_softmax(model(inp).logits[0].double(), -1)
            first = len(cids) - 1
            lls.append(float(sum(lp[first + j, t] for j, t in enumerate(cont_ids))))
        res.append(lls)
    json.dump(res, open(out("wordnet", "smollm2-mc-loglik.json"), "w"))


def gradients():
    """Adapter and head gradients of a cross-entropy loss on the tiny BERT (LoRA, rsLoRA, DoRA, HiRA) and
    the tiny LLaMA (causal LM loss with ignored positions), dropout off, as PyTorch + PEFT compute them."""
    import torch
    import torch.nn.functional as F
    from transformers import BertForSequenceClassification, LlamaForCausalLM
    from peft import PeftModel
    from safetensors.torch import save_file
    res = {}
    ids = torch.tensor([[2, 5, 9, 13, 7, 3], [2, 8, 4, 3, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    labels = torch.tensor([0, 2])
    for tag in ["bert-lora", "bert-rslora", "bert-dora"]:
        base = BertForSequenceClassification.from_pretrained(os.path.join(ROOT, "tiny-bert"))
        m = PeftModel.from_pretrained(base, os.path.join(ROOT, "peft", tag), is_trainable=True)
        m.eval()  # dropout off, gradients on
        o = m(input_ids=ids, attention_mask=mask, labels=labels)
        o.loss.backward()
        res[f"{tag}.loss"] = o.loss.detach().reshape(1)
        for n, p in m.named_parameters():
            if p.requires_grad and p.grad is not None:
                key = n.removeprefix("base_model.model.").replace(".default", "").replace("modules_to_save.", "")
                res[f"{tag}.grad.{key}"] = p.grad.detach().contiguous()
    # HiRA: W_eff = W * (1 + s B A), s = lora_alpha / r, on the modules of bert-lora, with bert-lora's A and B.
    from safetensors.torch import load_file
    ad = load_file(os.path.join(ROOT, "peft", "bert-lora", "adapter_model.safetensors"))
    hcfg = json.load(open(os.path.join(ROOT, "peft", "bert-lora", "adapter_config.json")))
    hs = hcfg["lora_alpha"] / hcfg["r"]
    assert hs != 1, "the HiRA gradient fixture must exercise the scaling"
    base = BertForSequenceClassification.from_pretrained(os.path.join(ROOT, "tiny-bert")).eval()
    base.classifier.weight.data = ad["base_model.model.classifier.weight"].clone()
    base.classifier.bias.data = ad["base_model.model.classifier.bias"].clone()
    leaves = {}
    for n, mod in base.named_modules():
        key = "base_model.model." + n
        if key + ".lora_A.weight" in ad:
            A = ad[key + ".lora_A.weight"].clone().requires_grad_(True)
            B = ad[key + ".lora_B.weight"].clone().requires_grad_(True)
            leaves[n] = (A, B)
            def fwd(x, mod=mod, A=A, B=B):
                return F.linear(x, mod.weight * (1 + hs * (B @ A)), mod.bias)
            mod.forward = fwd
    o = base(input_ids=ids, attention_mask=mask, labels=labels)
    o.loss.backward()
    res["bert-hira.loss"] = o.loss.detach().reshape(1)
    for n, (A, B) in leaves.items():
        res[f"bert-hira.grad.{n}.lora_A.weight"] = A.grad.contiguous()
        res[f"bert-hira.grad.{n}.lora_B.weight"] = B.grad.contiguous()
    # LLaMA causal LM: labels with -100 on the first tokens and on padding.
    lids = torch.tensor([[1, 5, 9, 13, 7, 3], [1, 8, 4, 3, 0, 0]])
    lmask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    llabels = torch.tensor([[-100, -100, 9, 13, 7, 3], [-100, 8, 4, 3, -100, -100]])
    base = LlamaForCausalLM.from_pretrained(os.path.join(ROOT, "tiny-llama"))
    m = PeftModel.from_pretrained(base, os.path.join(ROOT, "peft", "llama-lora"), is_trainable=True).eval()
    o = m(input_ids=lids, attention_mask=lmask, labels=llabels)
    o.loss.backward()
    res["llama-lora.loss"] = o.loss.detach().reshape(1)
    for n, p in m.named_parameters():
        if p.requires_grad and p.grad is not None:
            res["llama-lora.grad." + n.removeprefix("base_model.model.").replace(".default", "")] = p.grad.detach().contiguous()
    save_file(res, out("train", "gradients.safetensors"))


def coto_trajectory():
    """The seed's CoTo callback (SPEC section 4) in a PEFT training loop on the tiny BERT with bert-lora's
    adapter and head: 8 optimizer steps of 3 examples in a fixed order, AdamW with weight decay, linear decay,
    global-norm clipping (at 0.45, so that some steps clip), dropout off. The layers' on/off plan is drawn as the callback draws it (p_k, one
    u per layer, redraw when none is on) and written out, so the Swift test replays the same plan: what it
    checks is what an inactive layer means (no contribution, no gradient, AdamW skips it: no update, no weight
    decay, moments and step count unchanged; clipping over the parameters that have a gradient; the head always
    trained). Writes train/coto-trajectory.json (data, recipe, plan, p, per-step loss and gradient norm) and
    train/coto-trajectory.safetensors (the adapter and head after every step)."""
    import math, random
    import torch
    from transformers import BertForSequenceClassification, get_linear_schedule_with_warmup
    from peft import PeftModel
    from safetensors.torch import save_file
    steps, batch, lr, wd, clip = 8, 3, 0.05, 0.1, 0.45
    rnd = random.Random(5)
    examples = []
    for i in range(steps * batch):
        n = rnd.randint(3, 9)
        examples.append({"ids": [2] + [rnd.randint(4, 63) for _ in range(n - 2)] + [3], "label": rnd.randint(0, 2)})
    base = BertForSequenceClassification.from_pretrained(
        os.path.join(ROOT, "tiny-bert"), hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    m = PeftModel.from_pretrained(base, os.path.join(ROOT, "peft", "bert-lora"), is_trainable=True)
    m.train()
    from peft.tuners.lora import LoraLayer
    groups = {}
    for name, mod in m.named_modules():
        if isinstance(mod, LoraLayer) and ".layer." in name:
            groups.setdefault(int(name.split(".layer.")[1].split(".")[0]), []).append(mod)
    groups = [groups[k] for k in sorted(groups)]
    params = [p for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    sched = get_linear_schedule_with_warmup(opt, 0, steps)
    end = math.ceil(steps * 0.75)
    draw = random.Random(11)
    plan, ps, losses, norms, after = [], [], [], [], {}
    for k in range(steps):
        p = min(0.1 + 0.9 * k / end, 1.0)
        while True:
            active = [draw.random() <= p for _ in groups]
            if any(active):
                break
        plan.append(active)
        ps.append(p)
        for on, mods in zip(active, groups):
            for mod in mods:
                mod._disable_adapters = not on
        b = examples[k * batch:(k + 1) * batch]
        L = max(len(e["ids"]) for e in b)
        ids = torch.tensor([e["ids"] + [0] * (L - len(e["ids"])) for e in b])
        mask = torch.tensor([[1] * len(e["ids"]) + [0] * (L - len(e["ids"])) for e in b])
        loss = m(input_ids=ids, attention_mask=mask, labels=torch.tensor([e["label"] for e in b])).loss
        loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_([q for q in params if q.grad is not None], clip)))
        losses.append(float(loss))
        opt.step(); sched.step(); opt.zero_grad(set_to_none=True)
        for n, q in m.named_parameters():
            if q.requires_grad:
                key = n.removeprefix("base_model.model.").replace(".default", "").replace("modules_to_save.", "")
                after[f"step{k + 1}.{key}"] = q.detach().clone().contiguous()
    assert any(not all(a) for a in plan) and any(all(a) for a in plan), "the plan must switch layers off and on"
    assert any(x > clip for x in norms) and any(x < clip for x in norms), "some steps must clip, some not"
    json.dump({"steps": steps, "batch": batch, "lr": lr, "weight_decay": wd, "max_grad_norm": clip,
               "schedule": "linear", "examples": examples, "plan": plan, "p": ps, "loss": losses, "grad_norm": norms},
              open(out("train", "coto-trajectory.json"), "w"))
    save_file(after, out("train", "coto-trajectory.safetensors"))


def lego_reference():
    """LoRA-LEGO as the public reference implementation (Root88888/SMoEA system/merging.py `merge_lego_module`)
    computes it, with scikit-learn's KMeans, on units planted in tight groups (so any k-means finds the same
    partition): three inputs of ranks 3, 3 and 2 with lora_alpha 6, 3 and 8, module out 6 x in 5, weights
    1, 2, 1. Steps: each unit [sqrt(s) a_j ; sqrt(s) b_j]; KMeans(k, n_init=10, max_iter=300) with the inputs'
    weights as sample weights; each centroid scaled so its max-norm is the weighted mean of its members';
    B times sqrt(r_ref / k). The reference stacks equal ranks and takes r_ref as a setting; here the units are
    concatenated and r_ref is the weighted mean rank (coto's rule), 8/3. Writes beyond-peft/lego.safetensors: the
    inputs' A and B and the merged delta for k = 4 (the planted groups) and k = 8 (every unit its own
    cluster)."""
    import math
    import numpy as np
    from sklearn.cluster import KMeans
    from safetensors.numpy import save_file
    rng = np.random.default_rng(7)
    out_f, in_f, ranks, alphas, weights = 6, 5, [3, 3, 2], [6.0, 3.0, 8.0], [1.0, 2.0, 1.0]
    centers = rng.normal(size=(4, in_f + out_f)) * 3
    # Which planted group each input's units come from (every group is used at least twice).
    groups = [[0, 1, 2], [0, 1, 3], [2, 3]]
    tensors, units, sample_w = {}, [], []
    for i, (r, alpha, g) in enumerate(zip(ranks, alphas, groups)):
        s = alpha / r
        u = centers[g] + rng.normal(size=(r, in_f + out_f)) * 0.05  # the unit as sqrt(s)-folded vector
        a = u[:, :in_f] / math.sqrt(s)
        b = (u[:, in_f:] / math.sqrt(s)).T
        tensors[f"in{i}.lora_A"] = a.astype(np.float32)
        tensors[f"in{i}.lora_B"] = np.ascontiguousarray(b.astype(np.float32))
        tensors[f"in{i}.alpha"] = np.array([alpha], dtype=np.float32)
        folded = np.concatenate([a * math.sqrt(s), (b * math.sqrt(s)).T], axis=1)
        units.append(folded)
        sample_w += [weights[i]] * r
    msus = np.concatenate(units).astype(np.float32)
    sample_w = np.array(sample_w)
    r_ref = sum(w * r for w, r in zip(weights, ranks)) / sum(weights)
    for k in [4, 8]:
        km = KMeans(n_clusters=k, random_state=0, n_init=10, max_iter=300)
        labels = km.fit_predict(msus, sample_weight=sample_w)
        cent = km.cluster_centers_.astype(np.float64)
        for c in range(k):
            m = labels == c
            target = float(np.sum(np.abs(msus[m]).max(axis=1) * sample_w[m]) / sample_w[m].sum())
            cent[c] *= target / np.abs(cent[c]).max()
        a_m = cent[:, :in_f]
        b_m = cent[:, in_f:].T * math.sqrt(r_ref / k)
        tensors[f"lego{k}.delta"] = (b_m @ a_m).astype(np.float32)
        tensors[f"lego{k}.labels"] = labels.astype(np.int32)
    save_file(tensors, out("beyond-peft", "lego.safetensors"))


def verify_trained(base_dir, adapter_dir, test_jsonl):
    """An adapter trained by coto-train loads in PEFT and gives the accuracy coto-eval reports."""
    import torch
    from transformers import AutoTokenizer, AutoModelForSequenceClassification
    from peft import PeftModel
    labels = json.load(open(os.path.join(adapter_dir, "coto_labels.json")))
    tok = AutoTokenizer.from_pretrained(base_dir)
    base = AutoModelForSequenceClassification.from_pretrained(base_dir, num_labels=len(labels))
    m = PeftModel.from_pretrained(base, adapter_dir).eval()
    rows = [json.loads(l) for l in open(test_jsonl)]
    enc = tok([r["text"] for r in rows], padding=True, truncation=True, max_length=64, return_tensors="pt")
    with torch.no_grad():
        pred = m(**enc).logits.argmax(-1)
    acc = float((pred == torch.tensor([labels.index(r["label"]) for r in rows])).float().mean())
    print(f"PEFT accuracy of {adapter_dir}: {acc:.4f}")


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else "all"
    if cmd == "families":  # the decoder families against transformers (Fixtures/families.py)
        sys.path.insert(0, ROOT)
        import families as fam
        fam.families()
    elif cmd == "gguf-families":  # the families through llama.cpp's converters (Fixtures/gguf_families.py)
        sys.path.insert(0, ROOT)
        import gguf_families
        gguf_families.gguf_families()
    elif cmd == "regmean":  # RegMean's Grams and merges through PEFT forward hooks (Fixtures/regmean.py)
        sys.path.insert(0, ROOT)
        import regmean
        regmean.regmean()
    elif cmd == "kquants":  # GGUF block types against gguf-py's dequantization (Fixtures/kquants.py)
        sys.path.insert(0, ROOT)
        import kquants
        kquants.kquants()
        kquants.kquant_model()
    elif cmd == "smollm2":
        smollm2(sys.argv[2])
    elif cmd == "verify-converted":
        verify_converted(sys.argv[2], sys.argv[3])
    elif cmd == "verify-adapter":
        verify_adapter(sys.argv[2], sys.argv[3], sys.argv[4])
    elif cmd == "verify-deltas":
        verify_deltas(sys.argv[2], sys.argv[3], sys.argv[4])
    elif cmd == "model":
        model_refs(sys.argv[2]); tokenizer_refs(sys.argv[2], sys.argv[3])
    elif cmd == "eval":
        wordnet_tasks(); minilm_adapter(sys.argv[2]); smollm2_mc(sys.argv[3])
    elif cmd == "verify-trained":
        verify_trained(sys.argv[2], sys.argv[3], sys.argv[4])
    elif cmd == "gradients":
        gradients()
    elif cmd == "coto-trajectory":
        coto_trajectory()
    elif cmd == "lego":
        lego_reference()
    elif cmd == "beyond-peft":
        beyond_peft_merges(); svd_space_merges()
    elif cmd == "svd-spaces":
        svd_space_merges()
    elif cmd == "f32-gguf":
        f32_gguf(sys.argv[2], sys.argv[3])
    elif cmd == "verify-llamacpp-lora":
        verify_llamacpp_lora(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], float(sys.argv[6]) if len(sys.argv) > 6 else 1.0)
    elif cmd == "gguf-tokenizer-ids":
        gguf_tokenizer_ids(sys.argv[2])
    elif cmd == "bias-alpha":
        bias_alpha()
    elif cmd == "operators":
        merge_inputs(); merges(); fused()
    else:
        codecs(); safetensors_reference(); tiny_models(); peft_adapters(); tiny_gguf()
        merge_inputs(); merges(); fused()
