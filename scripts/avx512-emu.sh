#!/usr/bin/env bash
# scripts/avx512-emu.sh - run the project's AVX-512 test programs on an
# emulated AVX-512 CPU, so the "vaes-avx512" XTS backend and the
# "vaes-avx512" AES-256-GCM engine (and "vaes-avx2", both kinds) execute and
# are checked on build machines that have no AVX-512:
#   test_xts          XTS vectors and differentials (tests/test_xts.c)
#   test_aead         the GCM engines against the GCM spec vectors and
#                     OpenSSL's EVP (tests/test_aead.c)
#   test_xts_residue  no key material in vector registers or on the stack
#                     after an XTS or GCM call (tests/test_xts_residue.c)
#
# How: Debian's Bochs 2.7 (CPU model "tigerlake": AVX-512F/BW/VL, VAES,
# VPCLMULQDQ) boots a small Linux kernel built once from Debian's
# linux-source-6.1; the initramfs holds the three programs (linked
# statically where every library has a static archive, else with their
# shared libraries copied in) and a tiny init that runs each as a child of
# its own, prints its exit status on the serial line, and powers the
# emulator off.
#
# Exit 0 only if: the guest's CPUID showed AVX-512F/BW/VL + VAES + VPCLMULQDQ
# and XGETBV showed the OS saving opmask/ZMM state (test_xts prints both);
# every program exited 0 with a cmocka summary and no failed test; test_xts
# had the vaes-avx512 backend and skipped none of its tests for lack of the
# CPU (VMENC_TEST_XTS_REQUIRE); test_aead ran every required GCM engine
# (VMENC_TEST_AEAD_REQUIRE: a missing one fails instead of skipping) and
# printed each one's agreement with EVP; test_xts_residue scanned registers
# and stack after XTS and GCM calls; test_aead and test_xts_residue skipped
# nothing. The last line printed is the verdict, with counts per program:
#   AVX512EMU RESULT: PASS (...)   or   AVX512EMU RESULT: FAIL: reasons -- ...
#
# Slow, so not part of CI: run it after any change to lib/xts or
# lib/keys/aead.c. Measured 2026-12-06 on 2 cores shared with other
# sessions (load 8-13): the guest kernel, built the first time only, ~24 min
# (~6 min on a quiet machine); then 11-22 min per run (636 s, 959 s, 1314 s),
# 9-18 min of it Bochs, almost all for test_xts (~550-1020 s); test_aead
# with its full 1 MiB sweep and all three engines took ~14-41 s and
# test_xts_residue less than the 2 s the script polls at, so the sweep is
# not shortened by default. Needs root for apt-get (bochs is not a CI
# dependency: this script installs what it needs).
#
# Environment (optional):
#   VMENC_EMU_WORK     work directory; the kernel is cached here
#                      (default /tmp/vmenc-avx512-emu)
#   VMENC_EMU_TIMEOUT  wall-clock limit for the emulator, seconds (3000)
#   VMENC_EMU_CPU      Bochs CPU model (tigerlake; corei7_icelake_u works too)
#   VMENC_EMU_IMPLS    XTS backends test_xts runs in the guest (default
#                      "vaes-avx512": the others run natively in the suite;
#                      "all" runs every one, several times slower)
#   VMENC_EMU_AEAD_ENGINES  GCM engines test_aead must run, comma-separated
#                      (default vaes-avx512,vaes-avx2: lib/xts/gcm_engines.c);
#                      the others it runs anyway
#   VMENC_EMU_AEAD_MAX_LEN  longest length of test_aead's EVP differential in the guest
#                      (VMENC_TEST_AEAD_MAX_LEN; default: all, up to 1 MiB + 16)
#   VMENC_EMU_NO_APT=1 do not install packages
#
# Two Bochs 2.7 quirks would break the guest; both are worked around on the
# kernel command line (clearcpuid=321,323,515,580):
#  - Bochs lists PKRU in CPUID.0xD.0 but leaves its sub-leaf empty and reports
#    a non-compacted XSAVES size; Linux then disables XSAVE, and with it AVX
#    and AVX-512. Clearing XSAVEC (321), XSAVES (323) and PKU (515) makes it
#    use standard-format XSAVE, which does save the opmask and ZMM state.
#  - Bochs leaves fast strings off in IA32_MISC_ENABLE, so Linux 6.1 drops
#    ERMS but keeps FSRM, and its memmove then loops on short forward copies
#    (a silent hang early in boot). Clearing FSRM (580) avoids that path.
set -euo pipefail

