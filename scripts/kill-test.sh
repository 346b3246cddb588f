#!/usr/bin/env bash
# scripts/kill-test.sh [N] - the long crash campaign of the in-place
# conversion engine (tests/test_vm_convert.c): N SIGKILLs at random instants
# of encrypt / deep rekey / decrypt conversions (half of them with new data
# written through the API meanwhile), and N simulated power cuts (the write
# in flight torn at a random byte; every write not yet fsync'd kept, undone
# or torn). After each, the disk is reopened, the conversion resumed and
# finished, and every sector compared with the model. Default N = 300.
# The CI suite runs the same test with 12 kills and 24 power cuts.
# VMENC_TEST_SEED=0x... repeats a run.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
N=${1:-300}
bash scripts/deps.sh >/dev/null
cmake -S . -B build/kill -DCMAKE_BUILD_TYPE=Release -DVMENC_BUILD_BENCH=OFF >/dev/null
cmake --build build/kill -j"$(nproc)" --target test_vm_convert >/dev/null
start=$(date +%s)
VMENC_KILL_RUNS=$N VMENC_POWER_CUTS=$N build/kill/test_vm_convert 2>&1 | tee /tmp/vmenc-kill-test.log |
    grep -E "seed|kills|power cuts|PASSED|FAILED|lost|differs"
rc=${PIPESTATUS[0]}
echo "kill-test: N=$N, $(( $(date +%s) - start )) s, exit $rc"
exit "$rc"
