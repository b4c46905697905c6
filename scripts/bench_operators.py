#!/usr/bin/env python3
"""coto-merge / coto-fuse against PEFT on the same files, ratios printed (results: Docs/performance.md).

    python3 scripts/bench_operators.py --coto .build/release --work /tmp/coto-bench --smollm2 demo-out/smollm2

Needs the oracle venv (torch, transformers, peft 0.21, safetensors). Every measured command runs in its own
process, timed wall-clock, peak RSS from getrusage of that child. OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are
unset for both sides (they halve sgemm here); the OpenBLAS kernel coto runs is printed.
"""
import argparse, json, os, resource, subprocess, sys, tempfile, time

ENV = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
ENV["OMP_NUM_THREADS"] = ENV["COTO_THREADS"] = "2"


def measure(cmd):
    """Runs cmd in a fresh wrapper process; returns (seconds, peak RSS MiB of cmd)."""
    wrapper = ("import resource,subprocess,sys,time;t=time.perf_counter();r=subprocess.run(sys.argv[1:]);"
               "print(time.perf_counter()-t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss);sys.exit(r.returncode)")
    out = subprocess.run([sys.executable, "-c", wrapper] + cmd, env=ENV, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{out.stderr[-2000:]}")
    secs, rss = out.stdout.strip().splitlines()[-1].split()
    return float(secs), int(rss) / 1024


def python_job(code, *args):
    return [sys.executable, "-c", code, *args]


def make_adapter(path, shapes, r, seed, alpha):
    import torch
    from safetensors.torch import save_file
    g = torch.Generator().manual_seed(seed)
    t, targets = {}, set()
    for name, (out_f, in_f) in shapes.items():
        t[f"base_model.model.{name}.lora_A.weight"] = torch.randn(r, in_f, generator=g) * 0.02
        t[f"base_model.model.{name}.lora_B.weight"] = torch.randn(out_f, r, generator=g) * 0.02
        targets.add(name.split(".")[-1])
    os.makedirs(path, exist_ok=True)
    save_file(t, os.path.join(path, "adapter_model.safetensors"), metadata={"format": "pt"})
    json.dump({"peft_type": "LORA", "r": r, "lora_alpha": alpha, "target_modules": sorted(targets), "task_type": "CAUSAL_LM",
               "lora_dropout": 0.0, "bias": "none", "fan_in_fan_out": False, "base_model_name_or_path": None},
              open(os.path.join(path, "adapter_config.json"), "w"))


def llama_linear_shapes(model_dir):
    """{module path: (out, in)} of every linear layer of a LLaMA-style HF model directory."""
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    h, f, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    kv = cfg["num_key_value_heads"] * (h // cfg["num_attention_heads"])
    shapes = {}
    for l in range(L):
        for p, s in (("self_attn.q_proj", (h, h)), ("self_attn.k_proj", (kv, h)), ("self_attn.v_proj", (kv, h)),
                     ("self_attn.o_proj", (h, h)), ("mlp.gate_proj", (f, h)), ("mlp.up_proj", (f, h)), ("mlp.down_proj", (h, f))):
            shapes[f"model.layers.{l}.{p}"] = s
    return shapes


PEFT_MERGE = r"""
import sys, time, torch
from transformers import LlamaConfig, LlamaForCausalLM
from peft import PeftModel
a, b, ctype, out, full = sys.argv[1:6]
kw = {"density": 0.5} if "ties" in ctype else {}
if ctype == "svd":
    kw["svd_full_matrices"] = full == "full"  # PEFT's default is True
cfg = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=2, num_attention_heads=32,
                  num_key_value_heads=32, vocab_size=32)
torch.set_num_threads(2)
with torch.no_grad():
    model = LlamaForCausalLM(cfg)
t0 = time.perf_counter()
m = PeftModel.from_pretrained(model, a, adapter_name="a")
m.load_adapter(b, adapter_name="b")
t1 = time.perf_counter()
m.add_weighted_adapter(["a", "b"], [0.5, 0.5], "m", combination_type=ctype, **kw)
t2 = time.perf_counter()
m.save_pretrained(out, selected_adapters=["m"])
t3 = time.perf_counter()
print(f"PEFTTIMES load={t1-t0:.3f} merge={t2-t1:.3f} save={t3-t2:.3f}", file=sys.stderr)
"""

PEFT_FUSE = r"""
import sys, time
t0 = time.perf_counter()
import torch
from transformers import AutoModelForCausalLM
from peft import PeftModel
t1 = time.perf_counter()
base, adapter, out = sys.argv[1:4]
torch.set_num_threads(2)
model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
model = PeftModel.from_pretrained(model, adapter)
t2 = time.perf_counter()
model = model.merge_and_unload()
t3 = time.perf_counter()
model.save_pretrained(out)
t4 = time.perf_counter()
print(f"PEFTTIMES import={t1-t0:.3f} load={t2-t1:.3f} merge={t3-t2:.3f} save={t4-t3:.3f}")
"""

IMPORT_ONLY = "import torch, transformers, peft"

SVD_DELTAS = r"""
import sys, torch
from safetensors.torch import load_file
coto, peft = sys.argv[1:3]
def deltas(d, name):
    t = load_file(f"{d}/{name}")
    out = {}
    for k in t:
        if k.endswith("lora_A.weight"):
            m = k[: -len(".lora_A.weight")].replace(".m.", ".").replace(".default", "")
            out[m.replace("base_model.model.", "")] = (t[k[:-len("lora_A.weight")] + "lora_B.weight"].double() @ t[k].double())
    return out
import json, os
cfg = json.load(open(f"{coto}/adapter_config.json"))
x, y = deltas(coto, "adapter_model.safetensors"), deltas(peft + "/m", "adapter_model.safetensors")
pc = json.load(open(f"{peft}/m/adapter_config.json"))
sx, sy = cfg["lora_alpha"] / cfg["r"], pc["lora_alpha"] / pc["r"]
worst = max(float((sx * x[k] - sy * y[k]).norm() / (sy * y[k]).norm()) for k in y)
print(f"{len(y)} modules, worst relative difference of the merged deltas: {worst:.2e}")
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--coto", default=".build/release")
    ap.add_argument("--work", default=tempfile.mkdtemp(prefix="coto-bench-"))
    ap.add_argument("--smollm2", help="SmolLM2 converted to an f32 HF dir (coto-convert output)")
    ap.add_argument("--skip-svd", action="store_true")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    w = args.work
    os.makedirs(w, exist_ok=True)
    print(subprocess.run([f"{args.coto}/coto-bench", "blas-info"], env=ENV, capture_output=True, text=True).stdout.strip())
    import torch
    print(f"torch {torch.__version__}, threads 2, {torch.__config__.parallel_info().splitlines()[0]}")

    # LLaMA-7B shapes, 2 layers, two rank-16 adapters.
    shapes = {}
    for l in range(2):
        for p in ("q_proj", "k_proj", "v_proj", "o_proj"):
            shapes[f"model.layers.{l}.self_attn.{p}"] = (4096, 4096)
        shapes[f"model.layers.{l}.mlp.gate_proj"] = (11008, 4096)
        shapes[f"model.layers.{l}.mlp.up_proj"] = (11008, 4096)
        shapes[f"model.layers.{l}.mlp.down_proj"] = (4096, 11008)
    a, b = os.path.join(w, "a"), os.path.join(w, "b")
    make_adapter(a, shapes, 16, 1, 32)
    make_adapter(b, shapes, 16, 2, 16)
    import statistics
    med = statistics.median
    def spread(xs):
        return f"{med(xs):.2f} s ({min(xs):.2f}-{max(xs):.2f})"
    # linear and ties: REPS runs of each side after a warm-up; svd: PEFT takes minutes, so one run per
    # setting (its default svd_full_matrices=True, and False), each checked against our result.
    runs = [("linear", "full", args.reps), ("ties", "full", args.reps)]
    if not args.skip_svd:
        runs += [("svd", "full", 1), ("svd", "thin", 1)]
    for ctype, full, reps in runs:
        extra = ["--density", "0.5"] if ctype == "ties" else []
        cmd = [f"{args.coto}/coto-merge", a, b, "--method", ctype, "--weights", "0.5,0.5", "-q", "-o", os.path.join(w, f"coto-{ctype}")] + extra
        measure(cmd)  # warm-up
        ours = [measure(cmd)[0] for _ in range(max(reps, 5))]
        peft_runs = []
        for _ in range(reps + (1 if reps > 1 else 0)):
            peft = subprocess.run(python_job(PEFT_MERGE, a, b, ctype, os.path.join(w, f"peft-{ctype}"), full), env=ENV, capture_output=True, text=True)
            if peft.returncode != 0:
                sys.exit(peft.stderr[-3000:])
            peft_runs.append({k: float(v) for k, v in (kv.split("=") for kv in peft.stderr.split("PEFTTIMES")[-1].split())})
        if reps > 1:
            peft_runs = peft_runs[1:]  # the first was a warm-up
        pm = [r["merge"] for r in peft_runs]
        pt = [r["load"] + r["merge"] + r["save"] for r in peft_runs]
        label = ctype + (f" (PEFT svd_full_matrices={'True, its default' if full == 'full' else 'False'})" if ctype == "svd" else "")
        print(f"{label}: 2 layers of LLaMA-7B shapes, r=16+16, {len(ours)} coto runs / {len(peft_runs)} PEFT run(s), median (min-max)")
        print(f"    coto-merge whole process (read, merge, write): {spread(ours)}")
        print(f"    PEFT load {med([r['load'] for r in peft_runs]):.2f} s + add_weighted_adapter {spread(pm)} + save {med([r['save'] for r in peft_runs]):.2f} s")
        print(f"    ratio: PEFT merge alone / coto whole process {med(pm)/med(ours):.1f}x; PEFT load+merge+save / coto {med(pt)/med(ours):.1f}x")
        if ctype == "svd":
            chk = subprocess.run(python_job(SVD_DELTAS, os.path.join(w, f"coto-{ctype}"), os.path.join(w, f"peft-{ctype}")), env=ENV, capture_output=True, text=True)
            print("    " + (chk.stdout.strip() or chk.stderr[-1000:]))

    if args.smollm2:
        shapes = llama_linear_shapes(args.smollm2)
        ad = os.path.join(w, "smol-adapter")
        make_adapter(ad, shapes, 16, 3, 32)
        largest = max(os.path.getsize(os.path.join(args.smollm2, "model.safetensors")) and 0, 49152 * 576 * 4)
        fuse_cmd = [f"{args.coto}/coto-fuse", "--model", args.smollm2, "--adapter", ad, "-q", "-o", os.path.join(w, "coto-fused")]
        measure(fuse_cmd)  # warm-up (page cache)
        ours = [measure(fuse_cmd) for _ in range(args.reps)]
        peft = []
        for i in range(args.reps + 1):
            job = python_job(PEFT_FUSE, args.smollm2, ad, os.path.join(w, "peft-fused"))
            wrapper = ("import resource,subprocess,sys,time;t=time.perf_counter();r=subprocess.run(sys.argv[1:],capture_output=True,text=True);"
                       "print(r.stdout.strip());print(time.perf_counter()-t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss);sys.exit(r.returncode)")
            o = subprocess.run([sys.executable, "-c", wrapper] + job, env=ENV, capture_output=True, text=True)
            if o.returncode != 0:
                sys.exit(o.stderr[-3000:])
            lines = o.stdout.strip().splitlines()
            phases = {k: float(v) for k, v in (kv.split("=") for kv in lines[-2].split("PEFTTIMES")[-1].split())}
            secs, rss = lines[-1].split()
            if i > 0:
                peft.append((float(secs), int(rss) / 1024, phases))
        imports = [measure(python_job(IMPORT_ONLY)) for _ in range(3)]
        mb = os.path.getsize(os.path.join(args.smollm2, 'model.safetensors')) / 1e6
        print(f"fuse: SmolLM2-135M f32 ({mb:.0f} MB), r=16 on all 210 linear modules, {args.reps} runs each after a warm-up, median (min-max)")
        print(f"    coto-fuse whole process {spread([x[0] for x in ours])}, peak RSS {med([x[1] for x in ours]):.0f} MiB")
        print(f"    PEFT+transformers whole process {spread([x[0] for x in peft])}, peak RSS {med([x[1] for x in peft]):.0f} MiB; in-process phases: "
              + ", ".join(f"{k} {med([x[2][k] for x in peft]):.2f} s" for k in ("import", "load", "merge", "save")))
        print(f"    importing torch + transformers + peft alone: {med([x[0] for x in imports]):.2f} s, peak RSS {med([x[1] for x in imports]):.0f} MiB")
        cw, pw = med([x[0] for x in ours]), med([x[0] for x in peft])
        pin = med([x[2]["load"] + x[2]["merge"] + x[2]["save"] for x in peft])
        print(f"    ratio: whole process {pw/cw:.1f}x; PEFT without its import (load+merge+save) / coto whole process {pin/cw:.1f}x; "
              f"merge_and_unload alone / coto whole process {med([x[2]['merge'] for x in peft])/cw:.2f}x; "
              f"memory {med([x[1] for x in peft])/med([x[1] for x in ours]):.1f}x (RSS target <= 2 x largest tensor + 100 MB = {2*largest/2**20+100:.0f} MiB)")
        # Same result?
        from safetensors import safe_open
        with safe_open(os.path.join(w, "coto-fused", "model.safetensors"), "pt") as x, safe_open(os.path.join(w, "peft-fused", "model.safetensors"), "pt") as y:
            worst = max(float((x.get_tensor(k) - y.get_tensor(k)).abs().max()) for k in y.keys())
        print(f"        max |coto - PEFT| over all fused tensors: {worst:.3g}")


if __name__ == "__main__":
    main()
