#!/usr/bin/env bash
# tests/bindings_python.test.sh BUILD_DIR SOURCE_DIR - the Python binding:
# installs the library to a temporary prefix, installs bindings/python into
# a fresh virtual environment with pip, offline (--no-index), for Debian's
# /usr/bin/python3 and for the PATH python3 if it is another interpreter,
# runs the pytest suite (incl. the XTS cross-check against libvmenc from C
# and OpenSSL, and the PyKMIP server test) and the embedding example.
set -euo pipefail
source "$(dirname "$0")/bindings_common.sh"
skip_if_sanitized "CPython"
/usr/bin/python3 -c 'import pytest' 2>/dev/null || fail "python3-pytest is not installed (scripts/deps.sh)"
install_prefix
export VMENC_LIBRARY=$LIBDIR/libvmenc.so.0 VMENC_BUILD_DIR=$BUILD VMENC_SOURCE_DIR=$SRC

pythons=(/usr/bin/python3)
other=$(command -v python3 || true)
if [[ -n $other && $(readlink -f "$other") != $(readlink -f /usr/bin/python3) ]]; then
    pythons+=("$other")
fi
for i in "${!pythons[@]}"; do
    py=${pythons[$i]}
    venv=$T/venv-$i
    # --system-site-packages: Debian's pytest comes from the system; vmenc from pip.
    "$py" -m venv --system-site-packages "$venv"
    "$venv/bin/python" -m pip install --no-index --quiet --disable-pip-version-check "$SRC/bindings/python" ||
        fail "pip install with $py"
    "$venv/bin/python" -c 'import vmenc, sys; assert vmenc.__file__.startswith(sys.prefix), vmenc.__file__' ||
        fail "vmenc not installed into the venv of $py"
    echo "ok: pip install ./bindings/python offline with $("$py" --version)"
done

# The suite, with Debian's interpreter (which has pytest and PyKMIP), from outside the source
# tree so the installed package is what is tested.
cd "$T"
"$T/venv-0/bin/python" -m pytest -q -p no:cacheprovider "$SRC/bindings/python/tests" || fail "pytest"
"$T/venv-0/bin/python" "$SRC/examples/embed/block_layer.py" "$T/py-example" || fail "examples/embed/block_layer.py"
echo "1 passed, 0 failed"
