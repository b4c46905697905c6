#!/usr/bin/env python3
"""LoRA extraction: coto-extract vs mergekit-extract-lora (mergekit 0.1.5) on the same base/fine-tune pair.

    /path/to/venv/bin/python scripts/bench_extract.py --coto .build/release --smollm2 /tmp/smol-conv [--reps 5]

The "fine-tune" is SmolLM2-135M (f32) with a random rank-32 change on all 210 linear modules (fused by
coto-fuse), so a rank-16 extraction is a real approximation with a known optimum (Eckart-Young). Both
tools extract rank 16 from every linear module; the script then measures, per module, the relative error
||dW - s*B*A||_F / ||dW||_F of each adapter against the true dW (float64, torch), and times both tools as
whole processes (peak RSS from getrusage), OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset, 2 threads. One warm-up
run each, then --reps runs; median (min-max).
"""
import argparse, json, os, statistics, subprocess, sys

ENV = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
ENV["OMP_NUM_THREADS"] = "2"
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_operators import measure, make_adapter, llama_linear_shapes  # noqa: E402


def errors(base, tuned, adapter_dir):
    """Per module relative error of the adapter's s*B*A against W_tuned - W_base."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file
    cfg = json.load(open(os.path.join(adapter_dir, "adapter_config.json")))
    t = load_file(os.path.join(adapter_dir, "adapter_model.safetensors"))
    import re
    def scale(name, r):
        alpha = cfg["lora_alpha"]
        for k, v in (cfg.get("alpha_pattern") or {}).items():
            if re.match(rf"(.*\.)?({k})$", name):
                alpha = v; break
        return alpha / r
    out = {}
    with safe_open(os.path.join(base, "model.safetensors"), "pt") as fb, safe_open(os.path.join(tuned, "model.safetensors"), "pt") as ft:
        for k in t:
            if not k.endswith("lora_A.weight"):
                continue
            name = k[len("base_model.model."):-len(".lora_A.weight")]
            a, b = t[k].double(), t[k.replace("lora_A", "lora_B")].double()
            d = ft.get_tensor(name + ".weight").double() - fb.get_tensor(name + ".weight").double()
            out[name] = float((d - scale(name, a.shape[0]) * (b @ a)).norm() / d.norm())
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--coto", default=".build/release")
    ap.add_argument("--smollm2", required=True)
    ap.add_argument("--work", default="/tmp/coto-bench-extract")
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    w = a.work
    os.makedirs(w, exist_ok=True)
    print(subprocess.run([f"{a.coto}/coto-bench", "blas-info"], env=ENV, capture_output=True, text=True).stdout.strip())
    shapes = llama_linear_shapes(a.smollm2)
    change = os.path.join(w, "rank32")
    make_adapter(change, shapes, 32, 7, 32)
    tuned = os.path.join(w, "tuned")
    if not os.path.exists(os.path.join(tuned, "model.safetensors")):
        subprocess.run([f"{a.coto}/coto-fuse", "--model", a.smollm2, "--adapter", change, "-q", "-o", tuned], env=ENV, check=True)
    ours_cmd = [f"{a.coto}/coto-extract", "--base", a.smollm2, "--tuned", tuned, "--rank", "16", "-q", "-o", os.path.join(w, "coto")]
    mk_cmd = [os.path.join(os.path.dirname(sys.executable), "mergekit-extract-lora"), "--model", tuned, "--base-model", a.smollm2,
              "--out-path", os.path.join(w, "mergekit"), "--max-rank", "16", "--no-cuda", "--quiet"]
    runs = {"coto-extract": [], "mergekit-extract-lora": []}
    for rep in range(a.reps + 1):
        for name, cmd in (("coto-extract", ours_cmd), ("mergekit-extract-lora", mk_cmd)):
            r = measure(cmd)
            if rep > 0:
                runs[name].append(r)
    e_ours = errors(a.smollm2, tuned, os.path.join(w, "coto"))
    e_mk = errors(a.smollm2, tuned, os.path.join(w, "mergekit"))
    common = sorted(set(e_ours) & set(e_mk))
    print(f"SmolLM2-135M f32 + a random rank-32 change on {len(shapes)} linear modules; rank-16 extraction; "
          f"{a.reps} runs each after a warm-up, median (min-max)")
    for name, rs in runs.items():
        secs = [x[0] for x in rs]
        print(f"    {name:22s} {statistics.median(secs):.2f} s ({min(secs):.2f}-{max(secs):.2f}), peak RSS {statistics.median([x[1] for x in rs]):.0f} MiB")
    worse = [m for m in common if e_ours[m] > e_mk[m] * (1 + 1e-4)]
    print(f"    modules compared: {len(common)} (coto {len(e_ours)}, mergekit {len(e_mk)}); relative error, mean / max: "
          f"coto {statistics.mean(e_ours[m] for m in common):.6f} / {max(e_ours[m] for m in common):.6f}, "
          f"mergekit {statistics.mean(e_mk[m] for m in common):.6f} / {max(e_mk[m] for m in common):.6f}; "
          f"modules where coto's error exceeds mergekit's by more than 0.01%: {len(worse)}")


if __name__ == "__main__":
    main()
