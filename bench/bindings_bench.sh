#!/usr/bin/env bash
# bench/bindings_bench.sh BUILD_DIR - XTS throughput through C, Python and Go
# in the same run (4 KiB and 64 KiB batches, in place, 4 KiB sectors) and
# the per-call overhead of a trivial call (vmenc_xts_sector_size).
set -euo pipefail
BUILD=$(cd "${1:-build}" && pwd)
SRC=$(cd "$(dirname "$0")/.." && pwd)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cmake --install "$BUILD" --prefix "$T/prefix" >/dev/null
LIBDIR=$(dirname "$(find "$T/prefix" -name libvmenc.so.0 | head -1)")
export PKG_CONFIG_PATH=$LIBDIR/pkgconfig LD_LIBRARY_PATH=$LIBDIR VMENC_LIBRARY=$LIBDIR/libvmenc.so.0

cat > "$T/c.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <vmenc/vmenc.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
int main(void) {
    unsigned char key[64]; for (int i = 0; i < 64; i++) key[i] = (unsigned char)(i * 7 + 1);
    vmenc_xts *x; if (vmenc_xts_new(key, 64, 4096, &x)) return 1;
    static unsigned char buf[65536];
    size_t sizes[2] = {4096, 65536};
    for (int s = 0; s < 2; s++) {
        size_t n = sizes[s]; long iters = (long)((2u << 30) / n); double t0 = now();
        for (long i = 0; i < iters; i++) if (vmenc_xts_encrypt(x, (unsigned long)i, buf, buf, n)) return 1;
        printf("c %zu %.1f\n", n, (double)n * iters / (now() - t0) / 1e6);
    }
    long iters = 20000000; double t0 = now(); volatile unsigned v = 0;
    for (long i = 0; i < iters; i++) v += vmenc_xts_sector_size(x);
    printf("c call %.1f\n", (now() - t0) / iters * 1e9);
    vmenc_xts_free(x);
    return 0;
}
C
cc -O2 "$T/c.c" -o "$T/cbench" $(pkg-config --cflags --libs vmenc)
"$T/cbench" > "$T/results"

PYTHONPATH=$SRC/bindings/python /usr/bin/python3 - >> "$T/results" <<'PY'
import time, vmenc
x = vmenc.XTS(bytes((i * 7 + 1) & 255 for i in range(64)), 4096)
for n in (4096, 65536):
    buf = bytearray(n); iters = (2 << 30) // n // 4
    t0 = time.perf_counter()
    for i in range(iters):
        x.encrypt_into(i, buf, buf)
    print("python", n, "%.1f" % (n * iters / (time.perf_counter() - t0) / 1e6))
iters = 1000000; t0 = time.perf_counter()
for i in range(iters):
    x.sector_size
print("python call %.1f" % ((time.perf_counter() - t0) / iters * 1e9))
PY

cd "$SRC/bindings/go"
GOCACHE=$T/gocache GOPROXY=off GOFLAGS=-mod=mod go test -run '^$' -bench 'XTS|Trivial' -benchtime 2s . |
    awk '/BenchmarkXTS4K/ {print "go 4096", $(NF-1)} /BenchmarkXTS64K/ {print "go 65536", $(NF-1)}
         /BenchmarkTrivialCall/ {print "go call", $3}' >> "$T/results"

awk '
$2 == "call" { call[$1] = $3; next }
{ mbps[$1 " " $2] = $3 }
END {
  printf "%-8s %12s %12s %12s\n", "", "4 KiB MB/s", "64 KiB MB/s", "call ns"
  for (i = 1; i <= 3; i++) {
    l = (i == 1 ? "c" : (i == 2 ? "python" : "go"))
    printf "%-8s %12.0f %12.0f %12.1f", l, mbps[l " 4096"], mbps[l " 65536"], call[l]
    if (l != "c") printf "   (%.2fx / %.2fx of C)", mbps[l " 4096"] / mbps["c 4096"], mbps[l " 65536"] / mbps["c 65536"]
    printf "\n"
  }
}' "$T/results"
