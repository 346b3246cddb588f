#!/usr/bin/env bash
# tests/tamper.test.sh BUILD_DIR SOURCE_DIR - the exact reproductions of
# issue 20's eleven points, through the real vmenc binary, as the review
# that found them ran them: someone with write access to the datastore
# (strip, forge, replay, plant a FIFO, damage a .cvt, edit a geometry) and
# kill/EIO campaigns (tests/support/shim/faultshim.c, an LD_PRELOAD shim
# that counts rename/pwrite calls from outside the library and SIGKILLs
# or fails the Nth). The threat model these check: docs/vm.md "Threat
# model". The one rule every check follows: a refusal is not enough, the
# plaintext written before the attack must never be found in clear in an
# encrypted VM's files afterwards.
#
# Checks that fail on the code this was written against are listed in
# KNOWN_OPEN (with the issue point): they print "not ok ... # TODO known
# open" and do not fail the test until the fixes merge; the lead empties
# the list. VMENC_TAMPER_STRICT=1 counts them as failures.
set -uo pipefail
BUILD=${1:?build dir}
SRC=${2:?source dir}
VMENC="$BUILD/vmenc"
SHIM="$BUILD/libvmenc_faultshim.so"
[[ -x "$VMENC" ]] || { echo "skip: no $VMENC"; exit 77; }
[[ -f "$SHIM" ]] || { echo "skip: no $SHIM"; exit 77; }
# A sanitized build: the sanitizer runtime must come first in LD_PRELOAD
# (its path as the loader resolves it for this binary). The preload is
# checked once with a harmless command: a wrong one would make every faulted
# command exit 1 at start and the campaigns below test nothing.
san_rt() { ldd "$VMENC" 2>/dev/null | awk '/lib(a|t)san\.so/ {print $3; exit}'; }
preload_ok() { VMENC_FAULT_OP=none LD_PRELOAD="$PRE" "$VMENC" --version >/dev/null 2>"${1:-/dev/null}"; }
for try in 1 2 3; do
    SAN_RT=$(san_rt)
    PRE="${SAN_RT:+$SAN_RT }$SHIM"
    preload_ok && break
    echo "# preload try $try failed: LD_PRELOAD='$PRE'"
done
if ! preload_ok /dev/stderr; then
    echo "not ok 1 - the fault shim loads (LD_PRELOAD='$PRE')"; exit 1
fi
T=$(mktemp -d /tmp/vmenc-tamper-XXXXXX)
trap '[[ -n "${VMENC_KEEP_TMP:-}" ]] || rm -rf "$T"' EXIT
W="$T/ws"
export VMENC_WORKSPACE="$W" VMENC_USER=alice VMENC_NO_SYNC=1 VMENC_PASSPHRASE="tamper passphrase"
DS="$W/datastore"
fails=0 known=0 n=0

# KNOWN_OPEN: check name -> issue point: what still fails with b1, b2, b3
# and a1 merged (on main a1b2793, 46 checks were listed: every point 1-11).
declare -A KNOWN_OPEN=(
)

ok()  { n=$((n+1)); if [[ -n "${KNOWN_OPEN[$1]:-}" ]]; then echo "ok $n - $1 # XPASS: listed as known open (${KNOWN_OPEN[$1]}), remove it"; else echo "ok $n - $1"; fi; }
bad() {
    n=$((n+1))
    if [[ -n "${KNOWN_OPEN[$1]:-}" && -z "${VMENC_TAMPER_STRICT:-}" ]]; then
        known=$((known+1)); echo "not ok $n - $1: $2 # TODO known open (issue 20 ${KNOWN_OPEN[$1]})"
    else
        fails=$((fails+1)); echo "not ok $n - $1: $2"
    fi
}
# check NAME DETAIL -- command...: ok if the command succeeds.
check() { local name=$1 detail=$2; shift 3; if "$@" >/dev/null 2>&1; then ok "$name"; else bad "$name" "$detail"; fi; }
# rc_of command...: runs it, output to $T/out, $T/err; sets RC.
rc_of() { "$@" >"$T/out" 2>"$T/err"; RC=$?; }
must() { "$@" >"$T/out" 2>"$T/err" || { echo "setup failed: $* (exit $?): $(head -c 400 "$T/err")"; exit 1; }; }
# faulted OP N ACTION MATCH -- command...: the command under the shim.
faulted() {
    local op=$1 at=$2 action=$3 match=$4; shift 5
    # (the group's stderr hides bash's "Killed" notice; the command's goes to $T/err)
    { VMENC_FAULT_OP=$op VMENC_FAULT_AT=$at VMENC_FAULT_ACTION=$action VMENC_FAULT_MATCH=$match \
        LD_PRELOAD="$PRE" "$@" >"$T/out" 2>"$T/err"; RC=$?; } 2>/dev/null
    # 1 (a sanitizer's report) or 10 (a bug) is never an expected outcome: show it
    if [[ $RC == 1 || $RC == 10 ]]; then
        bad "faulted $op $at $action: ${*##*/}" "exit $RC"; head -c 3000 "$T/err" | sed 's/^/#   /'
    fi
}

