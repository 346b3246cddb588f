#!/usr/bin/env bash
# scripts/cluster-chaos.sh BUILD_DIR [ROUNDS] [SEED] - the randomized fault
# test of cluster mode (docs/cluster.md). Three hosts (workspaces sharing
# one datastore and one key provider) on a real 3-member etcd cluster run
# random operations - create a VM, encrypt it, power it on (a writer
# tagging every write with host, lease and time; open/close for write),
# rekey it, migrate it to another host (cluster hand-over | accept: the
# one-transaction handover), take it over, add users, grant and revoke
# permissions - while random faults hit them: SIGKILL and SIGSTOP/SIGCONT
# of host processes, SIGKILL and restart of etcd members (at times two at
# once: no quorum). Afterwards, with every member back, it checks:
#   1. never two writers on one VM: the [first, last] write intervals of
#      different sessions (leases) of one VM do not overlap;
#   2. every acknowledged edit is in the cluster policy, seen from every
#      host: added users, grants (not revoked since), and acknowledged
#      revokes are absent;
#   3. no VM record contradicts its files: every VM opens (authority
#      check) on every host, and each is placed on exactly one host;
#   4. every host's events are in the cluster log in order ('audit verify
#      --cluster' on each host: in sync, no broken chain).
# Prints the operations, the faults and the violations (must be 0); exit
# 1 on any violation; exit 2 (inconclusive) when a run of 20 rounds or more
# had no tagged write. tests/cluster_chaos.test.sh runs a short version.
# VMENC_CHAOS_MAX_DOWN (default 2) caps the etcd members down at once.
set -uo pipefail
BUILD=$(cd "${1:?build dir}" && pwd)
ROUNDS=${2:-60}
SEED=${3:-$RANDOM}
SRC=$(cd "$(dirname "$0")/.." && pwd)
VMENC=$BUILD/vmenc
START=$SRC/tests/support/etcd/start-etcd-cluster.sh
STOP=$SRC/tests/support/etcd/stop-etcd-cluster.sh
RANDOM=$SEED

command -v etcd >/dev/null || { echo "SKIP: etcd is not installed"; exit 77; }
T=$(mktemp -d /tmp/vmenc-cluster-chaos-XXXXXX)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -CONT "$p" 2>/dev/null; kill -9 "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    [[ -f $T/etcd/pids ]] && "$STOP" "$T/etcd" >/dev/null 2>&1
    [[ -n ${KEEP:-} ]] || rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ENV_OUT=$("$START" "$T/etcd" 2>"$T/etcd.err") || { cat "$T/etcd.err"; echo "SKIP: etcd cannot start"; exit 77; }
eval "$ENV_OUT"
TLS=(--endpoints "$VMENC_ETCD_ENDPOINTS" --cacert "$VMENC_ETCD_CACERT" --cert "$VMENC_ETCD_CERT" --key "$VMENC_ETCD_KEY")
export VMENC_NO_SYNC=1 VMENC_USER=alice
unset VMENC_PASSPHRASE VMENC_WORKSPACE
echo "chaos passphrase" > "$T/pass"
echo "chaos shared" > "$T/shared.pass"
w() { local h=$1; shift; "$VMENC" --workspace "$T/ws$h" --passphrase-file "$T/pass" --wait 3 "$@"; }
# wx: the same, as the process itself (in the background, $! is vmenc, so signals reach it)
wx() { local h=$1; shift; exec "$VMENC" --workspace "$T/ws$h" --passphrase-file "$T/pass" --wait 3 "$@"; }
FAST=(--option kdf_ops=1 --option kdf_mem_kib=8192)
TTL=2
MAX_DOWN=${VMENC_CHAOS_MAX_DOWN:-2}   # etcd members down at once (2: quorum lost at times)
VMS=(va vb vc)
PLAIN=()     # created plain VMs (encrypt candidates)
declare -A PLACED=([va]=1 [vb]=1 [vc]=1)   # where each VM is placed, as far as the script knows
mkdir -p "$T/logs"

for h in 1 2 3; do
    "$VMENC" init "$T/ws$h" --admin alice --host "esx0$h" --kdf-memory 8192 --kdf-passes 1 --passphrase-file "$T/pass" -q
    [[ $h == 1 ]] || sed -i "s|^datastore = .*|datastore = \"$T/ws1/datastore\"|" "$T/ws$h/vmenc.conf"
    w $h kms add shared --type file --endpoint "$T/shared.vks" $([[ $h == 1 ]] && echo --create) \
        --secret-file "$T/shared.pass" "${FAST[@]}" -q
