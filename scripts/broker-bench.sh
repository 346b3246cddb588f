#!/usr/bin/env bash
# scripts/broker-bench.sh [BUILD_DIR] [N] - the key broker's benchmark
# (docs/broker.md "Tests and figures"): KEK release latency p50/p99 through
# a broker against direct KMIP to the same PyKMIP in the same run, with and
# without a TPM quote per release (swtpm), and releases/s of one broker
# under 4 host threads. Runs tests/test_broker.c's bench case
# (VMENC_BROKER_BENCH=N, default 200) with its real parts: PyKMIP, a
# 3-member etcd cluster, swtpm. Ratios, not thresholds: nothing fails on
# speed.
set -euo pipefail
BUILD=${1:-build}
N=${2:-200}
VMENC_BROKER_BENCH=$N "$BUILD/test_broker" 2>/dev/null | sed -n '/broker bench/,/releases\/s/p'
