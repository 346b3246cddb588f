#!/usr/bin/env bash
# tests/cli.test.sh BUILD_DIR SOURCE_DIR - drives the real vmenc binary:
# every verb, --json parsed, the exit code of each failure class, a bad
# configuration, a locked VM, a denied user, tampering with the audit log.
set -uo pipefail
BUILD=${1:?build dir}
SRC=${2:?source dir}
VMENC="$BUILD/vmenc"
T=$(mktemp -d /tmp/vmenc-cli-test-XXXXXX)
trap 'rm -rf "$T"' EXIT
W="$T/ws"
export VMENC_WORKSPACE="$W" VMENC_USER=alice VMENC_NO_SYNC=1
unset VMENC_PASSPHRASE
echo "test passphrase" > "$T/pass"
PF=(--passphrase-file "$T/pass")
fails=0
n=0

ok()   { n=$((n+1)); echo "ok $n - $*"; }
bad()  { n=$((n+1)); fails=$((fails+1)); echo "not ok $n - $*"; }

# expect RC DESCRIPTION -- command...: runs the command, checks its exit code.
expect() {
    local want=$1 what=$2; shift 3
    "$@" >"$T/out" 2>"$T/err"
    local rc=$?
    if [[ $rc == "$want" ]]; then ok "$what (exit $rc)"; else
        bad "$what: exit $rc, wanted $want"; sed 's/^/    stderr: /' "$T/err" | head -5; fi
}
# json EXPR DESCRIPTION: evaluates a Python expression on the JSON in $T/out (as j).
json() {
    if /usr/bin/python3 -c "import json,sys; j=json.loads(open(sys.argv[1]).read().splitlines()[-1]); sys.exit(0 if ($1) else 1)" "$T/out" 2>"$T/jerr"; then
        ok "$2"; else bad "$2 (json: $(head -c 300 "$T/out"))"; fi
}

# ---- help, version, usage ------------------------------------------------------------
expect 0 "--version" -- "$VMENC" --version
grep -q "vmenc 0" "$T/out" && ok "version printed" || bad "version printed"
expect 0 "--help" -- "$VMENC" --help
for noun in init kms vm disk file policy audit bench demo; do
    expect 0 "$noun --help" -- "$VMENC" $noun --help
done
for v in "kms add" "vm create" "vm rekey" "disk read" "policy check" "audit verify"; do
    expect 0 "$v --help" -- "$VMENC" $v --help
done
expect 2 "no command" -- "$VMENC"
expect 2 "unknown command" -- "$VMENC" frobnicate
expect 2 "unknown verb" -- "$VMENC" vm frobnicate
expect 2 "unknown option" -- "$VMENC" "${PF[@]}" vm list --frob
expect 2 "usage error in JSON" -- "$VMENC" --json vm create
json "j['ok'] is False and j['error']['exit'] == 2" "usage error as a JSON object"

# ---- init --------------------------------------------------------------------------------
expect 2 "init without --admin" -- "$VMENC" "${PF[@]}" init "$W"
expect 0 "init" -- "$VMENC" "${PF[@]}" --json init "$W" --admin alice --host esx01 --kdf-memory 8192 --kdf-passes 1
json "j['ok'] and j['admin'] == 'alice' and j['host'] == 'esx01'" "init JSON"
expect 2 "init into a non-empty directory" -- "$VMENC" "${PF[@]}" init "$W" --admin alice
grep -q "test passphrase" "$W/vmenc.conf" "$W/policy.json" && bad "passphrase stored" || ok "passphrase stored nowhere"
expect 4 "wrong passphrase" -- env VMENC_PASSPHRASE=nope "$VMENC" vm list
expect 2 "no passphrase, no terminal" -- setsid "$VMENC" vm list </dev/null
export VMENC_PASSPHRASE="test passphrase"

