#!/usr/bin/env bash
# Builds the libFuzzer targets (Fuzz/*.swift) with ASan and runs each for SECONDS (default 20).
#   scripts/fuzz.sh [SECONDS] [RUNS]   (RUNS: stop after this many executions instead, e.g. 10000000)
#   FUZZ_ONLY="gguf index" scripts/fuzz.sh ...   runs only those targets
# SwiftPM's --sanitize=fuzzer does not instrument the package's code here, so the modules are compiled
# with swiftc directly: Numerics, Checkpoint and Model as static libraries with coverage + ASan.
# Checkpoint imports swift-crypto (configuration hashes): its modules and objects come from the SwiftPM debug
# build (`make fuzz` builds it first), uninstrumented, which is all the parsers need.
# Leak detection is off: the Swift runtime's regex parser leaks when a pattern fails to parse
# (libswift_RegexParser), which is not ours to fix; ASan's memory-error checks stay on.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${1:-20}"
RUNS="${2:-}"
OUT=.build/fuzz
mkdir -p "$OUT"
SPM=.build/debug
CRYPTO_SRC=.build/checkouts/swift-crypto/Sources
if [ ! -f "$SPM/Modules/Crypto.swiftmodule" ]; then echo "fuzz: no $SPM/Modules/Crypto.swiftmodule: run swift build first" >&2; exit 1; fi
INC="-I Sources/CBLAS -I Sources/CLAPACKE -I Sources/CSys/include $(pkg-config --cflags-only-I openblas lapacke | sed 's/-I/-Xcc -I/g') -I $OUT"
# Crypto's own modules (C: BoringSSL, XKCP and their shims; Swift: CryptoBoringWrapper, Crypto).
CRYPTO_TARGETS=(CCryptoBoringSSL CCryptoBoringSSLShims CXKCP CXKCPShims CryptoBoringWrapper Crypto)
INC="$INC -I $SPM/Modules"
for t in "${CRYPTO_TARGETS[@]}"; do [ -d "$CRYPTO_SRC/$t/include" ] && INC="$INC -I $CRYPTO_SRC/$t/include"; done
CRYPTO_OBJS="$(for t in "${CRYPTO_TARGETS[@]}"; do find "$SPM/$t.build" -name '*.o'; done | sort | tr '\n' ' ')"
LIBS="$(pkg-config --libs openblas lapacke)"
SAN="-sanitize=fuzzer,address -O -g"
compile() {  # LOGNAME swiftc-arguments... : a failed build fails the script (warnings are not shown)
  local log="$OUT/$1.build.log"; shift
  if ! swiftc "$@" > "$log" 2>&1; then
    grep -v "warning:" "$log" >&2 || true
    echo "fuzz: BUILD FAILED ($log)" >&2
    exit 1
  fi
}
build_lib() {  # name sources...
  local name="$1"; shift
  compile "lib$name" -parse-as-library -package-name coto -module-name "$name" -emit-module -emit-module-path "$OUT/$name.swiftmodule" \
    -emit-library -static -o "$OUT/lib$name.a" $SAN $INC "$@"
}
if [ ! -f "$OUT/libModel.a" ] || [ -n "$(find Sources/Numerics Sources/Checkpoint Sources/Model Sources/CSys -newer "$OUT/libModel.a" \( -name '*.swift' -o -name '*.[ch]' \) | head -1)" ]; then
  echo "fuzz: building instrumented libraries"
  if ! clang -c -O2 -g -fsanitize=address -I Sources/CSys/include Sources/CSys/csys.c -o "$OUT/csys.o" > "$OUT/csys.build.log" 2>&1; then
    cat "$OUT/csys.build.log" >&2; echo "fuzz: BUILD FAILED ($OUT/csys.build.log)" >&2; exit 1
  fi
  # Sources in subdirectories too (Checkpoint/GGUF, Model/Kernels), in a stable order.
  build_lib Numerics $(find Sources/Numerics -name '*.swift' | sort)
  build_lib Checkpoint $(find Sources/Checkpoint -name '*.swift' | sort)
  build_lib Model $(find Sources/Model -name '*.swift' | sort)
fi
status=0
export ASAN_OPTIONS="detect_leaks=0:${ASAN_OPTIONS:-}"
for f in Fuzz/*.swift; do
  t="$(basename "$f" .swift)"
  if [ -n "${FUZZ_ONLY:-}" ] && [[ " $FUZZ_ONLY " != *" $t "* ]]; then continue; fi
  compile "fuzz-$t" -parse-as-library -sanitize=fuzzer,address -O -g $INC "$f" -L "$OUT" -lModel -lCheckpoint -lNumerics "$OUT/csys.o" $CRYPTO_OBJS $LIBS -o "$OUT/fuzz-$t"
  corpus="$OUT/corpus-$t"
  mkdir -p "$corpus"
  cp -n Fixtures/fuzz/"$t"/* "$corpus"/ 2>/dev/null || true
  limit="-max_total_time=$SECONDS_EACH"
  [ -n "$RUNS" ] && limit="-runs=$RUNS"
  echo "fuzz: $t ($limit)"
  if ! "$OUT/fuzz-$t" "$corpus" $limit -max_len=65536 -rss_limit_mb=4096 -detect_leaks=0 -print_final_stats=1 -artifact_prefix="$OUT/crash-$t-" 2> "$OUT/$t.log"; then
    echo "fuzz: $t FOUND A CRASH (see $OUT/$t.log)"; tail -30 "$OUT/$t.log"; status=1
  fi
  grep -E "stat::number_of_executed_units|stat::average_exec_per_sec" "$OUT/$t.log" | sed "s/^/fuzz: $t /"
done
exit $status
