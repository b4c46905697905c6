#!/usr/bin/env bash
# Which step budget lets the demo's runs converge? For each budget T, each WordNet task and each method
# (LoRA, CoTo), one run of the demo's recipe (MiniLM, r = 8 on query/value, batch 32, lr 2e-3 with linear
# decay, max length 64, data as `make demo`) evaluated on the dev split every T/10 steps; the report's
# convergence rule (every dev evaluation in the last 20% of the steps within 1 point of the run's best)
# then says which runs converged. The learning-rate decay and CoTo's p schedule both stretch with T, so
# every budget is its own run (a longer run cut short is not the same thing).
#   scripts/study_convergence.sh OUT [BUDGETS] [SEEDS]     e.g. scripts/study_convergence.sh /tmp/conv "100 200 400" "0"
# Other recipes through the environment: BATCH (32), LR (2e-3), EXTRA (more coto-train options, e.g.
# "--group-by-length --schedule constant").
# Writes OUT/report-T/ (report.md with the dev curves) per budget and prints its training table.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:?usage: $0 OUT [BUDGETS] [SEEDS]}"
BUDGETS="${2:-100 200 400}"
SEEDS="${3:-0}"
BATCH="${BATCH:-32}"
LR="${LR:-2e-3}"
EXTRA="${EXTRA:-}"
. scripts/study_common.sh
mkdir -p "$OUT"
"$BIN/coto-data" wordnet -o "$OUT/data" --cap-train 100 --cap-eval 40 -q
for T in $BUDGETS; do
  for task in noun8 pos4 verb15; do
    for seed in $SEEDS; do
      for mode in lora coto; do
        flag=--coto; [ $mode = lora ] && flag=--no-coto
        run="$OUT/runs-$T/$task/$mode-s$seed"
        [ -f "$run/metrics.json" ] && continue
        "$BIN/coto-train" --model "$M" --data "$OUT/data/$task-train.jsonl" --eval-data "$OUT/data/$task-dev.jsonl" \
          --task classification --rank 8 --alpha 16 --targets query,value --steps "$T" --batch-size "$BATCH" --eval-every $((T / 10)) \
          --max-length 64 --lr "$LR" --seed "$seed" --threads 2 $flag $EXTRA -o "$run" -q
      done
    done
  done
  "$BIN/coto-eval" report "$OUT/runs-$T" -o "$OUT/report-$T" --title "Convergence at $T steps" -q
  # The report's training table (dev accuracy, converged) and the runs that did not converge.
  echo "== $T steps"
  sed -n '/^## Training/,/^!\[/p' "$OUT/report-$T/report.md" | grep -E '^\||Not converged' || true
done
