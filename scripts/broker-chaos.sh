#!/usr/bin/env bash
# scripts/broker-chaos.sh BUILD_DIR [ROUNDS] [SEED] - the randomized fault
# test of cluster mode with the key broker in the key path (issue 23's
# property; docs/broker.md "Chaos", docs/cluster.md "Randomized fault test").
# Three hosts on a real 3-member etcd cluster share a datastore; their key
# provider is KMIP pointing at two 'vmenc broker serve' processes in front
# of a real PyKMIP over mutual TLS (its credential only in the brokers'
# workspaces); each host has its own swtpm, attestation is per-release.
# Random operations (power-on, create, encrypt, rekey, migrate = hand-over
# | accept, take-over) run while random faults hit: revoke and re-approve a
# host's TPM binding, extend a host's PCR 4 with another "hypervisor" hash
# (then approve the new measurement, or restore: a fresh swtpm and a new
# enrolment), remove and re-add the approved measurement, SIGKILL and
# restart a broker, SIGKILL and restart etcd members, SIGKILL host
# processes. Afterwards scripts/broker_chaos_check.py checks, from etcd's
# own history and not with the broker's code, that every release the
# brokers audited went to a host that at the revision the broker decided
# on was enrolled (registered certificate, approved TPM binding), in
# encryption mode, attested (its quote verifies again with the bound AK and
# carries an approved digest) and the owner of the VM whose KEK it got; and
# that no host received a key no broker audited (a host-side tap,
# scripts/broker_chaos_tap.py, counts the keys each host received). Then
# it feeds the checker forged copies of the history, one per kind of
# violation, and each must be reported. Exit 1 on any violation; 77 when
# etcd, PyKMIP or swtpm cannot start. tests/broker_chaos.test.sh runs a
# short version. VMENC_CHAOS_MAX_DOWN (default 2) caps the etcd members
# down at once; VMENC_CHAOS_TIMES=1 prints the setup's phases; KEEP=1 keeps
# the work directory, HOLD=S keeps everything up S seconds after a setup
# failure.
set -uo pipefail
BUILD=$(cd "${1:?build dir}" && pwd)
ROUNDS=${2:-60}
SEED=${3:-$RANDOM}
SRC=$(cd "$(dirname "$0")/.." && pwd)
VMENC=$BUILD/vmenc
START=$SRC/tests/support/etcd/start-etcd-cluster.sh
STOP=$SRC/tests/support/etcd/stop-etcd-cluster.sh
PYKMIP=$SRC/tests/kms/pykmip.sh
SWTPM_START=$SRC/tests/tpm/start-swtpm.sh
SWTPM_STOP=$SRC/tests/tpm/stop-swtpm.sh
PY=/usr/bin/python3
RANDOM=$SEED
CL=chaos

