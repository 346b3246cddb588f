#!/usr/bin/env bash
# scripts/kill-test.sh [N] - the long crash campaign of the in-place
# conversion engine (tests/test_vm_convert.c): N SIGKILLs at random instants
# of encrypt / deep rekey / decrypt conversions (half of them with new data
# written through the API meanwhile), and N simulated power cuts (the write
# in flight torn at a random byte; every write not yet fsync'd kept, undone
# or torn). After each, the disk is reopened, the conversion resumed and
# finished, and every sector compared with the model. Then N SIGKILLs at
# random instants of VM-level operations (encrypt, decrypt, deep rekey of
# disks and home) on a VM with NVRAM and suspend state and the host's
# control store (the authority records), every third one during a
# rollback that is then retried: after each, one vm resume must leave
# every byte of the disk and state files right, no plaintext in an
# encrypted VM, no .tmp-/.cvt debris in the home or the control store, a
# rolled-back VM as it was, and no second resume needed. Default N = 300.
# The CI suite runs the same tests with 12 kills, 24 power cuts and 6
# VM-level kills (with the control store too).
# VMENC_TEST_SEED=0x... repeats a run; SEEDS="0x1 0x2 ..." runs the VM
# campaign once per seed (N kills each) after the first full run.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
N=${1:-300}
bash scripts/deps.sh >/dev/null
cmake -S . -B build/kill -DCMAKE_BUILD_TYPE=Release -DVMENC_BUILD_BENCH=OFF >/dev/null
cmake --build build/kill -j2 --target test_vm_convert >/dev/null
start=$(date +%s)
VMENC_KILL_RUNS=$N VMENC_POWER_CUTS=$N VMENC_VM_KILL_RUNS=$N build/kill/test_vm_convert 2>&1 |
    tee /tmp/vmenc-kill-test.log |
    grep -E "seed|kills|VM kills|power cuts|PASSED|FAILED|lost|differs|wrong|plaintext"
rc=${PIPESTATUS[0]}
for seed in ${SEEDS:-}; do
    VMENC_TEST_SEED=$seed VMENC_KILL_RUNS=1 VMENC_POWER_CUTS=1 VMENC_VM_KILL_RUNS=$N build/kill/test_vm_convert 2>&1 |
        tee -a /tmp/vmenc-kill-test.log | grep -E "seed|VM kills|FAILED|wrong|plaintext|debris"
    r=${PIPESTATUS[0]}
    [ "$r" -eq 0 ] || rc=$r
done
echo "kill-test: N=$N, $(( $(date +%s) - start )) s, exit $rc"
exit "$rc"
