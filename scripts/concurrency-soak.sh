#!/usr/bin/env bash
# scripts/concurrency-soak.sh [BUILD_DIR] - the model-based concurrency test
# (tests/test_workspace_concurrency.c) run long: rounds of N processes x M
# random operations on one workspace, each checked against the model of the
# acknowledged operations, for SECONDS (docs/workspace.md "Many processes").
# Environment: VMENC_SOAK_SECONDS (default 300), VMENC_CONC_PROCS (default
# 8), VMENC_CONC_OPS (default 200). A failing round keeps its workspace and
# prints its seed (VMENC_CONC_SEED=... repeats it).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build}
BIN="$BUILD/test_workspace_concurrency"
[[ -x $BIN ]] || { echo "build $BIN first (cmake --build $BUILD --target test_workspace_concurrency)" >&2; exit 2; }
export VMENC_CONC_PROCS=${VMENC_CONC_PROCS:-8} VMENC_CONC_OPS=${VMENC_CONC_OPS:-200}
end=$(( $(date +%s) + ${VMENC_SOAK_SECONDS:-300} ))
round=0
while (( $(date +%s) < end )); do
    round=$((round + 1))
    export VMENC_CONC_SEED=$(( (RANDOM << 15 | RANDOM) + 1 ))
    if ! out=$("$BIN" 2>&1); then
        echo "$out"
        echo "round $round FAILED (VMENC_CONC_SEED=$VMENC_CONC_SEED VMENC_CONC_PROCS=$VMENC_CONC_PROCS VMENC_CONC_OPS=$VMENC_CONC_OPS)" >&2
        exit 1
    fi
    echo "round $round: $(grep '^model:' <<<"$out")"
done
echo "soak: $round rounds of $VMENC_CONC_PROCS x $VMENC_CONC_OPS operations, all equal to their model"