skip() { echo "SKIP: $*"; exit 77; }
die() {
    echo "$*"; [[ -f $T/tap.out ]] && tail -4 "$T/tap.out"
    [[ -n ${HOLD:-} ]] && sleep "$HOLD"; exit 1
}   # HOLD=S: keep everything up S seconds to look
command -v etcd >/dev/null || skip "etcd is not installed"
command -v swtpm >/dev/null && command -v tpm2_pcrextend >/dev/null || skip "swtpm or tpm2-tools is not installed"
"$PY" -c 'import kmip, cryptography' 2>/dev/null || skip "$PY lacks the kmip (python3-pykmip) or cryptography module"
[[ -x $VMENC ]] || skip "the CLI is not built"
T=$(mktemp -d /tmp/vmenc-broker-chaos-XXXXXX)
PIDS=()          # host processes, brokers, the tap
KMIP_PORT=
cleanup() {
    local p h
    for p in "${PIDS[@]}"; do kill -CONT "$p" 2>/dev/null; kill -9 "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    for h in 1 2 3; do [[ -d $T/tpm$h ]] && "$SWTPM_STOP" "$T/tpm$h" >/dev/null 2>&1; done
    [[ -n $KMIP_PORT ]] && "$PYKMIP" --stop "$T/kmip" "$KMIP_PORT" >/dev/null 2>&1
    [[ -f $T/etcd/pids ]] && "$STOP" "$T/etcd" >/dev/null 2>&1
    [[ -n ${KEEP:-} ]] && echo "kept $T" || rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

declare -A TAKEN=()
free_port() {   # PORT = a port below the ephemeral range (32768+) that no socket uses and this run has not picked
    local p
    for _ in $(seq 50); do
        p=$(( 21000 + (RANDOM ^ ($$ & 4095)) % 11000 ))
        [[ -z ${TAKEN[$p]:-} ]] && ! ss -Htan "sport = :$p" | grep -q . && { TAKEN[$p]=1; PORT=$p; return; }
    done
    return 1
}

# ---- real parts: etcd, PyKMIP, a PKI for hosts and brokers, a swtpm per host -----------------
phase() { [[ -n ${VMENC_CHAOS_TIMES:-} ]] && echo "  [$(( $(date +%s%3N) - T0 )) ms] $*"; }
T0=$(date +%s%3N)
free_port || skip "no free port"; KMIP_PORT=$PORT
# PyKMIP and the TPMs start while etcd does
"$PYKMIP" "$T/kmip" "$KMIP_PORT" >/dev/null 2>"$T/kmip.err" &
KMIP_JOB=$!
"$START" "$T/etcd" >"$T/etcd.env" 2>"$T/etcd.err" &
ETCD_JOB=$!
export SWTPM_CA_DIR=$T/tpmca
HV_OK=$(printf 'hypervisor 1.0' | sha256sum | cut -d' ' -f1)
start_tpm_dir() {   # start_tpm_dir H [PORT]: a fresh TPM (new EK), PCR 4 extended with the approved "hypervisor 1.0"
    local env
    env=$("$SWTPM_START" "$T/tpm$1" ${2:-} 2>>"$T/swtpm$1.err") || return 1
    tpm2_pcrextend -T "swtpm:host=127.0.0.1,port=$(sed -n "s/^export SWTPM_PORT=//p" <<<"$env")" "4:sha256=$HV_OK" \
        >/dev/null 2>>"$T/swtpm$1.err"
}
mkdir -p "$T/tpmca"
start_tpm_dir 1 || { tail -3 "$T/swtpm1.err"; skip "swtpm cannot start"; }   # the first makes the shared CA
TPM_JOBS=()
for h in 2 3; do start_tpm_dir $h & TPM_JOBS+=($!); done
wait $ETCD_JOB || { cat "$T/etcd.err"; skip "etcd cannot start"; }
eval "$(cat "$T/etcd.env")"
TLS=(--endpoints "$VMENC_ETCD_ENDPOINTS" --cacert "$VMENC_ETCD_CACERT" --cert "$VMENC_ETCD_CERT" --key "$VMENC_ETCD_KEY")
ECTL=(etcdctl --command-timeout=5s)   # endpoints and credentials: the ETCDCTL_* exports of etcd.env
phase etcd up
# host certificates from the etcd CA: one identity per host, for etcd and for the brokers
PKI=$T/etcd/certs
for h in 1 2 3; do
    ( cd "$PKI" && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "esx0$h.key" \
          -out "esx0$h.csr" -subj "/CN=esx0$h" 2>/dev/null &&
      printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n' > "esx0$h.ext" &&
      openssl x509 -req -in "esx0$h.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -out "esx0$h.crt" \
          -extfile "esx0$h.ext" 2>/dev/null ) || die "cannot make host certificates"
done
wait $KMIP_JOB || { cat "$T/kmip.err"; KMIP_PORT=; skip "PyKMIP cannot start"; }
phase PyKMIP up
for j in "${TPM_JOBS[@]}"; do wait "$j" || { cat "$T"/swtpm*.err | tail -3; skip "swtpm cannot start"; }; done
declare -A TPORT=() TCTI=()
tpm_env() {   # tpm_env H: TPORT and TCTI from the TPM's env.sh
    TPORT[$1]=$(sed -n "s/^export SWTPM_PORT=//p" "$T/tpm$1/env.sh")
    TCTI[$1]="swtpm:host=127.0.0.1,port=${TPORT[$1]}"
}
start_tpm() { start_tpm_dir "$1" "${TPORT[$1]}" && tpm_env "$1"; }   # a fresh TPM on its old port
for h in 1 2 3; do tpm_env $h; done
phase swtpms up
export VMENC_NO_SYNC=1 VMENC_USER=alice
unset VMENC_PASSPHRASE VMENC_WORKSPACE
echo "chaos passphrase" > "$T/pass"
ADM=(--name $CL "${TLS[@]}")
# the administrator's own workspace (no cluster, no key provider): its policy authorizes the
# cluster administration calls and its audit log records them
adm() { VMENC_USER=admin "$VMENC" --workspace "$T/adm" --passphrase-file "$T/pass" -q "$@" "${ADM[@]}"; }
"$VMENC" init "$T/adm" --admin admin --host admin --kdf-memory 8192 --kdf-passes 1 --passphrase-file "$T/pass" -q ||
    die "admin workspace failed"

# ---- two brokers, each with its own workspace holding the KMS credential ---------------------
B_PORT=()
for b in 1 2; do
    "$VMENC" init "$T/bws$b" --admin admin --host "broker$b" --kdf-memory 8192 --kdf-passes 1 \
        --passphrase-file "$T/pass" -q || die "broker workspace failed"
    VMENC_USER=admin "$VMENC" --workspace "$T/bws$b" --passphrase-file "$T/pass" kms add kms --type kmip \
        --endpoint "127.0.0.1:$KMIP_PORT" --option "ca=$T/kmip/certs/ca.crt" --option "cert=$T/kmip/certs/client.crt" \
        --option "key=$T/kmip/certs/client.key" --option kmip_version=1.4 -q || die "broker kms add failed"
    free_port || die "no free port"; B_PORT[$b]=$PORT
done
declare -A BPID=()
start_broker() {   # start_broker B: serve until killed, on its fixed port
    local b=$1
    VMENC_USER=admin "$VMENC" --workspace "$T/bws$b" --passphrase-file "$T/pass" broker serve --name $CL --provider kms \
        --id "broker$b" --listen "127.0.0.1:${B_PORT[$b]}" --tls-ca "$PKI/ca.crt" --tls-cert "$PKI/server.crt" \
        --tls-key "$PKI/server.key" --endpoints "$VMENC_ETCD_ENDPOINTS" --cacert "$VMENC_ETCD_CACERT" \
        --cert "$VMENC_ETCD_CERT" --key "$VMENC_ETCD_KEY" >>"$T/broker$b.out" 2>&1 &
    BPID[$b]=$!; PIDS+=($!)
    for _ in $(seq 100); do
        ss -Htln "sport = :${B_PORT[$b]}" | grep -q . && return 0
        kill -0 "${BPID[$b]}" 2>/dev/null || break
        sleep 0.1
    done
    echo "broker$b did not start: $(tail -2 "$T/broker$b.out")"; return 1
}
start_broker 1 && start_broker 2 || exit 1

phase brokers up
# ---- the host-side tap: host -> tap (host's certificate) -> broker ------------------------------
declare -A TAP=()
specs=()
for h in 1 2 3; do for b in 1 2; do
    free_port || die "no free port"; TAP[$h$b]=$PORT
    specs+=("${TAP[$h$b]}:${B_PORT[$b]}:esx0$h:$PKI/esx0$h.crt:$PKI/esx0$h.key")
done; done
VMENC_CHAOS_TAP_TRACE=1 "$PY" "$SRC/scripts/broker_chaos_tap.py" "$T/received" "$PKI/ca.crt" "$PKI/server.crt" "$PKI/server.key" \
    "${specs[@]}" > "$T/tap.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do grep -q ready "$T/tap.out" 2>/dev/null && break; sleep 0.1; done

# ---- hosts: registered by the administrator, enrolled (TPM), approved; attestation per release ----
fp() { openssl x509 -in "$1" -outform DER | sha256sum | cut -d' ' -f1; }
register() {   # register H MODE: the administrator's host/<id> document (certificate, encryption mode)
    "${ECTL[@]}" put "/vmenc/$CL/host/esx0$1" \
        "{\"host\":\"esx0$1\",\"encryption_mode\":\"$2\",\"cert_sha256\":\"$(fp "$PKI/esx0$1.crt")\",\"workspace\":\"-\",\"since\":\"-\"}" \
        >/dev/null
}
for h in 1 2 3; do register $h safe || die "cannot register esx0$h"; done
cat "$T/tpmca/swtpm-localca-rootca-cert.pem" "$T/tpmca/issuercert.pem" > "$T/ek-ca.pem"   # the TPM "manufacturer"
adm cluster measurements mode --attestation per-release --pcrs sha256:4 --ek-ca "$T/ek-ca.pem" || die "mode failed"
adm cluster measurements add hv-1.0 --from-tpm "${TCTI[1]}" --pcrs sha256:4 || die "measurement failed"
enroll() {   # enroll H: a new AK under the host's EK, bound through a broker, approved
    local h=$1 b=$(( RANDOM % 2 + 1 ))
    rm -f "$T/ak$h.blob"   # enroll writes a new one and never overwrites
    "$VMENC" -q cluster host enroll --broker "127.0.0.1:${B_PORT[$b]}" --tls-ca "$PKI/ca.crt" \
        --tls-cert "$PKI/esx0$h.crt" --tls-key "$PKI/esx0$h.key" --tpm "${TCTI[$h]}" --ak-blob "$T/ak$h.blob" &&
        adm cluster host approve "esx0$h"
}
EJ=(); for h in 1 2 3; do enroll $h & EJ+=($!); done
for j in "${EJ[@]}"; do wait "$j" || die "enrolment failed"; done

phase hosts enrolled
w() { local h=$1; shift; "$VMENC" --workspace "$T/ws$h" --passphrase-file "$T/pass" --wait 3 "$@"; }
wx() { local h=$1; shift; exec "$VMENC" --workspace "$T/ws$h" --passphrase-file "$T/pass" --wait 3 "$@"; }
host_ws() {   # host_ws H: the host's workspace, its KMIP provider pointing at the brokers (through the tap)
    local h=$1
    "$VMENC" init "$T/ws$h" --admin alice --host "esx0$h" --kdf-memory 8192 --kdf-passes 1 --passphrase-file "$T/pass" -q
    [[ $h == 1 ]] || sed -i "s|^datastore = .*|datastore = \"$T/ws1/datastore\"|" "$T/ws$h/vmenc.conf"
    w $h policy host-mode --enable -q >/dev/null || die "host-mode failed"
    w $h kms add kms --type kmip --endpoint "127.0.0.1:${TAP[${h}1]}" --endpoint "127.0.0.1:${TAP[${h}2]}" \
        --option "ca=$PKI/ca.crt" --option "cert=$PKI/esx0$h.crt" --option "key=$PKI/esx0$h.key" \
        --option "tpm_tcti=${TCTI[$h]}" --option "ak_blob=$T/ak$h.blob" -q || die "host kms add failed"
}
HJ=(); for h in 1 2 3; do host_ws $h & HJ+=($!); done
for j in "${HJ[@]}"; do wait "$j" || exit 1; done
phase host workspaces
HT() { echo --endpoints "$VMENC_ETCD_ENDPOINTS" --cacert "$VMENC_ETCD_CACERT" --cert "$PKI/esx0$1.crt" --key "$PKI/esx0$1.key"; }
TTL=2
# Setup steps are retried: a step that meets a loaded machine (a lease or a deadline running out)
# gets another chance; the faults start only after the setup.
retry() { local i; for i in 1 2 3; do "$@" && return 0; echo "(retrying: $*)" >&2; sleep 1; done; return 1; }
retry w 1 cluster init $(HT 1) --name $CL --key-provider kms --ttl $TTL -q || die "init failed"
retry w 2 cluster join $(HT 2) --name $CL --ttl $TTL -q && retry w 3 cluster join $(HT 3) --name $CL --ttl $TTL -q ||
    die "join failed"
# A joining host takes the cluster's policy, in which it is not yet in encryption mode, and its
# registration says so (the broker then refuses it the cluster key's KEK: it cannot open its
# workspace). A member in encryption mode switches it on: the policy commit rewrites host/<id> in
# the same etcd transaction (docs/broker.md "Encryption mode").
for h in 2 3; do retry w 1 policy host-mode --enable --host "esx0$h" -q >/dev/null || die "cannot enable esx0$h"; done
retry w 1 policy storage-policy "Broker Enc" --encrypt --classes vm_home,disks --provider kms -q ||
    die "storage policy failed"
VMS=(va vb vc)
for v in "${VMS[@]}"; do
    retry w 1 vm create "$v" --policy "Broker Enc" --disk 1M -q || w 1 vm status "$v" -q >/dev/null 2>&1 ||
        die "create $v failed"
done

phase cluster and VMs
# ---- the randomized run ---------------------------------------------------------------------------
mapfile -t MEMBERS < <(awk '{print $1}' "$T/etcd/pids")
declare -A MPID DOWN
while read -r m p; do MPID[$m]=$p; DOWN[$m]=0; done < "$T/etcd/pids"
MAX_DOWN=${VMENC_CHAOS_MAX_DOWN:-2}
HV_DIGEST=$(adm --json cluster measurements list | grep -o '"digest":"[0-9a-f]*"' | head -1 | cut -d'"' -f4)
[[ -n $HV_DIGEST ]] || die "no approved measurement listed"
ops=0 faults=0 refused=0
declare -A NOPS=() NFAULTS=() PLACED=([va]=1 [vb]=1 [vc]=1) TAMPERED=() REVOKED=() BDOWN=() MODEOFF=()
op() { ops=$((ops+1)); NOPS[$1]=$(( ${NOPS[$1]:-0} + 1 )); }
fault() { faults=$((faults+1)); NFAULTS[$1]=$(( ${NFAULTS[$1]:-0} + 1 )); }
PLAIN=() WRITERS=() MEAS_REMOVED=0
live_writers() {
    local p out=()
    for p in "${WRITERS[@]}"; do kill -0 "$p" 2>/dev/null && out+=("$p"); done
    WRITERS=("${out[@]}")
}
# The administrator's repairs, so that a faulted host does not stay out for the rest of the run:
heal_revoke() { enroll $1 >/dev/null 2>>"$T/host.err" && REVOKED[$1]=0; fault re-enrol; }
# A host's encryption mode, changed with the real command on a member in mode (a host out of it
# cannot open its workspace); --disable is refused while encrypted VMs are on the host, --rebooted
# while one of its processes holds a session.
other_in_mode() { local k; for k in 1 2 3; do [[ $k != "$1" ]] && ! ((${MODEOFF[$k]:-0})) && { echo $k; return; }; done; echo 1; }
mode_off() { w "$(other_in_mode $1)" policy host-mode --disable --host "esx0$1" -q >/dev/null 2>>"$T/host.err"; }
mode_on() {
    local k; k=$(other_in_mode $1)
    w $k policy host-mode --rebooted --host "esx0$1" -q >/dev/null 2>>"$T/host.err" &&
        w $k policy host-mode --enable --host "esx0$1" -q >/dev/null 2>>"$T/host.err"
}
heal_mode() { mode_on $1 && MODEOFF[$1]=0; fault mode-safe; }
heal_tamper() {   # approve the new measurement, or restore the host: a fresh TPM (new EK), a new enrolment
    if ((RANDOM % 2)); then
        adm cluster measurements add "hv-tampered-$round" --from-tpm "${TCTI[$1]}" --pcrs sha256:4 \
            >/dev/null 2>>"$T/host.err" && TAMPERED[$1]=0; fault approve-new-measurement
    else
        "$SWTPM_STOP" "$T/tpm$1" >/dev/null 2>&1
        adm cluster host revoke "esx0$1" >/dev/null 2>&1   # the old binding (the old TPM is gone)
        start_tpm $1 && TAMPERED[$1]=0 && heal_revoke $1; fault restore-tpm
    fi
}
heal_one() {   # one faulted host, picked at random, repaired
    local x=$((RANDOM % 3)) i k
    for i in 0 1 2; do
        k=$(( (x + i) % 3 + 1 ))
        if ((${TAMPERED[$k]:-0})); then heal_tamper $k; return; fi
        if ((${REVOKED[$k]:-0})); then heal_revoke $k; return; fi
        if ((${MODEOFF[$k]:-0})); then heal_mode $k; return; fi
    done
    if ((MEAS_REMOVED)); then
        adm cluster measurements add hv-1.0 --digest "$HV_DIGEST" --pcrs sha256:4 >/dev/null 2>>"$T/host.err" &&
            MEAS_REMOVED=0
        fault re-add-measurement
    fi
}
for round in $(seq "$ROUNDS"); do
    live_writers
    ((RANDOM % 3 == 0)) && heal_one
    r=$((RANDOM % 100))
    h=$((RANDOM % 3 + 1))
    v=${VMS[$((RANDOM % ${#VMS[@]}))]}
    echo "-- round $round (r $r, esx0$h, $v)" >> "$T/host.err"
    if ((r < 18)); then                        # power a VM on for 1-2 s (its KEK through a broker)
        wx $h cluster power-on "$v" --interval-ms 50 --seconds $((RANDOM % 2 + 1)) >/dev/null 2>>"$T/host.err" &
        WRITERS+=($!); PIDS+=($!); op power-on
    elif ((r < 24)); then                      # create a plain VM
        n="n$round"
        if w $h vm create "$n" --disk 1M -q >/dev/null 2>>"$T/host.err"; then VMS+=("$n"); PLAIN+=("$n"); PLACED[$n]=$h;
        else refused=$((refused+1)); fi
        op create
    elif ((r < 30)) && ((${#PLAIN[@]} > 0)); then  # encrypt one (a KEK created through a broker)
        e=${PLAIN[$((RANDOM % ${#PLAIN[@]}))]}
        w $h vm encrypt "$e" --policy "Broker Enc" -q >/dev/null 2>>"$T/host.err" || refused=$((refused+1))
        op encrypt
    elif ((r < 36)); then                      # shallow rekey
        w $h vm rekey "$v" -q >/dev/null 2>>"$T/host.err" || refused=$((refused+1))
        op rekey
    elif ((r < 46)); then                      # migrate: hand-over | accept
        h=${PLACED[$v]:-1}; h2=$(( (h + RANDOM % 2) % 3 + 1 ))
        wx $h2 cluster accept "$v" --timeout 3 >/dev/null 2>>"$T/host.err" &
        ACC=$!; PIDS+=($ACC)
        if w $h cluster hand-over "$v" --to "esx0$h2" --timeout 3 >/dev/null 2>>"$T/host.err"; then PLACED[$v]=$h2;
        else refused=$((refused+1)); kill "$ACC" 2>/dev/null; fi
        wait $ACC 2>/dev/null
        op migrate
    elif ((r < 54)); then                      # take-over
        if w $h vm register "$v" --take-over -q >/dev/null 2>>"$T/host.err"; then PLACED[$v]=$h; else refused=$((refused+1)); fi
        op take-over
    elif ((r < 57)) && ((${#WRITERS[@]} > 0)); then   # SIGKILL a host process
        p=${WRITERS[$((RANDOM % ${#WRITERS[@]}))]}
        kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; fault kill-host-process
    elif ((r < 63)); then                      # revoke a host's TPM binding (or heal it)
        if ((${REVOKED[$h]:-0})); then heal_revoke $h
        else adm cluster host revoke "esx0$h" >/dev/null 2>>"$T/host.err" && REVOKED[$h]=1; fault revoke; fi
    elif ((r < 70)); then                      # tamper with a host's PCR 4 (or heal it)
        if ((${TAMPERED[$h]:-0})); then heal_tamper $h
        else
            tpm2_pcrextend -T "${TCTI[$h]}" "4:sha256=$(printf 'hypervisor %s (unapproved)' $round | sha256sum | cut -d' ' -f1)" \
                >/dev/null 2>&1 && TAMPERED[$h]=1; fault extend-pcr
        fi
    elif ((r < 73)); then                      # a host leaves encryption mode (or comes back)
        if ((${MODEOFF[$h]:-0})); then heal_mode $h
        else mode_off $h && MODEOFF[$h]=1; fault mode-incapable; fi
    elif ((r < 77)); then                      # remove / re-add the approved measurement
        if ((MEAS_REMOVED)); then
            adm cluster measurements add hv-1.0 --digest "$HV_DIGEST" --pcrs sha256:4 >/dev/null 2>>"$T/host.err" && MEAS_REMOVED=0
            fault re-add-measurement
        else
            adm cluster measurements remove hv-1.0 >/dev/null 2>>"$T/host.err" && MEAS_REMOVED=1; fault remove-measurement
        fi
    elif ((r < 86)); then                      # SIGKILL a broker, or restart it
        b=$((RANDOM % 2 + 1))
        if ((${BDOWN[$b]:-0})); then
            start_broker $b >/dev/null && BDOWN[$b]=0; fault restart-broker
        else
            kill -9 "${BPID[$b]}" 2>/dev/null && BDOWN[$b]=1; wait "${BPID[$b]}" 2>/dev/null; fault kill-broker
        fi
    else                                       # kill an etcd member, or restart one (2 in 3 when any is down)
        up=() down=()
        for x in "${MEMBERS[@]}"; do if ((DOWN[$x])); then down+=("$x"); else up+=("$x"); fi; done
        if ((${#down[@]} > 0)) && { ((RANDOM % 3)) || ((${#down[@]} >= MAX_DOWN)); }; then
            m=${down[$((RANDOM % ${#down[@]}))]}
            "$START" --restart "$T/etcd" "$m" >/dev/null 2>&1 && DOWN[$m]=0
            MPID[$m]=$(awk -v m="$m" '$1==m {print $2}' "$T/etcd/pids")
            fault restart-etcd
        else
            m=${up[$((RANDOM % ${#up[@]}))]}
            kill -9 "${MPID[$m]}" 2>/dev/null && DOWN[$m]=1; fault kill-etcd
        fi
    fi
    sleep 0.$((RANDOM % 3 + 1))
done

phase rounds done
# ---- settle: every member and broker back, every host process ended ----------------------------
for m in "${MEMBERS[@]}"; do ((DOWN[$m])) && "$START" --restart "$T/etcd" "$m" >/dev/null 2>&1; done
for b in 1 2; do ((${BDOWN[$b]:-0})) && start_broker $b >/dev/null; done
live_writers
for p in "${WRITERS[@]}"; do wait "$p" 2>/dev/null; done
for h in 1 2 3; do ((${MODEOFF[$h]:-0})) && mode_on $h; done

# ---- the property, from etcd's history (not the broker's code) ----------------------------------
"$PY" "$SRC/scripts/broker_chaos_check.py" --dump "/vmenc/$CL/" "$T/history.json" || die "cannot read etcd history"
phase history dumped
CERTS=(); for h in 1 2 3; do CERTS+=("esx0$h=$PKI/esx0$h.crt"); done
# The property on the real history; then (--self-test) on forged copies of it, one per kind of
# violation, each of which must be reported - so the check cannot pass by checking nothing.
"$PY" "$SRC/scripts/broker_chaos_check.py" "$T/history.json" $CL "$T/received" "${CERTS[@]}" --self-test
rc=$?
# a sanitizer build: any report of a broker or a host process fails the run
if grep -lE "ERROR: (Address|Leak)Sanitizer|runtime error:" "$T"/broker?.out "$T/host.err" 2>/dev/null; then
    grep -hE -A5 "ERROR: (Address|Leak)Sanitizer|runtime error:" "$T"/broker?.out "$T/host.err" | head -40
    echo "VIOLATION: a sanitizer report (above)"; rc=1
fi
kinds=""; for k in "${!NOPS[@]}"; do kinds+="$k ${NOPS[$k]}, "; done
fk=""; for k in "${!NFAULTS[@]}"; do fk+="$k ${NFAULTS[$k]}, "; done
echo "broker chaos seed $SEED: $ROUNDS rounds, $ops operations (${kinds%, }; $refused refused),"
echo "  $faults faults (${fk%, })"
exit $rc