# ---- policy -------------------------------------------------------------------------------
expect 0 "policy user bob" -- "$VMENC" --json policy user bob
json "j['ok'] and j['target'] == 'bob'" "policy user JSON"
expect 0 "policy grant bob NoCryptoAdmin" -- "$VMENC" policy grant bob NoCryptoAdmin
expect 0 "policy user carol" -- "$VMENC" policy user carol
expect 0 "policy role" -- "$VMENC" policy role Viewer System.Read System.View
expect 2 "policy role with an unknown privilege" -- "$VMENC" policy role X Not.A.Privilege
expect 0 "policy grant carol Viewer" -- "$VMENC" policy grant carol Viewer
expect 0 "policy revoke carol" -- "$VMENC" policy revoke carol
expect 6 "policy revoke with no permission" -- "$VMENC" policy revoke carol
expect 0 "policy group" -- "$VMENC" policy group ops --member carol
expect 3 "carol (no permission) may not grant" -- "$VMENC" --user carol policy grant carol Admin
expect 0 "policy show" -- "$VMENC" --json policy show
json "j['policy']['version'] == 1 and any(u['name'] == 'bob' for u in j['policy']['users'])" "policy show JSON"
expect 0 "policy host-mode" -- "$VMENC" --json policy host-mode
json "j['crypto_state'] == 'incapable' and j['host'] == 'esx01'" "host starts incapable"
expect 0 "policy storage-policy" -- "$VMENC" policy storage-policy "Home Only" --encrypt --classes vm_home --provider native
expect 3 "bob may not change storage policies" -- "$VMENC" --user bob policy storage-policy X

# ---- vm -------------------------------------------------------------------------------------
expect 0 "vm create plain" -- "$VMENC" --json vm create plain1 --disk 2M
json "j['ok'] and not j['encrypted'] and j['disks'][0]['capacity'] == 2097152" "plain VM JSON"
expect 3 "bob may not create an encrypted VM" -- "$VMENC" --user bob vm create enc0 --policy "VM Encryption Policy"
expect 0 "vm create encrypted" -- "$VMENC" --json vm create enc1 --policy "VM Encryption Policy" --disk 4M --disk 1M
json "j['encrypted'] and len(j['disks']) == 2 and all(d['state'] == 'encrypted' for d in j['disks'])" "encrypted VM JSON"
expect 0 "host switched to encryption mode" -- "$VMENC" --json policy host-mode
json "j['crypto_state'] == 'safe'" "host is safe"
expect 0 "vm list" -- "$VMENC" --json vm list
json "[v['name'] for v in j['vms']] == ['enc1', 'plain1']" "vm list JSON"
expect 0 "vm status" -- "$VMENC" --json vm status enc1
json "j['locked'] is False and j['kek_id'] != '' and j['missing_keys'] == []" "vm status JSON"
expect 6 "vm status of a missing VM" -- "$VMENC" vm status nosuch
expect 2 "vm status with a bad name" -- "$VMENC" vm status ../x

# ---- disk and file ---------------------------------------------------------------------------
head -c 1048576 /dev/urandom > "$T/data"
expect 0 "disk write" -- bash -c "\"$VMENC\" --json disk write enc1 scsi0:0 --offset 4096 < \"$T/data\""
json "j['bytes'] == 1048576 and j['offset'] == 4096" "disk write JSON"
expect 0 "disk read" -- bash -c "\"$VMENC\" disk read enc1 scsi0:0 --offset 4096 --length 1M > \"$T/back\""
cmp -s "$T/data" "$T/back" && ok "disk read returns what was written" || bad "disk read returns what was written"
if grep -c . "$W/datastore/enc1/enc1_0-flat.vmdk" >/dev/null 2>&1 && cmp -s <(tail -c +4097 "$W/datastore/enc1/enc1_0-flat.vmdk" | head -c 1048576) "$T/data"; then
    bad "the extent holds ciphertext"; else ok "the extent holds ciphertext"; fi
expect 3 "bob may not export the disk" -- "$VMENC" --user bob disk read enc1 scsi0:0 --length 512
expect 2 "disk read past the end" -- "$VMENC" disk read enc1 scsi0:0 --offset 5M
expect 6 "disk read of a missing disk" -- "$VMENC" disk read enc1 scsi3:9
printf 'nvram contents' > "$T/nv"
expect 0 "file write nvram" -- bash -c "\"$VMENC\" --json file write enc1 nvram --truncate < \"$T/nv\""
json "j['bytes'] == 14 and j['class'] == 'nvram'" "file write JSON"
expect 0 "file read nvram" -- "$VMENC" file read enc1 nvram
[[ $(cat "$T/out") == "nvram contents" ]] && ok "file read returns the NVRAM" || bad "file read returns the NVRAM"
expect 2 "file read of an unknown class" -- "$VMENC" file read enc1 bogus

