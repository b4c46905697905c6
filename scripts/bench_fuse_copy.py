#!/usr/bin/env python3
"""coto-fuse against its floor, a durable copy of the same bytes (`cp` + `sync`), side by side in one run.

    python3 scripts/bench_fuse_copy.py --coto .build/release --model /tmp/smol-conv \
        [--gguf ~/.cache/coto/smollm2/.../SmolLM2-135M-Instruct.Q4_1.gguf] [--reps 7] [--work /tmp/coto-fuse-bench]

The model is an f32 HF directory (coto-convert of SmolLM2-135M); the adapter is rank 16 on all of its linear
modules (made here, seed 3, as bench_operators.py). Each repetition runs, interleaved and each in its own
process: `cp model.safetensors DST && sync`, coto-fuse from the directory, and (with --gguf) coto-fuse from
the GGUF (dequantized on the fly). Outputs are removed before each run, outside the timing; the page cache
holds the inputs (one warm-up of each first). Printed: median (min-max) of each, peak RSS, the ratios, and
the copy split into `cp` (into the page cache) and `sync` (to the disk). Needs the oracle venv only to
write the adapter (torch, safetensors).
"""
import argparse, json, os, shutil, subprocess, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_operators import ENV, make_adapter, llama_linear_shapes, measure as timed  # noqa: E402


def med(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2


def spread(xs):
    return f"{med(xs):.2f} s ({min(xs):.2f}-{max(xs):.2f})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--coto", default=".build/release")
    ap.add_argument("--model", required=True)
    ap.add_argument("--gguf")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--work", default=tempfile.mkdtemp(prefix="coto-fuse-bench-"))
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    ad = os.path.join(a.work, "adapter")
    make_adapter(ad, llama_linear_shapes(a.model), 16, 3, 32)
    src = os.path.join(a.model, "model.safetensors")
    size = os.path.getsize(src)
    cp_dir, fz = os.path.join(a.work, "cp"), os.path.join(a.work, "fused")
    os.makedirs(cp_dir, exist_ok=True)
    kernel = subprocess.run([f"{a.coto}/coto-bench", "blas-info"], env=ENV, capture_output=True, text=True).stdout.strip()
    jobs = {
        "cp + sync": ["sh", "-c", f"cp {src} {cp_dir}/ && sync"],
        "cp alone": ["cp", src, cp_dir + "/"],
        "coto-fuse (f32 dir)": [f"{a.coto}/coto-fuse", "--model", a.model, "--adapter", ad, "-q", "-o", fz],
    }
    if a.gguf:
        jobs["coto-fuse (Q4_1 GGUF)"] = [f"{a.coto}/coto-fuse", "--model", a.gguf, "--adapter", ad, "-q", "-o", fz]

    def clean():
        shutil.rmtree(fz, ignore_errors=True)
        for f in os.listdir(cp_dir):
            os.remove(os.path.join(cp_dir, f))
        subprocess.run(["sync"])

    res = {k: [] for k in jobs}
    for rep in range(a.reps + 1):
        for k, cmd in jobs.items():
            clean()
            if k == "cp alone":
                t, rss = timed(cmd)
                t2, _ = timed(["sync"])
                if rep:
                    res[k].append((t, rss))
                    res.setdefault("sync after cp", []).append((t2, 0))
                continue
            t, rss = timed(cmd)
            if rep:
                res[k].append((t, rss))
    clean()
    print(f"fuse vs durable copy: {size / 1e6:.0f} MB out, rank-16 adapter on every linear module, {a.reps} interleaved runs "
          f"after a warm-up, median (min-max); coto BLAS: {kernel or 'see coto-bench'}")
    for k, v in res.items():
        print(f"    {k:24s} {spread([x[0] for x in v])}" + (f", peak RSS {med([x[1] for x in v]):.0f} MiB" if k.startswith("coto") else ""))
    floor = [x[0] for x in res["cp + sync"]]
    for k in res:
        if k.startswith("coto"):
            t = [x[0] for x in res[k]]
            print(f"    ratio {k} / (cp + sync): {med(t) / med(floor):.2f}x of the medians, {min(t) / min(floor):.2f}x of the fastest runs")


if __name__ == "__main__":
    main()
