#!/usr/bin/env bash
# fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...] - long libFuzzer runs.
#
# Builds every harness in fuzz/ with clang, libFuzzer and ASan+UBSan into
# build/fuzz, then fuzzes each target (all by default) for the given time
# (default 60 s) starting from its corpus in fuzz/corpus/<name>/. New inputs
# go to build/fuzz/corpus/<name>/ (merge the interesting ones into the
# committed corpus by hand); crashes go to fuzz/artifacts/<name>/ and make
# the script fail. CI runs only the short replay (<name>_fuzz_smoke in ctest).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
SECS=${1:-60}
shift || true
bash scripts/deps.sh
CC=clang cmake -S . -B build/fuzz -DVMENC_FUZZ=ON -DVMENC_SANITIZE=ON -DVMENC_BUILD_TESTS=OFF \
    -DVMENC_BUILD_BENCH=OFF -DVMENC_BUILD_EXAMPLES=OFF >/dev/null
cmake --build build/fuzz -j"$(nproc)"
targets=("$@")
if ((${#targets[@]} == 0)); then
    for f in fuzz/*_fuzz.c; do t=$(basename "$f" .c); targets+=("${t%_fuzz}"); done
fi
rc=0
for t in "${targets[@]}"; do
    mkdir -p "build/fuzz/corpus/$t" "fuzz/artifacts/$t"
    echo "=== fuzzing $t for ${SECS}s ==="
    if ! "build/fuzz/${t}_fuzz" -max_total_time="$SECS" -print_final_stats=1 \
            -artifact_prefix="fuzz/artifacts/$t/" "build/fuzz/corpus/$t" "fuzz/corpus/$t"; then
        echo "fuzz/run.sh: $t found a crash: see fuzz/artifacts/$t/" >&2
        rc=1
    fi
done
exit $rc
