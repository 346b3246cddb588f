#!/usr/bin/env bash
# tests/nbdkit_online.test.sh BUILD_DIR SOURCE_DIR - a served disk is converted
# online, by the process that serves it (issue 21; docs/nbdkit.md "Control
# endpoint").
#
# `nbdkit vmenc` serves a VM's disk on a Unix socket; `qemu-io` writes through
# it before, during (a loop in the background) and after `vmenc vm rekey
# --deep`, `vm encrypt` (of a plain VM) and `vm decrypt`, each of which goes
# through the plugin's control endpoint. Every acknowledged write is replayed
# in order on a model; after nbdkit stops, `vmenc disk read` must equal the
# model byte for byte, and an encrypted extent must hold none of the written
# patterns. Also: the endpoint's place and modes, a status request while a
# conversion runs, Ctrl-C of the CLI (cancel: resumable, then finished), a
# principal the policy denies (refused, and audited in the plugin's log), a
# caller of another uid (refused by SO_PEERCRED), the VM's UUID checked, and a
# dead plugin's socket (removed; the CLI converts locally). With --offline the
# CLI converts in its own process, which the image lock (docs/vm.md "Locks")
# refuses while nbdkit has the disk, naming nbdkit.
#
# Before this endpoint, the CLI converted the served disk itself, in a second
# process: acknowledged writes made during and after the conversion were lost
# or landed in clear text, which the model and plaintext checks here catch.
#
# Skips (77) when the plugin is not built, nbdkit or qemu-io are missing, or
# in a sanitizer build (see tests/nbdkit.test.sh for why).
set -uo pipefail
BUILD=$(cd "${1:?build dir}" && pwd)
SRC=$(cd "${2:?source dir}" && pwd)
PLUGIN=$BUILD/nbdkit-vmenc-plugin.so
VMENC=$BUILD/vmenc

skip() { echo "SKIP: $*"; exit 77; }
[[ -e $PLUGIN ]] || skip "the nbdkit plugin is not built (install nbdkit-plugin-dev: scripts/deps.sh)"
command -v nbdkit >/dev/null || skip "nbdkit is not installed (scripts/deps.sh)"
command -v qemu-io >/dev/null || skip "qemu-utils is not installed (scripts/deps.sh)"
SAN_RT=$(ldd "$BUILD/libvmenc.so" | awk '/lib(a|t)san\.so/ {print $3; exit}')
[[ -z $SAN_RT ]] || skip "sanitizer build ($(basename "$SAN_RT")): nbdkit is not instrumented (see tests/nbdkit.test.sh)"
nbdkit -U - null --run true >/dev/null 2>&1 || skip "nbdkit cannot start here"

T=$(mktemp -d /tmp/vmenc-online-test-XXXXXX)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    [[ -n ${VMENC_TEST_KEEP:-} ]] && echo "# kept $T" || rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fails=0 n=0
ok()  { n=$((n+1)); echo "ok $n - $*"; }
bad() { n=$((n+1)); fails=$((fails+1)); echo "not ok $n - $*"; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }

export VMENC_NO_SYNC=1 VMENC_USER=alice
unset VMENC_PASSPHRASE VMENC_WORKSPACE
echo "online test passphrase" > "$T/pass"
A=$T/ws
va() { "$VMENC" --workspace "$A" --passphrase-file "$T/pass" "$@"; }
SIZE=$((64 << 20))