T0=$(date +%s)
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${VMENC_EMU_WORK:-/tmp/vmenc-avx512-emu}
TIMEOUT=${VMENC_EMU_TIMEOUT:-3000}
CPU_MODEL=${VMENC_EMU_CPU:-tigerlake}
IMPLS=${VMENC_EMU_IMPLS:-vaes-avx512}
[[ $IMPLS == all ]] && IMPLS=
AEAD_ENGINES=${VMENC_EMU_AEAD_ENGINES:-}
AEAD_MAX_LEN=${VMENC_EMU_AEAD_MAX_LEN-}
PROGS=(test_xts test_aead test_xts_residue)
KVER=6.1

log() { printf '[avx512-emu %4ds] %s\n' $(($(date +%s) - T0)) "$*" >&2; }
die() {
    log "$*"
    echo "AVX512EMU RESULT: FAIL: $*"
    exit 1
}
mkdir -p "$WORK"

# ---- 1. packages ----------------------------------------------------------------
PKGS=(bochs bochsbios vgabios syslinux-common isolinux xorriso cpio gzip
      build-essential cmake pkg-config libsodium-dev libssl-dev libjson-c-dev
      libcmocka-dev "linux-source-$KVER" flex bison bc libelf-dev)
if [[ ${VMENC_EMU_NO_APT:-0} != 1 ]]; then
    missing=()
    for p in "${PKGS[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$p")
    done
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        SUDO=
        [[ $(id -u) == 0 ]] || SUDO=sudo
        $SUDO apt-get update -qq >"$WORK/apt.log" 2>&1 || true
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >>"$WORK/apt.log" 2>&1 ||
            die "apt-get install failed, see $WORK/apt.log"
    fi
fi
command -v bochs-bin >/dev/null || die "bochs-bin not found (install the bochs package)"

# ---- 2. guest kernel, built once and cached ------------------------------------------
# tinyconfig plus what a serial console, an initramfs, ELF binaries, /proc,
# devtmpfs, threads (futex) and the Bochs power-off port need. No SMP, no
# modules, no ACPI/PCI: it boots in about a minute of emulated time.
KDIR=$WORK/kernel
KCONFIG='CONFIG_64BIT=y
CONFIG_PRINTK=y
CONFIG_EARLY_PRINTK=y
CONFIG_TTY=y
CONFIG_SERIAL_8250=y
CONFIG_SERIAL_8250_CONSOLE=y
CONFIG_BLK_DEV_INITRD=y
CONFIG_RD_GZIP=y
CONFIG_BINFMT_ELF=y
CONFIG_DEVTMPFS=y
CONFIG_PROC_FS=y
CONFIG_SYSFS=y
CONFIG_FUTEX=y
CONFIG_POSIX_TIMERS=y
CONFIG_ADVISE_SYSCALLS=y
CONFIG_MULTIUSER=y
CONFIG_SHMEM=y
CONFIG_KERNEL_GZIP=y
CONFIG_CPU_SUP_INTEL=y
CONFIG_X86_LOCAL_APIC=y
CONFIG_X86_UP_APIC=y
CONFIG_HZ_250=y
CONFIG_X86_IOPL_IOPERM=y
# CONFIG_SMP is not set
# CONFIG_MODULES is not set
# CONFIG_RANDOMIZE_BASE is not set
# CONFIG_RELOCATABLE is not set
# CONFIG_PAGE_TABLE_ISOLATION is not set
# CONFIG_RETPOLINE is not set
# CONFIG_SPECULATION_MITIGATIONS is not set
# CONFIG_IA32_EMULATION is not set
# CONFIG_X86_INTEL_MEMORY_PROTECTION_KEYS is not set
# CONFIG_ACPI is not set
# CONFIG_PCI is not set
# CONFIG_DEBUG_KERNEL is not set'
KTAR=/usr/src/linux-source-$KVER.tar.xz
[[ -f $KTAR ]] || die "$KTAR missing (package linux-source-$KVER)"
KSUM=$( (echo "$KCONFIG"; ls -l "$KTAR") | sha256sum | cut -c1-16)
if [[ ! -f $KDIR/bzImage || $(cat "$KDIR/config.sum" 2>/dev/null) != "$KSUM" ]]; then
    log "building the guest kernel (once; cached in $KDIR; ~6 min)"
    rm -rf "$KDIR"
    mkdir -p "$KDIR"
    echo "$KCONFIG" >"$KDIR/extra.config"
    tar -xJf "$KTAR" -C "$KDIR"
    (
        cd "$KDIR/linux-source-$KVER"
        make O="$KDIR/build" tinyconfig
        scripts/kconfig/merge_config.sh -m -O "$KDIR/build" "$KDIR/build/.config" \
            "$KDIR/extra.config"
        make O="$KDIR/build" olddefconfig
        nice make O="$KDIR/build" -j"$(nproc)" bzImage
    ) >"$KDIR/build.log" 2>&1 || die "kernel build failed, see $KDIR/build.log"
    cp "$KDIR/build/arch/x86/boot/bzImage" "$KDIR/bzImage"
    rm -rf "$KDIR/linux-source-$KVER" "$KDIR/build"
    echo "$KSUM" >"$KDIR/config.sum"