# ---- fixtures -------------------------------------------------------------------------------
# The data a VM's disk and NVRAM hold: known plaintext, searched for later.
disk_data() { /usr/bin/python3 -c "import sys; s=('DISKSECRET-%s-' % sys.argv[1]).encode(); sys.stdout.buffer.write((s*(3*1048576//len(s)+1))[:3*1048576])" "$1"; }
nvram_text() { printf 'NVRAMSECRET-%s-firmware-variables' "$1"; }
# mkvm NAME POLICY: a VM with a 3 MiB disk full of data and an NVRAM.
mkvm() {
    local name=$1 policy=$2
    if [[ -n "$policy" ]]; then must "$VMENC" vm create "$name" --policy "$policy"; else must "$VMENC" vm create "$name"; fi
    must "$VMENC" vm add-disk "$name" --size 3M
    disk_data "$name" > "$T/$name.disk"
    must "$VMENC" disk write "$name" scsi0:0 < "$T/$name.disk"
    nvram_text "$name" | must "$VMENC" file write "$name" nvram
}
# in_clear NAME STRING: is STRING in clear in any file of NAME's home?
in_clear() { grep -rqaF -- "$2" "$DS/$1"; }
not_in_clear() { ! in_clear "$1" "$2"; }
no_disk_plaintext() { ! in_clear "$1" "DISKSECRET-$1-"; }
no_nvram_plaintext() { ! in_clear "$1" "NVRAMSECRET-$1-"; }
disk_right() { "$VMENC" disk read "$1" scsi0:0 > "$T/back" 2>/dev/null && cmp -s "$T/$1.disk" "$T/back"; }
nvram_right() { [[ "$("$VMENC" file read "$1" nvram 2>/dev/null)" == "$(nvram_text "$1")" ]]; }
vmx_get() { sed -n "s/^$2 = \"\(.*\)\"\$/\1/p" "$DS/$1/$1.vmx"; }
debris_free() { ! ls "$DS/$1" | grep -qE '\.tmp-|\.cvt$'; }
status_json() { "$VMENC" --json vm status "$1" 2>/dev/null | tail -1; }
is_encrypted() { status_json "$1" | /usr/bin/python3 -c "import json,sys; j=json.loads(sys.stdin.read()); sys.exit(0 if j['encrypted'] else 1)"; }
not_encrypted() { ! is_encrypted "$1"; }
disk_state() { "$VMENC" --json vm status "$1" 2>/dev/null | tail -1 | /usr/bin/python3 -c "import json,sys; print(json.loads(sys.stdin.read())['disks'][0]['state'])"; }

must "$VMENC" init "$W" --admin alice --host esx01 --kdf-memory 8192 --kdf-passes 1
must "$VMENC" policy user bob
must "$VMENC" policy grant bob NoCryptoAdmin
ENC="VM Encryption Policy"

# ---- 1. downgrade by stripping --------------------------------------------------------------------
mkvm p1 "$ENC"
sed -i '/^encryption\./d' "$DS/p1/p1.vmx"
sed -i -e 's/^vmenc.cipher = .*/vmenc.cipher = "none"/' -e 's/^vmenc.state = .*/vmenc.state = "plain"/' \
       -e '/^vmenc.keySafe/d' -e '/^vmenc.kekId/d' -e '/^vmenc.keyProvider/d' -e '/^vmenc.kekCheck/d' "$DS/p1/p1_0.vmdk"