# The plugin's conversions are slowed (tests only: VMENC_TEST_PROGRESS_DELAY_MS,
# 80 ms after each 1 MiB segment, 64 of them) so that the guest's writes overlap them.
start_nbdkit() { # start_nbdkit SOCKET LOG ARGS...: NBD_PID serves in the foreground
    local sock=$1 log=$2; shift 2
    rm -f "$sock"
    VMENC_TEST_PROGRESS_DELAY_MS=80 nbdkit -f -U "$sock" "$PLUGIN" "$@" 2>"$log" &
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
uuid_of() { va vm status "$1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["uuid"])'; }

# write_one SOCKET LOG PATTERN OFF LEN: one qemu-io write; logged if acknowledged
write_one() {
    local out
    out=$(qemu-io -f raw -c "write -P $3 $4 $5" "$(uri "$1")" 2>&1)
    if grep -q "^wrote $5/$5 bytes" <<<"$out"; then echo "$3 $4 $5" >>"$2"; else echo "# write failed: $out" >&2; fi
}
# writes SOCKET LOG COUNT PAT...: COUNT writes at random offsets (some unaligned), patterns in turn
writes() {
    local sock=$1 log=$2 count=$3 i len off; shift 3
    local pats=("$@")
    for ((i = 0; i < count; i++)); do
        len=$(( (RANDOM % 3 == 0) ? (RANDOM % 70000 + 1) : ((RANDOM % 32 + 1) * 4096) ))
        off=$(( ((RANDOM << 15) | RANDOM) % (SIZE - len) ))
        (( RANDOM % 2 )) && off=$(( off / 4096 * 4096 ))
        write_one "$sock" "$log" "${pats[i % ${#pats[@]}]}" "$off" "$len"
    done
}
# writer SOCKET LOG STOPFILE PAT...: writes in a loop until STOPFILE exists
writer() {
    local sock=$1 log=$2 stop=$3; shift 3
    while [[ ! -e $stop ]]; do writes "$sock" "$log" 1 "$@"; done
}
# model LOG OUT: replays acknowledged writes in order on a zero disk
model() {
    python3 - "$1" "$2" "$SIZE" <<'EOF'
import sys
log, out, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
img = bytearray(size)
for line in open(log):
    p, off, ln = line.split()
    off, ln = int(off), int(ln)
    img[off:off + ln] = bytes([int(p, 16)]) * ln
open(out, "wb").write(img)
EOF
}
# no_plaintext FILE LOG: none of the logged patterns (32 in a row) in FILE
no_plaintext() {
    python3 - "$1" "$2" <<'EOF'
import sys
data = open(sys.argv[1], "rb").read()
pats = sorted({int(l.split()[0], 16) for l in open(sys.argv[2])})
bad = ["0x%02x" % p for p in pats if bytes([p]) * 32 in data]
if bad:
    print("plaintext found: " + " ".join(bad)); sys.exit(1)
EOF
}
# ctl SOCKET-PATH status|cancel [UID] | ctl SOCKET-PATH convert VM UUID: a raw
# client of the control protocol (a status or cancel request, optionally as
# another uid; or a deep rekey naming VM and UUID); prints the frames back.
ctl() {
    python3 - "$@" <<'EOF'
import os, socket, struct, sys
path, typ = sys.argv[1], {"status": 2, "cancel": 3, "convert": 1}[sys.argv[2]]
body = bytes([2, 5]) + b"alice"
if typ == 1: # convert VM UUID: a deep rekey
    f = lambda tag, v: bytes([tag, len(v)]) + v
    body = f(1, b"\x03") + body + f(3, sys.argv[3].encode()) + f(4, sys.argv[4].encode()) + f(5, b"") + f(6, bytes(8))
elif len(sys.argv) > 3:
    os.setgid(int(sys.argv[3])); os.setuid(int(sys.argv[3]))
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(path)
try:
    s.sendall(b"VCTL" + bytes([1, typ]) + struct.pack(">H", len(body)) + body)
except OSError:
    pass # refused before the request: the reply is waiting
buf = b""
while True:
    d = s.recv(4096)
    if not d: break
    buf += d
while len(buf) >= 8:
    t, ln = buf[5], struct.unpack(">H", buf[6:8])[0]
    body, buf = buf[8:8 + ln], buf[8 + ln:]
    f, i = {}, 0
    while i < len(body):
        tag, l = body[i], body[i + 1]; f[tag] = body[i + 2:i + 2 + l]; i += 2 + l
    if t == 16:
        print("progress running=%d kind=%d disk=%s done=%d total=%d" % (f[7][0], f[1][0], f[8].decode(),
              int.from_bytes(f[9], "big"), int.from_bytes(f[10], "big")))
    elif t == 17:
        print("result status=%d message=%s" % (struct.unpack(">i", f[13])[0], f[14].decode()))
EOF
}

# ---- setup ------------------------------------------------------------------------------------
va init "$A" --admin alice --host esxA --kdf-memory 8192 --kdf-passes 1 >/dev/null &&
    va vm create enc --policy "VM Encryption Policy" --disk 64M >/dev/null &&
    va vm create plain --disk 64M >/dev/null &&
    va policy user bob >/dev/null && va policy grant bob NoCryptoAdmin >/dev/null
check "workspace: encrypted VM enc, plain VM plain, bob a no-crypto admin" test $? = 0
ENC_EXTENT=$A/datastore/enc/enc_0-flat.vmdk
PLAIN_EXTENT=$A/datastore/plain/plain_0-flat.vmdk
ENC_UUID=$(uuid_of enc)
PLAIN_UUID=$(uuid_of plain)
P1=0x41 P2=0x42 P3=0x43 P4=0x44 P5=0x45 P6=0x46

# ---- 1. deep rekey of a served encrypted disk ------------------------------------------------------
S=$T/enc.sock L=$T/enc.log W=$T/enc.writes
: >"$W"
start_nbdkit "$S" "$T/nbd1.log" workspace="$A" vm=enc user=alice passphrase-file="$T/pass"
check "nbdkit serves enc" test $? = 0
PE=$NBD_PID
CTL=$A/run/$ENC_UUID.ctl
check "control endpoint at WORKSPACE/run/<VM-UUID>.ctl" test -S "$CTL"
check "... run/ is 0700, the socket 0600" test "$(stat -c %a "$A/run")" = 700 -a "$(stat -c %a "$CTL")" = 600
ctl "$CTL" status >"$T/st0" 2>&1
check "status while idle: nothing runs" grep -q "result status=0 message=idle" "$T/st0"
writes "$S" "$W" 12 $P1
DESC_BEFORE=$(sha256sum <"$A/datastore/enc/enc_0.vmdk")
rm -f "$T/stop"; writer "$S" "$W" "$T/stop" $P2 $P3 & WP=$!
before=$(wc -l <"$W")
# a status poller, started (python is slow to start on a loaded machine)
# before the conversion: it asks every 50 ms until it sees one running
rm -f "$T/poller.ready" "$T/cli.done"
python3 - "$CTL" "$T/poller.ready" "$T/cli.done" >"$T/st1" 2>&1 <<'EOF' & SP=$!
import os, socket, struct, sys, time
path, ready, done = sys.argv[1:4]
open(ready, "w").close()
body = bytes([2, 5]) + b"alice"
while not os.path.exists(done):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.connect(path)
    s.sendall(b"VCTL" + bytes([1, 2]) + struct.pack(">H", len(body)) + body)
    buf = b""
    while True:
        d = s.recv(4096)
        if not d: break
        buf += d
    s.close()
    if len(buf) > 8 and buf[5] == 16:
        f, i, b = {}, 0, buf[8:8 + struct.unpack(">H", buf[6:8])[0]]
        while i < len(b):
            f[b[i]] = b[i + 2:i + 2 + b[i + 1]]; i += 2 + b[i + 1]
        if f[7][0] == 1 and f[8]:
            print("progress running=1 kind=%d disk=%s done=%d" % (f[1][0], f[8].decode(), int.from_bytes(f[9], "big")))
            sys.exit(0)
    time.sleep(0.05)
print("never saw a conversion running")
EOF
for _ in $(seq 1200); do [[ -e $T/poller.ready ]] && break; sleep 0.05; done
va vm rekey --deep enc --segment 1M --json >"$T/rk.json" 2>"$T/rk.err" & CP=$!
wait $CP; rc=$?
touch "$T/cli.done"; wait $SP
touch "$T/stop"; wait $WP
during=$(( $(wc -l <"$W") - before ))
check "vm rekey --deep of the served VM: exit 0 (rc $rc: $(head -c 300 "$T/rk.err"))" test $rc = 0
check "... went through the endpoint (\"online\": true)" grep -q '"online":true' "$T/rk.json"
check "... status meanwhile: a deep rekey of scsi0:0 runs ($(head -1 "$T/st1"))" grep -q "progress running=1 kind=3 disk=scsi0:0" "$T/st1"
check "... the guest kept writing during it ($during writes acknowledged)" test "$during" -ge 1
check "... the descriptor holds a new wrapped DEK" test "$(sha256sum <"$A/datastore/enc/enc_0.vmdk")" != "$DESC_BEFORE"
writes "$S" "$W" 12 $P4

# a principal the policy denies: refused through the endpoint, and audited there
VMENC_USER=bob va vm rekey --deep enc >"$T/bob.out" 2>"$T/bob.err"
rc=$?
check "bob (no Cryptographer.*) through the endpoint: exit 3 denied (rc $rc)" test $rc = 3
check "... saying which privilege ($(head -c 200 "$T/bob.err"))" grep -q "Cryptographer" "$T/bob.err"
# --offline: the CLI converts in its own process, which the image lock refuses while nbdkit has the disk
va vm rekey --deep enc --offline >"$T/off.out" 2>"$T/off.err"
rc=$?
check "--offline while nbdkit serves the disk: refused (rc $rc: $(head -c 250 "$T/off.err"))" test $rc != 0
check "... naming nbdkit as the holder" grep -q "in use by another process: nbdkit" "$T/off.err"
check "... with a hint to drop --offline" grep -q "hint: VM 'enc' is served by nbdkit .*without --offline" "$T/off.err"
# the VM's identity is checked: a request naming another VM (or UUID) is refused
ctl "$CTL" convert plain "$PLAIN_UUID" >"$T/wrong.out" 2>&1
check "a conversion request for another VM is refused ($(head -c 120 "$T/wrong.out"))" \
    grep -q "result status=-100 message=this endpoint serves VM 'enc'" "$T/wrong.out"
ctl "$CTL" convert enc "$PLAIN_UUID" >"$T/wrong2.out" 2>&1
check "... and one with the right name but another UUID" grep -q "result status=-100" "$T/wrong2.out"
ctl "$CTL" cancel >"$T/cn0" 2>&1
check "cancel while idle: no conversion runs" grep -q "result status=-105" "$T/cn0"
# another uid: run/ is 0700 and the socket 0600; a socket opened up to it still refuses (SO_PEERCRED)
if [[ $(id -u) == 0 ]]; then
    mkdir -p "$T/open"; chmod 755 "$T" "$T/open"
    start_nbdkit "$T/open/p.sock" "$T/nbdp.log" workspace="$A" vm=plain user=alice passphrase-file="$T/pass" \
        control="$T/open/p.ctl" audit-log=plain-open.audit.log
    PO=$NBD_PID
    chmod 666 "$T/open/p.ctl"
    ctl "$T/open/p.ctl" status 65534 >"$T/uid.out" 2>&1
    check "a caller of another uid is refused ($(cat "$T/uid.out" | head -c 120))" grep -q "result status=-500" "$T/uid.out"
    check "... and the plugin says so" grep -q "refused a caller running as uid 65534" "$T/nbdp.log"
    stop_nbdkit "$PO"
    check "control=PATH: the socket goes at unload" test ! -e "$T/open/p.ctl"
    chmod 700 "$T"
else
    echo "# skipped the other-uid check: not root"
fi

# Ctrl-C of the CLI: cancel in the plugin, resumable; asking again finishes
rm -f "$T/stop"; writer "$S" "$W" "$T/stop" $P5 & WP=$!
"$VMENC" --workspace "$A" --passphrase-file "$T/pass" vm rekey --deep enc --segment 1M >/dev/null 2>"$T/int.err" &
CP=$! # the CLI itself, not a subshell (an asynchronous subshell ignores SIGINT)
sleep 1
kill -INT $CP; wait $CP; rc=$?
check "Ctrl-C of an online deep rekey: exit 130 (rc $rc)" test $rc = 130
check "... stopped cleanly, resumable ($(tail -1 "$T/int.err" | head -c 150))" grep -q "resumable" "$T/int.err"
va vm resume enc --json >"$T/res.json" 2>"$T/res.err"
rc=$?
check "... vm resume finishes it, online too (rc $rc)" grep -q '"online":true' "$T/res.json"
check "... the disk is encrypted, no conversion left" bash -c "grep -q '\"state\":\"encrypted\"' '$T/res.json' && ! grep -q rekeying '$T/res.json'"
touch "$T/stop"; wait $WP
writes "$S" "$W" 6 $P6
stop_nbdkit "$PE"
check "the endpoint goes when nbdkit stops" test ! -e "$CTL"
va disk read enc scsi0:0 >"$T/enc.dec" 2>/dev/null
model "$W" "$T/enc.model"
check "every acknowledged write reads back ($(wc -l <"$W") writes, before/during/after)" cmp -s "$T/enc.model" "$T/enc.dec"
check "the encrypted extent holds none of the written patterns" no_plaintext "$ENC_EXTENT" "$W"
if no_plaintext "$T/enc.dec" "$W" >/dev/null; then bad "the plaintext check does not see the plaintext"
else ok "(the same check finds the patterns in the decrypted bytes)"; fi
AL=$A/nbdkit-enc-0.audit.log
check "plugin's audit log: alice's deep rekey succeeded" grep -q '"principal":"alice","op":"vm.rekey_deep".*"outcome":"success"' "$AL"
check "plugin's audit log: bob's deep rekey denied" grep -q '"principal":"bob","op":"vm.rekey_deep".*"outcome":"denied"' "$AL"
check "plugin's audit log verifies" bash -c "$(declare -f va); VMENC=$VMENC A=$A T=$T va audit verify $AL >/dev/null"

# ---- 2. encrypt a served plain VM -----------------------------------------------------------------
S=$T/plain.sock W=$T/plain.writes
: >"$W"
start_nbdkit "$S" "$T/nbd2.log" workspace="$A" vm=plain user=alice passphrase-file="$T/pass"
check "nbdkit serves plain" test $? = 0
PP=$NBD_PID
writes "$S" "$W" 12 $P1 $P2
rm -f "$T/stop"; writer "$S" "$W" "$T/stop" $P3 $P4 & WP=$!
before=$(wc -l <"$W")
va vm encrypt plain --segment 1M --json >"$T/en.json" 2>"$T/en.err"
rc=$?
touch "$T/stop"; wait $WP
during=$(( $(wc -l <"$W") - before ))
check "vm encrypt of the served plain VM: exit 0 online (rc $rc: $(head -c 300 "$T/en.err"))" \
    grep -q '"online":true' "$T/en.json"
check "... the guest kept writing during it ($during writes acknowledged)" test "$during" -ge 1
check "... the disk is now encrypted" grep -q '"state":"encrypted"' "$T/en.json"
va --yes vm decrypt plain --offline >"$T/off2.out" 2>"$T/off2.err"
rc=$?
check "vm decrypt --offline while served: refused, naming nbdkit (rc $rc)" grep -q "in use by another process: nbdkit" "$T/off2.err"
check "... leaving no storage policy marked as being applied (a later resume would decrypt)" \
    bash -c "! grep -q applyingPolicy '$A/datastore/plain/plain.vmx'"
writes "$S" "$W" 12 $P5 $P6
stop_nbdkit "$PP"
va disk read plain scsi0:0 >"$T/plain.dec" 2>/dev/null
model "$W" "$T/plain.model"
check "every acknowledged write reads back ($(wc -l <"$W") writes)" cmp -s "$T/plain.model" "$T/plain.dec"
check "the now encrypted extent holds none of the patterns (before, during or after)" no_plaintext "$PLAIN_EXTENT" "$W"

# ---- 3. decrypt the served encrypted VM ---------------------------------------------------------------
S=$T/enc.sock W2=$T/enc2.writes
cp "$T/enc.model" "$T/enc2.base"
: >"$W2"
start_nbdkit "$S" "$T/nbd3.log" workspace="$A" vm=enc user=alice passphrase-file="$T/pass"
PE=$NBD_PID
writes "$S" "$W2" 8 $P1
rm -f "$T/stop"; writer "$S" "$W2" "$T/stop" $P2 & WP=$!
before=$(wc -l <"$W2")
va --yes vm decrypt enc --segment 1M --json >"$T/de.json" 2>"$T/de.err"
rc=$?
touch "$T/stop"; wait $WP
during=$(( $(wc -l <"$W2") - before ))
check "vm decrypt of the served VM: exit 0 online (rc $rc: $(head -c 300 "$T/de.err"))" grep -q '"online":true' "$T/de.json"
check "... the guest kept writing during it ($during writes acknowledged)" test "$during" -ge 1
check "... the disk is now plain" grep -q '"state":"plain"' "$T/de.json"
writes "$S" "$W2" 8 $P3
stop_nbdkit "$PE"
va disk read enc scsi0:0 >"$T/enc2.dec" 2>/dev/null
cat "$T/enc.writes" "$W2" >"$T/enc.all"
model "$T/enc.all" "$T/enc2.model"
check "every acknowledged write reads back (both runs)" cmp -s "$T/enc2.model" "$T/enc2.dec"

# ---- 4. a dead plugin's socket -------------------------------------------------------------------------
start_nbdkit "$S" "$T/nbd4.log" workspace="$A" vm=plain user=alice passphrase-file="$T/pass"
PP=$NBD_PID
kill -9 "$PP"; wait "$PP" 2>/dev/null
PCTL=$A/run/$PLAIN_UUID.ctl
check "kill -9 leaves the socket behind" test -S "$PCTL"
start_nbdkit "$S" "$T/nbd5.log" workspace="$A" vm=plain user=alice passphrase-file="$T/pass"
check "a new nbdkit replaces the dead one's socket" test $? = 0 -a -S "$PCTL"
PP=$NBD_PID
ctl "$PCTL" status >"$T/st5" 2>&1
check "... and answers on it" grep -q "result status=0" "$T/st5"
kill -9 "$PP"; wait "$PP" 2>/dev/null
va vm rekey --deep plain --json >"$T/dead.json" 2>"$T/dead.err"
rc=$?
check "the CLI finds the socket dead, removes it and converts locally (rc $rc)" \
    test $rc = 0 -a ! -e "$PCTL"
check "... not online" bash -c "! grep -q '\"online\"' '$T/dead.json'"
va disk read plain scsi0:0 >"$T/plain2.dec" 2>/dev/null
check "... the data is intact" cmp -s "$T/plain.model" "$T/plain2.dec"

# ---- 5. nbdkit starts in the middle of a conversion ---------------------------------------------------
# a local deep rekey stopped half way (Ctrl-C); nbdkit serves the disk in its converting state
# (reads and writes see the right bytes), and vm resume finishes it online
VMENC_TEST_PROGRESS_DELAY_MS=150 "$VMENC" --workspace "$A" --passphrase-file "$T/pass" vm rekey --deep plain \
    --segment 1M >/dev/null 2>"$T/half.err" &
CP=$!
sleep 3
kill -INT $CP; wait $CP; rc=$?
check "a local deep rekey of plain stopped half way (rc $rc)" test $rc = 130
W5=$T/plain5.writes
: >"$W5"
start_nbdkit "$S" "$T/nbd6.log" workspace="$A" vm=plain user=alice passphrase-file="$T/pass"
check "nbdkit serves a disk in the middle of its conversion" test $? = 0
PP=$NBD_PID
cat "$T/plain.writes" >"$T/plain5.all"
model "$T/plain5.all" "$T/plain5.before"
qemu-io -f raw -c "read -v 0 0" "$(uri "$S")" >/dev/null 2>&1
python3 - "$(uri "$S")" "$T/plain5.before" <<'EOF' >"$T/half.read" 2>&1
import subprocess, sys
# read the whole disk through nbdkit and compare with the model
out = subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "raw", sys.argv[1], sys.argv[2] + ".got"], capture_output=True)
print("same" if out.returncode == 0 and open(sys.argv[2] + ".got", "rb").read() == open(sys.argv[2], "rb").read() else "differs")
EOF
check "... and serves the right bytes, half converted ($(cat "$T/half.read" | head -c 80))" grep -q "^same" "$T/half.read"
writes "$S" "$W5" 8 $P1 $P2
rm -f "$T/stop"; writer "$S" "$W5" "$T/stop" $P3 & WP=$!
va vm resume plain --json >"$T/res5.json" 2>"$T/res5.err"
rc=$?
touch "$T/stop"; wait $WP
check "vm resume finishes it through the serving process (rc $rc)" grep -q '"online":true' "$T/res5.json"
writes "$S" "$W5" 8 $P4
stop_nbdkit "$PP"
cat "$T/plain.writes" "$W5" >"$T/plain5.all"
model "$T/plain5.all" "$T/plain5.model"
va disk read plain scsi0:0 >"$T/plain5.dec" 2>/dev/null
check "every acknowledged write reads back" cmp -s "$T/plain5.model" "$T/plain5.dec"
check "the extent holds none of the patterns" no_plaintext "$PLAIN_EXTENT" "$T/plain5.all"

echo "$((n - fails)) passed, $fails failed"
[[ $fails == 0 ]]
