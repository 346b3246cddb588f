#!/usr/bin/env bash
# scripts/demo.sh - install dependencies, build, and run the vmenc demo.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
bash scripts/deps.sh
cmake -S . -B build/demo -DCMAKE_BUILD_TYPE=Release -DVMENC_BUILD_TESTS=OFF >/dev/null
cmake --build build/demo -j"$(nproc)"
exec build/demo/disk_demo "$@"