rc_of "$VMENC" vm status p1
[[ $RC == 4 ]] && ok "p1 stripped VM refused at open (exit 4)" || bad "p1 stripped VM refused at open (exit 4)" "exit $RC"
printf 'CANARY-P1-disk-write-after-strip' | "$VMENC" disk write p1 scsi0:0 >/dev/null 2>&1
printf 'CANARY-P1-nvram-write-after-strip' | "$VMENC" file write p1 nvram >/dev/null 2>&1
check "p1 no plaintext written after the strip" "the canary is in clear" -- not_in_clear p1 CANARY-P1
grep -qE '"op":"vm.open","target":"p1",.*"outcome":"(failed|denied)","status":-300,"reason":"[^"]*p1[._]' "$W/audit.log" \
    && ok "p1 refusal audited, naming the file" || bad "p1 refusal audited, naming the file" "no refused vm.open of p1 with VMENC_E_AUTH and a reason naming a file of p1"

# ---- 2. forged vmenc.applyingPolicy + vm resume by an admin --------------------------------------------
mkvm p2 "$ENC"
sed -i 's/^vmenc.storagePolicy = .*/&\nvmenc.applyingPolicy = "Datastore Default"/' "$DS/p2/p2.vmx"
grep -q applyingPolicy "$DS/p2/p2.vmx" || echo 'vmenc.applyingPolicy = "Datastore Default"' >> "$DS/p2/p2.vmx"
rc_of "$VMENC" vm resume p2
[[ $RC == 4 ]] && ok "p2 forged applyingPolicy refused (exit 4)" || bad "p2 forged applyingPolicy refused (exit 4)" "exit $RC"
check "p2 disk not decrypted" "disk plaintext in the home" -- no_disk_plaintext p2
check "p2 NVRAM not decrypted" "NVRAM plaintext in the home" -- no_nvram_plaintext p2

# ---- 3. retired key replay ---------------------------------------------------------------------------
mkvm p3 "$ENC"
old_safe=$(vmx_get p3 encryption.keySafe)
cp "$DS/p3/p3.nvram" "$T/p3.nvram.old"
must "$VMENC" vm rekey p3 --deep --segment 1M
cur_safe=$(vmx_get p3 encryption.keySafe)
sed -i "s|^encryption.keySafe = .*|&\nencryption.newKeySafe = \"$old_safe\"|" "$DS/p3/p3.vmx"
cp "$T/p3.nvram.old" "$DS/p3/p3.nvram"
rc_of "$VMENC" vm resume p3
[[ $RC == 4 ]] && ok "p3 retired keySafe in newKeySafe refused (exit 4)" || bad "p3 retired keySafe in newKeySafe refused (exit 4)" "exit $RC"
[[ "$(vmx_get p3 encryption.keySafe)" == "$cur_safe" ]] && ok "p3 home not re-sealed under the retired key" \
    || bad "p3 home not re-sealed under the retired key" "encryption.keySafe changed"

# ---- 4. forged all-done .cvt -------------------------------------------------------------------------------
# Stop an encryption after one segment (SIGKILL at the 3rd write of its .cvt:
# slot writes 1 = begin, 2 = segment 1 done), then forge the slots.
mkvm p4 ""
faulted pwrite 3 kill .cvt -- "$VMENC" vm encrypt p4 --segment 1M
cvt=$(ls "$DS/p4" | grep '\.cvt$' | head -1)
if [[ -z "$cvt" ]]; then bad "p4 forged all-done .cvt" "setup: no .cvt after the kill (exit $RC)"; else
/usr/bin/python3 - "$DS/p4/$cvt" <<'EOF'
# The forger, from outside: lib/vm/format/cvt_slot.c on main hashes each
# 48-byte slot body with BLAKE2b-128 keyed by the public "vmenc-cvt-slot-v1".
import hashlib, struct, sys
p = sys.argv[1]
b = bytearray(open(p, 'rb').read())
best = None
for off in (0, 4096):
    body = bytes(b[off:off + 48])
    if body[:8] == b'VMENCCV1' and hashlib.blake2b(body, digest_size=16, key=b'vmenc-cvt-slot-v1').digest() == bytes(b[off + 48:off + 64]):
        if best is None or struct.unpack('>Q', body[16:24])[0] > struct.unpack('>Q', best[16:24])[0]:
            best = body