done
w 1 cluster init "${TLS[@]}" --name chaos --key-provider shared --ttl $TTL -q || { echo "init failed"; exit 1; }
w 2 cluster join "${TLS[@]}" --name chaos --ttl $TTL -q && w 3 cluster join "${TLS[@]}" --name chaos --ttl $TTL -q ||
    { echo "join failed"; exit 1; }
w 1 policy storage-policy "Shared Enc" --encrypt --classes vm_home,disks --provider shared -q
for v in "${VMS[@]}"; do w 1 vm create "$v" --policy "Shared Enc" --disk 1M -q || { echo "create $v failed"; exit 1; }; done

# overlaps: writer log lines ("HOST LEASE SEQ TIME_MS STATUS") on stdin; prints
# the sessions whose [first, last] OK-write interval overlaps an earlier one's.
overlaps() {
    awk '$5=="OK" {k=$1" "$2; if (!(k in lo) || $4<lo[k]) lo[k]=$4; if ($4>hi[k]) hi[k]=$4}
         END {for (k in lo) print lo[k], hi[k], k}' | sort -n |
        awk 'NR>1 && $1 <= prev_hi {print} {if ($2 > prev_hi) prev_hi=$2}'
}
# the checker must see an overlap when there is one (and none when there is none)
[[ -n $(printf 'h1 L1 1 100 OK\nh1 L1 2 200 OK\nh2 L2 1 150 OK\n' | overlaps) &&
   -z $(printf 'h1 L1 1 100 OK\nh1 L1 2 200 OK\nh2 L2 1 250 OK\nh1 L1 3 300 LEASE\n' | overlaps) ]] ||
    { echo "the overlap checker is broken"; exit 1; }

mapfile -t MEMBERS < <(awk '{print $1}' "$T/etcd/pids")
declare -A MPID DOWN
while read -r m p; do MPID[$m]=$p; DOWN[$m]=0; done < "$T/etcd/pids"
ops=0 faults=0 refused=0 acked=0
declare -A NOPS=()
op() { ops=$((ops+1)); NOPS[$1]=$(( ${NOPS[$1]:-0} + 1 )); }
WRITERS=()   # "PID" of running writers
live_writers() {
    local p out=()
    for p in "${WRITERS[@]}"; do kill -0 "$p" 2>/dev/null && out+=("$p"); done
    WRITERS=("${out[@]}")
}

