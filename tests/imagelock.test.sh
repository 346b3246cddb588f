#!/usr/bin/env bash
# tests/imagelock.test.sh BUILD_DIR SOURCE_DIR - image locks between real
# processes at the CLI level (docs/vm.md "Locks"): `nbdkit vmenc` serves a
# disk read-write, and then
#  1. a second `nbdkit vmenc` on the same disk, with its own audit log, is
#     refused naming the first (its PID, program, "writing");
#  2. `vmenc vm rekey --deep`, `vm decrypt` (encrypted VM) and `vm encrypt`
#     (plain VM) of a served VM are refused naming nbdkit, and leave the
#     disk as it was: guest writes made through nbdkit before and after the
#     refusals read back with `vmenc disk read` once nbdkit stops;
#  3. kill -9 of the server: the next opener (a deep rekey) gets in at once;
#  4. while `vm encrypt` runs in another process (stopped half way, still
#     holding CONVERT), `disk convert-status` (progress > 0) and `vm status`
#     answer: status reads take no image lock.
# A read-only reader (`vmenc disk read`) beside the server is allowed.
# Skips (exit 77) when the plugin is not built, nbdkit or qemu-io cannot start,
# or in sanitizer builds (as tests/nbdkit.test.sh, for the same reason).
set -uo pipefail
BUILD=$(cd "${1:?build dir}" && pwd)
SRC=$(cd "${2:?source dir}" && pwd)
PLUGIN=$BUILD/nbdkit-vmenc-plugin.so
VMENC=$BUILD/vmenc

skip() { echo "SKIP: $*"; exit 77; }
[[ -e $PLUGIN ]] || skip "the nbdkit plugin is not built"
command -v nbdkit >/dev/null || skip "nbdkit is not installed (scripts/deps.sh)"
command -v qemu-io >/dev/null || skip "qemu-io is not installed (scripts/deps.sh)"
SAN_RT=$(ldd "$BUILD/libvmenc.so" | awk '/lib(a|t)san\.so/ {print $3; exit}')
[[ -z $SAN_RT ]] || skip "sanitizer build: nbdkit is not instrumented (see tests/nbdkit.test.sh)"
nbdkit -U - null --run true >/dev/null 2>&1 || skip "nbdkit cannot start here"

T=$(mktemp -d /tmp/vmenc-imagelock-test-XXXXXX)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fails=0 n=0
ok()  { n=$((n+1)); echo "ok $n - $*"; }
bad() { n=$((n+1)); fails=$((fails+1)); echo "not ok $n - $*"; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }

export VMENC_NO_SYNC=1 VMENC_USER=alice
unset VMENC_PASSPHRASE VMENC_WORKSPACE
echo "imagelock test passphrase" > "$T/pass"
W=$T/ws
VA=("$VMENC" --workspace "$W" --passphrase-file "$T/pass")
va() { "${VA[@]}" "$@"; }

# A plugin with a control endpoint (online conversion through the serving
# process, issue 21) would take the CLI's conversion online; this test is
# about the refusal the CLI gets without one, so switch it off where it exists.
CTL=()
nbdkit "$PLUGIN" --help 2>&1 | grep -q "control=" && CTL=(control=off)

start_nbdkit() { # start_nbdkit SOCKET LOG ARGS...: NBD_PID serves in the foreground
    local sock=$1 log=$2; shift 2
    rm -f "$sock"
    nbdkit -f -U "$sock" "$PLUGIN" "$@" "${CTL[@]}" 2>"$log" &
    NBD_PID=$!
    PIDS+=("$NBD_PID")
    for _ in $(seq 200); do
        [[ -S $sock ]] && return 0
        kill -0 "$NBD_PID" 2>/dev/null || { wait "$NBD_PID" 2>/dev/null; return 1; }
        sleep 0.05
    done
    return 1
}
stop_nbdkit() { kill "$1" 2>/dev/null; wait "$1" 2>/dev/null; }
uri() { echo "nbd+unix:///?socket=$1"; }

# expect_refused WHAT PID LOG CMD...: CMD fails at once with stderr naming
# nbdkit process PID as the holder
expect_refused() {
    local what=$1 pid=$2 log=$3; shift 3
    if timeout 60 "$@" >"$T/out" 2>"$log"; then
        bad "$what: it ran (exit 0)"
    elif grep -q "in use by another process: nbdkit pid $pid on host esx1 .* writing since" "$log"; then
        ok "$what: $(grep -m1 -o 'in use by another process: nbdkit pid [0-9]* on host [^ ]* ([^)]*) writing' "$log")"
    else
        bad "$what: refusal does not name nbdkit pid $pid: $(head -c 400 "$log")"
    fi
}