fi

# ---- 3. the test programs from this tree -------------------------------------------
# The working tree as it is (tracked and untracked-but-not-ignored files), so
# uncommitted changes to lib/xts are what gets checked.
SRC=$WORK/src BUILD=$WORK/build G=$WORK/guest
log "building ${PROGS[*]} from $ROOT"
rm -rf "$SRC" "$BUILD" "$G"
mkdir -p "$SRC" "$G/rd" "$G/iso/isolinux"
(cd "$ROOT" && git ls-files -z -co --exclude-standard |
    tar --null --ignore-failed-read -T - -cf - 2>/dev/null) | tar -xf - -C "$SRC"
cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DVMENC_WERROR=ON \
    -DVMENC_BUILD_BENCH=OFF -DVMENC_BUILD_EXAMPLES=OFF >"$WORK/build.log" 2>&1 ||
    die "cmake configure failed, see $WORK/build.log"
cmake --build "$BUILD" --target vmenc_static -j"$(nproc)" >>"$WORK/build.log" 2>&1 ||
    die "building libvmenc.a failed, see $WORK/build.log"
LIBVMENC=$BUILD/libvmenc.a
CFLAGS=(-O2 -D_GNU_SOURCE -I"$SRC/include" -I"$SRC/lib" -I"$SRC/tests" -I"$SRC/tests/support")
LIBS=("$LIBVMENC" -lcmocka -lssl -lcrypto -lsodium -ljson-c -lpthread -ldl)
# Static if every library has an archive (Debian ships no libcmocka.a); else
# dynamic, with the loader and the libraries it needs copied into the initramfs.
# -O2 without ASan: test_xts_residue's stack scan needs an optimised build.
LINK=dynamic
if gcc "${CFLAGS[@]}" -static -o "$G/rd/${PROGS[0]}" "$SRC/tests/${PROGS[0]}.c" "${LIBS[@]}" \
    >>"$WORK/build.log" 2>&1; then
    LINK=static
fi
for prog in "${PROGS[@]}"; do
    if [[ $LINK == static ]]; then
        gcc "${CFLAGS[@]}" -static -o "$G/rd/$prog" "$SRC/tests/$prog.c" "${LIBS[@]}" \
            >>"$WORK/build.log" 2>&1 || die "linking $prog failed, see $WORK/build.log"
        continue
    fi
    gcc "${CFLAGS[@]}" -o "$G/rd/$prog" "$SRC/tests/$prog.c" "${LIBS[@]}" \
        >>"$WORK/build.log" 2>&1 || die "linking $prog failed, see $WORK/build.log"
    for lib in $(ldd "$G/rd/$prog" | grep -o '/[^ ]*'); do
        [[ -e $G/rd$lib ]] && continue
        mkdir -p "$G/rd$(dirname "$lib")"
        cp -L "$lib" "$G/rd$lib"
    done
done
log "${PROGS[*]} linked ($LINK)"

# The tiny init: console on the serial port, the CPU as the guest kernel
# shows it, each test program as a child of its own (a crash of one does not
# hide the others' results) between a "run" and an "exit" line, power off
# (Bochs quits when "Shutdown" is written to its port 0x8900).
PROG_LIST=$(printf '"/%s", ' "${PROGS[@]}")
cat >"$WORK/init.c" <<'EOF'
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/io.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static const char *const progs[] = {PROG_LIST};

