#!/usr/bin/env bash
# tests/broker_vm.test.sh BUILD_DIR SOURCE_DIR - a real VM opened through
# two key brokers, one of them SIGKILLed mid-loop (issue 23; the broker is
# docs/broker.md, the failover rule docs/kms.md section 2). Everything is a
# real process started here and through the CLI, as an operator runs it:
#   PyKMIP over mutual TLS (tests/kms/pykmip.sh) - the KMS;
#   a 3-member etcd cluster with mutual TLS (tests/support/etcd/);
#   an administrator's workspace that holds the KMS credential and runs
#     `vmenc cluster init --key-provider kms` (the cluster key under a KEK
#     of the KMS), and registers host esx01 with etcdctl (its broker TLS
#     certificate's SHA-256, encryption mode safe) as docs/broker.md says;
#   two `vmenc broker serve` processes, each with a workspace of its own
#     holding the KMS credential;
#   the host workspace esx01: a KMIP provider "kms" whose endpoints are the
#     two brokers, with the host's certificate - no KMS credential.
# Checks: the host creates an encrypted VM (its KEK created through a
# broker, for esx01) and writes a pattern; then N processes in a row each
# open the VM and read the pattern back (`vmenc disk read`: a new process
# per open, so every open fetches the KEK through a broker - nothing is
# cached across processes); broker 1 is SIGKILLed while an open runs;
# failed opens must be 0, the opens after the kill are served by broker 2
# (its release events in the cluster's event list), and no file of
# the host workspace holds the KMS client key, its body or its path.
# VMENC_BROKER_VM_OPENS sets N (default 12, 6 under a sanitizer; a longer
# run is the same script with a larger N).
# Attestation is off here (tests/test_broker.c covers it with swtpm).
# Skips (exit 77) when etcd or PyKMIP cannot start here.
set -uo pipefail
BUILD=$(cd "${1:?build dir}" && pwd)
SRC=$(cd "${2:?source dir}" && pwd)
VMENC=$BUILD/vmenc
START=$SRC/tests/support/etcd/start-etcd-cluster.sh
STOP=$SRC/tests/support/etcd/stop-etcd-cluster.sh
PYKMIP=$SRC/tests/kms/pykmip.sh
N=${VMENC_BROKER_VM_OPENS:-12}
# under a sanitizer every process is several times slower: fewer opens
grep -qE '^VMENC_(SANITIZE|TSAN):BOOL=ON' "$BUILD/CMakeCache.txt" 2>/dev/null && N=${VMENC_BROKER_VM_OPENS:-6}

skip() { echo "SKIP: $*"; exit 77; }
command -v etcd >/dev/null || skip "etcd is not installed (apt-get install etcd-server etcd-client)"
command -v etcdctl >/dev/null || skip "etcdctl is not installed (apt-get install etcd-client)"
/usr/bin/python3 -c 'import kmip' 2>/dev/null || skip "PyKMIP is not installed (apt-get install python3-pykmip)"
[[ -x $VMENC ]] || skip "the CLI is not built"

T=$(mktemp -d /tmp/vmenc-broker-vm-XXXXXX)
PIDS=()
KMIP_PORT=
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    # PyKMIP runs in a process group of its own (setsid); nothing of its
    # state is kept, so it is killed at once rather than stopped
    [[ -s $T/kmip.pid ]] && kill -9 -- "-$(cat "$T/kmip.pid")" 2>/dev/null
    [[ -f $T/etcd/pids ]] && "$STOP" "$T/etcd" >/dev/null 2>&1
    [[ -n ${VMENC_TEST_KEEP:-} ]] && echo "kept $T" || rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fails=0 n=0
ok()  { n=$((n+1)); echo "ok $n - $*"; }
bad() { n=$((n+1)); fails=$((fails+1)); echo "not ok $n - $*"; }
die() { bad "$*"; exit 1; }
t0=$(date +%s%3N)
ms() { echo $(( $(date +%s%3N) - t0 )); }

