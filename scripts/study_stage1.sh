#!/usr/bin/env bash
# What CoTo's schedule does: the stage-1 ratio (the share of the steps over which p rises from 0.1 to 1)
# against the learning-rate decay. For each LR schedule (linear decay, constant) and each stage-1 ratio
# (0.25, 0.5, 0.75 = the paper's), CoTo runs of the demo's recipe (MiniLM, r = 8 on query/value, batches of
# 16 grouped by length, lr 2e-3, max length 64, data as `make demo`), and plain LoRA on the same schedule
# as the reference; each adapter scored on the test split whole and with every other layer's adapters
# dropped (coto-prune --drop-layers every-other).
#   scripts/study_stage1.sh OUT [SEEDS]        e.g. scripts/study_stage1.sh /tmp/stage1 "0 1"
# Environment: TASK (noun8), STEPS (400), RATIOS ("0.25 0.5 0.75"), SCHEDULES ("linear constant").
# Prints one line per run (schedule, method, seed, test accuracy whole and every other layer) and the
# means per schedule and method. Runs already trained (metrics.json present) are reused.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:?usage: $0 OUT [SEEDS]}"
SEEDS="${2:-0 1}"
TASK="${TASK:-noun8}"
STEPS="${STEPS:-400}"
RATIOS="${RATIOS:-0.25 0.5 0.75}"
SCHEDULES="${SCHEDULES:-linear constant}"
. scripts/study_common.sh
mkdir -p "$OUT"
[ -f "$OUT/data/$TASK-test.jsonl" ] || "$BIN/coto-data" wordnet -o "$OUT/data" --cap-train 100 --cap-eval 40 -q

accuracy() {  # accuracy of adapter $1 on the test split
  "$BIN/coto-eval" --model "$M" --adapter "$1" --data "$OUT/data/$TASK-test.jsonl" --task classification --json -q |
    grep -o '"accuracy" *: *[0-9.eE+-]*' | head -1 | sed 's/.*: *//'
}

RESULTS="$OUT/results.tsv"
: > "$RESULTS"
for sched in $SCHEDULES; do
  for method in lora $(for r in $RATIOS; do echo "coto-$r"; done); do
    for seed in $SEEDS; do
      run="$OUT/runs/$sched/$method-s$seed"
      if [ ! -f "$run/metrics.json" ]; then
        if [ "$method" = lora ]; then flags=(--no-coto); else flags=(--coto --stage1-ratio "${method#coto-}"); fi
        "$BIN/coto-train" --model "$M" --data "$OUT/data/$TASK-train.jsonl" --task classification --rank 8 --alpha 16 \
          --targets query,value --steps "$STEPS" --batch-size 16 --group-by-length --max-length 64 --lr 2e-3 \
          --schedule "$sched" --seed "$seed" --threads 2 "${flags[@]}" -o "$run" -q
      fi
      [ -f "$run-half/adapter_model.safetensors" ] ||
        "$BIN/coto-prune" "$run" --drop-layers every-other --num-layers 6 -o "$run-half" -q
      whole=$(accuracy "$run")
      half=$(accuracy "$run-half")
      printf '%s\t%s\t%s\t%s\t%s\n' "$sched" "$method" "$seed" "$whole" "$half" | tee -a "$RESULTS"
    done
  done
done
echo "== means over seeds $SEEDS ($TASK, $STEPS steps): schedule, method, test accuracy whole, every other layer dropped"
awk -F'\t' '{ k = $1 "\t" $2; n[k]++; w[k] += $4; h[k] += $5; if (!(k in seen)) { seen[k] = 1; order[++m] = k } }
  END { for (i = 1; i <= m; i++) { k = order[i]; printf "%s\t%.4f\t%.4f\n", k, w[k] / n[k], h[k] / n[k] } }' "$RESULTS"