# ---- vm operations ------------------------------------------------------------------------------
expect 0 "vm add-disk" -- "$VMENC" --json vm add-disk enc1 --size 1M
json "j['disk'] == 'scsi0:2'" "add-disk JSON"
expect 0 "vm remove-disk" -- "$VMENC" vm remove-disk enc1 scsi0:2 --delete-files
expect 0 "vm rekey" -- "$VMENC" --json vm rekey enc1
json "j['mode'] == 'shallow' and j['old_kek_id'] != j['kek_id']" "rekey JSON: a new KEK"
expect 3 "bob may not rekey" -- "$VMENC" --user bob vm rekey enc1
expect 0 "disk read after rekey" -- bash -c "\"$VMENC\" disk read enc1 scsi0:0 --offset 4096 --length 1M > \"$T/back\""
cmp -s "$T/data" "$T/back" && ok "data intact after the rekey" || bad "data intact after the rekey"
expect 0 "vm clone" -- "$VMENC" --json vm clone enc1 enc2
json "j['encrypted'] and j['source'] == 'enc1' and j['name'] == 'enc2'" "clone JSON"
expect 0 "disk read of the clone" -- bash -c "\"$VMENC\" disk read enc2 scsi0:0 --offset 4096 --length 1M > \"$T/back\""
cmp -s "$T/data" "$T/back" && ok "the clone holds the data" || bad "the clone holds the data"
expect 3 "bob may not decrypt" -- "$VMENC" --user bob vm decrypt enc1
expect 0 "vm encrypt (empty disk)" -- "$VMENC" --json vm encrypt plain1
json "j['encrypted'] and j['storage_policy'] == 'VM Encryption Policy'" "encrypt JSON"
expect 0 "vm decrypt (empty disk)" -- "$VMENC" --json vm decrypt plain1
json "not j['encrypted']" "decrypt JSON"
expect 2 "vm encrypt of a disk with data needs the conversion engine" -- "$VMENC" vm decrypt enc2
expect 0 "vm register (already in the inventory)" -- "$VMENC" --json vm register enc1
json "j['name'] == 'enc1'" "register JSON"
expect 0 "bob powers on (unlock = open)" -- "$VMENC" --user bob vm unlock enc1

# ---- kms -----------------------------------------------------------------------------------------
expect 0 "kms list" -- "$VMENC" --json kms list
json "j['providers'][0]['alias'] == 'native' and j['providers'][0]['audit_key'] and j['providers'][0]['embedded']" "kms list JSON"
expect 3 "bob may not list key servers" -- "$VMENC" --user bob kms list
expect 0 "kms health" -- "$VMENC" --json kms health
json "j['ok'] and j['providers'][0]['healthy']" "kms health JSON"
expect 0 "kms create-key" -- "$VMENC" --json kms create-key native --name extra
json "len(j['key_id']) == 36" "create-key JSON"
expect 6 "kms create-key in an unknown provider" -- "$VMENC" kms create-key nosuch
echo "backup pass" > "$T/bpass"
expect 0 "kms backup" -- "$VMENC" kms backup native "$T/native.bak" --backup-passphrase-file "$T/bpass"
expect 2 "kms backup never overwrites" -- "$VMENC" kms backup native "$T/native.bak" --backup-passphrase-file "$T/bpass"
expect 0 "kms restore" -- "$VMENC" --json kms restore native "$T/native.bak" --backup-passphrase-file "$T/bpass"
json "j['keys_added'] == 0 and j['mode'] == 'merge'" "restore JSON"
echo "wrong" > "$T/wpass"
expect 4 "kms restore with a wrong backup passphrase" -- "$VMENC" kms restore native "$T/native.bak" --backup-passphrase-file "$T/wpass"
expect 2 "kms remove of the audit key's provider" -- "$VMENC" kms remove native
expect 0 "kms add (second keystore)" -- "$VMENC" --json kms add kp2 --type file --endpoint kp2.vks --create --option kdf_ops=1 --option kdf_mem_kib=8192
json "j['alias'] == 'kp2'" "kms add JSON"
expect 2 "kms add of a taken alias" -- "$VMENC" kms add kp2 --type file --endpoint x.vks
expect 0 "kms add (unreachable KMIP)" -- "$VMENC" kms add corp --type kmip --endpoint 127.0.0.1:1
expect 5 "kms health of the unreachable KMIP" -- "$VMENC" kms health corp
expect 0 "kms remove" -- "$VMENC" kms remove corp
expect 6 "kms remove of an unknown provider" -- "$VMENC" kms remove corp

