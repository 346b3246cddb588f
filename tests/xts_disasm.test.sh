#!/usr/bin/env bash
# tests/xts_disasm.test.sh BUILD_DIR SOURCE_DIR - the XTS engine's "no key
# on the stack" rule (lib/xts/xts_body.h, docs/xts.md) checked on the object
# code, beside tests/test_xts_residue.c which checks it at run time:
#   - every sector and data-unit entry point of every SIMD backend calls
#     nothing (no out-of-line wipe: nothing was put where it needs one) and
#     zeroes all its vector registers right before it returns;
#   - vaes-avx512's one-sector entries (the per-I/O call) store no vector
#     register to the stack at all, and its multi-sector entries never load a
#     full vector back from the stack (no spilled round key or tweak; the
#     only stack data is the encrypted-tweak batch, read as broadcasts or
#     single 128-bit tweaks);
#   - no backend's one-sector entry moves a vector back from the stack (a
#     spill reload: the stack data they keep - tweak buffers - are read as
#     XOR memory operands), and vaes-avx2's store vectors to at most four
#     stack slots (the second half of a group's tweaks, parked for the last
#     round and wiped);
#   - the AES-256-GCM engines' data paths (gcm_vaes_avx512.c, gcm_vaes_avx2.c)
#     call nothing, zero all their vector registers before returning, and
#     keep no key, key power, product or AES state on the stack (see below).
# Needs objdump and an optimised, unsanitised build; exits 77 (skipped)
# otherwise.
set -euo pipefail
build=${1:?build dir}
cache="$build/CMakeCache.txt"
command -v objdump >/dev/null || { echo "objdump not found: skipped"; exit 77; }
if grep -qE '^CMAKE_BUILD_TYPE:[A-Z]+=(Debug)?$' "$cache" ||
   grep -qE '^VMENC_(SANITIZE|TSAN|FUZZ):BOOL=ON' "$cache"; then
    echo "unoptimised or instrumented build: the code shape is not the shipped one; skipped"
    exit 77
fi
objdir="$build/CMakeFiles/vmenc_obj.dir/lib/xts"
exec python3 - "$objdir" <<'PY'
import re, subprocess, sys

objdir = sys.argv[1]
fails = []
checked = 0

def functions(obj):
    out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", obj], check=True,
                         capture_output=True, text=True).stdout
    funcs, name = {}, None
    for line in out.splitlines():
        m = re.match(r"^[0-9a-f]+ <(.+)>:$", line)
        if m:
            name = m.group(1)
            funcs[name] = []
        elif name and re.match(r"^\s+[0-9a-f]+:\t", line):
            funcs[name].append(line.split("\t", 1)[1].strip())
    return funcs

STACK = r"\((%rsp|%rbp)(,[^)]*)?\)"
VSTORE = re.compile(r"^v?mov\S*\s+%[xyz]mm\d+," + r"[^,]*" + STACK + "$")
VLOAD_FULL = re.compile(r"^v?mov\S*\s+[^,]*" + STACK + r",%[yz]mm\d+$")
VLOAD_ANY = re.compile(r"^v?mov\S*\s+[^,]*" + STACK + r",%[xyz]mm\d+$")
VSTORE_SLOT = re.compile(r"^v?mov\S*\s+%[xyz]mm\d+,([^,]*" + STACK + ")$")
CLEAR = re.compile(r"^v?pxor[dq]?\s+%xmm(\d+),%xmm\1(,%xmm\1)?$")

