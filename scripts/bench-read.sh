#!/usr/bin/env bash
# Read speed of a safetensors file: coto (mmap, zero-copy views) vs Python safetensors.safe_open, same file.
#   scripts/bench-read.sh FILE [PYTHON]
# PYTHON: an interpreter with safetensors and numpy (the oracle venv); the toolkit itself never needs it.
set -euo pipefail
FILE="$1"; PY="${2:-python3}"
swift build -c release --product coto-bench >/dev/null
echo "file: $FILE ($(stat -c %s "$FILE") bytes); page cache warm (each tool reads it first)"
.build/release/coto-bench read "$FILE" --repeat 5
.build/release/coto-bench read "$FILE" --repeat 5 --decode
"$PY" - "$FILE" <<'PY'
import sys, time
from safetensors import safe_open
path = sys.argv[1]
best = float("inf"); total = 0
for _ in range(5):
    t0 = time.perf_counter(); total = 0
    with safe_open(path, framework="numpy") as f:
        for k in f.keys():
            a = f.get_tensor(k); total += a.nbytes
    best = min(best, time.perf_counter() - t0)
print(f"python safetensors.safe_open(numpy).get_tensor: {total} bytes in {best:.4f} s = {total/best/1e9:.2f} GB/s (best of 5)")
PY
