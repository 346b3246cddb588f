#!/usr/bin/env bash
# scripts/test.sh - install dependencies, build, and run the whole vmenc test
# suite three times: a normal build (-Wall -Wextra -Werror), then under
# ASan+UBSan, then under ThreadSanitizer. Tests start and stop their own
# PyKMIP servers and SoftHSM2 tokens. VMENC_TEST_MODES picks the builds
# (default "release asan tsan").
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
bash scripts/deps.sh test
MODES=${VMENC_TEST_MODES:-release asan tsan}
JOBS=$(nproc)
rc=0
for mode in $MODES; do
    case $mode in
        release) opts=(-DCMAKE_BUILD_TYPE=Release) ;;
        asan)    opts=(-DCMAKE_BUILD_TYPE=Debug -DVMENC_SANITIZE=ON) ;;
        tsan)    opts=(-DCMAKE_BUILD_TYPE=Debug -DVMENC_TSAN=ON) ;;
        *) echo "unknown mode $mode" >&2; exit 2 ;;
    esac
    dir=build/test-$mode
    echo "=== vmenc tests: $mode ($dir) ==="
    cmake -S . -B "$dir" -DVMENC_WERROR=ON -DVMENC_BUILD_BENCH=ON "${opts[@]}" >/dev/null
    cmake --build "$dir" -j"$JOBS"
    if ! (cd "$dir" && ctest --output-on-failure -j"$JOBS" --timeout 900); then
        rc=1
    fi
done
exit $rc
