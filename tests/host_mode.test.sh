#!/usr/bin/env bash
# tests/host_mode.test.sh BUILD_DIR SOURCE_DIR - a host's encryption mode
# reaches the key broker (docs/broker.md "Encryption mode", docs/cluster.md
# "Host registrations"). The broker authorizes by the encryption_mode of
# the host's registration /vmenc/<C>/host/<id>; a mode change made with
# `vmenc policy host-mode` on a cluster member must rewrite it in the same
# etcd transaction as the cluster policy. Real processes, through the CLI:
#   a 3-member etcd cluster (mutual TLS, tests/support/etcd/), whose CA also
#     signs each host's one identity (etcd and the broker);
#   PyKMIP over mutual TLS (tests/kms/pykmip.sh) - the KMS;
#   one `vmenc broker serve`, its own workspace holding the KMS credential;
#   esx01 creates the cluster through the broker, esx02 joins; both
#     registered first by the administrator (etcdctl), as docs/broker.md says.
# Checks: the registration follows every mode change (join, --enable from
# another member, --disable, --rebooted); --disable is refused while an
# encrypted VM is on the host; a host out of encryption mode is refused its
# VM's KEK by the broker (a KMIP Get with the host's certificate - what root
# on that host can send - refused and audited with the reason) and gets it
# again once back in mode (and reads the VM); a change whose registration
# cannot be rewritten fails and changes nothing.
# On the code before the fix the registration kept the mode of the join.
# Skips (exit 77) when etcd or PyKMIP cannot start here.
set -uo pipefail
BUILD=$(cd "${1:?build dir}" && pwd)
SRC=$(cd "${2:?source dir}" && pwd)
VMENC=$BUILD/vmenc
START=$SRC/tests/support/etcd/start-etcd-cluster.sh
STOP=$SRC/tests/support/etcd/stop-etcd-cluster.sh
PYKMIP=$SRC/tests/kms/pykmip.sh
PY=/usr/bin/python3

skip() { echo "SKIP: $*"; exit 77; }
command -v etcd >/dev/null || skip "etcd is not installed (apt-get install etcd-server etcd-client)"
command -v etcdctl >/dev/null || skip "etcdctl is not installed (apt-get install etcd-client)"
"$PY" -c 'import kmip' 2>/dev/null || skip "PyKMIP is not installed (apt-get install python3-pykmip)"
[[ -x $VMENC ]] || skip "the CLI is not built"

T=$(mktemp -d /tmp/vmenc-host-mode-XXXXXX)
PIDS=()
KMIP_PORT=
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    [[ -s $T/kmip.pid ]] && kill -9 -- "-$(cat "$T/kmip.pid")" 2>/dev/null
    [[ -f $T/etcd/pids ]] && "$STOP" "$T/etcd" >/dev/null 2>&1
    [[ -n ${VMENC_TEST_KEEP:-} ]] && echo "kept $T" || rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fails=0 n=0
t0=$(date +%s%3N)
ms() { echo $(( $(date +%s%3N) - t0 )); }
ok()  { n=$((n+1)); echo "ok $n - $* [$(ms) ms]"; }
bad() { n=$((n+1)); fails=$((fails+1)); echo "not ok $n - $* [$(ms) ms]"; }
die() { bad "$*"; exit 1; }

