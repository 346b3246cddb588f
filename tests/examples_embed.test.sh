#!/usr/bin/env bash
# tests/examples_embed.test.sh BUILD_DIR SOURCE_DIR - examples/embed/block_layer.c,
# vmenc as a hypervisor's block layer, built against the INSTALLED library
# both ways (find_package(vmenc), pkg-config vmenc) and run. Runs in
# sanitized builds too, compiled with the same sanitizer flags.
set -euo pipefail
source "$(dirname "$0")/bindings_common.sh"
SANFLAGS=
grep -q '^VMENC_SANITIZE:BOOL=ON' "$BUILD/CMakeCache.txt" && SANFLAGS="-fsanitize=address,undefined"
grep -q '^VMENC_TSAN:BOOL=ON' "$BUILD/CMakeCache.txt" && SANFLAGS="-fsanitize=thread"
CC=$(sed -n 's/^CMAKE_C_COMPILER:[A-Z]*=//p' "$BUILD/CMakeCache.txt")
CC=${CC:-cc}
install_prefix
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1

cmake -S "$SRC/examples/embed" -B "$T/cbuild" -DCMAKE_PREFIX_PATH="$T/prefix" -DCMAKE_C_COMPILER="$CC" \
    -DCMAKE_C_FLAGS="$SANFLAGS" -DCMAKE_EXE_LINKER_FLAGS="$SANFLAGS" >/dev/null || fail "configure (find_package)"
cmake --build "$T/cbuild" >/dev/null || fail "build (find_package)"
LD_LIBRARY_PATH=$LIBDIR "$T/cbuild/block_layer" "$T/ws1" || fail "find_package consumer"

# shellcheck disable=SC2046
"$CC" $SANFLAGS -Wall -Werror "$SRC/examples/embed/block_layer.c" -o "$T/block_layer_pc" \
    $(pkg-config --cflags --libs vmenc) || fail "pkg-config build"
LD_LIBRARY_PATH=$LIBDIR "$T/block_layer_pc" "$T/ws2" || fail "pkg-config consumer"
echo "1 passed, 0 failed"
