#!/usr/bin/env bash
# tests/cli_newuser.test.sh BUILD_DIR SOURCE_DIR - a new operator's day, done
# with docs/cli.md alone (issue 24 acceptance): a workspace, a second key
# provider, a VM encrypted from birth, a plain VM holding data encrypted in
# place, status and info, shallow and deep rekey, a clone, a No
# cryptography administrator, the audit log, a core dump, a migration to a
# second host (and the source's copy removed), and a delete with
# --destroy-keys after which a backup of the VM's home no longer decrypts.
# Each step's output is checked, through the vmenc binary only.
set -uo pipefail
BUILD=${1:?build dir}
SRC=${2:?source dir}
VMENC="$BUILD/vmenc"
T=$(mktemp -d /tmp/vmenc-newuser-XXXXXX)
trap 'rm -rf "$T"' EXIT
W="$T/esx01" W2="$T/esx02"
export VMENC_WORKSPACE="$W" VMENC_USER=alice VMENC_NO_SYNC=1
unset VMENC_PASSPHRASE
echo "correct horse battery" >"$T/pass"
fails=0 n=0
ok()  { n=$((n+1)); echo "ok $n - $*"; }
bad() { n=$((n+1)); fails=$((fails+1)); echo "not ok $n - $*"; }
# step RC DESCRIPTION -- ARGS...: vmenc --json --passphrase-file PASS ARGS (stdin a pipe)
step() {
    local want=$1 what=$2; shift 3
    "$VMENC" --json --passphrase-file "$T/pass" "$@" >"$T/out" 2>"$T/err" </dev/null
    local rc=$?
    if [[ $rc == "$want" ]]; then ok "$what (exit $rc)"; else
        bad "$what: exit $rc, wanted $want"; sed 's/^/    stderr: /' "$T/err" | head -4; fi
}
check() { # check PYTHON-EXPR DESCRIPTION: on the JSON result of the last step (as j)
    if /usr/bin/python3 -c "import json,sys; j=json.loads(open(sys.argv[1]).read().splitlines()[-1]); sys.exit(0 if ($1) else 1)" "$T/out" 2>/dev/null
    then ok "$2"; else bad "$2 (json: $(head -c 300 "$T/out"))"; fi
}
field() { /usr/bin/python3 -c "import json,sys; j=json.loads(open(sys.argv[1]).read().splitlines()[-1]); print($1)" "$T/out"; }
V() { "$VMENC" --passphrase-file "$T/pass" "$@"; }

# 1. a workspace (docs/cli.md "vmenc init"), a second key provider ("vmenc kms")
step 0 "init esx01" -- init "$W" --admin alice --host esx01 --kdf-memory 8192 --kdf-passes 1
check "j['ok'] and j['admin']=='alice' and j['key_provider']=='native'" "the workspace names its admin and provider"
step 0 "kms add a second file keystore" -- kms add vault --type file --endpoint "$T/vault.vks" --create --option kdf_ops=1 --option kdf_mem_kib=8192
step 0 "kms list" -- kms list
check "sorted(p['alias'] for p in j['providers'])==['native','vault'] and all(p['load_status']=='VMENC_OK' for p in j['providers'])" "both providers loaded"

# 2. a VM encrypted from birth; a plain VM holding data, then encrypted in place
step 0 "vm create web --policy 'VM Encryption Policy'" -- vm create web --policy "VM Encryption Policy" --disk 4M
check "j['encrypted'] and j['disks'][0]['state']=='encrypted' and j['kek_id']" "web is encrypted from birth"
step 0 "vm create db (plain) --disk 4M --disk 1M" -- vm create db --disk 4M --disk 1M
check "not j['encrypted'] and len(j['disks'])==2" "db is plain with two disks"
head -c 3M /dev/urandom >"$T/data"
V disk write db scsi0:0 <"$T/data" >/dev/null 2>&1 && ok "data written to db" || bad "disk write db"
printf 'nvram of db' | V file write db nvram >/dev/null 2>&1 && ok "NVRAM written to db" || bad "file write db nvram"
cmp -s <(head -c 3M "$W/datastore/db/db_0-flat.vmdk") "$T/data" &&
    ok "db's data is in clear on the datastore (before)" || bad "db's extent is not the data before encryption"