# ---- the KMS, the control plane, the certificates --------------------------------
ENV_OUT=$("$START" "$T/etcd" 2>"$T/etcd-start.err") || { cat "$T/etcd-start.err"; skip "the etcd cluster cannot start here"; }
eval "$ENV_OUT"
ETCD=(--endpoints "$VMENC_ETCD_ENDPOINTS" --cacert "$VMENC_ETCD_CACERT" --cert "$VMENC_ETCD_CERT" --key "$VMENC_ETCD_KEY")
KMIP_PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
bash "$PYKMIP" "$T/kmip" "$KMIP_PORT" >"$T/kmip.pid" 2>"$T/kmip.err" || { cat "$T/kmip.err"; KMIP_PORT=; skip "PyKMIP cannot start here"; }
bash "$SRC/tests/broker/mkcerts.sh" "$T/pki" esx01 >/dev/null 2>&1 || die "mkcerts.sh"
KC=$T/kmip/certs
echo "setup: etcd, PyKMIP and certificates in $(ms) ms"

export VMENC_NO_SYNC=1 VMENC_USER=admin
unset VMENC_PASSPHRASE VMENC_WORKSPACE
echo "broker vm test passphrase" > "$T/pass"
KDF=(--kdf-memory 8192 --kdf-passes 1)
ws() { local w=$1; shift; "$VMENC" --workspace "$T/$w" --passphrase-file "$T/pass" "$@"; }
KMS_OPTS=(--option "ca=$KC/ca.crt" --option "cert=$KC/client.crt" --option "key=$KC/client.key" --option kmip_version=1.4)

# ---- the administrator: the cluster key under a KEK of the KMS ---------------------
for w in adm bws1 bws2; do
    "$VMENC" init "$T/$w" --admin admin --host "$w" "${KDF[@]}" --passphrase-file "$T/pass" -q || die "init $w"
    ws "$w" kms add kms --type kmip --endpoint "127.0.0.1:$KMIP_PORT" "${KMS_OPTS[@]}" -q || die "kms add kms ($w)"
done
ws adm cluster init "${ETCD[@]}" --name bt --key-provider kms --ttl 3 -q >"$T/init.out" 2>&1 \
    || { cat "$T/init.out"; die "cluster init with the KMS's key provider"; }
FP=$(openssl x509 -in "$T/pki/esx01.crt" -outform DER | sha256sum | cut -d' ' -f1)
etcdctl put /vmenc/bt/host/esx01 \
    "{\"host\":\"esx01\",\"encryption_mode\":\"safe\",\"cert_sha256\":\"$FP\",\"workspace\":\"w\",\"since\":\"now\"}" \
    >/dev/null || die "register esx01"
ok "cluster bt on etcd, its key under a KEK of PyKMIP; esx01 registered ($(ms) ms)"

# ---- two brokers, real processes ------------------------------------------------------
start_broker() { # workspace id
    # a simple command, not a shell function: $! is the broker process itself
    "$VMENC" --workspace "$T/$1" --passphrase-file "$T/pass" broker serve --name bt --id "$2" --provider kms \
        --listen 127.0.0.1:0 --tls-ca "$T/pki/ca.crt" --tls-cert "$T/pki/broker.crt" --tls-key "$T/pki/broker.key" \
        "${ETCD[@]}" >"$T/$2.log" 2>&1 &
    local pid=$! i
    PIDS+=("$pid")
    disown "$pid" # no job notice when it is SIGKILLed
    for i in $(seq 150); do
        [[ -s $T/$1/broker-status.json ]] && grep -q "\"pid\":$pid,\"port\":[1-9]" "$T/$1/broker-status.json" && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    cat "$T/$2.log"
    return 1
}
field() { sed -n "s/.*\"$2\":\([0-9]*\).*/\1/p" "$T/$1/broker-status.json"; }
start_broker bws1 b1 || die "broker b1 starts"
B1=${PIDS[-1]}
start_broker bws2 b2 || die "broker b2 starts"
P1=$(field bws1 port) P2=$(field bws2 port)
ok "brokers b1 (pid $B1, port $P1) and b2 (port $P2) serve ($(ms) ms)"

