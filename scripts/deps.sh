#!/usr/bin/env bash
# scripts/deps.sh [demo|build|test|all] - install the Debian 12 packages a job
# needs (as root), and nothing more: `demo` (the default of scripts/demo.sh)
# is what building the library and the vmenc tool takes, plus a software
# TPM for the attested hosts (`build`: without it); `test` adds the
# test toolchain (cmocka, clang, SoftHSM2, PyKMIP, Go, nbdkit, QEMU and a
# kernel for the hypervisor tests). Runs apt-get update first only when a
# package is missing. Default: test (everything; scripts/test.sh).
set -euo pipefail
JOB=${1:-test}
# Building libvmenc and the vmenc tool (README "Dependencies and why").
BUILD=(build-essential cmake pkg-config libsodium-dev libssl-dev libjson-c-dev libp11-kit-dev
       libcurl4-openssl-dev libtss2-dev)
# A software TPM per host: the attestation tests and the demo's attested
# hosts (lib/attest, docs/attest.md).
TPM=(swtpm swtpm-tools tpm2-tools libtss2-tcti-swtpm0)
# The test suite: unit tests, fuzz smoke, real PKCS#11 token and KMIP server,
# bindings, man-page rendering, a 3-member etcd cluster (cluster mode), the
# nbdkit plugin and its hypervisor tests, a software TPM per host (attestation).
TEST=(clang libclang-rt-14-dev openssl libcmocka-dev softhsm2 opensc python3-pykmip python3-cffi python3-pytest
      golang-go python3-venv python3-pip python3-setuptools
      groff-base man-db bsdutils abigail-tools
      etcd-server etcd-client curl
      python3-cryptography
      nbdkit nbdkit-plugin-dev libnbd-bin qemu-utils qemu-system-x86
      busybox-static linux-image-amd64 kmod cpio e2fsprogs)
case $JOB in
    build)      PKGS=("${BUILD[@]}") ;;
    demo)       PKGS=("${BUILD[@]}" "${TPM[@]}") ;;
    test|all)   PKGS=("${BUILD[@]}" "${TPM[@]}" "${TEST[@]}") ;;
    *) echo "usage: scripts/deps.sh [demo|build|test]" >&2; exit 2 ;;
esac
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "deps ($JOB): installing ${missing[*]}" >&2
    SUDO=; [[ $(id -u) == 0 ]] || SUDO=sudo
    $SUDO apt-get update
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
fi