# ---- a locked VM ---------------------------------------------------------------------------------
expect 0 "storage policy on kp2" -- "$VMENC" policy storage-policy enc-kp2 --encrypt --provider kp2
expect 0 "VM under kp2" -- "$VMENC" vm create locked1 --policy enc-kp2 --disk 1M
mv "$W/kp2.vks" "$T/kp2.vks.away"
expect 0 "kms list with kp2 gone" -- "$VMENC" --json kms list
json "[p for p in j['providers'] if p['alias'] == 'kp2'][0]['endpoints_loaded'] == 0" "kms list reports the missing keystore"
expect 5 "vm status of a locked VM" -- "$VMENC" --json vm status locked1
json "j['locked'] and j['missing_keys'][0]['key_provider'] == 'kp2'" "locked VM JSON names the missing key"
expect 5 "vm unlock while the keystore is away" -- "$VMENC" vm unlock locked1
expect 5 "disk read of a locked VM" -- "$VMENC" disk read locked1 scsi0:0 --length 512
mv "$T/kp2.vks.away" "$W/kp2.vks"
expect 0 "vm unlock once the keystore is back" -- "$VMENC" --json vm unlock locked1
json "j['ok'] and not j['locked']" "unlocked JSON"

# ---- audit ----------------------------------------------------------------------------------------
expect 0 "audit verify" -- "$VMENC" --json audit verify
json "j['intact'] and j['records'] > 50" "audit verify JSON"
expect 0 "audit show" -- "$VMENC" --json audit show --limit 5
[[ $(wc -l < "$T/out") == 5 ]] && ok "audit show --limit 5 prints 5 records" || bad "audit show --limit"
expect 0 "audit tail" -- "$VMENC" audit tail -n 3
grep -q '"principal":"bob"' "$W/audit.log" && grep -q '"outcome":"denied"' "$W/audit.log" && ok "denials are audited" || bad "denials are audited"
cp "$W/audit.log" "$T/audit.orig"
sed -i '5s/"principal":"alice"/"principal":"mallory"/' "$W/audit.log"
expect 4 "audit verify finds an edit" -- "$VMENC" --json audit verify
json "j['intact'] is False and j['defect'] == 'edited'" "tamper JSON"
cp "$T/audit.orig" "$W/audit.log"
expect 0 "audit verify after restoring" -- "$VMENC" audit verify

# ---- a bad configuration -------------------------------------------------------------------------------
cp "$W/vmenc.conf" "$T/conf.orig"
sed -i 's/^folder = /fodler = /' "$W/vmenc.conf"
expect 8 "a misspelt key" -- "$VMENC" vm list
grep -q "vmenc.conf:10: unknown key 'fodler'" "$T/err" && ok "the error names file, line and reason" || { bad "file:line in the error"; cat "$T/err"; }
cp "$T/conf.orig" "$W/vmenc.conf"
sed -i 's/^version = "1"/version = "7"/' "$W/vmenc.conf"
expect 8 "an unknown version" -- "$VMENC" vm list
cp "$T/conf.orig" "$W/vmenc.conf"
printf '[kms "x"]\ntype = "file"\n' >> "$W/vmenc.conf"
expect 8 "a provider without endpoint" -- "$VMENC" vm list
cp "$T/conf.orig" "$W/vmenc.conf"
sed -i 's/^key_provider = "native"/key_provider = "nosuch"/' "$W/vmenc.conf"
expect 6 "an audit key provider with no section" -- "$VMENC" --json vm list
json "j['error']['status'] == 'VMENC_E_NOT_FOUND'" "config error as JSON"
cp "$T/conf.orig" "$W/vmenc.conf"
expect 6 "no workspace" -- "$VMENC" --workspace "$T/nothing" vm list
expect 0 "workspace fine again" -- "$VMENC" vm list

# ---- bench and demo ---------------------------------------------------------------------------------------
expect 0 "bench" -- "$VMENC" --json bench --size 4 --seconds 0.05
json "j['results'][-1]['backend'] == 'openssl' and all(r['enc_gbps'] > 0 for r in j['results'])" "bench JSON"
expect 0 "demo" -- "$VMENC" --json demo --disk-mib 16
json "j['ok'] and j['failures'] == 0 and j['checks'] >= 15" "demo JSON summary"

echo "1..$n"
if ((fails)); then echo "$fails of $n failed"; exit 1; fi
echo "all $n passed"