for round in $(seq "$ROUNDS"); do
    live_writers
    r=$((RANDOM % 100))
    h=$((RANDOM % 3 + 1))
    v=${VMS[$((RANDOM % ${#VMS[@]}))]}
    h2=$(( (h + RANDOM % 2) % 3 + 1 ))           # another host
    if ((r < 22)); then                        # power a VM on for 1-3 s (open for write, close)
        # two times in three on the host it is placed on (as far as we know), else anywhere
        # (where it must be refused): a run whose power-ons are all refused checks no writers
        ((RANDOM % 3)) && h=${PLACED[$v]:-$h}
        wx $h cluster power-on "$v" --interval-ms 30 --seconds $((RANDOM % 3 + 1)) \
            --log "$T/logs/$v.esx0$h.$round" >/dev/null 2>>"$T/logs/writers.err" &
        WRITERS+=($!); PIDS+=($!); op power-on
    elif ((r < 32)); then                      # a policy edit, acknowledged or not
        if w $h policy user "u$round" -q >/dev/null 2>&1; then echo "u$round" >> "$T/acked"; acked=$((acked+1));
        else refused=$((refused+1)); fi
        op user
    elif ((r < 38)) && [[ -s $T/acked ]]; then # grant an acknowledged user a role on a VM
        u=$(shuf -n1 "$T/acked" --random-source=<(yes $round))
        if ! grep -qx "$u $v" "$T/revoke_tried" 2>/dev/null; then
            if w $h policy grant "$u" Admin --on "$v" -q >/dev/null 2>&1; then echo "$u $v" >> "$T/grants"; acked=$((acked+1));
            else refused=$((refused+1)); fi
            op grant
        fi
    elif ((r < 42)) && [[ -s $T/grants ]]; then # revoke a grant
        g=$(shuf -n1 "$T/grants" --random-source=<(yes $round)); read -r u gv <<<"$g"
        echo "$u $gv" >> "$T/revoke_tried"
        if w $h policy revoke "$u" --on "$gv" --yes -q >/dev/null 2>&1; then echo "$u $gv" >> "$T/revoked"; acked=$((acked+1));
        else refused=$((refused+1)); fi
        op revoke
    elif ((r < 46)); then                      # create a plain VM
        n="n$round"
        if w $h vm create "$n" --disk 1M -q >/dev/null 2>&1; then VMS+=("$n"); PLAIN+=("$n"); PLACED[$n]=$h;
        else refused=$((refused+1)); fi
        op create
    elif ((r < 49)) && ((${#PLAIN[@]} > 0)); then  # encrypt a created VM
        e=${PLAIN[$((RANDOM % ${#PLAIN[@]}))]}
        w $h vm encrypt "$e" --policy "Shared Enc" -q >/dev/null 2>&1 || refused=$((refused+1))
        op encrypt
    elif ((r < 54)); then                      # shallow rekey
        w $h vm rekey "$v" -q >/dev/null 2>&1 || refused=$((refused+1))
        op rekey
    elif ((r < 60)); then                      # migrate to another host (shared datastore: the handover)
        h=${PLACED[$v]:-1}; h2=$(( (h + RANDOM % 2) % 3 + 1 ))   # from where it is placed (as far as we know)
        wx $h2 cluster accept "$v" --timeout 3 >/dev/null 2>&1 &
        ACC=$!; PIDS+=($ACC)
        if w $h cluster hand-over "$v" --to "esx0$h2" --timeout 3 >/dev/null 2>&1; then PLACED[$v]=$h2;
        else refused=$((refused+1)); kill "$ACC" 2>/dev/null; fi
        wait $ACC 2>/dev/null
        op migrate
    elif ((r < 66)); then                      # a take-over attempt
        if w $h vm register "$v" --take-over -q >/dev/null 2>&1; then PLACED[$v]=$h; else refused=$((refused+1)); fi
        op take-over
    elif ((r < 75)) && ((${#WRITERS[@]} > 0)); then   # SIGKILL a host process
        kill -9 "${WRITERS[$((RANDOM % ${#WRITERS[@]}))]}" 2>/dev/null; faults=$((faults+1))
    elif ((r < 85)) && ((${#WRITERS[@]} > 0)); then   # SIGSTOP it for 0.5-3.5 s
        p=${WRITERS[$((RANDOM % ${#WRITERS[@]}))]}
        kill -STOP "$p" 2>/dev/null && { (sleep "$((RANDOM % 4)).5"; kill -CONT "$p" 2>/dev/null) & }
        faults=$((faults+1))
    else                                       # kill or restart an etcd member
        m=${MEMBERS[$((RANDOM % 3))]}
        ndown=0; for x in "${MEMBERS[@]}"; do ((DOWN[$x])) && ndown=$((ndown+1)); done
        if ((DOWN[$m])); then
            "$START" --restart "$T/etcd" "$m" >/dev/null 2>&1 && DOWN[$m]=0
            MPID[$m]=$(awk -v m="$m" '$1==m {print $2}' "$T/etcd/pids")
        elif ((ndown < MAX_DOWN)); then
            kill -9 "${MPID[$m]}" 2>/dev/null && DOWN[$m]=1
        fi
        faults=$((faults+1))
    fi
    sleep 0.$((RANDOM % 4 + 1))
done

# ---- settle: every member back, every writer ended -----------------------------------------
for m in "${MEMBERS[@]}"; do
    ((DOWN[$m])) && "$START" --restart "$T/etcd" "$m" >/dev/null 2>&1
done
live_writers
for p in "${WRITERS[@]}"; do kill -CONT "$p" 2>/dev/null; done
for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
PIDS=()

violations=0
# 1. one writer per VM: per VM, per session (lease), the interval of its OK writes
for v in "${VMS[@]}"; do
    bad=$(cat "$T"/logs/"$v".* 2>/dev/null | overlaps)
    if [[ -n $bad ]]; then
        echo "VIOLATION: overlapping writers on $v: $bad"; violations=$((violations+1))
    fi
done
# 2. every acknowledged edit present, from every host
for h in 1 2 3; do
    doc=$(w $h policy show 2>/dev/null)
    [[ -n $doc ]] || { echo "VIOLATION: esx0$h cannot read the policy"; violations=$((violations+1)); continue; }
    while read -r u; do
        [[ $doc == *"\"$u\""* ]] || { echo "VIOLATION: esx0$h misses acknowledged edit $u"; violations=$((violations+1)); }
    done < <(cat "$T/acked" 2>/dev/null)
done
# 2b. grants: acknowledged and never revoked -> present; acknowledged revokes -> absent
doc=$(w 1 policy show 2>/dev/null)
while read -r u gv; do
    grep -qx "$u $gv" "$T/revoke_tried" 2>/dev/null && continue
    [[ $doc == *"\"principal\": \"$u\", \"object\": \"$gv\""* ]] ||
        { echo "VIOLATION: acknowledged grant $u on $gv missing"; violations=$((violations+1)); }
done < <(sort -u "$T/grants" 2>/dev/null)
while read -r u gv; do
    [[ $doc != *"\"principal\": \"$u\", \"object\": \"$gv\""* ]] ||
        { echo "VIOLATION: acknowledged revoke of $u on $gv not in force"; violations=$((violations+1)); }
done < <(sort -u "$T/revoked" 2>/dev/null)
# 3. every VM opens on every host (its record agrees with its files) and is placed on one host
# A refusal that says nothing about the record (this process's lease ran out on a loaded
# machine, etcd busy) is retried; after 3 tries it is reported as unchecked, not as a violation.
unchecked=0
for h in 1 2 3; do
    todo=("${VMS[@]}")
    for try in 1 2 3; do
        list=$(w $h --json vm list 2>&1)   # opens every VM of the datastore, as 'vm status' does
        left=()
        for v in "${todo[@]}"; do
            [[ $list == *"\"name\":\"$v\",\"uuid\""* ]] && continue
            err=$(grep -o "\"name\":\"$v\"[^}]*" <<<"$list" | head -1)
            if [[ $err =~ LEASE_EXPIRED|CONTROL_UNAVAILABLE|OUTCOME_UNKNOWN ]]; then
                left+=("$v")
            else
                echo "VIOLATION: $v does not open on esx0$h: $err"; violations=$((violations+1))
            fi
        done
        todo=("${left[@]}")
        ((${#todo[@]} == 0)) && break
        sleep 1
    done
    unchecked=$((unchecked + ${#todo[@]}))
done
for v in "${VMS[@]}"; do
    pl=$(w 1 --json cluster owner "$v" 2>/dev/null)
    [[ $pl =~ \"placement\":\"esx0[123]\" ]] ||
        { echo "VIOLATION: $v is not placed on exactly one host: $pl"; violations=$((violations+1)); }
done
# 4. Every host's events in the cluster log, in order (the etcd audit mirror,
#    lib/control/etcd/audit_mirror.c): on each host 'audit verify --cluster'
#    writes its own record first (which catches the mirror up), then compares
#    the local chain with every host's mirrored chain. A host is right when its
#    mirror is in sync with its log and no host's mirrored chain is broken. A
#    control plane still settling after the last fault is retried a few times.
audit_checked=yes
for h in 1 2 3; do
    ok=no
    for try in 1 2 3 4 5; do
        out=$(w $h --json audit verify --cluster 2>"$T/audit.err")
        if [[ $out =~ \"in_sync\":true ]] && [[ $out =~ \"broken_hosts\":0[,}] ]]; then ok=yes; break; fi
        [[ $out =~ \"state\":\"(cut|diverged|missing)\" ]] && break
        sleep 1
    done
    if [[ $ok != yes ]]; then
        echo "VIOLATION: esx0$h's events are not in the cluster log in order: ${out:-$(tail -1 "$T/audit.err")}"
        violations=$((violations+1))
    fi
done
writes=$(cat "$T"/logs/v* 2>/dev/null | awk '$5=="OK"' | wc -l)
fenced=$(cat "$T"/logs/v* 2>/dev/null | grep -c LEASE_EXPIRED)
kinds=""; for k in "${!NOPS[@]}"; do kinds+="$k ${NOPS[$k]}, "; done
echo "chaos seed $SEED: $ROUNDS rounds, $ops operations (${kinds%, }; $acked edits acknowledged, $refused refused),"
echo "  $faults faults, $writes tagged writes, $fenced refused by fencing, ${#VMS[@]} VMs; audit mirror checked: $audit_checked;"
echo "  VM opens left unchecked (control plane busy): $unchecked; violations: $violations"
# Property 1 needs writers: a run of 20 rounds or more in which no power-on wrote is inconclusive
# (exit 2), not a pass.
if ((violations == 0 && writes == 0 && ROUNDS >= 20)); then
    echo "INCONCLUSIVE: no tagged writes, so 'never two writers' was not exercised (KEEP=1 keeps $T/logs/writers.err)"
    exit 2
fi
((violations == 0))
