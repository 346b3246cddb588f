#!/usr/bin/env bash
# scripts/cluster-bench.sh BUILD_DIR [OPS] - cluster mode against single-host
# mode in the same run (docs/cluster.md "Measured costs"): a 3-member etcd
# cluster (mutual TLS) on loopback, one cluster host and one single-host
# workspace; on each, `vmenc cluster bench`: policy decisions per second
# from the local model, and p50/p99 of OPS grants, write-opens of a VM and
# VM creates. Then creates/s from 3 cluster hosts at once. Prints JSON lines.
set -euo pipefail
BUILD=$(cd "${1:?build dir}" && pwd)
OPS=${2:-100}
SRC=$(cd "$(dirname "$0")/.." && pwd)
VMENC=$BUILD/vmenc
T=$(mktemp -d /tmp/vmenc-cluster-bench-XXXXXX)
trap '"$SRC/tests/support/etcd/stop-etcd-cluster.sh" "$T/etcd" >/dev/null 2>&1; rm -rf "$T"' EXIT
eval "$("$SRC/tests/support/etcd/start-etcd-cluster.sh" "$T/etcd" 2>/dev/null)"
TLS=(--endpoints "$VMENC_ETCD_ENDPOINTS" --cacert "$VMENC_ETCD_CACERT" --cert "$VMENC_ETCD_CERT" --key "$VMENC_ETCD_KEY")
export VMENC_NO_SYNC=${VMENC_NO_SYNC:-1} VMENC_USER=alice
echo "bench passphrase" > "$T/pass"
w() { local ws=$1; shift; "$VMENC" --workspace "$T/$ws" --passphrase-file "$T/pass" "$@"; }
for h in 1 2 3 9; do
    "$VMENC" init "$T/ws$h" --admin alice --host "esx0$h" --kdf-memory 8192 --kdf-passes 1 --passphrase-file "$T/pass" -q
done
echo "shared keystore passphrase" > "$T/shared.pass"
FAST=(--option kdf_ops=1 --option kdf_mem_kib=8192)
w ws1 kms add shared --type file --endpoint "$T/shared.vks" --create --secret-file "$T/shared.pass" "${FAST[@]}" -q
for h in 2 3; do w "ws$h" kms add shared --type file --endpoint "$T/shared.vks" --secret-file "$T/shared.pass" "${FAST[@]}" -q; done
w ws1 cluster init "${TLS[@]}" --name bench --key-provider shared -q
w ws1 vm create vmb --disk 1M -q
w ws9 vm create vmb --disk 1M -q
echo "single-host: $(w ws9 --json cluster bench --vm vmb --ops "$OPS")"
echo "cluster:     $(w ws1 --json cluster bench --vm vmb --ops "$OPS")"
# creates/s from 3 hosts at once (each its own workspace and datastore; one cluster policy)
for h in 2 3; do
    sed -i "s|^datastore = .*|datastore = \"$T/ws1/datastore\"|" "$T/ws$h/vmenc.conf"
    w "ws$h" cluster join "${TLS[@]}" --name bench -q
done
t0=$(date +%s%N)
for h in 1 2 3; do w "ws$h" --json cluster bench --decisions 1000 --ops "$OPS" > "$T/par$h.json" & done
wait
t1=$(date +%s%N)
echo "3 hosts at once: $((3 * OPS)) creates (+ as many grants) in $(( (t1 - t0) / 1000000 )) ms"
for h in 1 2 3; do echo "  esx0$h: $(cat "$T/par$h.json")"; done
