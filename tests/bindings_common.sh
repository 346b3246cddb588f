# tests/bindings_common.sh - sourced by the binding and embedding tests
# (bindings_python, bindings_go, examples_embed): installs the build into a
# temporary prefix and decides what to do with sanitized builds.
#
# Sanitized builds: an ASan/UBSan or TSan libvmenc needs its sanitizer
# runtime loaded first in the process. Python and Go executables are not
# built with it, and LD_PRELOADing the runtime into CPython or a Go test
# binary gives reports about the interpreter / Go runtime itself (ASan:
# CPython's allocator; TSan: Go's own race detector and threads), not about
# vmenc. So these tests SKIP (exit 0 with a printed reason) on a sanitized
# build; the C code they exercise is covered there by the cmocka tests. The
# C embedding example, built with the same sanitizer flags, does run there.
BUILD=$(cd "$1" && pwd)
SRC=$(cd "$2" && pwd)
fail() { echo "FAIL: $*" >&2; exit 1; }
SANITIZED=
grep -q '^VMENC_SANITIZE:BOOL=ON' "$BUILD/CMakeCache.txt" && SANITIZED="ASan/UBSan (VMENC_SANITIZE=ON)"
grep -q '^VMENC_TSAN:BOOL=ON' "$BUILD/CMakeCache.txt" && SANITIZED="TSan (VMENC_TSAN=ON)"
skip_if_sanitized() {
    if [[ -n $SANITIZED ]]; then
        echo "SKIP: $SANITIZED build: the sanitizer runtime cannot be preloaded into $1 meaningfully (see tests/bindings_common.sh)"
        exit 0
    fi
}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
install_prefix() {
    cmake --install "$BUILD" --prefix "$T/prefix" >/dev/null
    LIBDIR=$(dirname "$(find "$T/prefix" -name libvmenc.so.0 | head -1)")
    [[ -n $LIBDIR ]] || fail "install lacks libvmenc.so.0"
    export PKG_CONFIG_PATH=$LIBDIR/pkgconfig
}
