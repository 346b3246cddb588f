#!/usr/bin/env bash
# tests/includes.test.sh BUILD_DIR SOURCE_DIR - the layer rule over lib/'s
# #include lines (scripts/check-includes.sh, DESIGN.md §2) holds for the
# tree; and the checker is not blind: a copy of lib/ with one bad include
# planted per rule (upward layer, policy <-> audit, format/ -> the vm root,
# io/ -> the vm root, format/ -> io/) fails, naming each.
set -euo pipefail
SRC=$(cd "$2" && pwd)
CHECK=$SRC/scripts/check-includes.sh
fail() { echo "FAIL: $*" >&2; exit 1; }

bash "$CHECK" "$SRC" || fail "lib/ breaks the layer rule (above)"

T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
plant() { # plant FILE INCLUDE: add the include after the file's first #include line
    local f=$T/lib/$1
    [[ -f $f ]] || fail "no $1 to plant into"
    sed -i "0,/^#include \"/s||#include \"$2\"\n#include \"|" "$f"
}
for rule in "core/status.c workspace/ws_internal.h" "audit/log.c policy/policy_internal.h" \
            "vm/format/kv.c vm/vm_internal.h" "vm/io/extent.c vm/vm_internal.h" \
            "vm/format/kv.c vm/io/io.h" "keys/wrap.c vmenc/vm.h"; do
    set -- $rule
    rm -rf "$T/lib" && cp -r "$SRC/lib" "$T/lib"
    plant "$1" "$2"
    if out=$(bash "$CHECK" "$T" 2>&1); then
        fail "the checker accepted #include \"$2\" in lib/$1"
    fi
    grep -q "lib/$1:.*\"$2\"" <<<"$out" || fail "the checker did not name lib/$1 -> $2: $out"
    echo "ok: refused lib/$1 -> $2"
done
echo "ok: lib/ keeps the layer rule"