int main(void) {
    mkdir("/dev", 0755);
    mkdir("/proc", 0755);
    mkdir("/tmp", 01777);
    mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
    mount("proc", "/proc", "proc", 0, NULL);
    int fd = open("/dev/console", O_RDWR);
    if (fd >= 0) {
        dup2(fd, 0);
        dup2(fd, 1);
        dup2(fd, 2);
        if (fd > 2)
            close(fd);
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("VMENC-EMU: init started\n");
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[8192];
    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, "model name", 10) == 0)
            printf("VMENC-EMU: %s", line);
        if (strncmp(line, "flags", 5) == 0) {
            printf("VMENC-EMU: cpuinfo %s", line);
            break;
        }
    }
    if (f != NULL)
        fclose(f);
    for (size_t i = 0; i < sizeof(progs) / sizeof(progs[0]); i++) {
        const char *name = progs[i] + 1;
        printf("VMENC-EMU: run %s\n", name);
        fflush(NULL);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        pid_t pid = fork();
        if (pid == 0) {
            char *argv[] = {(char *)progs[i], NULL};
            execv(argv[0], argv);
            _exit(127);
        }
        int status = 0;
        while (pid > 0 && waitpid(pid, &status, 0) < 0)
            ;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (pid < 0)
            printf("VMENC-EMU: %s fork-failed 1 (0 s guest time)\n", name);
        else
            printf("VMENC-EMU: %s %s %d (%.0f s guest time)\n", name,
                   WIFEXITED(status) ? "exit" : "signal",
                   WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status),
                   (double)(t1.tv_sec - t0.tv_sec));
    }
    printf("VMENC-EMU: DONE\n");
    fflush(NULL);
    tcdrain(1);
    sleep(1);
    if (iopl(3) == 0)
        for (const char *p = "Shutdown"; *p; p++)
            outb((unsigned char)*p, 0x8900);
    reboot(RB_POWER_OFF);
    for (;;)
        pause();
}
EOF
sed -i "s|{PROG_LIST}|{${PROG_LIST%, }}|" "$WORK/init.c"
gcc -O2 -Wall -static -o "$G/rd/init" "$WORK/init.c" >>"$WORK/build.log" 2>&1 ||
    die "building the guest init failed, see $WORK/build.log"

# ---- 4. boot medium -------------------------------------------------------------------
(cd "$G/rd" && find . | cpio -o -H newc --quiet | gzip -1) >"$G/iso/initrd.gz"
cp "$KDIR/bzImage" "$G/iso/vmlinuz"
cp /usr/lib/ISOLINUX/isolinux.bin /usr/lib/syslinux/modules/bios/ldlinux.c32 "$G/iso/isolinux/"
# The GCM engines test_aead must run (not skip): both of lib/xts/gcm_engines.c.
[[ -n $AEAD_ENGINES ]] || AEAD_ENGINES=vaes-avx512,vaes-avx2
ENVS="CMOCKA_MESSAGE_OUTPUT=stdout VMENC_TEST_XTS_REQUIRE=vaes-avx512"
ENVS+=" VMENC_TEST_AEAD_REQUIRE=$AEAD_ENGINES"
[[ -n $IMPLS ]] && ENVS+=" VMENC_TEST_XTS_IMPLS=$IMPLS"
[[ -n $AEAD_MAX_LEN ]] && ENVS+=" VMENC_TEST_AEAD_MAX_LEN=$AEAD_MAX_LEN"
# Words with "=" after the options the kernel knows become init's environment.
CMDLINE="console=ttyS0,115200 clearcpuid=321,323,515,580 $ENVS"
printf 'DEFAULT linux\nPROMPT 0\nTIMEOUT 0\nLABEL linux\n  KERNEL /vmlinuz\n  APPEND initrd=/initrd.gz %s\n' \
    "$CMDLINE" >"$G/iso/isolinux/isolinux.cfg"
xorriso -as mkisofs -quiet -o "$G/boot.iso" -b isolinux/isolinux.bin -c isolinux/boot.cat \
    -no-emul-boot -boot-load-size 4 -boot-info-table -R -J "$G/iso" >"$G/xorriso.log" 2>&1 ||
    die "xorriso failed, see $G/xorriso.log"

