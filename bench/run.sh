#!/usr/bin/env bash
# bench/run.sh [NAME...] - build (Release) and run the benchmarks; every
# benchmark prints machine-readable JSON lines (and compares against OpenSSL
# in the same run where there is an OpenSSL equivalent), then a human table.
# Default: all of xts aead keys kms policy audit pkcs11 kmip vm. Results are only as
# quiet as the machine: check `uptime` first.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
bash scripts/deps.sh
cmake -S . -B build/bench -DCMAKE_BUILD_TYPE=Release -DVMENC_BUILD_TESTS=OFF >/dev/null
cmake --build build/bench -j"$(nproc)"
names=("$@")
((${#names[@]})) || names=(xts aead keys kms policy audit pkcs11 kmip vm)
for n in "${names[@]}"; do
    echo "=== bench_$n ==="
    case $n in
        xts) build/bench/bench_xts; build/bench/bench_xts --threads ;;
        *)   build/bench/bench_"$n" ;;
    esac
done
