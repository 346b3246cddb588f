#!/usr/bin/env bash
# tests/nbdkit.test.sh BUILD_DIR SOURCE_DIR - a real hypervisor on a vmenc disk
# through the nbdkit plugin (docs/nbdkit.md):
#  1. qemu-img / qemu-io over nbd+unix://: random aligned and unaligned writes,
#     zeroes and FUA writes, two clients at once (multi-conn), compared with a
#     plain model image; the encrypted extent never holds the plaintext; a plain
#     VM's disk through the same plugin; denied user, locked VM, passphrase on
#     the command line all refused with a clear line.
#  2. a QEMU guest (KVM if /dev/kvm works, else TCG) boots a Debian kernel and a
#     busybox initramfs, makes ext4 on the vmenc disk, writes a file, powers
#     off; outside, the extent holds no plaintext and `vmenc disk read` +
#     debugfs find the file; a second boot reads it back from inside.
#  3. the VM moved to a second "host" (another workspace sharing the key
#     provider, VM registered there; locked while that provider is away) boots
#     there and reads the file.
# Skips (exit 77) only when the plugin is not built or nbdkit / qemu-img cannot
# start; part 2 and 3 skip when qemu-system-x86_64 cannot start.
# Sanitizer builds (ASan, TSan) skip: nbdkit is not instrumented, and loading
# an instrumented plugin into it needs the sanitizer runtime LD_PRELOADed,
# which was tried and deadlocks in the first json-c call (glibc's setlocale
# lock, ASan interposed). The I/O path the plugin calls (vmenc_disk_* from many
# threads) runs under both sanitizers in the library's own tests
# (test_vm_threads); the plugin itself is tested in the release build.
set -uo pipefail
BUILD=$(cd "${1:?build dir}" && pwd)
SRC=$(cd "${2:?source dir}" && pwd)
PLUGIN=$BUILD/nbdkit-vmenc-plugin.so
VMENC=$BUILD/vmenc
T0=$(date +%s)

skip() { echo "SKIP: $*"; exit 77; }
[[ -e $PLUGIN ]] || skip "the nbdkit plugin is not built (install nbdkit-plugin-dev: scripts/deps.sh)"
command -v nbdkit >/dev/null || skip "nbdkit is not installed (scripts/deps.sh)"
command -v qemu-img >/dev/null && command -v qemu-io >/dev/null || skip "qemu-utils is not installed (scripts/deps.sh)"

T=$(mktemp -d /tmp/vmenc-nbdkit-test-XXXXXX)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The sanitizer runtime libvmenc was linked with (none in a release build).
SAN_RT=$(ldd "$BUILD/libvmenc.so" | awk '/lib(a|t)san\.so/ {print $3; exit}')
[[ -z $SAN_RT ]] || skip "sanitizer build ($(basename "$SAN_RT")): nbdkit is not instrumented and an instrumented plugin deadlocks in it under LD_PRELOAD; the plugin is tested in the release build"
NBDKIT=(nbdkit)
"${NBDKIT[@]}" -U - null --run true >/dev/null 2>&1 || skip "nbdkit cannot start here"

fails=0 n=0
ok()  { n=$((n+1)); echo "ok $n - $*"; }
bad() { n=$((n+1)); fails=$((fails+1)); echo "not ok $n - $*"; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }

export VMENC_NO_SYNC=1 VMENC_USER=alice
unset VMENC_PASSPHRASE VMENC_WORKSPACE
echo "nbdkit test passphrase" > "$T/pass"
A=$T/hostA
B=$T/hostB
va() { "$VMENC" --workspace "$A" --passphrase-file "$T/pass" "$@"; }
vb() { "$VMENC" --workspace "$B" --passphrase-file "$T/pass" "$@"; }

