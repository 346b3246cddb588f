#!/usr/bin/env bash
# tests/broker_chaos.test.sh BUILD_DIR SOURCE_DIR - the short CI version of
# the key broker's randomized fault test (scripts/broker-chaos.sh: the
# parts, operations, faults and the property are described there and in
# docs/broker.md "Chaos"). 6 rounds with a fixed seed, so a failure replays;
# at most one etcd member down at a time. The run ends with the checker's
# self-test (a forged release and a forged received key must be reported),
# so the property check cannot pass by checking nothing. Skips (77) when
# etcd, PyKMIP or swtpm cannot start. Run the script with more rounds and
# other seeds for a campaign.
set -uo pipefail
BUILD=$(cd "${1:?build dir}" && pwd)
SRC=$(cd "${2:?source dir}" && pwd)
[[ -x $BUILD/vmenc ]] || { echo "SKIP: the CLI is not built"; exit 77; }
export VMENC_CHAOS_MAX_DOWN=${VMENC_CHAOS_MAX_DOWN:-1}
exec bash "$SRC/scripts/broker-chaos.sh" "$BUILD" "${VMENC_CHAOS_ROUNDS:-6}" "${VMENC_CHAOS_SEED:-4242}"