# ---- 5. Bochs, headless ------------------------------------------------------------------
SERIAL=$G/serial.txt
cat >"$G/bochsrc" <<EOF
megs: 512
cpu: model=$CPU_MODEL, count=1, ips=50000000, reset_on_triple_fault=0
romimage: file=/usr/share/bochs/BIOS-bochs-latest
vgaromimage: file=/usr/share/bochs/VGABIOS-lgpl-latest
ata0-master: type=cdrom, path=$G/boot.iso, status=inserted
boot: cdrom
com1: enabled=1, mode=file, dev=$SERIAL
display_library: rfb, options="timeout=0"
log: $G/bochs.log
panic: action=fatal
error: action=report
info: action=ignore
debug: action=ignore
clock: sync=none, time0=local
speaker: enabled=0
sound: waveoutdrv=dummy, waveindrv=dummy, midioutdrv=dummy
EOF
# The dummy sound drivers matter: with the default (ALSA) one, Debian's
# bochs 2.7 aborts in its mixer thread ("buffer overflow detected") on a
# machine without a sound card. Debian's bochs has its debugger built in: "c" continues, and stdin at EOF
# lets it quit should it ever stop at its prompt.
echo c >"$G/dbg.rc"
log "booting under Bochs ($CPU_MODEL), limit ${TIMEOUT}s"
BT0=$(date +%s)
(cd "$G" && exec timeout -k 10 "$TIMEOUT" bochs-bin -q -f "$G/bochsrc" -rc "$G/dbg.rc" \
    </dev/null >"$G/bochs.out" 2>&1) &
BPID=$!
# Host seconds (every 2 s) at which each program's "run" and exit lines
# appeared: the guest's own clock runs at the nominal ips, not wall time.
declare -A T_RUN T_END
note_times() {
    local prog
    for prog in "${PROGS[@]}"; do
        [[ -n ${T_RUN[$prog]:-} ]] || ! grep -aqE "^VMENC-EMU: run $prog"$'\r?$' "$SERIAL" 2>/dev/null ||
            T_RUN[$prog]=$(date +%s)
        [[ -n ${T_END[$prog]:-} ]] || ! grep -aqE "^VMENC-EMU: $prog (exit|signal|fork-failed) " "$SERIAL" 2>/dev/null ||
            T_END[$prog]=$(date +%s)
    done
}
while kill -0 $BPID 2>/dev/null; do
    note_times
    if grep -q "VMENC-EMU: DONE" "$SERIAL" 2>/dev/null; then
        sleep 5
        kill $BPID 2>/dev/null || true
        break
    fi
    sleep 2
done
wait $BPID 2>/dev/null || true
note_times # Bochs quits by itself on "Shutdown", often before a poll sees DONE
BT=$(($(date +%s) - BT0))
log "Bochs ran ${BT}s"

# ---- 6. verdict --------------------------------------------------------------------------
[[ -f $SERIAL ]] || die "no serial output (see $G/bochs.log)"
sed -i 's/\r$//' "$SERIAL"
grep -E "VMENC-EMU|^test_xts:|agree with EVP|residue checked|not runnable|required|PASSED|FAILED|SKIPPED|^\[  ERROR" \
    "$SERIAL" | grep -v "^VMENC-EMU: cpuinfo" | cut -c1-300 >&2 || true
ok=1
why=()
grep -q "VMENC-EMU: DONE" "$SERIAL" || { ok=0; why+=("guest did not finish (limit ${TIMEOUT}s?)"); }