if best is None:
    # Not main's public checksum any more (a keyed MAC, another magic): take
    # the fields of the newest slot all the same and forge main's format -
    # the attacker still tries; the host must refuse.
    for off in (0, 4096):
        body = bytes(b[off:off + 48])
        if body[:7] == b'VMENCCV' and (best is None or struct.unpack('>Q', body[16:24])[0] > struct.unpack('>Q', best[16:24])[0]):
            best = body
assert best is not None, 'no slot with the magic'
cid, seq, done, num, seg = struct.unpack('>QQQQQ', best[8:48])
odd = seq + 1 if (seq + 1) % 2 else seq + 2
for off, s in ((0, odd), (4096, odd + 1)):
    body = best[:8] + struct.pack('>QQQQQ', cid, s, num, num, seg)   # the magic as found
    b[off:off + 64] = body + hashlib.blake2b(body, digest_size=16, key=b'vmenc-cvt-slot-v1').digest()
open(p, 'wb').write(b)
EOF
    rc_of "$VMENC" --user bob vm status p4        # the next power-on, by a user without Cryptographer.Encrypt
    rc_of "$VMENC" disk convert-status p4
    rc_of "$VMENC" vm resume p4
    r_resume=$RC
    if disk_right p4; then ok "p4 forged .cvt never makes the disk read wrong"; else
        [[ -s "$T/back" ]] && bad "p4 forged .cvt never makes the disk read wrong" "disk read returns other bytes than written (resume exit $r_resume)" \
                           || ok "p4 forged .cvt never makes the disk read wrong"
    fi
    [[ $r_resume == 4 ]] && ok "p4 forged .cvt refused (exit 4)" || bad "p4 forged .cvt refused (exit 4)" "resume exit $r_resume"
fi

# ---- 5. a FIFO planted as the extent ----------------------------------------------------------------------------
mkvm p5 "$ENC"
rm -f "$DS/p5/p5_0-flat.vmdk" && mkfifo "$DS/p5/p5_0-flat.vmdk"
rc_of timeout 10 "$VMENC" disk read p5 scsi0:0
[[ $RC != 124 && $RC != 0 ]] && ok "p5 FIFO extent refused fast" || bad "p5 FIFO extent refused fast" "exit $RC (124: hung)"
rc_of timeout 10 "$VMENC" vm status p5
[[ $RC != 124 ]] && ok "p5 the VM lock is not held after the refusal" || bad "p5 the VM lock is not held after the refusal" "vm status hung"

# ---- 6. SIGKILL at the 3rd rename of vm encrypt (and an EIO on the 3rd pwrite) ----------------------------------
for variant in kill eio; do
    v=p6$variant
    mkvm $v ""
    if [[ $variant == kill ]]; then faulted rename 3 kill $v -- "$VMENC" vm encrypt $v --segment 1M
    else faulted pwrite 3 eio "" -- "$VMENC" vm encrypt $v --segment 1M; fi
    rc_of "$VMENC" vm resume $v
    [[ $RC == 0 ]] && ok "$v resume exits 0" || bad "$v resume exits 0" "exit $RC: $(head -c 200 "$T/err")"
    check "$v encrypted after resume" "vm status says not encrypted" -- is_encrypted $v
    check "$v NVRAM not in plaintext" "NAME.nvram still plaintext" -- no_nvram_plaintext $v
    check "$v disk not in plaintext" "disk plaintext in the home" -- no_disk_plaintext $v
    check "$v NVRAM reads right" "file read fails or differs" -- nvram_right $v
    check "$v disk reads right" "disk read fails or differs" -- disk_right $v
    rc_of "$VMENC" vm rekey $v --deep --segment 1M
    [[ $RC == 0 ]] && ok "$v deep rekey works after resume" || bad "$v deep rekey works after resume" "exit $RC: $(head -c 200 "$T/err")"
    check "$v no debris after resume" "temp or .cvt files left" -- debris_free $v