step 0 "vm encrypt db --dry-run" -- vm encrypt db --dry-run
check "j['dry_run'] and j['bytes_to_convert']==5*1024*1024" "the plan: both disks, 5 MiB"
step 0 "vm encrypt db" -- vm encrypt db
check "j['encrypted'] and all(d['state']=='encrypted' for d in j['disks']) and any(x['disk']=='scsi0:0' for x in j['conversions'])" "db encrypted in place"
python3 - "$W/datastore/db" "$T/data" <<'EOF' && ok "no 4 KiB block of the data is left in clear on the datastore" || bad "plaintext left on the datastore"
import os, sys
d, data = sys.argv[1], open(sys.argv[2], 'rb').read()
blocks = {data[i:i + 4096] for i in range(0, len(data), 4096)}
for f in os.listdir(d):
    b = open(os.path.join(d, f), 'rb').read()
    if any(b[i:i + 4096] in blocks for i in range(0, len(b) - 4095, 512)):
        sys.exit(1)
EOF

# 3. status and info
step 0 "vm status db" -- vm status db
check "j['encrypted'] and not j['locked'] and j['key_provider']=='native'" "status: encrypted, unlocked, provider native"
step 0 "vm info db" -- vm info db
check "j['vm_key']['cipher']=='aes-256-gcm' and all(d['cipher']=='aes-xts-plain64' and d['sector_size']==512 for d in j['disks'])" "info: ciphers and sector sizes"
kek0=$(field "j['vm_key']['kek_id']")
gen0=$(field "j['vm_key']['key_generation']")

# 4. shallow rekey (to the second provider), deep rekey
step 0 "vm rekey db --provider vault" -- vm rekey db --provider vault
check "j['mode']=='shallow' and j['old_kek_id']=='$kek0' and j['kek_id']!='$kek0' and j['key_provider']=='vault'" "shallow: a new KEK in vault"
step 0 "vm rekey --deep db" -- vm rekey --deep db
check "j['mode']=='deep' and j['old_kek_id']==j['kek_id'] and len(j['conversions'])==2" "deep: same KEK, both disks re-encrypted"
V disk read db scsi0:0 --length 3M 2>/dev/null | cmp -s - "$T/data" && ok "db's data intact after both rekeys" || bad "db's data after rekeys"
[[ $(V file read db nvram 2>/dev/null) == "nvram of db" ]] && ok "db's NVRAM intact" || bad "db's NVRAM"
step 0 "vm info db after both rekeys" -- vm info db
check "j['vm_key']['key_generation'] == $gen0 + 2" "info: the key generation went up by one per rekey"

# 5. a clone
step 0 "vm clone db db2" -- vm clone db db2
check "j['encrypted'] and j['name']=='db2' and j['source']=='db'" "db2 is an encrypted clone"
V disk read db2 scsi0:0 --length 3M 2>/dev/null | cmp -s - "$T/data" && ok "db2 holds db's data" || bad "db2's data"

# 6. a No cryptography administrator
step 0 "policy user bob" -- policy user bob
step 0 "policy grant bob NoCryptoAdmin" -- policy grant bob NoCryptoAdmin
step 0 "policy roles" -- policy roles
check "any(r['name']=='NoCryptoAdmin' and r['predefined'] for r in j['roles'])" "NoCryptoAdmin is a predefined role"
step 0 "bob: vm status web (a power-on)" -- --user bob vm status web
step 3 "bob: vm decrypt web is denied" -- --user bob vm decrypt web
check "j['error']['status']=='VMENC_E_DENIED' and 'Cryptographer' in j['error']['message']" "the denial names the Cryptographer privilege"
V --user bob disk read web scsi0:0 --length 4096 >"$T/out" 2>"$T/err"; rc=$?
[[ $rc == 3 && ! -s $T/out ]] && ok "bob: disk read web is denied (an export), nothing printed" || bad "bob disk read: exit $rc"

# 7. the audit log
step 0 "audit verify" -- audit verify
check "j['intact'] and j['records'] > 10" "the chain is intact"
V audit tail -n 50 >"$T/tail" 2>/dev/null
grep -q '"principal":"bob"' "$T/tail" && grep -q '"outcome":"denied"' "$T/tail" && ok "bob's denials are in the audit log" ||
    bad "no denial of bob in the audit tail"