va init "$W" --admin alice --host esx1 --kdf-memory 8192 --kdf-passes 1 >/dev/null || { echo "init failed"; exit 1; }
va vm create a --policy "VM Encryption Policy" --disk 16M >/dev/null && va vm create p --disk 16M >/dev/null
check "workspace with an encrypted VM a and a plain VM p" test $? = 0

# ---- 1. two servers ----------------------------------------------------------------------------------
SA=$T/a.sock
check "nbdkit serves a read-write" start_nbdkit "$SA" "$T/a.log" workspace="$W" vm=a user=alice \
    passphrase-file="$T/pass" audit-log=first.audit.log
A_PID=$NBD_PID
head -c 65536 /dev/urandom >"$T/before.bin"
head -c 65536 /dev/urandom >"$T/after.bin"
check "a guest write through nbdkit (64 KiB at 1 MiB)" \
    qemu-io -f raw -c "write -s $T/before.bin 1M 64k" -c flush "$(uri "$SA")"
check "the owner record names nbdkit" grep -q 'lock.program = "nbdkit"' "$W/datastore/a/a_0-flat.vmdk.lck"

expect_refused "a second nbdkit on the disk, its own audit log" "$A_PID" "$T/second.err" \
    nbdkit -U - "$PLUGIN" workspace="$W" vm=a user=alice passphrase-file="$T/pass" \
    audit-log=second.audit.log "${CTL[@]}" --run true
if timeout 60 nbdkit -U - "$PLUGIN" workspace="$W" vm=a user=alice passphrase-file="$T/pass" \
    audit-log=first.audit.log "${CTL[@]}" --run true >/dev/null 2>"$T/same.err"; then
    bad "a second nbdkit with the first one's audit log: it served"
else
    ok "a second nbdkit with the first one's audit log: refused ($(grep -m1 -o 'in use by another process[^;]*\|held by another process' "$T/same.err"))"
fi

# ---- 2. conversions of a served VM ----------------------------------------------------------------------
expect_refused "vm rekey --deep of the served VM" "$A_PID" "$T/rekey.err" "${VA[@]}" vm rekey --deep a
expect_refused "vm decrypt of the served VM" "$A_PID" "$T/decrypt.err" "${VA[@]}" --yes vm decrypt a
grep -q "VMENC_E_LOCKED" "$T/rekey.err" && ok "the refusal is VMENC_E_LOCKED" || bad "no VMENC_E_LOCKED: $(cat "$T/rekey.err")"
va --json vm rekey --deep a >"$T/rekey.json" 2>/dev/null
check "--json: the error object names the holder" grep -q '"status":"VMENC_E_LOCKED".*nbdkit pid '"$A_PID" "$T/rekey.json"

SP=$T/p.sock
check "nbdkit serves the plain VM p" start_nbdkit "$SP" "$T/p.log" workspace="$W" vm=p user=alice \
    passphrase-file="$T/pass" audit-log=p.audit.log
P_PID=$NBD_PID
expect_refused "vm encrypt of the served plain VM" "$P_PID" "$T/encrypt.err" "${VA[@]}" vm encrypt p
stop_nbdkit "$P_PID"

# a reader beside the writer is allowed
check "vmenc disk read beside the server (a reader)" \
    sh -c "\"$VMENC\" --workspace \"$W\" --passphrase-file \"$T/pass\" disk read a scsi0:0 >/dev/null"
check "guest write after the refusals" \
    qemu-io -f raw -c "write -s $T/after.bin 2M 64k" -c flush "$(uri "$SA")"