# ---- etcd and PyKMIP (in parallel), the hosts' certificates from the etcd CA -------------------
KMIP_PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
bash "$PYKMIP" "$T/kmip" "$KMIP_PORT" >"$T/kmip.pid" 2>"$T/kmip.err" &
KMIP_JOB=$!
"$START" "$T/etcd" >"$T/etcd.env" 2>"$T/etcd.err" || { cat "$T/etcd.err"; skip "the etcd cluster cannot start here"; }
eval "$(cat "$T/etcd.env")"
wait $KMIP_JOB || { cat "$T/kmip.err"; KMIP_PORT=; skip "PyKMIP cannot start here"; }
PKI=$T/etcd/certs
for h in esx01 esx02; do
    ( cd "$PKI" && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$h.key" \
          -out "$h.csr" -subj "/CN=$h" 2>/dev/null &&
      printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n' > "$h.ext" &&
      openssl x509 -req -in "$h.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -out "$h.crt" \
          -extfile "$h.ext" 2>/dev/null ) || die "cannot make host certificates"
done
echo "setup: etcd, PyKMIP and certificates in $(ms) ms"

CL=hm
ECTL=(etcdctl --command-timeout=5s)
export VMENC_NO_SYNC=1 VMENC_USER=admin
unset VMENC_PASSPHRASE VMENC_WORKSPACE
echo "host mode test passphrase" > "$T/pass"
KDF=(--kdf-memory 8192 --kdf-passes 1)
w() { local h=$1; shift; "$VMENC" --workspace "$T/$h" --passphrase-file "$T/pass" "$@"; }
fp() { openssl x509 -in "$PKI/$1.crt" -outform DER | sha256sum | cut -d' ' -f1; }
mode_in_etcd() { "${ECTL[@]}" get "/vmenc/$CL/host/$1" --print-value-only | sed -n 's/.*"encryption_mode":"\([A-Za-z]*\)".*/\1/p'; }
mode_in_policy() {   # the host's crypto_state in the cluster's policy document (sealed: 48-byte header, then JSON)
    "${ECTL[@]}" get "/vmenc/$CL/policy" --print-value-only | "$PY" -c '
import json, sys
d = json.loads(sys.stdin.buffer.read()[48:].rstrip(b"\n"))
def walk(o):
    if isinstance(o, dict):
        if o.get("name") == sys.argv[1] and "crypto_state" in o:
            print(o["crypto_state"])
        for v in o.values(): walk(v)
    elif isinstance(o, list):
        for v in o: walk(v)
walk(d)' "$1"
}

# ---- the broker, its workspace the only one with the KMS credential ----------------------------
KC=$T/kmip/certs
"$VMENC" init "$T/bws" --admin admin --host broker "${KDF[@]}" --passphrase-file "$T/pass" -q || die "init bws"
w bws kms add kms --type kmip --endpoint "127.0.0.1:$KMIP_PORT" --option "ca=$KC/ca.crt" \
    --option "cert=$KC/client.crt" --option "key=$KC/client.key" --option kmip_version=1.4 -q || die "kms add (broker)"
"$VMENC" --workspace "$T/bws" --passphrase-file "$T/pass" broker serve --name $CL --id b1 --provider kms \
    --listen 127.0.0.1:0 --tls-ca "$PKI/ca.crt" --tls-cert "$PKI/server.crt" --tls-key "$PKI/server.key" \
    --endpoints "$VMENC_ETCD_ENDPOINTS" --cacert "$VMENC_ETCD_CACERT" --cert "$VMENC_ETCD_CERT" \
    --key "$VMENC_ETCD_KEY" >"$T/b1.log" 2>&1 &
BPID=$!
PIDS+=("$BPID")
for _ in $(seq 150); do
    grep -qs "\"pid\":$BPID,\"port\":[1-9]" "$T/bws/broker-status.json" && break
    kill -0 "$BPID" 2>/dev/null || { cat "$T/b1.log"; die "the broker starts"; }
    sleep 0.1
done
BPORT=$(sed -n 's/.*"port":\([0-9]*\).*/\1/p' "$T/bws/broker-status.json")
[[ -n $BPORT ]] || die "the broker listens"

# ---- the administrator registers both hosts; esx01 creates the cluster, esx02 joins -----------
for h in esx01 esx02; do
    "${ECTL[@]}" put "/vmenc/$CL/host/$h" \
        "{\"host\":\"$h\",\"encryption_mode\":\"safe\",\"cert_sha256\":\"$(fp $h)\",\"workspace\":\"-\",\"since\":\"-\"}" \
        >/dev/null || die "register $h"
    "$VMENC" init "$T/$h" --admin admin --host "$h" "${KDF[@]}" --passphrase-file "$T/pass" -q || die "init $h"
    w $h kms add kms --type kmip --endpoint "127.0.0.1:$BPORT" --option "ca=$PKI/ca.crt" \
        --option "cert=$PKI/$h.crt" --option "key=$PKI/$h.key" --option kmip_version=1.4 \
        --option request_timeout_ms=5000 --option connect_timeout_ms=2000 -q || die "kms add (the broker) on $h"
done
HT() { echo --endpoints "$VMENC_ETCD_ENDPOINTS" --cacert "$VMENC_ETCD_CACERT" --cert "$PKI/$1.crt" --key "$PKI/$1.key"; }
w esx01 policy host-mode --enable -q >/dev/null || die "esx01 host-mode --enable"
w esx01 cluster init $(HT esx01) --name $CL --key-provider kms --ttl 3 -q >"$T/init.out" 2>&1 ||
    { cat "$T/init.out" "$T/b1.log"; die "esx01 creates the cluster through the broker"; }
w esx02 cluster join $(HT esx02) --name $CL --ttl 3 -q >"$T/join.out" 2>&1 ||
    { cat "$T/join.out"; die "esx02 joins"; }
m=$(mode_in_etcd esx02) p=$(mode_in_policy esx02)
if [[ -n $m && $m == "$p" && $m != safe ]]; then
    ok "esx02 joined: its registration says '$m', as the cluster policy"
else
    bad "esx02 joined: registration '$m', cluster policy '$p'"
fi

# ---- back in mode from another member: the registration follows ---------------------------------
w esx01 policy host-mode --enable --host esx02 -q >/dev/null || die "esx01 switches esx02 to encryption mode"
m=$(mode_in_etcd esx02)
if [[ $m == safe ]]; then ok "'policy host-mode --enable --host esx02' on esx01: host/esx02 says safe"
else bad "after --enable host/esx02 says '$m', the policy '$(mode_in_policy esx02)'"; fi

w esx02 policy storage-policy 'Broker Enc' --encrypt --classes vm_home,disks --provider kms -q || die "storage policy"
w esx02 vm create vm01 --policy 'Broker Enc' --disk 1M -q >"$T/create.out" 2>&1 ||
    { cat "$T/create.out" "$T/b1.log"; die "esx02 creates vm01 encrypted through the broker"; }
head -c 65536 /dev/urandom > "$T/pattern"
w esx02 disk write vm01 scsi0:0 --length 65536 < "$T/pattern" >/dev/null 2>&1 || die "disk write"
WANT=$(sha256sum < "$T/pattern")
# vm01's KEK: created through the broker for esx02 (broker/created/<hex id>)
KEK=$("${ECTL[@]}" get --prefix "/vmenc/$CL/broker/created/" | paste - - | grep '"host":"esx02"' | head -1 |
      sed "s|^/vmenc/$CL/broker/created/\([0-9a-f]*\).*|\1|" | xxd -r -p)
[[ -n $KEK ]] || die "vm01's KEK is listed as created for esx02"

# What root on esx02 can send: a KMIP Get with esx02's certificate (no local policy in the way).
cat > "$T/esx02-kmip.conf" <<EOF
[client]
host=127.0.0.1
port=$BPORT
certfile=$PKI/esx02.crt
keyfile=$PKI/esx02.key
ca_certs=$PKI/ca.crt
cert_reqs=CERT_REQUIRED
ssl_version=PROTOCOL_TLSv1_2
do_handshake_on_connect=True
suppress_ragged_eofs=True
EOF
kmip_get() {
    "$PY" - "$T/esx02-kmip.conf" "$KEK" <<'EOF'
import sys, warnings
warnings.filterwarnings("ignore")
from kmip.pie.client import ProxyKmipClient
try:
    with ProxyKmipClient(config="client", config_file=sys.argv[1]) as c:
        print("released", len(c.get(sys.argv[2]).value))
except Exception as e:
    print("refused:", str(e)[:200])
    sys.exit(1)
EOF
}
refusals() {   # the broker's refusals of a KEK for esx02 with reason $1, in the cluster's event list
    "${ECTL[@]}" get --prefix "/vmenc/$CL/broker/events/b1/" --print-value-only |
        grep '"broker.kek.release"' | grep '"denied"' | grep -c "$1"
}
out=$(kmip_get) && ok "esx02 in encryption mode: a Get of vm01's KEK with its certificate: $out" ||
    bad "esx02 in encryption mode is refused vm01's KEK: $out"

# ---- leaving encryption mode ---------------------------------------------------------------------
if w esx02 policy host-mode --disable -q >"$T/dis.out" 2>&1; then
    bad "--disable with an encrypted VM on the host was allowed"
elif [[ $(mode_in_etcd esx02) == safe && $(mode_in_policy esx02) == safe ]]; then
    ok "--disable refused while vm01 (encrypted) is on esx02: $(head -c 120 "$T/dis.out"); still safe in both"
else
    bad "refused --disable changed the mode: host/esx02 '$(mode_in_etcd esx02)'"
fi
w esx02 vm unregister vm01 -q >/dev/null 2>&1 || die "vm unregister vm01"
w esx02 policy host-mode --disable -q >/dev/null 2>"$T/dis.out" || { cat "$T/dis.out"; die "esx02 leaves encryption mode"; }
m=$(mode_in_etcd esx02)
if [[ $m == pendingIncapable ]]; then ok "'policy host-mode --disable' on esx02: host/esx02 says $m"
else bad "after --disable host/esx02 says '$m' (the broker would still release keys)"; fi
before=$(refusals 'not in encryption mode')
if out=$(kmip_get); then
    bad "esx02 out of encryption mode got vm01's KEK from the broker ($out)"
elif (( $(refusals 'host esx02 is not in encryption mode (state pendingIncapable)') > 0 && $(refusals 'not in encryption mode') > before )); then
    ok "esx02 out of encryption mode is refused vm01's KEK, audited: 'host esx02 is not in encryption mode (state pendingIncapable)'"
else
    bad "the refusal is not in the event list with its reason ($out)"
fi

# ---- a change whose registration cannot be rewritten does not happen -----------------------------
REG=$("${ECTL[@]}" get "/vmenc/$CL/host/esx02" --print-value-only)
"${ECTL[@]}" put "/vmenc/$CL/host/esx02" 'not a registration' >/dev/null
if w esx01 policy host-mode --rebooted --host esx02 -q >/dev/null 2>"$T/rb.out"; then
    bad "--rebooted succeeded though host/esx02 could not be rewritten"
elif [[ $(mode_in_policy esx02) == pendingIncapable &&
        $("${ECTL[@]}" get "/vmenc/$CL/host/esx02" --print-value-only) == 'not a registration' ]]; then
    ok "a registration that cannot be rewritten fails the change, nothing changed: $(head -c 150 "$T/rb.out")"
else
    bad "a failed change left the policy at '$(mode_in_policy esx02)'"
fi
"${ECTL[@]}" put "/vmenc/$CL/host/esx02" "$REG" >/dev/null

# ---- back in encryption mode (the reboot, then --enable, from esx01) -----------------------------
w esx01 policy host-mode --rebooted --host esx02 -q >/dev/null 2>"$T/rb.out" || { cat "$T/rb.out"; die "--rebooted"; }
m1=$(mode_in_etcd esx02)
w esx01 policy host-mode --enable --host esx02 -q >/dev/null 2>"$T/en.out" || { cat "$T/en.out"; die "--enable"; }
m2=$(mode_in_etcd esx02)
if [[ $m1 == incapable && $m2 == safe ]]; then ok "--rebooted then --enable: host/esx02 says $m1, then $m2"
else bad "--rebooted then --enable: host/esx02 says '$m1', then '$m2'"; fi
out=$(kmip_get) && ok "esx02 back in encryption mode gets vm01's KEK again: $out" ||
    bad "esx02 back in encryption mode is refused: $out"
w esx02 vm register vm01 -q >/dev/null 2>"$T/reg.out" || { cat "$T/reg.out"; bad "vm register vm01 on esx02"; }
got=$(w esx02 disk read vm01 scsi0:0 --length 65536 2>"$T/read.out" | sha256sum)
if [[ $got == "$WANT" ]]; then ok "esx02 registers vm01 again and reads it (its KEK through the broker)"
else bad "esx02 cannot read vm01: $(head -c 200 "$T/read.out")"; fi
w esx01 audit show >"$T/audit1" 2>/dev/null
if w esx02 audit show 2>/dev/null | grep -q '"op":"policy.disable_host_encryption".*"outcome":"success"' &&
   grep -q '"op":"host.complete_disable".*"outcome":"failed"' "$T/audit1" &&
   grep -q '"op":"cluster.host_registration".*"outcome":"failed".*cannot be rewritten' "$T/audit1" &&
   grep -q '"op":"host.complete_disable".*"outcome":"success"' "$T/audit1" &&
   grep -q '"op":"host.enable_encryption".*"target":"esx02".*"outcome":"success"' "$T/audit1"; then
    ok "the changes are audited: the disable on esx02; on esx01 the enables, the failed (with the registration's reason) and the completed reboot"
else
    bad "the mode changes are not all in the audit logs"
fi

echo "host_mode: $(ms) ms total"
echo "$((n - fails)) of $n checks passed"
(( fails == 0 ))