done

# ---- 7. a retried rollback goes the right way ----------------------------------------------------------------
# Interrupt vm encrypt after one segment, SIGKILL the rollback after it turned
# round (at its k-th .cvt write), run it again: the disk must end plain, its
# data right, the VM not encrypted, and a later resume must not re-encrypt it.
for k in 2 3 4; do
    v=p7k$k
    mkvm $v ""
    faulted pwrite 3 kill .cvt -- "$VMENC" vm encrypt $v --segment 1M
    faulted pwrite $k kill .cvt -- "$VMENC" disk convert-rollback $v scsi0:0
    rc_of "$VMENC" disk convert-rollback $v scsi0:0
    r1=$RC
    st=$(disk_state $v)
    [[ "$st" == plain ]] && ok "$v retried rollback ends plain" || bad "$v retried rollback ends plain" "disk state '$st' (retry exit $r1)"
    check "$v data right after the rollback" "disk read differs" -- disk_right $v
    check "$v VM not encrypted after the rollback" "vm status says encrypted: a hybrid" -- not_encrypted $v
    [[ -z "$(vmx_get $v vmenc.applyingPolicy)" ]] && ok "$v no applyingPolicy left" || bad "$v no applyingPolicy left" "vmenc.applyingPolicy still set"
    rc_of "$VMENC" vm resume $v
    st=$(disk_state $v)
    [[ "$st" == plain ]] && ok "$v resume after the rollback keeps it plain" || bad "$v resume after the rollback keeps it plain" "disk state '$st'"
done

# ---- 8. kill at a conversion's final commit: one resume finishes --------------------------------------------------
# (5th rename of encrypt, 4th of decrypt, 2nd of deep rekey; renames in the VM home)
for spec in "encrypt 5" "decrypt 4" "rekey 2"; do
    set -- $spec
    v=p8$1
    if [[ $1 == encrypt ]]; then mkvm $v ""; else mkvm $v "$ENC"; fi
    case $1 in
        encrypt) faulted rename $2 kill $v -- "$VMENC" vm encrypt $v --segment 1M ;;
        decrypt) faulted rename $2 kill $v -- "$VMENC" vm decrypt $v --segment 1M ;;
        rekey)   faulted rename $2 kill $v -- "$VMENC" vm rekey $v --deep --segment 1M ;;
    esac
    [[ $RC == 137 ]] || echo "# $v: the kill did not happen (exit $RC)"
    rc_of "$VMENC" vm resume $v
    [[ $RC == 0 ]] && ok "$v first resume exits 0" || bad "$v first resume exits 0" "exit $RC: $(head -c 200 "$T/err")"
    check "$v data right after one resume" "disk read differs" -- disk_right $v
    check "$v NVRAM right after one resume" "file read differs" -- nvram_right $v
    # ---- 9. debris: nothing left behind by the kill after the resume
    check "$v no debris after resume (point 9)" "temp or .cvt files left: $(ls "$DS/$v" | grep -E '\.tmp-|\.cvt$' | tr '\n' ' ')" -- debris_free $v
done

# ---- 9. debris: a descriptor temp file holding a retired DEK record ------------------------------------------------
mkvm p9 "$ENC"
cp "$DS/p9/p9_0.vmdk" "$T/p9.desc.old"
must "$VMENC" vm rekey p9 --deep --segment 1M
cp "$T/p9.desc.old" "$DS/p9/p9_0.vmdk.tmp-0123456789abcdef"
rc_of "$VMENC" vm resume p9
check "p9 planted descriptor temp file removed by resume" "p9_0.vmdk.tmp-* still there" -- debris_free p9

