#!/usr/bin/env bash
# scripts/demo.sh - install dependencies, build, and run the vmenc demo: a VM
# encrypted end to end with the embedded file KMS (examples/vm_demo.c), then
# the disk-image throughput example (examples/disk_demo.c).
# Arguments go to vm_demo: [WORKDIR [DISK_MIB]].
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
bash scripts/deps.sh
cmake -S . -B build/demo -DCMAKE_BUILD_TYPE=Release -DVMENC_BUILD_TESTS=OFF >/dev/null
cmake --build build/demo -j"$(nproc)"
build/demo/vm_demo "$@"
echo
exec build/demo/disk_demo "${TMPDIR:-/tmp}/vmenc-demo-disk.img" 256
