#!/usr/bin/env bash
# scripts/check-includes.sh [SOURCE_DIR] - the layer rule over the #include
# lines of lib/ (DESIGN.md §2): a file includes only its own layer and the
# layers below it,
#     core < net < xts < keys < attest < kms < {policy, audit} < control < vm
#     < workspace < broker
# (net, the TLS client under the KMIP provider and the etcd client, sits
# just above core; policy and audit sit side by side and include neither
# each other), and
# inside lib/vm the codecs (format/) and the I/O engine (io/) never include
# the layer's root (objects and operations), and format/ includes nothing
# from io/. Both private headers ("vm/io/extent.h") and the public headers
# of a layer ("vmenc/vm.h") count; a quoted include that names no layer is
# resolved beside the including file. Prints every violation and exits 1 if
# there is one. Python 3 standard library only.
set -euo pipefail
SRC=$(cd "${1:-$(dirname "$0")/..}" && pwd)
exec python3 - "$SRC" <<'PY'
import os, re, sys

src = sys.argv[1]
lib = os.path.join(src, "lib")
RANK = {"core": 0, "net": 1, "xts": 2, "keys": 3, "attest": 4, "kms": 5, "policy": 6,
        "audit": 6, "control": 7, "vm": 8, "workspace": 9, "broker": 10}
# public headers (include/vmenc/<name>.h) -> the layer they belong to
PUBLIC = {"common": "core", "core": "core", "xts": "xts", "keys": "keys",
          "kms": "kms", "kms_file": "kms", "kms_kmip": "kms", "kms_pkcs11": "kms",
          "policy": "policy", "audit": "audit", "control": "control",
          "vm": "vm", "coredump": "vm", "migration": "vm",
          "workspace": "workspace", "vmenc": "workspace", "broker": "broker"}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')

def vm_wing(rel):
    """format, io or root for a path under lib/vm (relative to lib/)."""
    parts = rel.split("/")
    if parts[0] != "vm":
        return None
    return parts[1] if len(parts) > 2 and parts[1] in ("format", "io") else "root"

def target_of(rel_file, inc):
    """(layer, path relative to lib/ or None) of an include."""
    first = inc.split("/")[0]
    if first == "vmenc":
        name = os.path.splitext(inc.split("/")[-1])[0]
        return PUBLIC.get(name), None
    if first in RANK:
        return first, inc
    here = os.path.normpath(os.path.join(os.path.dirname(rel_file), inc))
    if os.path.exists(os.path.join(lib, here)):
        return here.split("/")[0], here
    return None, None  # not ours (a system or third-party header in quotes)

bad = []
for root, _, files in os.walk(lib):
    for fn in sorted(files):
        if not fn.endswith((".c", ".h")):
            continue
        path = os.path.join(root, fn)
        rel = os.path.relpath(path, lib)
        layer = rel.split("/")[0]
        if layer not in RANK:
            bad.append(f"lib/{rel}: not in a known layer ({layer})")
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            for n, line in enumerate(f, 1):
                m = INCLUDE.match(line)
                if not m:
                    continue
                inc = m.group(1)
                to, to_rel = target_of(rel, inc)
                if to is None:
                    continue
                where = f"lib/{rel}:{n}: #include \"{inc}\""
                if to != layer:
                    if RANK[to] > RANK[layer]:
                        bad.append(f"{where}: {layer} includes the higher layer {to}")
                    elif RANK[to] == RANK[layer]:
                        bad.append(f"{where}: {layer} and {to} sit side by side and must not include each other")
                    continue
                if layer == "vm" and to_rel is not None:
                    a, b = vm_wing(rel), vm_wing(to_rel)
                    if a in ("format", "io") and b == "root":
                        bad.append(f"{where}: lib/vm/{a}/ includes the root of lib/vm")
                    elif a == "format" and b == "io":
                        bad.append(f"{where}: lib/vm/format/ includes lib/vm/io/")

for b in bad:
    print(b)
if bad:
    print(f"check-includes: {len(bad)} include(s) break the layer rule (DESIGN.md §2)", file=sys.stderr)
    sys.exit(1)
print("check-includes: ok")
PY
