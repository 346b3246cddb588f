#!/usr/bin/env bash
# bench/bindings_bench.sh [--rounds N] [BUILD_DIR] - XTS throughput through C,
# Python and Go in the same run, in place, 4 KiB sectors:
#   single: one call per I/O of 4 KiB or 64 KiB (vmenc_xts_encrypt,
#           XTS.encrypt_into, XTS.Encrypt);
#   batch:  one call per vector of 64 I/Os of 4 KiB or 64 KiB
#           (vmenc_xts_encrypt_iov, XTS.encrypt_iov, XTS.EncryptIOV), the
#           vector rebuilt for every call in all three languages;
# and the per-call overhead of a trivial call (vmenc_xts_sector_size).
#
# Each round runs C, then Python, then Go, and every ratio is against C in
# the same round; the summary is the median over rounds (with min and max
# of the ratio), one JSON line per (language, mode, I/O size) on stdout,
# then a table on stderr. The machine's other load moves single rounds;
# read the medians.
set -euo pipefail
ROUNDS=5
if [[ ${1:-} == --rounds ]]; then ROUNDS=$2; shift 2; fi
BUILD=$(cd "${1:-build}" && pwd)
SRC=$(cd "$(dirname "$0")/.." && pwd)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cmake --install "$BUILD" --prefix "$T/prefix" >/dev/null
LIBDIR=$(dirname "$(find "$T/prefix" -name libvmenc.so.0 | head -1)")
export PKG_CONFIG_PATH=$LIBDIR/pkgconfig LD_LIBRARY_PATH=$LIBDIR VMENC_LIBRARY=$LIBDIR/libvmenc.so.0
BATCH=64

# Output of every harness: "<lang> <mode> <io_bytes> <MB/s>" and "<lang> call <ns>".
cat > "$T/c.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <vmenc/vmenc.h>
enum { BATCH = 64 };
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
int main(void) {
    unsigned char key[64]; for (int i = 0; i < 64; i++) key[i] = (unsigned char)(i * 7 + 1);
    vmenc_xts *x; if (vmenc_xts_new(key, 64, 4096, &x)) return 1;
    unsigned char *buf = malloc((size_t)BATCH * 65536);
    if (buf == NULL) return 1;
    for (size_t i = 0; i < (size_t)BATCH * 65536; i++) buf[i] = (unsigned char)i;
    size_t sizes[2] = {4096, 65536};
    for (int s = 0; s < 2; s++) {
        size_t n = sizes[s]; long iters = (long)((1u << 30) / n); double t0 = now();
        for (long i = 0; i < iters; i++) if (vmenc_xts_encrypt(x, (unsigned long)i, buf, buf, n)) return 1;
        printf("c single %zu %.1f\n", n, (double)n * iters / (now() - t0) / 1e6);
    }
    for (int s = 0; s < 2; s++) {
        size_t n = sizes[s]; long iters = (long)((1u << 30) / (n * BATCH)); double t0 = now();
        vmenc_xts_iov iov[BATCH];
        for (long i = 0; i < iters; i++) {
            for (int j = 0; j < BATCH; j++)
                iov[j] = (vmenc_xts_iov){(uint64_t)(i * BATCH + j), buf + j * n, buf + j * n, n};
            if (vmenc_xts_encrypt_iov(x, iov, BATCH)) return 1;
        }
        printf("c batch %zu %.1f\n", n, (double)n * BATCH * iters / (now() - t0) / 1e6);
    }
    long iters = 20000000; double t0 = now(); volatile unsigned v = 0;
    for (long i = 0; i < iters; i++) v += vmenc_xts_sector_size(x);
    printf("c call %.1f\n", (now() - t0) / iters * 1e9);
    free(buf);
    vmenc_xts_free(x);
    return 0;
}
C
cc -O2 "$T/c.c" -o "$T/cbench" $(pkg-config --cflags --libs vmenc)

cat > "$T/py.py" <<'PY'
import time, vmenc
BATCH = 64
x = vmenc.XTS(bytes((i * 7 + 1) & 255 for i in range(64)), 4096)
for n in (4096, 65536):
    buf = bytearray(n); iters = (1 << 30) // n // 2
    t0 = time.perf_counter()
    for i in range(iters):
        x.encrypt_into(i, buf, buf)
    print("python single", n, "%.1f" % (n * iters / (time.perf_counter() - t0) / 1e6))
for n in (4096, 65536):
    bufs = [bytearray(n) for _ in range(BATCH)]; iters = (1 << 30) // (n * BATCH)
    t0 = time.perf_counter()
    for i in range(iters):
        base = i * BATCH
        x.encrypt_iov([(base + j, b) for j, b in enumerate(bufs)])
    print("python batch", n, "%.1f" % (n * BATCH * iters / (time.perf_counter() - t0) / 1e6))