# 8. a core dump
step 0 "coredump set-host-key" -- coredump set-host-key
head -c 200000 /dev/urandom >"$T/dump"
"$VMENC" --json --passphrase-file "$T/pass" coredump write --input "$T/dump" --source web >"$T/out" 2>"$T/err" &&
    ok "coredump write" || bad "coredump write: $(cat "$T/err")"
dump=$(field "j['id']")
V coredump read "$dump" 2>/dev/null | cmp -s - "$T/dump" && ok "coredump read returns the dump" || bad "coredump read"
V --user bob coredump read "$dump" >"$T/out" 2>/dev/null; rc=$?
[[ $rc == 3 && ! -s $T/out ]] && ok "bob may not read the dump" || bad "bob coredump read: exit $rc"

# 9. migrate web to esx02, then remove it here
step 0 "init esx02" -- --workspace "$W2" init "$W2" --admin alice --host esx02 --key-provider local2 --kdf-memory 8192 --kdf-passes 1
step 0 "esx02 reaches the same key provider" -- --workspace "$W2" kms add native --type file --endpoint "$W/keystore.vks"
step 0 "policy host esx02" -- policy host esx02
V disk write web scsi0:0 <"$T/data" >/dev/null 2>&1
if V --json migrate send web --to esx02 --handover "$T/ho" --ready "$T/rdy" 2>"$T/tx" |
    V --workspace "$W2" --json migrate receive web --handover "$T/ho" --ready "$T/rdy" >"$T/out" 2>"$T/err"; then
    ok "migrate send | migrate receive"
else bad "migration: $(head -c 300 "$T/err") $(head -c 300 "$T/tx")"; fi
check "j['ok'] and j['encrypted'] and j['vm']['name']=='web' and not j['vm']['locked']" "web arrived on esx02, unlocked"
V --workspace "$W2" disk read web scsi0:0 --length 3M 2>/dev/null | cmp -s - "$T/data" && ok "web's data on esx02" || bad "web's data on esx02"
python3 -c "import json,sys; j=json.loads(open(sys.argv[1]).read().splitlines()[-1]); sys.exit(0 if j['ok'] and j['source'] == 'unregistered' else 1)" "$T/tx" \
    && ok "migrate send unregisters web on esx01 (the VM lives on esx02 now)" || bad "send JSON: $(tail -c 300 "$T/tx")"
step 0 "vm list on esx01" -- vm list
check "[v.get('registered', True) for v in j['vms'] if v['name']=='web'] in ([], [False])" "esx01 lists web as not registered"
step 6 "vm status web on esx01 says it is not registered here" -- vm status web
check "'not registered' in j['error']['message']" "... in so many words"

# 10. delete with --destroy-keys: a backup of the home made before no longer decrypts
step 0 "vm info db2" -- vm info db2
kek2=$(field "j['vm_key']['kek_id']")
cp -a "$W/datastore/db2" "$T/db2-backup"
step 2 "vm delete on a pipe without --yes: refused" -- vm delete db2 --destroy-keys
step 0 "vm delete db2 --destroy-keys --dry-run" -- vm delete db2 --destroy-keys --dry-run
check "j['dry_run'] and j['keys'] >= 1" "the plan names the keys"
step 0 "vm delete db2 --destroy-keys --yes" -- --yes vm delete db2 --destroy-keys
check "j['files_deleted'] and j['keys_destroyed'] >= 1 and j['kek_id']=='$kek2'" "db2's files deleted and its KEK destroyed"
[[ ! -e $W/datastore/db2 ]] && ok "db2's home is gone" || bad "db2's home is still there"
cp -a "$T/db2-backup" "$W/datastore/db2"
step 5 "the backup registers locked: its key is gone" -- vm register db2
check "j['vm']['locked'] if 'vm' in j else (j.get('locked') or j['ok'] is False)" "registered locked"
V disk read db2 scsi0:0 --length 4096 >/dev/null 2>&1 && bad "the backup's disk decrypts after crypto-shredding" ||
    ok "the backup's disk cannot be decrypted"
V disk read db scsi0:0 --length 3M 2>/dev/null | cmp -s - "$T/data" && ok "db (its own KEK) is untouched" || bad "db damaged by the delete of db2"
step 0 "audit verify at the end" -- audit verify
check "j['intact']" "the audit chain is intact at the end"

echo "1..$n"
if [[ $fails == 0 ]]; then echo "all $n passed"; exit 0; fi
echo "$fails of $n failed"; exit 1