stop_nbdkit "$A_PID"
va disk read a scsi0:0 >"$T/a.dec" 2>"$T/read.err"
check "guest data written before the refusals reads back" cmp -s <(dd if="$T/a.dec" bs=64k skip=16 count=1 2>/dev/null) "$T/before.bin"
check "guest data written after the refusals reads back" cmp -s <(dd if="$T/a.dec" bs=64k skip=32 count=1 2>/dev/null) "$T/after.bin"
check "no lock record is left once nbdkit stopped" test ! -e "$W/datastore/a/a_0-flat.vmdk.lck"
grep -q '"disk.open".*in use by another process' "$W"/*.audit.log "$W"/audit* 2>/dev/null &&
    ok "the refused open is in an audit log with the holder" ||
    bad "no audit event with the holder: $(ls "$W")"

# ---- 3. kill -9 ------------------------------------------------------------------------------------------
check "nbdkit serves a again" start_nbdkit "$SA" "$T/a2.log" workspace="$W" vm=a user=alice \
    passphrase-file="$T/pass" audit-log=first.audit.log
K_PID=$NBD_PID
expect_refused "vm rekey --deep while it serves" "$K_PID" "$T/k.err" "${VA[@]}" vm rekey --deep a
kill -9 "$K_PID"; wait "$K_PID" 2>/dev/null
check "after kill -9 the record is stale but present" test -e "$W/datastore/a/a_0-flat.vmdk.lck"
t0=$(date +%s%N)
if timeout 120 "$VMENC" --workspace "$W" --passphrase-file "$T/pass" vm rekey --deep a >/dev/null 2>"$T/k2.err"; then
    ok "after kill -9 of the server, vm rekey --deep runs at once ($(( ($(date +%s%N) - t0) / 1000000 )) ms)"
else
    bad "after kill -9, vm rekey --deep failed: $(head -c 300 "$T/k2.err")"
fi
va disk read a scsi0:0 >"$T/a2.dec" 2>/dev/null
check "the data survived the deep rekey" cmp -s <(dd if="$T/a2.dec" bs=64k skip=32 count=1 2>/dev/null) "$T/after.bin"

# ---- 4. status while another process converts -----------------------------------------------------------
# `vm encrypt` of a plain 2 GiB VM with data, in 1 MiB segments and with syncs,
# runs in the background holding CONVERT on the extent. While it runs,
# `disk convert-status` and `vm status` must answer, and the converter must
# still hold the disk (alive, state file there) when they have returned - no
# timing threshold: a try whose answer came after the conversion ended is
# repeated on a fresh conversion. (Freezing the converter with SIGSTOP is not
# used: it can freeze it inside a short workspace critical section, which
# any frozen process would block.) Before the observer's read,
# convert-status was refused with VMENC_E_LOCKED naming the converter.
seen=0
for try in 1 2 3 4 5; do
    va vm create "c$try" --disk 2G >/dev/null && head -c 1048576 /dev/urandom >"$T/c.bin" &&
        va disk write "c$try" scsi0:0 <"$T/c.bin" >/dev/null || { bad "a plain VM c$try with 1 MiB of data"; break; }
    env -u VMENC_NO_SYNC "${VA[@]}" vm encrypt "c$try" --segment 1M >"$T/cenc.out" 2>"$T/cenc.err" &
    C_PID=$!
    PIDS+=("$C_PID")
    for _ in $(seq 200000); do
        compgen -G "$W/datastore/c$try/*.cvt" >/dev/null && break
        kill -0 "$C_PID" 2>/dev/null || break
    done
    va --json disk convert-status "c$try" >"$T/cs.json" 2>"$T/cs.err"; cs_rc=$?
    va vm status "c$try" >"$T/vs.out" 2>"$T/vs.err"; vs_rc=$?
    still=0
    kill -0 "$C_PID" 2>/dev/null && compgen -G "$W/datastore/c$try/*.cvt" >/dev/null && still=1
    wait "$C_PID"; c_rc=$?
    if [[ $still = 1 ]]; then seen=1; break; fi
    echo "# try $try: the conversion ended before the status reads returned; again"
done
check "the converter still held the disk when the status reads returned" test $seen = 1
if [[ $seen = 1 ]]; then
    bd=$(grep -o '"bytes_done":[0-9]*' "$T/cs.json" | cut -d: -f2)
    bt=$(grep -o '"bytes_total":[0-9]*' "$T/cs.json" | cut -d: -f2)
    if [[ $cs_rc = 0 ]] && grep -q '"converting":1.*"state":"encrypting","converting":true' "$T/cs.json" &&
        ((${bd:-0} <= ${bt:-0} && ${bt:-0} > 0)); then
        ok "disk convert-status during another process's conversion answers: encrypting, $bd of $bt bytes"
    else
        bad "disk convert-status during the conversion: exit $cs_rc: $(head -c 400 "$T/cs.json" "$T/cs.err")"
    fi
    if [[ $vs_rc = 0 ]] && grep -q 'state: encrypting' "$T/vs.out"; then
        ok "vm status during the conversion answers (exit 0, disk encrypting)"
    else
        bad "vm status during the conversion: exit $vs_rc: $(head -c 600 "$T/vs.out" "$T/vs.err")"
    fi
    check "the conversion then finished (exit 0)" test $c_rc = 0
    va --json disk convert-status "c$try" >"$T/cs2.json" 2>/dev/null
    check "convert-status after it: encrypted, done" grep -q '"converting":0' "$T/cs2.json"
    va disk read "c$try" scsi0:0 2>/dev/null | head -c 1048576 >"$T/c.dec"
    check "the data survived" cmp -s "$T/c.dec" "$T/c.bin"
fi

echo "1..$n"
[[ $fails -eq 0 ]] || { echo "$fails of $n failed"; exit 1; }
