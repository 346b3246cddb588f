#!/usr/bin/env bash
# tests/abi.test.sh BUILD_DIR SOURCE_DIR - the ABI and packaging contract:
#  * libvmenc.so.0 has SONAME libvmenc.so.0 and exports only vmenc_* symbols,
#    all under a VMENC_ version node;
#  * `cmake --install` puts headers, both libraries, vmenc.pc and the CMake
#    package in place, and a consumer builds against it with
#    find_package(vmenc) and with pkg-config, and runs.
set -euo pipefail
BUILD=$(cd "$1" && pwd)
SRC=$(cd "$2" && pwd)
fail() { echo "FAIL: $*" >&2; exit 1; }

SO=$BUILD/libvmenc.so.0
[[ -e $SO ]] || fail "$SO missing"
soname=$(readelf -d "$SO" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
[[ $soname == libvmenc.so.0 ]] || fail "SONAME is '$soname'"

syms=$(nm -D --defined-only "$SO" | awk '$2 ~ /^[TDBRVWiu]$/ {print $3}')
[[ -n $syms ]] || fail "no exported symbols"
bad=$(grep -v -E '^vmenc_[a-z0-9_]+@@VMENC_[0-9.]+$' <<<"$syms" || true)
[[ -z $bad ]] || fail "exported symbols outside vmenc_*@@VMENC_*: $bad"
echo "ok: $(wc -l <<<"$syms") exported symbols, all vmenc_*, SONAME $soname"

# Every symbol the public headers declare with VMENC_API is exported.
declared=$(grep -h -o -E 'vmenc_[a-z0-9_]+\(' "$SRC"/include/vmenc/*.h | tr -d '(' | sort -u)
missing=()
for d in $declared; do
    grep -q -x "$d@@VMENC_[0-9.]*" <<<"$syms" || missing+=("$d")
done
# Function-pointer typedef names and vtable members also match the pattern.
real_missing=()
for m in "${missing[@]}"; do
    grep -h -E "VMENC_API[^;]*\b$m\(" "$SRC"/include/vmenc/*.h >/dev/null && real_missing+=("$m")
done
((${#real_missing[@]} == 0)) || fail "declared but not exported: ${real_missing[*]}"
echo "ok: every VMENC_API function in include/vmenc is exported"

# A sanitized library needs its runtime first in every consumer.
SANFLAGS=
grep -q '^VMENC_SANITIZE:BOOL=ON' "$BUILD/CMakeCache.txt" && SANFLAGS="-fsanitize=address,undefined"
grep -q '^VMENC_TSAN:BOOL=ON' "$BUILD/CMakeCache.txt" && SANFLAGS="-fsanitize=thread"
CC=$(sed -n 's/^CMAKE_C_COMPILER:[A-Z]*=//p' "$BUILD/CMakeCache.txt")
CC=${CC:-cc}

T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cmake --install "$BUILD" --prefix "$T/prefix" >/dev/null
for f in include/vmenc/vmenc.h include/vmenc/xts.h lib/libvmenc.a lib/pkgconfig/vmenc.pc \
         lib/cmake/vmenc/vmencConfig.cmake; do
    [[ -e $T/prefix/$f ]] || [[ -e $T/prefix/${f/lib\//lib/x86_64-linux-gnu/} ]] || fail "install lacks $f"
done
libdir=$(dirname "$(find "$T/prefix" -name libvmenc.so.0 | head -1)")
[[ -n $libdir ]] || fail "install lacks libvmenc.so.0"

mkdir -p "$T/consumer"
cat > "$T/consumer/main.c" <<'C'
#include <stdio.h>
#include <vmenc/vmenc.h>
int main(void) {
    if (vmenc_init() != VMENC_OK) return 1;
    printf("consumer linked vmenc %s: %s\n", vmenc_version_string(), vmenc_strerror(VMENC_E_AUTH));
    return 0;
}
C
cat > "$T/consumer/CMakeLists.txt" <<'C'
cmake_minimum_required(VERSION 3.25)
project(consumer C)
find_package(vmenc REQUIRED)
add_executable(consumer main.c)
target_link_libraries(consumer PRIVATE vmenc::vmenc)
C
cmake -S "$T/consumer" -B "$T/cbuild" -DCMAKE_PREFIX_PATH="$T/prefix" -DCMAKE_C_COMPILER="$CC" \
    -DCMAKE_C_FLAGS="$SANFLAGS" -DCMAKE_EXE_LINKER_FLAGS="$SANFLAGS" >/dev/null
cmake --build "$T/cbuild" >/dev/null
LD_LIBRARY_PATH=$libdir "$T/cbuild/consumer" || fail "find_package consumer did not run"

PKG_CONFIG_PATH=$libdir/pkgconfig "$CC" $SANFLAGS "$T/consumer/main.c" -o "$T/pc-consumer" \
    $(PKG_CONFIG_PATH=$libdir/pkgconfig pkg-config --cflags --libs vmenc) || fail "pkg-config build"
LD_LIBRARY_PATH=$libdir "$T/pc-consumer" || fail "pkg-config consumer did not run"
echo "1 passed, 0 failed"