iters = 1000000; t0 = time.perf_counter()
for i in range(iters):
    x.sector_size
print("python call %.1f" % ((time.perf_counter() - t0) / iters * 1e9))
PY

(cd "$SRC/bindings/go" &&
    GOCACHE=$T/gocache GOPROXY=off GOFLAGS=-mod=mod go test -c -o "$T/gobench" .)

: > "$T/results"
for r in $(seq "$ROUNDS"); do
    "$T/cbench" | sed "s/^/$r /" >> "$T/results"
    PYTHONPATH=$SRC/bindings/python /usr/bin/python3 "$T/py.py" | sed "s/^/$r /" >> "$T/results"
    "$T/gobench" -test.run '^$' -test.bench 'XTS|Trivial' -test.benchtime 1s |
        awk -v r="$r" '/^BenchmarkXTS4K/ {print r, "go single 4096", $(NF-1)}
                       /^BenchmarkXTS64K/ {print r, "go single 65536", $(NF-1)}
                       /^BenchmarkXTSIOV64x4K/ {print r, "go batch 4096", $(NF-1)}
                       /^BenchmarkXTSIOV64x64K/ {print r, "go batch 65536", $(NF-1)}
                       /^BenchmarkTrivialCall/ {print r, "go call", $3}' >> "$T/results"
done

awk -v rounds="$ROUNDS" -v batch="$BATCH" '
function median(list,   a, n, i, j, t) {
  n = split(list, a, " ")
  for (i = 2; i <= n; i++) { t = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
  return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function minmax(list, want_max,   a, n, i, m) {
  n = split(list, a, " "); m = a[1] + 0
  for (i = 2; i <= n; i++) if (want_max ? a[i] + 0 > m : a[i] + 0 < m) m = a[i] + 0
  return m
}
$3 == "call" { call[$2] = call[$2] " " $4; next }
{ v[$1 " " $2 " " $3 " " $4] = $5; keys[$2 " " $3 " " $4] = 1 }
END {
  split("c python go", langs, " "); split("single batch", modes, " "); split("4096 65536", sizes, " ")
  for (l = 1; l <= 3; l++) for (m = 1; m <= 2; m++) for (s = 1; s <= 2; s++) {
    k = langs[l] " " modes[m] " " sizes[s]; mb = ""; rat = ""; rs = ""
    for (r = 1; r <= rounds; r++) {
      x = v[r " " k]; c = v[r " c " modes[m] " " sizes[s]]; cs = v[r " c single " sizes[s]]
      if (x == "" || c == "") continue
      mb = mb " " x; rat = rat " " x / c; rs = rs " " x / cs
    }
    med[k] = median(mb); rmed[k] = median(rat); rsmed[k] = median(rs)
    printf "{\"bench\":\"xts\",\"lang\":\"%s\",\"mode\":\"%s\",\"io_bytes\":%s,\"ios_per_call\":%d,\"rounds\":%d,", langs[l], modes[m], sizes[s], modes[m] == "batch" ? batch : 1, rounds
    printf "\"mbps_median\":%.0f,\"ratio_vs_c_median\":%.3f,\"ratio_vs_c_min\":%.3f,\"ratio_vs_c_max\":%.3f,\"ratio_vs_c_single_median\":%.3f}\n", med[k], rmed[k], minmax(rat, 0), minmax(rat, 1), rsmed[k]
  }
  for (l = 1; l <= 3; l++)
    printf "{\"bench\":\"trivial_call\",\"lang\":\"%s\",\"rounds\":%d,\"ns_median\":%.1f}\n", langs[l], rounds, median(call[langs[l]])
  printf "\nmedians of %d rounds; ratio = vs C in the same round, same mode (batch: %d I/Os per call)\n", rounds, batch > "/dev/stderr"
  printf "%-7s %-7s %13s %13s %10s\n", "", "", "4 KiB MB/s", "64 KiB MB/s", "call ns" > "/dev/stderr"
  for (l = 1; l <= 3; l++) for (m = 1; m <= 2; m++) {
    a = langs[l] " " modes[m] " 4096"; b = langs[l] " " modes[m] " 65536"
    printf "%-7s %-7s %6.0f (%.2fx) %6.0f (%.2fx) %10s\n", langs[l], modes[m], med[a], rmed[a], med[b], rmed[b], m == 1 ? sprintf("%.1f", median(call[langs[l]])) : "" > "/dev/stderr"
  }
}' "$T/results"