# ---- 10. a damaged or deleted .cvt names itself; an admin verb recovers -----------------------------------------------
for how in damaged deleted; do
    v=p10$how
    mkvm $v ""
    faulted pwrite 3 kill .cvt -- "$VMENC" vm encrypt $v --segment 1M
    cvt=$(ls "$DS/$v" | grep '\.cvt$' | head -1)
    if [[ $how == damaged ]]; then printf 'XXXXXXXXXXXXXXXX' | dd of="$DS/$v/$cvt" bs=1 seek=20 conv=notrunc 2>/dev/null
        printf 'XXXXXXXXXXXXXXXX' | dd of="$DS/$v/$cvt" bs=1 seek=4116 conv=notrunc 2>/dev/null
    else rm -f "$DS/$v/$cvt"; fi
    rc_of "$VMENC" vm resume $v
    grep -q '\.cvt' "$T/err" && ok "$v .cvt - the error names the file" || bad "$v .cvt - the error names the file" "exit $RC: $(head -c 200 "$T/err")"
    check "$v .cvt - the audit names the file" "no audit record names the .cvt" -- grep -qE "\"target\":\"$v[/\"].*\\.cvt" "$W/audit.log"
    # the admin verb (whatever 'vmenc disk --help' calls it) recovers the disk, then one resume finishes
    verb=$("$VMENC" disk --help 2>&1 | awk '/recover/ {print $1; exit}')
    if [[ -z "$verb" ]]; then bad "$v an admin verb recovers the disk" "no recovery verb in 'vmenc disk --help'"; else
        rc_of "$VMENC" disk "$verb" $v scsi0:0
        r1=$RC
        rc_of "$VMENC" vm resume $v
        if [[ $r1 == 0 && $RC == 0 ]] && disk_right $v && nvram_right $v && debris_free $v; then ok "$v an admin verb recovers the disk"
        else bad "$v an admin verb recovers the disk" "disk $verb exit $r1, resume exit $RC, or data wrong or debris left"; fi
    fi
done

# ---- 11. sectorSize bound to the key; the migration receiver checks the .vmx --------------------------------------------
mkvm p11 "$ENC"
sed -i 's/^vmenc.sectorSize = .*/vmenc.sectorSize = "4096"/' "$DS/p11/p11_0.vmdk"
rc_of "$VMENC" disk read p11 scsi0:0
[[ $RC == 4 ]] && ok "p11 edited sectorSize refused (exit 4)" || bad "p11 edited sectorSize refused (exit 4)" "exit $RC"

W2="$T/ws2"
must "$VMENC" --workspace "$W2" init "$W2" --admin alice --host esx02 --key-provider local2 --kdf-memory 8192 --kdf-passes 1
must "$VMENC" --workspace "$W2" kms add native --type file --endpoint "$W/keystore.vks"
must "$VMENC" policy host esx02
mkvm p11m "$ENC"
# The sender writes the handover, then waits for the receiver's ready token:
# in that window the sender's datastore gets another .vmx (the VM stripped).
"$VMENC" migrate send p11m --to esx02 --handover "$T/ho" --ready "$T/rdy" 2>"$T/tx" | {
    for _ in $(seq 100); do [[ -e "$T/ho" ]] && break; sleep 0.1; done
    sed -i '/^encryption\./d' "$DS/p11m/p11m.vmx"
    "$VMENC" --workspace "$W2" migrate receive p11m --handover "$T/ho" --ready "$T/rdy" >"$T/rx" 2>&1
    echo $? > "$T/rxrc"
}
rxrc=$(cat "$T/rxrc" 2>/dev/null || echo none)
[[ $rxrc != 0 ]] && ok "p11 receiver refuses a .vmx that contradicts the handover" \
    || bad "p11 receiver refuses a .vmx that contradicts the handover" "registered (exit 0)"
[[ $rxrc == 0 ]] || [[ ! -e "$W2/datastore/p11m" ]] || bad "p11 nothing kept of a refused migration" "home left"
grep -qE '"target":"p11m",.*"outcome":"(failed|denied)",.*"reason":"[^"]*p11m\.vmx' "$W2/audit.log" \
    && ok "p11 the receiver audits the refusal naming the .vmx" \
    || bad "p11 the receiver audits the refusal naming the .vmx" "no refused record of p11m naming p11m.vmx in the receiver's log"

echo "# $n checks, $fails failed, $known known open (KNOWN_OPEN has ${#KNOWN_OPEN[@]})"
[[ $fails == 0 ]]
