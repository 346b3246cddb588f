#!/usr/bin/env bash
# bench/nbdkit_bench.sh [BUILD_DIR] - block-layer benchmark of the nbdkit
# plugin (docs/nbdkit.md). `qemu-img bench` (read and write; 4 KiB and 64 KiB;
# queue depth 1 and 16) through NBD over a Unix socket against, in the same run
# and on the same random data:
#   plain  nbdkit's own `file` plugin on a raw image
#   vmenc  the vmenc plugin on an encrypted disk (XTS-AES-256)
#   luks   qemu-nbd serving a `qemu-img create -f luks` image (QEMU's own
#          userspace XTS-AES-256: what a QEMU user would otherwise pick)
# Each cell is the best of BENCH_REPS (default 3) runs, the three targets
# interleaved so that drift on a shared machine hits them alike. Images are in
# the page cache, so this measures the I/O path and the cipher, not a disk.
# One JSON line per cell, then a table. BENCH_MIB (default 256) sizes the disk;
# BENCH_SECONDS (default 1) is the rough length of one run.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)
PLUGIN=$BUILD/nbdkit-vmenc-plugin.so
VMENC=$BUILD/vmenc
MIB=${BENCH_MIB:-256}
REPS=${BENCH_REPS:-3}
SECS=${BENCH_SECONDS:-1}
[[ -e $PLUGIN && -x $VMENC ]] || { echo "build first: $PLUGIN / $VMENC missing" >&2; exit 2; }
for t in nbdkit qemu-img qemu-nbd python3; do command -v $t >/dev/null || { echo "$t missing (scripts/deps.sh)" >&2; exit 2; }; done

T=$(mktemp -d /tmp/vmenc-nbdkit-bench-XXXXXX)
PIDS=()
cleanup() { local p; for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; rm -rf "$T"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
wait_sock() { for _ in $(seq 200); do [[ -S $1 ]] && return 0; sleep 0.05; done; echo "server for $1 did not start" >&2; exit 1; }

echo "bench passphrase" >"$T/pass"
V() { "$VMENC" --workspace "$T/ws" --user alice --passphrase-file "$T/pass" "$@"; }
V init "$T/ws" --admin alice --kdf-memory 8192 --kdf-passes 1 >/dev/null
V vm create vm1 --policy "VM Encryption Policy" --disk "${MIB}M" >/dev/null

# the same random data everywhere: reading holes would skip the cipher
head -c "$((MIB << 20))" /dev/urandom >"$T/plain.img"
qemu-img create -q -f luks --object secret,id=s0,file="$T/pass" -o key-secret=s0,iter-time=250 \
    "$T/luks.img" "${MIB}M"

S_PLAIN=$T/plain.sock S_VMENC=$T/vmenc.sock S_LUKS=$T/luks.sock
nbdkit -f -U "$S_PLAIN" file file="$T/plain.img" & PIDS+=($!)
nbdkit -f -U "$S_VMENC" "$PLUGIN" workspace="$T/ws" vm=vm1 user=alice passphrase-file="$T/pass" & PIDS+=($!)
qemu-nbd --persistent --shared=4 --cache=writeback -k "$S_LUKS" --object secret,id=s0,file="$T/pass" \
    --image-opts driver=luks,key-secret=s0,file.driver=file,file.filename="$T/luks.img" & PIDS+=($!)
wait_sock "$S_PLAIN"; wait_sock "$S_VMENC"; wait_sock "$S_LUKS"
uri() { echo "nbd+unix:///?socket=$1"; }
qemu-img convert -n -f raw -O raw "$T/plain.img" "$(uri "$S_VMENC")"
qemu-img convert -n -f raw -O raw "$T/plain.img" "$(uri "$S_LUKS")"

# run SOCKET RW BS QD COUNT: prints ops/s of one qemu-img bench run
run() {
    local w=(); [[ $2 == write ]] && w=(-w)
    local out
    out=$(qemu-img bench -f raw "${w[@]}" -c "$5" -d "$4" -s "$3" -S "$3" "$(uri "$1")" 2>&1) ||
        { echo "qemu-img bench failed: $out" >&2; exit 1; }
    awk -v n="$5" '/Run completed in/ {printf "%.0f\n", n / $4}' <<<"$out"
}

echo "# nbdkit $(nbdkit --version | awk '{print $2}'), $(qemu-img --version | head -1), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# disk ${MIB} MiB, best of $REPS runs of ~${SECS}s each"
RESULTS=$T/results.jsonl
for rw in read write; do
    for bs in 4096 65536; do
        for qd in 1 16; do
            # size the run from a short calibration on the plain server
            probe=$(run "$S_PLAIN" "$rw" "$bs" "$qd" 2000)
            count=$(( probe * SECS )); (( count < 2000 )) && count=2000
            best_p=0 best_v=0 best_l=0
            for _ in $(seq "$REPS"); do
                p=$(run "$S_PLAIN" "$rw" "$bs" "$qd" "$count"); (( p > best_p )) && best_p=$p
                v=$(run "$S_VMENC" "$rw" "$bs" "$qd" "$count"); (( v > best_v )) && best_v=$v
                l=$(run "$S_LUKS" "$rw" "$bs" "$qd" "$count"); (( l > best_l )) && best_l=$l
            done
            python3 - "$rw" "$bs" "$qd" "$count" "$best_p" "$best_v" "$best_l" <<'EOF' | tee -a "$RESULTS"
import json, sys
rw, bs, qd, count, p, v, l = sys.argv[1], *map(int, sys.argv[2:])
target = 0.8 if bs >= 65536 else 0.7
mib = lambda iops: round(iops * bs / 1048576, 1)
print(json.dumps({"bench": "nbdkit", "op": rw, "block": bs, "depth": qd, "count": count,
                  "plain_iops": p, "vmenc_iops": v, "luks_iops": l,
                  "plain_mibs": mib(p), "vmenc_mibs": mib(v), "luks_mibs": mib(l),
                  "ratio_vs_plain": round(v / p, 3), "target": target, "meets_target": v / p >= target,
                  "ratio_vs_luks": round(v / l, 3)}))
EOF
        done
    done
done
python3 - "$RESULTS" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("\n%-6s %6s %3s %10s %10s %10s %8s %7s %8s" % ("op", "block", "qd", "plain MiB/s", "vmenc MiB/s", "luks MiB/s",
                                                 "vs plain", "target", "vs luks"))
for r in rows:
    print("%-6s %6s %3d %11.1f %11.1f %10.1f %8.2f %6.1f%s %8.2f" % (
        r["op"], "%dK" % (r["block"] // 1024), r["depth"], r["plain_mibs"], r["vmenc_mibs"], r["luks_mibs"],
        r["ratio_vs_plain"], r["target"], "" if r["meets_target"] else "!", r["ratio_vs_luks"]))
EOF
