#!/usr/bin/env bash
# scripts/deps.sh - install the Debian 12 packages vmenc needs to build and
# test (as root). Runs apt-get update first when anything is missing.
set -euo pipefail
PKGS=(build-essential cmake pkg-config clang libclang-rt-14-dev
      libsodium-dev libssl-dev openssl libcmocka-dev libjson-c-dev
      libp11-kit-dev softhsm2 opensc python3-pykmip python3-cffi python3-pytest
      golang-go
      # Python/Go bindings (bindings/, tests/bindings_*.test.sh)
      python3-venv python3-pip python3-setuptools
      # the nbdkit plugin and its hypervisor tests (docs/nbdkit.md)
      nbdkit nbdkit-plugin-dev libnbd-bin qemu-utils qemu-system-x86
      busybox-static linux-image-amd64 kmod cpio e2fsprogs)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "deps: installing ${missing[*]}" >&2
    SUDO=; [[ $(id -u) == 0 ]] || SUDO=sudo
    $SUDO apt-get update
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
fi
