#!/usr/bin/env bash
# The demo resumes after a kill: a QUICK demo is run once through (the reference), then again into another
# directory killed twice, mid-training and mid-sweep (the whole process group, as a Ctrl-C or a lost machine
# would), and started again each time. The resumed run must end with byte-identical adapters and sweep results,
# and the same report numbers (timings and the cost section aside, they describe the invocations).
#   bash scripts/test-demo-resume.sh [WORKDIR]   (from the repository root, after `make release`)
set -euo pipefail
W="${1:-$(mktemp -d)}"
mkdir -p "$W"
demo() { QUICK=1 DEMO_OUT="$1" setsid bash scripts/demo.sh > "$1.log" 2>&1; }
# Starts a demo into $1 and kills its process group once the glob $2 matches (at least $3 files).
demo_killed_when() {
  local out=$1 glob=$2 want=$3
  QUICK=1 DEMO_OUT="$out" setsid bash scripts/demo.sh >> "$out.log" 2>&1 &
  local pid=$!
  while kill -0 $pid 2>/dev/null; do
    if (( $(compgen -G "$glob" | wc -l) >= want )); then
      kill -TERM -- -$pid 2>/dev/null || true
      wait $pid || true
      echo "killed with $(compgen -G "$glob" | wc -l) of $glob"
      return 0
    fi
    sleep 0.2
  done
  echo "the demo finished before it could be killed ($glob)" >&2
  return 1
}

echo "reference run: $W/ref"
rm -rf "$W/ref" "$W/res"
demo "$W/ref"
echo "run killed mid-training: $W/res"
demo_killed_when "$W/res" "$W/res/runs/*/metrics.json" 1
echo "resumed, killed mid-sweep"
demo_killed_when "$W/res" "$W/res/sweeps/*.json" 2
echo "resumed to the end"
QUICK=1 DEMO_OUT="$W/res" bash scripts/demo.sh >> "$W/res.log" 2>&1
grep -q "skipped\|finished already\|kept" "$W/res.log" || true

fail=0
for a in "$W"/ref/runs/*/adapter_model.safetensors; do
  b="$W/res/runs/${a#"$W"/ref/runs/}"
  cmp -s "$a" "$b" || { echo "DIFFERS: $b"; fail=1; }
done
# Sweep results: the points (timings and configuration records aside).
strip() { sed -E 's/"(seconds|[a-z_]*_seconds|elapsed[a-z_]*|created|date)": [^,}]*//g' "$1"; }
for a in "$W"/ref/sweeps/*.json; do
  b="$W/res/sweeps/$(basename "$a")"
  [ -f "$b" ] || { echo "MISSING: $b"; fail=1; continue; }
  diff -q <(strip "$a") <(strip "$b") > /dev/null || { echo "DIFFERS: $b"; fail=1; }
done
n_ref=$(ls "$W"/ref/sweeps/*.json | wc -l); n_res=$(ls "$W"/res/sweeps/*.json | wc -l)
[ "$n_ref" = "$n_res" ] || { echo "sweep files: $n_ref in the reference, $n_res resumed"; fail=1; }
# The findings (verdicts and values) apart from training time.
find_rows() { grep -E '^\| (single-task|interpolation|magnitude|every other|Shapley|merge)' "$1/report/report.md"; }
diff <(find_rows "$W/ref") <(find_rows "$W/res") || { echo "the findings differ"; fail=1; }
if [ $fail = 0 ]; then
  echo "resume test passed: $(ls "$W"/ref/runs/*/adapter_model.safetensors | wc -l) adapters, $n_ref sweep files and the findings identical"
else
  echo "resume test FAILED"; exit 1
fi