# The lines a program printed: from init's "run" line to its exit line.
section() {
    awk -v p="$1" '$0 == "VMENC-EMU: run " p { on = 1; next }
                   on && index($0, "VMENC-EMU: " p " ") == 1 { exit }
                   on' "$SERIAL"
}
# count TEXT PATTERN: the number cmocka printed on its summary line PATTERN.
count() { sed -n "s/^$2 \([0-9]*\) test(s).*/\1/p" <<<"$1" | tail -1; }
COUNTS=()
for prog in "${PROGS[@]}"; do
    out=$(section "$prog")
    end=$(grep -m1 "^VMENC-EMU: $prog \(exit\|signal\|fork-failed\) " "$SERIAL" || true)
    ran=$(count "$out" '\[==========\]') passed=$(count "$out" '\[  PASSED  \]')
    failed=$(count "$out" '\[  FAILED  \]') skipped=$(count "$out" '\[  SKIPPED \]')
    secs=
    [[ -n ${T_RUN[$prog]:-} && -n ${T_END[$prog]:-} ]] && secs=$((T_END[$prog] - T_RUN[$prog]))
    COUNTS+=("$prog ${ran:-?} run/${passed:-0} passed/${failed:-0} failed/${skipped:-0} skipped${secs:+, ~${secs}s}")
    if [[ -z $end ]]; then
        ok=0; why+=("$prog did not finish"); continue
    fi
    [[ $end == "VMENC-EMU: $prog exit 0 "* ]] || { ok=0; why+=("$prog: ${end#VMENC-EMU: $prog }"); }
    [[ -n $passed ]] || { ok=0; why+=("$prog: no cmocka summary"); }
    [[ -n $failed && $failed != 0 ]] && { ok=0; why+=("$prog: $failed test(s) failed"); }
    case $prog in
    test_xts)
        cpuline=$(grep -m1 "^test_xts: cpuid1" <<<"$out" || true)
        if [[ -z $cpuline ]]; then
            ok=0
            why+=("test_xts printed no CPUID/XGETBV line")
        else
            hex() { sed -n "s/.*$1=\([0-9a-f]*\).*/\1/p" <<<"$cpuline"; }
            b7=$((16#$(hex cpuid7.ebx))) c7=$((16#$(hex cpuid7.ecx))) xcr0=$((16#$(hex xcr0)))
            for bit in 16:avx512f 30:avx512bw 31:avx512vl; do
                ((b7 >> ${bit%%:*} & 1)) || { ok=0; why+=("CPUID.7 lacks ${bit#*:}"); }
            done
            for bit in 9:vaes 10:vpclmulqdq; do
                ((c7 >> ${bit%%:*} & 1)) || { ok=0; why+=("CPUID.7 lacks ${bit#*:}"); }
            done
            (((xcr0 & 0xe6) == 0xe6)) || { ok=0; why+=("XCR0 $(hex xcr0): OS does not save YMM/opmask/ZMM"); }
        fi
        grep -q "^test_xts: backends available: vaes-avx512=yes" <<<"$out" ||
            { ok=0; why+=("vaes-avx512 XTS backend not available in the guest"); }
        # Tests of vaes-avx512 itself (every PER_IMPL test has one): none
        # may be skipped for lack of the CPU (test_xts skips the backends
        # not in VMENC_EMU_IMPLS on purpose).
        grep -q "skipped: CPU lacks AVX-512" <<<"$out" && { ok=0; why+=("test_xts: vaes-avx512 tests skipped"); }
        ;;
    test_aead)
        # every required engine went through the EVP differential
        for e in ${AEAD_ENGINES//,/ }; do
            grep -q "^$e: [0-9]* lengths up to [0-9]* bytes agree with EVP" <<<"$out" ||
                { ok=0; why+=("test_aead: GCM engine $e not checked against EVP"); }
        done
        ;;
    test_xts_residue)
        grep -q "^residue checked on [1-9].*stack: scanned" <<<"$out" ||
            { ok=0; why+=("test_xts_residue: XTS residue not checked with a stack scan"); }
        for e in ${AEAD_ENGINES//,/ }; do
            grep -q "^gcm $e: residue checked.*stack: scanned" <<<"$out" ||
                { ok=0; why+=("test_xts_residue: GCM $e residue not checked with a stack scan"); }
        done
        ;;
    esac
    # In the GCM programs nothing may be skipped: the guest has every engine.
    if [[ $prog != test_xts ]]; then
        [[ -n $skipped && $skipped != 0 ]] && { ok=0; why+=("$prog: $skipped test(s) skipped"); }
        grep -q "not runnable on this CPU" <<<"$out" && { ok=0; why+=("$prog: an engine was skipped"); }
    fi
done
log "total $(($(date +%s) - T0))s; serial log $SERIAL"
SUMMARY="on $CPU_MODEL ($LINK): $(IFS=';'; echo "${COUNTS[*]}" | sed 's/;/; /g'); XTS ${IMPLS:-all}, GCM $AEAD_ENGINES${AEAD_MAX_LEN:+ up to $AEAD_MAX_LEN B}; bochs ${BT}s"
if ((ok)); then
    echo "AVX512EMU RESULT: PASS ($SUMMARY)"
    exit 0
fi
echo "AVX512EMU RESULT: FAIL: $(IFS=';'; echo "${why[*]}") -- $SUMMARY"
exit 1