# ---- the host: its key provider is the brokers ------------------------------------------
"$VMENC" init "$T/esx01" --admin admin --host esx01 "${KDF[@]}" --passphrase-file "$T/pass" -q || die "init esx01"
ws esx01 kms add kms --type kmip --endpoint "127.0.0.1:$P1" --endpoint "127.0.0.1:$P2" \
    --option "ca=$T/pki/ca.crt" --option "cert=$T/pki/esx01.crt" --option "key=$T/pki/esx01.key" \
    --option kmip_version=1.4 --option request_timeout_ms=5000 --option connect_timeout_ms=2000 -q \
    || die "kms add kms (the brokers) on esx01"
ws esx01 policy storage-policy 'Broker Enc' --encrypt --classes vm_home,disks --provider kms -q || die "storage policy"
if ws esx01 vm create vm01 --policy 'Broker Enc' --disk 1M -q >"$T/create.out" 2>&1; then
    ok "esx01 creates vm01 encrypted, its KEK made through a broker ($(ms) ms)"
else
    cat "$T/create.out"; cat "$T/b1.log" "$T/b2.log"; die "vm create through the brokers"
fi
head -c 65536 /dev/urandom > "$T/pattern"
ws esx01 disk write vm01 scsi0:0 --length 65536 < "$T/pattern" >/dev/null 2>&1 || die "disk write"
WANT=$(sha256sum < "$T/pattern")

# ---- N opens, broker 1 SIGKILLed while one runs ------------------------------------------------
# KEKs released by broker B: its events in the cluster's event list, written
# before the key is sent (docs/broker.md "Audit")
releases() {
    etcdctl get --prefix "/vmenc/bt/broker/events/$1/" --print-value-only 2>/dev/null |
        grep '"broker.kek.release"' | grep -c '"success"'
}
KILL_AT=$(( N / 3 > 0 ? N / 3 : 1 ))
failed=0 after=0
r2_before=
for i in $(seq 1 "$N"); do
    if (( i == KILL_AT )); then
        r2_before=$(releases b2)
        # the kill lands while this open holds a connection to b1 (after its
        # TCP connect: during or right after the TLS handshake, or in the
        # KMIP exchange); if the open ends before one is seen, right after it
        (
            until ss -Htn state established "( sport = :$P1 )" 2>/dev/null | grep -q .; do sleep 0.005; done
            echo hit > "$T/kill.hit"
            kill -9 "$B1"
        ) &
        killer=$!
    fi
    got=$(ws esx01 disk read vm01 scsi0:0 --length 65536 2>"$T/open.err" | sha256sum)
    if [[ $got != "$WANT" ]]; then
        failed=$((failed + 1))
        echo "# open $i failed: $(head -c 300 "$T/open.err")"
    fi
    (( i > KILL_AT )) && after=$((after + 1))
    if (( i == KILL_AT )); then
        kill "$killer" 2>/dev/null
        wait "$killer" 2>/dev/null
        kill -9 "$B1" 2>/dev/null
        when="during"
        [[ -f $T/kill.hit ]] || when="right after"
    fi
done
r2_after=$(releases b2)
sleep 0.1
if kill -0 "$B1" 2>/dev/null; then bad "broker b1 was SIGKILLed"; else ok "broker b1 SIGKILLed $when open $KILL_AT of $N"; fi
if (( failed == 0 )); then ok "$N VM opens through the brokers, 0 failed"; else bad "$failed of $N VM opens failed"; fi
if [[ -n $r2_before && -n $r2_after ]] && (( r2_after - r2_before >= after )); then
    ok "b2 released $((r2_after - r2_before)) KEKs: every one of the $after opens after the kill, and maybe the one it hit"
else
    bad "b2's releases went from '${r2_before}' to '${r2_after}' for the $after opens after the kill"
fi

# ---- no KMS credential on the host --------------------------------------------------------
BODY=$(sed -n 2p "$KC/client.key" | cut -c1-40)
if grep -rqF -e "$BODY" -e "$KC" -e client.key "$T/esx01"; then
    bad "the host workspace holds the KMS credential"
elif grep -rqF -e "$KC/client.key" "$T/bws1"; then
    ok "no KMS credential in the host workspace (the same grep finds it in a broker's)"
else
    bad "the grep for the KMS credential cannot find it even in a broker's workspace"
fi

echo "broker_vm: $N opens in $(ms) ms total"
echo "$((n - fails)) of $n checks passed"
(( fails == 0 ))
