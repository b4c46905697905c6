#!/usr/bin/env bash
# The demo resumes after a kill: a QUICK demo is run once through (the reference), then again into another
# directory killed three times, mid-training, mid-sweep and mid-search (the whole process group, as a Ctrl-C or
# a lost machine would), and started again each time. The resumed run must end with byte-identical adapters and sweep results,
# and the same report numbers (timings and the cost section aside, they describe the invocations).
#   bash scripts/test-demo-resume.sh [WORKDIR] [--compare-only]   (from the repository root, after `make release`;
#   --compare-only checks the runs a previous call left in WORKDIR)
set -euo pipefail
W="${1:-$(mktemp -d)}"
COMPARE_ONLY=0; [ "${2:-}" = --compare-only ] && COMPARE_ONLY=1
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

if [ $COMPARE_ONLY = 0 ]; then
echo "reference run: $W/ref"
rm -rf "$W/ref" "$W/res"
demo "$W/ref"
echo "run killed mid-training: $W/res"
demo_killed_when "$W/res" "$W/res/runs/*/metrics.json" 1
echo "resumed, killed mid-sweep"
demo_killed_when "$W/res" "$W/res/sweeps/*.json" 2
echo "resumed, killed mid-search (one shard of the second search done)"
demo_killed_when "$W/res" "$W/res/search/*/generations/g0001-shard-1-of-*.json" 2
echo "resumed to the end"
QUICK=1 DEMO_OUT="$W/res" bash scripts/demo.sh >> "$W/res.log" 2>&1
fi

fail=0
for a in "$W"/ref/runs/*/adapter_model.safetensors; do
  b="$W/res/runs/${a#"$W"/ref/runs/}"
  cmp -s "$a" "$b" || { echo "DIFFERS: $b"; fail=1; }
done
# Sweep results: each file's content (points, inputs' digests), the run directory's name and the hashes that
# cover paths aside; their file names carry such a hash too, so they are matched as a set of contents.
digest() { sed -e "s#$W/$2/#$W/X/#g" -e '/"hash"/d' "$1" | md5sum | cut -d' ' -f1; }
ref_set=$(for f in "$W"/ref/sweeps/*.json; do digest "$f" ref; done | sort)
res_set=$(for f in "$W"/res/sweeps/*.json; do digest "$f" res; done | sort)
n_ref=$(echo "$ref_set" | wc -l); n_res=$(echo "$res_set" | wc -l)
[ "$ref_set" = "$res_set" ] || { echo "sweep results differ ($n_ref files in the reference, $n_res resumed)"; diff <(echo "$ref_set") <(echo "$res_set") | head; fail=1; }
# The findings table's rows (verdicts and values) apart from training time.
find_rows() {
  grep -E '\*\*(reproduced|not reproduced|within noise|undecided|holds|grows|shrinks|vanishes|reverses|absent)' "$1/report/report.md" |
    grep -v "training steps' time"
}
[ -n "$(find_rows "$W/ref")" ] || { echo "no findings rows in the reference report"; fail=1; }
diff <(find_rows "$W/ref") <(find_rows "$W/res") || { echo "the findings differ"; fail=1; }
# The searches' best adapters and the RegMean merges.
for a in "$W"/ref/search/*/best/adapter_model.safetensors "$W"/ref/merged/*/adapter_model.safetensors; do
  b="$W/res/${a#"$W"/ref/}"
  cmp -s "$a" "$b" || { echo "DIFFERS: $b"; fail=1; }
done
if [ $fail = 0 ]; then
  echo "resume test passed: $(ls "$W"/ref/runs/*/adapter_model.safetensors | wc -l) adapters, $n_ref sweep files, $(ls -d "$W"/ref/search/*/best | wc -l) searched and $(ls -d "$W"/ref/merged/* | wc -l) RegMean merges and the findings identical"
else
  echo "resume test FAILED"; exit 1
fi
