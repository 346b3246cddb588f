#!/usr/bin/env bash
# tests/bindings_quickstart.test.sh BUILD_DIR SOURCE_DIR - the Python and Go
# quick starts of docs/bindings.md run as written: the first ```python and
# the first ```go block after "## Quick start" are extracted and run against
# the library installed to a temporary prefix, each on a fresh workspace
# (WORKSPACE). The Go program gets a go.mod with the module path the doc
# names and a go.work pointing at bindings/go: no replace directive.
set -euo pipefail
source "$(dirname "$0")/bindings_common.sh"
skip_if_sanitized "CPython and Go"
install_prefix
DOC=$SRC/docs/bindings.md
extract() { # $1 = language: the first fenced block of it after "## Quick start"
    awk -v lang="$1" '
        /^## Quick start/ { on = 1; next }
        on && /^## / { exit }
        on && !inblk && $0 == "```" lang { inblk = 1; next }
        inblk && /^```$/ { exit }
        inblk { print }' "$DOC"
}
extract python > "$T/quick.py"
extract go > "$T/quick.go"
[[ -s $T/quick.py ]] || fail "no python block under '## Quick start' in docs/bindings.md"
[[ -s $T/quick.go ]] || fail "no go block under '## Quick start' in docs/bindings.md"

out=$(cd "$T" && WORKSPACE=$T/ws-py VMENC_LIBRARY=$LIBDIR/libvmenc.so.0 PYTHONPATH=$SRC/bindings/python \
      /usr/bin/python3 quick.py) || fail "the Python quick start: $out"
echo "$out"
grep -q "deleted, KEKs destroyed: 1" <<<"$out" || fail "Python quick start: no crypto-shredding line"
grep -q "denied: VirtualMachine.Inventory.Delete" <<<"$out" || fail "Python quick start: DeniedError.privilege"
echo "ok: Python quick start"

if ! command -v go >/dev/null; then
    echo "SKIP: go is not installed (golang-go, scripts/deps.sh): the Go quick start was not run"; exit 77
fi
mod=$(sed -n 's/^module //p' "$SRC/bindings/go/go.mod")
mkdir -p "$T/goq" && mv "$T/quick.go" "$T/goq/main.go"
printf 'module quickstart\n\ngo 1.19\n\nrequire %s v0.0.0\n' "$mod" > "$T/goq/go.mod"
printf 'go 1.19\n\nuse (\n\t.\n\t%s\n)\n' "$SRC/bindings/go" > "$T/goq/go.work"
export GOPROXY=off GOFLAGS= GOTOOLCHAIN=local GOCACHE=$T/gocache GOPATH=$T/gopath
export LD_LIBRARY_PATH=$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
out=$(cd "$T/goq" && WORKSPACE=$T/ws-go go run .) || fail "the Go quick start: $out"
echo "$out"
grep -q "deleted, KEKs destroyed: 1" <<<"$out" || fail "Go quick start: no crypto-shredding line"
grep -q "as expected: vmenc: vm rekey shallow" <<<"$out" || fail "Go quick start: error text"
echo "ok: Go quick start"
echo "2 passed, 0 failed"
