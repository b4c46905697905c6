"""RegMean's oracle: PyTorch + PEFT forward hooks on the tiny BERT with two PEFT adapters (merge-a: query, value;
merge-b: query, key, value), each task's first examples run one at a time with its adapter active. Writes the
mean input Gram XᵀX/n of every adapted linear layer per adapter, and RegMean's merged delta
ΔW* = (Σ ΔW_i G̃_i)(Σ G̃_i)⁻¹ in float64 for a = 0.9 and a = 0.5 (a module an adapter lacks is its zero delta).
    python Fixtures/generate.py regmean     ->  Fixtures/regmean/
"""
import json, os, shutil
import numpy as np

ROOT = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = 10
MAX_LENGTH = 24


def regmean():
    import torch
    from safetensors.numpy import save_file
    from transformers import BertForSequenceClassification, BertTokenizer
    from peft import PeftModel
    out = os.path.join(ROOT, "regmean")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    lines = open(os.path.join(ROOT, "wordnet", "noun8-train.jsonl")).read().splitlines()
    data = {"a": lines[:EXAMPLES + 2], "b": lines[20:20 + EXAMPLES + 2]}  # two more than --examples: they must be ignored
    for k, rows in data.items():
        with open(os.path.join(out, k + ".jsonl"), "w") as f:
            f.write("\n".join(rows) + "\n")
    tok = BertTokenizer(os.path.join(ROOT, "tiny-bert", "vocab.txt"))
    adapters = {"a": "merge-a", "b": "merge-b"}
    modules = set()
    for name in adapters.values():
        sd = json.load(open(os.path.join(ROOT, "peft", name, "adapter_config.json")))
        modules |= set(sd["target_modules"])
    grams, deltas, ids_used = {}, {}, {}
    for k, name in adapters.items():
        base = BertForSequenceClassification.from_pretrained(os.path.join(ROOT, "tiny-bert")).eval()
        model = PeftModel.from_pretrained(base, os.path.join(ROOT, "peft", name)).eval()
        acc = {}
        hooks = []
        for mname, mod in model.named_modules():
            if mname.split(".")[-1] in modules:  # LoRA-wrapped or, where this adapter has no module, plain
                key = mname.removeprefix("base_model.model.")

                def hook(m, args, key=key):
                    x = args[0].detach().double().reshape(-1, args[0].shape[-1])
                    s, n = acc.get(key, (0, 0))
                    acc[key] = (s + x.T @ x, n + x.shape[0])
                hooks.append(mod.register_forward_pre_hook(hook))
        ids_used[k] = []
        with torch.no_grad():
            for line in data[k][:EXAMPLES]:
                enc = tok(json.loads(line)["text"], truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
                ids_used[k].append(enc["input_ids"][0].tolist())
                model(**enc)
        for h in hooks:
            h.remove()
        grams[k] = {m: (s / n).numpy() for m, (s, n) in acc.items()}
        # Each adapter's delta per module: scaling · B A.
        deltas[k] = {}
        for mname, mod in model.named_modules():
            if hasattr(mod, "lora_A") and "default" in mod.lora_A:
                key = mname.removeprefix("base_model.model.")
                d = (mod.lora_B["default"].weight.double() @ mod.lora_A["default"].weight.double()) * mod.scaling["default"]
                deltas[k][key] = d.detach().numpy()
    tensors = {}
    for k in grams:
        for m, g in grams[k].items():
            tensors[f"gram.{k}.{m}"] = g.astype(np.float32)
    names = sorted(set(grams["a"]) | set(grams["b"]))
    # a = 1 is not written: the tiny BERT's LayerNorms are at their init (weight 1, bias 0), so every adapted
    # layer's inputs sum to zero over the 16 features and Σ G is singular (coto refuses it, RegMeanPEFTTests).
    for a in (0.9, 0.5):
        for m in names:
            shrunk = {k: a * grams[k][m] + (1 - a) * np.diag(np.diag(grams[k][m])) for k in grams}
            num = sum(deltas[k][m] @ shrunk[k] for k in grams if m in deltas[k])
            w = np.linalg.solve(sum(shrunk.values()).T, num.T).T  # num · S⁻¹
            tensors[f"merged.{a}.{m}"] = np.ascontiguousarray(w, dtype=np.float32)  # save_file writes memory order
    save_file(tensors, os.path.join(out, "expected.safetensors"))
    with open(os.path.join(out, "ids.json"), "w") as f:
        json.dump(ids_used, f)
    print(f"regmean: {len(names)} modules, {sum(len(v) for v in ids_used.values())} examples -> {out}")
