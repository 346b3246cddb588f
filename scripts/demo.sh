#!/usr/bin/env bash
# scripts/demo.sh - install what the demo needs (only the build dependencies:
# scripts/deps.sh demo), build the vmenc tool, and run `vmenc demo`: the
# whole VM-encryption story in a temporary workspace with the embedded file
# key provider, every step checked (docs/cli.md). Arguments go to the demo
# (e.g. --json, --disk-mib N, --keep DIR). The test toolchain (QEMU, Go,
# SoftHSM, PyKMIP, nbdkit, ...) is scripts/test.sh's business, not the demo's.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
bash scripts/deps.sh demo
cmake -S . -B build/demo -DCMAKE_BUILD_TYPE=Release -DVMENC_BUILD_TESTS=OFF -DVMENC_BUILD_BENCH=OFF \
    -DVMENC_BUILD_NBDKIT=OFF >/dev/null
cmake --build build/demo -j"$(nproc)" --target vmenc_cli
exec build/demo/vmenc demo "$@"
