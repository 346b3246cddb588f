#!/usr/bin/env bash
# scripts/crash-sweep.sh [DISK_MIB] - the long deterministic crash sweep of
# the VM operations (tests/test_vm_crash_sweep.c): every durable step
# (rename, unlink, fsync of a file or directory) of every operation, each
# interrupted once by a crash (a forked child _exits there) and once by a
# single EIO, then one vm resume and a byte-for-byte check against the
# model. Disks of DISK_MIB MiB (default 8: eight 1 MiB segments each); the
# suite's run (ctest -R test_vm_crash_sweep) is a subset with 2 MiB disks
# that still covers every operation. VMENC_SWEEP_OPS=encrypt,... picks
# operations; VMENC_SWEEP_TMPDIR=/some/disk runs on a real file system
# (default /dev/shm: the fsyncs are counted, not timed).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
MIB=${1:-8}
cmake -S . -B build/sweep -DCMAKE_BUILD_TYPE=Release -DVMENC_BUILD_BENCH=OFF >/dev/null
cmake --build build/sweep -j2 --target test_vm_crash_sweep >/dev/null
start=$(date +%s)
set +e
VMENC_SWEEP_STRIDE=1 VMENC_SWEEP_DISK_MIB=$MIB build/sweep/test_vm_crash_sweep 2>&1 |
    tee /tmp/vmenc-crash-sweep.log | grep -E "durable steps|crash sweep|FAIL|PASSED|FAILED"
rc=${PIPESTATUS[0]}
echo "crash-sweep: disks of $MIB MiB, $(( $(date +%s) - start )) s, exit $rc"
exit "$rc"