for backend, nregs in (("vaes_avx512", 32), ("vaes_avx2", 16), ("aesni", 16)):
    funcs = functions(f"{objdir}/{backend}.c.o")
    entries = [f for f in funcs if re.fullmatch(r"xb_(sectors_[ed](10|14)_[1n]|unit_[ed](10|14))", f)]
    if len(entries) != 12:
        fails.append(f"{backend}: expected 12 entry points, found {sorted(entries)}")
        continue
    for f in entries:
        ins = funcs[f]
        checked += 1
        calls = [i for i in ins if i.startswith("call")]
        if calls:
            fails.append(f"{backend} {f}: calls out of line: {calls[:3]}")
        # the registers zeroed just before returning
        rets = [k for k, i in enumerate(ins) if i.startswith("ret")]
        for k in rets:
            window = ins[max(0, k - nregs - 12):k]
            cleared = {int(m.group(1)) for m in (CLEAR.match(i) for i in window) if m}
            if cleared != set(range(nregs)):
                fails.append(f"{backend} {f}: returns without zeroing vector registers "
                             f"{sorted(set(range(nregs)) - cleared)}")
        if f.endswith("_1"):
            ld = [i for i in ins if VLOAD_ANY.match(i)]
            if ld:
                fails.append(f"{backend} {f}: reloads vectors from the stack (spills): {ld[:4]}")
        if backend == "vaes_avx2" and f.endswith("_1"):
            slots = {m.group(1) for m in (VSTORE_SLOT.match(i) for i in ins) if m}
            if len(slots) > 4:
                fails.append(f"{backend} {f}: stores vectors to {len(slots)} stack slots "
                             f"(the parked tweaks are 4): {sorted(slots)[:8]}")
        if backend != "vaes_avx512":
            continue
        if f.endswith("_1"):
            st = [i for i in ins if VSTORE.match(i)]
            if st:
                fails.append(f"{backend} {f}: one-sector entry stores vectors to the stack: {st[:4]}")
        else:
            ld = [i for i in ins if VLOAD_FULL.match(i)]
            if ld:
                fails.append(f"{backend} {f}: reloads full vectors from the stack (spills): {ld[:4]}")

# The AES-256-GCM engines: their data path calls nothing and zeroes every
# vector register it may use (32 with AVX-512, 16 without) before every
# return. gcm_vaes_avx512.c moves no vector to or from the stack but one xmm
# slot (J0, the public nonce block, kept for the tag; E(K, J0) itself is
# computed at the end, in registers). gcm_vaes_avx2.c has only 16 registers:
# in its 16-block loop (from the first to the last 256-bit AES instruction)
# it stores no vector to the stack and loads no 256-bit one from it (AES
# states, round keys, key powers and products stay in registers; only
# 128-bit public constants are read back), and in all stores to at most 4
# slots (the public constants, J0).
GCM_LOOP_AES = re.compile(r"^vaesenc(last)?\s+\S*%ymm")
for obj, f, nregs in (("gcm_vaes_avx512", "vmenc_gcm_vaes_avx512_crypt", 32),
                      ("gcm_vaes_avx2", "vmenc_gcm_vaes_avx2_crypt", 16)):
    ins = functions(f"{objdir}/{obj}.c.o").get(f)
    if ins is None:
        fails.append(f"gcm: {f} not found")
        continue
    checked += 1
    calls = [i for i in ins if i.startswith("call")]
    if calls:
        fails.append(f"gcm {f}: calls out of line: {calls[:3]}")
    for k in [k for k, i in enumerate(ins) if i.startswith("ret")]:
        window = ins[max(0, k - nregs - 12):k]
        cleared = {int(m.group(1)) for m in (CLEAR.match(i) for i in window) if m}
        if cleared != set(range(nregs)):
            fails.append(f"gcm {f}: returns without zeroing vector registers {sorted(set(range(nregs)) - cleared)}")
    slots = {m.group(1) for m in (VSTORE_SLOT.match(i) for i in ins) if m}
    if nregs == 32:
        if len(slots) > 1 or any(re.search(r"%[yz]mm", i) for i in ins if VSTORE.match(i) or VLOAD_ANY.match(i)):
            fails.append(f"gcm {f}: vectors to or from the stack beyond the J0 slot: {sorted(slots)[:6]}")
        continue
    loop = [k for k, i in enumerate(ins) if GCM_LOOP_AES.match(i)]
    if not loop:
        fails.append(f"gcm {f}: no 256-bit AES loop found")
        continue
    body = ins[loop[0]:loop[-1] + 1]
    bad = [i for i in body if VSTORE.match(i) or VLOAD_FULL.match(i) or
           (re.search(STACK, i) and re.match(r"^v(aes|pclmul|pxor)", i))]
    if bad:
        fails.append(f"gcm {f}: the 16-block loop moves vectors to or from the stack: {bad[:4]}")
    if len(slots) > 4:
        fails.append(f"gcm {f}: vectors stored to {len(slots)} stack slots (at most 4 public ones): {sorted(slots)[:8]}")

for m in fails:
    print("FAIL:", m)
print(f"xts_disasm: {checked} entry points checked, {len(fails)} failures")
sys.exit(1 if fails else 0)
PY