# start_nbdkit SOCKET LOG ARGS...: serves in the foreground (so the test owns
# the process), waits for the socket; NBD_PID is the process. 1 if it died.
start_nbdkit() {
    local sock=$1 log=$2; shift 2
    rm -f "$sock"
    "${NBDKIT[@]}" -f -U "$sock" "$PLUGIN" "$@" 2>"$log" &
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

# ---- setup: workspace A, an encrypted and a plain VM ------------------------------------
va init "$A" --admin alice --host esxA --kdf-memory 8192 --kdf-passes 1 >/dev/null || { echo "init failed"; exit 1; }
va vm create enc --policy "VM Encryption Policy" --disk 64M >/dev/null &&
    va vm create plain --disk 64M >/dev/null &&
    va vm create guest --policy "VM Encryption Policy" --disk 64M >/dev/null &&
    va policy user bob >/dev/null && va policy grant bob NoCryptoAdmin >/dev/null &&
    va policy user carol >/dev/null
check "workspace with encrypted VMs enc, guest and plain VM plain" test $? = 0
ENC_EXTENT=$A/datastore/enc/enc_0-flat.vmdk
PLAIN_EXTENT=$A/datastore/plain/plain_0-flat.vmdk
check "extents exist" test -f "$ENC_EXTENT" -a -f "$PLAIN_EXTENT"

# ---- refusals -------------------------------------------------------------------------------
refused() { # refused WHAT PATTERN ARGS...: nbdkit must exit non-zero with PATTERN on stderr
    local what=$1 pat=$2; shift 2
    if timeout 60 "${NBDKIT[@]}" -U - "$PLUGIN" "$@" --run 'true' >"$T/r.out" 2>"$T/r.err"; then
        bad "$what: nbdkit started"
    elif grep -q -- "$pat" "$T/r.err"; then
        ok "$what: $(grep -m1 -- "$pat" "$T/r.err" | cut -c1-150)"
    else
        bad "$what: no '$pat' in: $(head -c 300 "$T/r.err")"
    fi
}
refused "user without permission" "may not power on VM 'enc'.*VirtualMachine.Interact.PowerOn" \
    workspace="$A" vm=enc user=carol passphrase-file="$T/pass"
refused "no-crypto admin may not export" "Cryptographer.Access" \
    workspace="$A" vm=enc user=bob export=true passphrase-file="$T/pass"
refused "passphrase on the command line" "never taken from the command line" \
    workspace="$A" vm=enc user=alice passphrase="nbdkit test passphrase"
grep -q "nbdkit test passphrase" "$T/r.err" && bad "passphrase echoed" || ok "passphrase not echoed"
echo wrong > "$T/wrong"
refused "wrong passphrase" "wrong passphrase" workspace="$A" vm=enc user=alice passphrase-file="$T/wrong"
refused "missing user" "user=... is required" workspace="$A" vm=enc passphrase-file="$T/pass"
refused "no such disk" "VM 'enc' has 1 disk" workspace="$A" vm=enc user=alice disk=3 passphrase-file="$T/pass"

# ==== issue 18: a copy is an export; the socket is the boundary ====================================
refused "readonly=true without export=true (a copy by a power-on user)" "readonly=true without export=true is refused" \
    workspace="$A" vm=enc user=bob readonly=true passphrase-file="$T/pass"
refused "... for alice too (the open's kind, not the user, is wrong)" "readonly=true without export=true is refused" \
    workspace="$A" vm=plain user=alice readonly=true passphrase-file="$T/pass"
refused "bob may not upload (export=true, writable)" "may not upload.*Cryptographer.Access" \
    workspace="$A" vm=enc user=bob export=true passphrase-file="$T/pass"
PORT=$(( 20000 + RANDOM % 20000 ))
tcp_refused() { # tcp_refused WHAT PATTERN NBDKIT-OPTIONS... -- PLUGIN-ARGS...: nbdkit must not serve
    local what=$1 pat=$2; shift 2
    local opts=(); while [[ $1 != -- ]]; do opts+=("$1"); shift; done; shift
    if timeout 60 "${NBDKIT[@]}" "${opts[@]}" "$PLUGIN" "$@" --run 'qemu-img info "$uri"' >"$T/r.out" 2>"$T/r.err"; then
        bad "$what: nbdkit served: $(head -c 200 "$T/r.out")"
    elif grep -q -- "$pat" "$T/r.err"; then
        ok "$what: $(grep -m1 -- "$pat" "$T/r.err" | cut -c1-150)"
    else
        bad "$what: no '$pat' in: $(head -c 300 "$T/r.err")"
    fi
}
tcp_refused "a TCP listener for a power-on (-p)" "on a network listener" -i 127.0.0.1 -p "$PORT" -- \
    workspace="$A" vm=enc user=bob passphrase-file="$T/pass" audit-log=tcp0.audit.log
tcp_refused "the default listener is TCP (no -U)" "on a network listener" --port="$PORT" -- \
    workspace="$A" vm=plain user=alice passphrase-file="$T/pass" audit-log=tcp1.audit.log
[[ ! -s $A/tcp0.audit.log ]] && ok "a refused listener opened nothing (no power-on audited)" \
    || bad "a refused listener opened the VM: $(head -c 200 "$A/tcp0.audit.log")"
if timeout 60 "${NBDKIT[@]}" -i 127.0.0.1 -p "$PORT" "$PLUGIN" workspace="$A" vm=enc user=alice export=true readonly=true \
        passphrase-file="$T/pass" audit-log=tcp.audit.log --run 'qemu-img info --output=json "$uri"' >"$T/r.out" 2>"$T/r.err" \
        && grep -q '"virtual-size": 67108864' "$T/r.out"; then
    ok "TCP with export=true: alice's copy is served"
else bad "TCP with export=true: $(head -c 300 "$T/r.err")"; fi
check "... audited as disk.open_export by alice" grep -q '"principal":"alice","op":"disk.open_export"' "$A/tcp.audit.log"
SR=$T/ro.sock
start_nbdkit "$SR" "$T/ro.log" workspace="$A" vm=plain user=alice passphrase-file="$T/pass" audit-log=ro.audit.log -r
PR=$NBD_PID
if qemu-img info "$(uri "$SR")" >"$T/ro.out" 2>&1; then bad "nbdkit -r without export=true served a client"
else ok "nbdkit -r without export=true: the client is refused"; fi
check "... with a line saying why" grep -q "nbdkit -r without export=true is refused" "$T/ro.log"
stop_nbdkit "$PR"
# End to end, as the whitepaper says: bob (No cryptography administrator) gets the decrypted disk
# of an encrypted VM through the plugin only as a power-on on a Unix socket - the hypervisor's path
# - and by no combination of readonly / export / -r / listener as a copy.
served_to_bob() { # served_to_bob NBDKIT-OPTIONS... -- PLUGIN-ARGS...: 0 if a client read the disk
    local opts=(); while [[ $1 != -- ]]; do opts+=("$1"); shift; done; shift
    timeout 60 "${NBDKIT[@]}" "${opts[@]}" "$PLUGIN" workspace="$A" vm=enc user=bob passphrase-file="$T/pass" \
        audit-log=matrix.audit.log "$@" --run 'qemu-io -r -f raw -c "read 0 512" "$uri"' >"$T/m.out" 2>"$T/m.err" &&
        grep -q "^read 512/512" "$T/m.out"
}
m_ok=0 m_bad=()
for listener in unix tcp; do
    for ro in "" readonly=true; do
        for ex in "" export=true; do
            for rflag in "" -r; do
                lopts=(-U -); [[ $listener == tcp ]] && lopts=(-i 127.0.0.1 -p "$PORT")
                args=(); [[ -n $ro ]] && args+=("$ro"); [[ -n $ex ]] && args+=("$ex")
                want=1; [[ $listener == unix && -z $ro && -z $ex && -z $rflag ]] && want=0
                served_to_bob "${lopts[@]}" $rflag -- "${args[@]}"; got=$?; [[ $got != 0 ]] && got=1
                if [[ $got == "$want" ]]; then m_ok=$((m_ok+1)); else m_bad+=("$listener ${ro:-rw} ${ex:-power-on} ${rflag:-no-r}: $( [[ $got == 0 ]] && echo served || echo refused)"); fi
            done
        done
    done
done
[[ ${#m_bad[@]} == 0 ]] && ok "bob x {unix,tcp} x {rw,readonly} x {power-on,export} x {,-r}: only the hypervisor path serves ($m_ok cases)" \
    || bad "bob's matrix: ${m_bad[*]}"
# TLS with client certificates: a power-on over TCP is allowed, only to a client holding a certificate
if command -v openssl >/dev/null; then
    PKI=$T/pki; mkdir -p "$PKI/client"
    (cd "$PKI" &&
        openssl req -x509 -newkey rsa:2048 -nodes -keyout ca-key.pem -out ca-cert.pem -days 2 -subj "/CN=vmenc test CA" &&
        openssl req -newkey rsa:2048 -nodes -keyout server-key.pem -out server.csr -subj "/CN=localhost" &&
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > server.ext &&
        openssl x509 -req -in server.csr -CA ca-cert.pem -CAkey ca-key.pem -CAcreateserial -out server-cert.pem -days 2 -extfile server.ext &&
        openssl req -newkey rsa:2048 -nodes -keyout client/client-key.pem -out client.csr -subj "/CN=hypervisor" &&
        printf 'extendedKeyUsage=clientAuth\n' > client.ext &&
        openssl x509 -req -in client.csr -CA ca-cert.pem -CAkey ca-key.pem -CAcreateserial -out client/client-cert.pem -days 2 -extfile client.ext &&
        cp ca-cert.pem client/ ) >"$T/pki.log" 2>&1
    check "a test PKI (CA, server and client certificates)" test $? = 0
    tcp_refused "--tls=require without --tls-verify-peer is not enough" "on a network listener" \
        -i 127.0.0.1 -p "$PORT" --tls=require --tls-certificates="$PKI" -- \
        workspace="$A" vm=enc user=bob passphrase-file="$T/pass" audit-log=tcp2.audit.log
    cat > "$T/tlsrun.sh" <<TLSEOF
qemu-img info -U --output=json --object tls-creds-x509,id=tls0,endpoint=client,dir=$PKI/client \
    --image-opts driver=nbd,host=127.0.0.1,port=$PORT,tls-creds=tls0 > "$T/tls.out" 2>"$T/tls.err" || exit 11
qemu-img info --output=json "nbd://127.0.0.1:$PORT" > "$T/plain.out" 2>&1 && exit 12
exit 0
TLSEOF
    timeout 60 "${NBDKIT[@]}" -i 127.0.0.1 -p "$PORT" --tls=require --tls-verify-peer --tls-certificates="$PKI" \
        "$PLUGIN" workspace="$A" vm=enc user=bob passphrase-file="$T/pass" audit-log=tls.audit.log \
        --run "bash $T/tlsrun.sh" >"$T/r.out" 2>"$T/r.err"
    rc=$?
    if [[ $rc == 0 ]] && grep -q '"virtual-size": 67108864' "$T/tls.out"; then
        ok "--tls=require --tls-verify-peer: bob's power-on is served to a client with a certificate"
        ok "... and a client without TLS is turned away"
    else bad "TLS with client certificates (rc $rc): $(head -c 300 "$T/r.err") $(head -c 300 "$T/tls.err" 2>/dev/null)"; fi
fi
# ==== end of issue 18 ==============================================================================

# ---- 1. qemu-img / qemu-io -------------------------------------------------------------------
t1=$(date +%s)
SE=$T/enc.sock SP=$T/plain.sock
start_nbdkit "$SE" "$T/enc.log" workspace="$A" vm=enc disk=0 user=bob passphrase-file="$T/pass"
check "nbdkit serves the encrypted disk (as bob, no-crypto admin: power-on)" test $? = 0
PE=$NBD_PID
VMENC_PASSPHRASE="nbdkit test passphrase" start_nbdkit "$SP" "$T/plain.log" workspace="$A" vm=plain disk=scsi0:0 user=alice
check "nbdkit serves the plain disk (passphrase from VMENC_PASSPHRASE)" test $? = 0
PP=$NBD_PID
qemu-img info --output=json "$(uri "$SE")" >"$T/info.json" 2>&1
check "qemu-img info: 64 MiB" grep -q '"virtual-size": 67108864' "$T/info.json"
nbdinfo_ok=0
if command -v nbdinfo >/dev/null; then
    nbdinfo "$(uri "$SE")" >"$T/nbdinfo.txt" 2>&1
    grep -q "can_multi_conn: true" "$T/nbdinfo.txt" && grep -q "can_fua: true" "$T/nbdinfo.txt" &&
        grep -q "can_zero: true" "$T/nbdinfo.txt" && grep -q "can_trim: false" "$T/nbdinfo.txt" && nbdinfo_ok=1
    check "nbdinfo: multi-conn, FUA, zero, no trim" test $nbdinfo_ok = 1
fi

qemu-img create -q -f raw "$T/model.img" 64M
# Random writes: aligned and unaligned offsets and lengths, constant patterns,
# a marker file, zeroes, FUA. The same command list goes to the model and both disks.
python3 - "$T" <<'EOF'
import random, sys
t = sys.argv[1]
r = random.Random(12)
size = 64 << 20
marker = b"".join(b"VMENC-NBDKIT-PLAINTEXT-MARKER-%06d|" % i for i in range(2000))
open(t + "/marker.bin", "wb").write(marker)
cmds, pats = [], set()
for i in range(60):
    kind = r.random()
    if kind < 0.4:
        ln = r.randrange(1, 32) * 4096; off = r.randrange(0, (size - ln) // 4096) * 4096
    else:
        ln = r.randrange(1, 70000); off = r.randrange(0, size - ln)
    if i % 10 == 9:
        cmds.append("write -z %d %d" % (off, ln))
    else:
        p = r.randrange(0x21, 0x7f); pats.add(p)
        cmds.append("write %s-P 0x%02x %d %d" % ("-f " if i % 7 == 3 else "", p, off, ln))
cmds.append("write -s %s/marker.bin 12345 %d" % (t, len(marker)))
cmds.append("write -s %s/marker.bin %d %d" % (t, 40 << 20, len(marker)))
open(t + "/ops.txt", "w").write("\n".join(cmds) + "\n")
open(t + "/pats.txt", "w").write(" ".join("%d" % p for p in sorted(pats)) + "\n")
EOF
qio() { # qio TARGET FORMAT: runs every command of ops.txt in one qemu-io
    local args=() l
    while IFS= read -r l; do args+=(-c "$l"); done <"$T/ops.txt"
    qemu-io -f "$2" "${args[@]}" "$1" >"$T/qio.out" 2>&1 || { cat "$T/qio.out" | tail -3; return 1; }
}
check "qemu-io: 62 writes to the model" qio "$T/model.img" raw
check "qemu-io: same writes through NBD to the encrypted disk" qio "$(uri "$SE")" raw
check "qemu-io: same writes through NBD to the plain disk" qio "$(uri "$SP")" raw

# two clients at once on disjoint ranges (multi-conn, PARALLEL)
qemu-io -f raw -c "write -P 0x5a 50331648 4194304" "$(uri "$SE")" >/dev/null 2>&1 & c1=$!
qemu-io -f raw -c "write -P 0x6b 54525952 4194303" "$(uri "$SE")" >/dev/null 2>&1 & c2=$!
wait $c1; r1=$?; wait $c2; r2=$?
check "two concurrent clients" test $r1 = 0 -a $r2 = 0
for img in "$T/model.img" "$(uri "$SP")"; do
    qemu-io -f raw -c "write -P 0x5a 50331648 4194304" -c "write -P 0x6b 54525952 4194303" "$img" >/dev/null
done
qemu-io -f raw -c "read -P 0x6b 54525952 4194303" "$(uri "$SE")" >"$T/rd.out" 2>&1
check "qemu-io read -P through NBD (unaligned)" bash -c "grep -q '^read 4194303/4194303' $T/rd.out && ! grep -q 'verification failed' $T/rd.out"
check "qemu-img compare: encrypted disk == model" qemu-img compare -q -f raw -F raw "$T/model.img" "$(uri "$SE")"
check "qemu-img compare: plain disk == model" qemu-img compare -q -f raw -F raw "$T/model.img" "$(uri "$SP")"
qemu-io -f raw -c flush "$(uri "$SE")" >/dev/null 2>&1
check "flush" test $? = 0
stop_nbdkit "$PE"; stop_nbdkit "$PP"
check "plain VM's extent is the model byte for byte" cmp -s "$T/model.img" "$PLAIN_EXTENT"
no_plaintext() { # no_plaintext FILE: none of the patterns or the marker in FILE
    python3 - "$1" "$T" <<'EOF'
import sys
data = open(sys.argv[1], "rb").read()
t = sys.argv[2]
pats = [int(x) for x in open(t + "/pats.txt").read().split()]
bad = [p for p in pats if bytes([p]) * 32 in data]
marker = b"VMENC-NBDKIT-PLAINTEXT-MARKER"
if bad or marker in data:
    print("plaintext found: patterns %s marker %s" % (bad, marker in data)); sys.exit(1)
EOF
}
check "encrypted extent holds none of the plaintext patterns nor the marker" no_plaintext "$ENC_EXTENT"
if no_plaintext "$PLAIN_EXTENT" >/dev/null; then bad "the check sees the plaintext in the plain extent"
else ok "(the same check does find the plaintext in the plain extent)"; fi
va disk read enc scsi0:0 >"$T/enc.dec" 2>"$T/dr.err"
check "vmenc disk read of the encrypted disk == model" cmp -s "$T/model.img" "$T/enc.dec"
check "the plugin's own audit log verifies" bash -c "$(declare -f va); VMENC=$VMENC A=$A T=$T va audit verify $A/nbdkit-enc-0.audit.log >/dev/null"
check "... and records bob's power-on" grep -q '"bob"' "$A/nbdkit-enc-0.audit.log"
echo "# part 1: $(( $(date +%s) - t1 )) s"

# ---- 2. a guest boots on the encrypted disk ----------------------------------------------------
QEMU=$(command -v qemu-system-x86_64)
KVER=$(ls -1 /lib/modules 2>/dev/null | while read -r k; do [[ -e /boot/vmlinuz-$k && -e /lib/modules/$k/kernel/drivers/block/virtio_blk.ko ]] && echo "$k"; done | sort -V | tail -1)
if [[ -z $QEMU ]]; then
    echo "# SKIP parts 2-3: qemu-system-x86_64 is not installed (scripts/deps.sh)"
elif [[ -z $KVER ]] || ! command -v busybox >/dev/null || ! command -v debugfs >/dev/null; then
    bad "parts 2-3 need a Debian kernel with virtio modules, busybox-static and e2fsprogs (scripts/deps.sh)"
else
    # KVM when it really runs a guest: /dev/kvm can exist and still fail (some
    # nested setups abort on MSRs or hang in early boot), so a bare kernel must
    # reach its first console line within a few seconds; else TCG.
    ACCEL=(-accel tcg)
    if [[ -r /dev/kvm && -w /dev/kvm ]]; then
        timeout 8 "$QEMU" -accel kvm -cpu host,-arch-capabilities -M pc -m 128 -nodefaults -no-user-config \
            -display none -monitor none -serial "file:$T/kvm-probe.log" -no-reboot \
            -kernel "/boot/vmlinuz-$KVER" -append "console=ttyS0 panic=-1 root=/dev/null" </dev/null >/dev/null 2>&1
        if grep -q "Kernel panic\|VFS" "$T/kvm-probe.log" 2>/dev/null; then
            ACCEL=(-accel kvm -cpu host,-arch-capabilities)
        else
            echo "# /dev/kvm is present but a KVM guest does not boot here: using TCG"
        fi
    fi
    echo "# guest: kernel $KVER, ${ACCEL[*]}"
    # initramfs: busybox, the modules for virtio-blk and ext4, mke2fs with its libraries.
    R=$T/initramfs
    mkdir -p "$R"/{bin,sbin,dev,proc,sys,mnt,lib/modules,etc}
    cp "$(command -v busybox)" "$R/bin/busybox"
    # modprobe orders each module after its dependencies (crc32c: ext4 asks the
    # crypto API for it at mount time, which no insmod loop would satisfy).
    for m in crc32c_generic virtio_pci virtio_blk ext4; do
        modprobe -S "$KVER" --show-depends "$m" | awk '$1 == "insmod" {print $2}'
    done | awk '!seen[$0]++' | while read -r f; do
        cp "$f" "$R/lib/modules/" && basename "$f" >>"$R/lib/modules/order"
    done
    MKE2FS=$(command -v mke2fs)
    mkdir -p "$R/e2fs"
    cp "$MKE2FS" "$R/e2fs/mke2fs" # not in /sbin: busybox --install puts its own mke2fs there
    for l in $(ldd "$MKE2FS" | grep -o '/[^ ]*'); do mkdir -p "$R$(dirname "$l")"; cp -L "$l" "$R$l"; done
    cat >"$R/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in $(cat /lib/modules/order); do
    case $m in *.xz) xz -dc /lib/modules/$m > /tmp.ko; insmod /tmp.ko;; *) insmod /lib/modules/$m;; esac
done
for i in $(seq 50); do [ -b /dev/vda ] && break; sleep 0.1; done
mode=$(sed -n 's/.*vmenc.mode=\([a-z]*\).*/\1/p' /proc/cmdline)
gen() { i=0; while [ $i -lt 1500 ]; do echo "vmenc guest file, line $i, the quick brown fox"; i=$((i+1)); done; }
if [ "$mode" = write ]; then
    /e2fs/mke2fs -q -F -t ext4 /dev/vda && mount -t ext4 /dev/vda /mnt && gen > /mnt/f && sync && umount /mnt &&
        echo "VMENC-GUEST wrote $(gen | md5sum | cut -d' ' -f1)"
else
    mount -t ext4 -o ro /dev/vda /mnt && echo "VMENC-GUEST read $(md5sum < /mnt/f | cut -d' ' -f1)" && umount /mnt
fi
poweroff -f
EOF
    chmod +x "$R/init"
    (cd "$R" && find . | cpio -o -H newc --quiet | gzip -1 >"$T/initrd.gz")
    gen() { local i; for ((i = 0; i < 1500; i++)); do echo "vmenc guest file, line $i, the quick brown fox"; done; }
    gen >"$T/f.expected"
    WANT=$(md5sum <"$T/f.expected" | cut -d' ' -f1)
    # boot SOCKET MODE LOG [ro]: one guest run with the NBD disk as /dev/vda; prints its time.
    boot() {
        local s=$(date +%s%N)
        timeout 150 "$QEMU" "${ACCEL[@]}" -M pc -m 256 -nodefaults -no-user-config -display none -monitor none \
            -serial "file:$3" -no-reboot -kernel "/boot/vmlinuz-$KVER" -initrd "$T/initrd.gz" \
            -append "console=ttyS0 quiet panic=-1 vmenc.mode=$2" \
            -drive "file=$(uri "$1"),format=raw,if=virtio,cache=none${4:+,readonly=on}" </dev/null >"$3.qemu" 2>&1 &
        local q=$!
        PIDS+=("$q")
        wait $q
        local rc=$?
        echo "# boot $2: rc $rc, $(( ($(date +%s%N) - s) / 1000000 )) ms"
        return $rc
    }
    t2=$(date +%s)
    SG=$T/guest.sock
    start_nbdkit "$SG" "$T/guest.log" workspace="$A" vm=guest user=alice passphrase-file="$T/pass"
    check "nbdkit serves the guest's disk" test $? = 0
    PG=$NBD_PID
    boot "$SG" write "$T/boot1.log"
    check "guest 1st boot: mkfs.ext4, wrote /f, powered off" grep -q "VMENC-GUEST wrote $WANT" "$T/boot1.log"
    grep -q "VMENC-GUEST" "$T/boot1.log" || tail -n 20 "$T/boot1.log" "$T/boot1.log.qemu"
    stop_nbdkit "$PG"
    GEXT=$A/datastore/guest/guest_0-flat.vmdk
    check "guest extent holds no plaintext of /f" bash -c "! grep -q 'the quick brown fox' '$GEXT'"
    va disk read guest scsi0:0 >"$T/guest.dec" 2>"$T/gdr.err"
    debugfs -R stats "$T/guest.dec" >"$T/stats" 2>/dev/null
    check "vmenc disk read: the decrypted disk holds an ext4 file system" grep -q "Filesystem features:.*extent" "$T/stats"
    debugfs -R "cat /f" "$T/guest.dec" >"$T/f.debugfs" 2>/dev/null
    check "debugfs cat /f on the decrypted bytes == the guest's file" cmp -s "$T/f.expected" "$T/f.debugfs"
    start_nbdkit "$SG" "$T/guest2.log" workspace="$A" vm=guest user=alice passphrase-file="$T/pass" readonly=true export=true
    PG=$NBD_PID
    boot "$SG" read "$T/boot2.log" ro
    check "guest 2nd boot (read-only disk) reads /f back" grep -q "VMENC-GUEST read $WANT" "$T/boot2.log"
    stop_nbdkit "$PG"
    echo "# part 2: $(( $(date +%s) - t2 )) s"

    # ---- 3. the VM moves to a second host sharing the key provider ----------------------------
    t3=$(date +%s)
    vb init "$B" --admin alice --host esxB --key-provider local --kdf-memory 8192 --kdf-passes 1 >/dev/null &&
        vb kms add native --type file --endpoint "$A/keystore.vks" --secret-file "$T/pass" >/dev/null &&
        mkdir -p "$B/datastore" && cp -a "$A/datastore/guest" "$B/datastore/guest" &&
        vb vm register guest >/dev/null
    check "host B: own keystore 'local', A's keystore as provider 'native', guest registered" test $? = 0
    mv "$A/keystore.vks" "$A/keystore.vks.away"
    refused "host B without the key provider: VM locked" "VM 'guest' is locked" \
        workspace="$B" vm=guest user=alice passphrase-file="$T/pass"
    mv "$A/keystore.vks.away" "$A/keystore.vks"
    SB=$T/hostb.sock
    start_nbdkit "$SB" "$T/hostb.log" workspace="$B" vm=guest user=alice passphrase-file="$T/pass"
    check "host B serves the moved disk (KEK fetched by ID)" test $? = 0
    PB=$NBD_PID
    boot "$SB" read "$T/boot3.log"
    check "guest boots on host B and reads /f" grep -q "VMENC-GUEST read $WANT" "$T/boot3.log"
    stop_nbdkit "$PB"
    echo "# part 3: $(( $(date +%s) - t3 )) s"
fi

echo "# total: $(( $(date +%s) - T0 )) s"
echo "$((n - fails)) passed, $fails failed"
[[ $fails == 0 ]]
