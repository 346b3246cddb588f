#!/usr/bin/env bash
# tests/policy_seal.test.sh BUILD_DIR SOURCE_DIR - the sealed policy document
# through the real vmenc binary (docs/workspace.md): changes are durable
# with no save step; a byte changed in policy.json, a policy.json from
# another workspace or a plain JSON make every command fail with exit 4 and
# a message naming the file and the recovery; `vmenc policy reseal` is
# refused (exit 3, audited) for a user who is not an administrator of the
# document and restores the workspace for one who is (audited with both
# hashes).
set -uo pipefail
BUILD=${1:?build dir}
VMENC="$BUILD/vmenc"
T=$(mktemp -d /tmp/vmenc-seal-test-XXXXXX)
trap 'rm -rf "$T"' EXIT
W="$T/ws"
export VMENC_WORKSPACE="$W" VMENC_USER=alice VMENC_NO_SYNC=1 VMENC_PASSPHRASE="seal test passphrase"
fails=0
n=0
ok()  { n=$((n+1)); echo "ok $n - $*"; }
bad() { n=$((n+1)); fails=$((fails+1)); echo "not ok $n - $*"; }
expect() {
    local want=$1 what=$2; shift 3
    "$@" >"$T/out" 2>"$T/err"
    local rc=$?
    if [[ $rc == "$want" ]]; then ok "$what (exit $rc)"; else
        bad "$what: exit $rc, wanted $want"; sed 's/^/    stderr: /' "$T/err" | head -5; fi
}
json() {
    if /usr/bin/python3 -c "import json,sys; j=json.loads(open(sys.argv[1]).read().splitlines()[-1]); sys.exit(0 if ($1) else 1)" "$T/out" 2>/dev/null; then
        ok "$2"; else bad "$2 (json: $(head -c 300 "$T/out"))"; fi
}
refused() { # refused DESCRIPTION: the last command failed with the seal's message
    grep -q "policy.json" "$T/err" && grep -q "vmenc policy reseal" "$T/err" && grep -q "VMENC_E_AUTH" "$T/err" &&
        ok "$1: the message names policy.json and the recovery" || { bad "$1: message"; head -3 "$T/err"; }
}

expect 0 "init" -- "$VMENC" init "$W" --admin alice --host esx01 --kdf-memory 8192 --kdf-passes 1
expect 0 "init a second workspace" -- "$VMENC" init "$T/other" --admin alice --host esx01 --kdf-memory 8192 --kdf-passes 1
tail -n 1 "$W/policy.json" | grep -Eq '^#vmenc-seal v1 generation=1 mac=[0-9a-f]{64}$' && ok "created sealed" ||
    bad "created sealed: $(tail -n 1 "$W/policy.json")"

# Durable with no save step: each command is its own process.
expect 0 "policy user bob" -- "$VMENC" policy user bob
expect 0 "grant bob NoCryptoAdmin" -- "$VMENC" policy grant bob NoCryptoAdmin
expect 0 "vm create" -- "$VMENC" vm create web01 --disk 1M
expect 0 "policy show" -- "$VMENC" --json policy show
json "any(p['principal'] == 'bob' and p['role'] == 'NoCryptoAdmin' for p in j['policy']['permissions'])" \
    "the grant survived the process"
json "any(o['name'] == 'web01' for o in j['policy']['inventory'])" "the VM is in the inventory"
expect 0 "policy show (human)" -- "$VMENC" policy show
/usr/bin/python3 -c "import json,sys; json.load(open(sys.argv[1]))" "$T/out" && ok "policy show prints plain JSON" ||
    bad "policy show prints plain JSON"
cp "$W/policy.json" "$T/good.json"

# A changed byte.
sed -i 's/"NoCryptoAdmin"/"Admin"/' "$W/policy.json"
expect 4 "bob made Admin by hand: refused" -- "$VMENC" --user bob vm list
refused "changed byte"
expect 4 "policy show refused too" -- "$VMENC" policy show
grep -q '"op":"policy.verify".*"status":-300' "$W/audit.log" && ok "refusal audited" || bad "refusal audited"

# A document from another workspace; a plain JSON.
cp "$T/other/policy.json" "$W/policy.json"
expect 4 "policy.json of another workspace" -- "$VMENC" vm list
refused "foreign document"
grep -v '^#vmenc-seal' "$T/good.json" > "$W/policy.json"
expect 4 "unsealed JSON" -- "$VMENC" vm list
refused "unsealed"
grep -q "not sealed" "$T/err" && ok "says it is not sealed" || bad "says it is not sealed"

# Re-seal: bob is not an administrator of the vouched document.
sed 's/"NoCryptoAdmin"/"ReadOnly"/' "$T/good.json" > "$W/policy.json"
before=$(sha256sum "$W/policy.json" | cut -d' ' -f1)
expect 3 "reseal by bob (not Admin)" -- "$VMENC" --user bob policy reseal
[[ $(sha256sum "$W/policy.json" | cut -d' ' -f1) == "$before" ]] && ok "nothing written" || bad "nothing written"
expect 4 "still refused" -- "$VMENC" vm list
expect 0 "reseal by alice" -- "$VMENC" --json --user alice policy reseal
json "j['ok'] and j['old_sha256'] == '$before' and j['previous_seal'] == 'invalid'" "reseal reports the old hash"
after=$(sha256sum "$W/policy.json" | cut -d' ' -f1)
json "j['new_sha256'] == '$after'" "reseal reports the new hash"
expect 0 "opens again" -- "$VMENC" --json policy show
json "any(p['principal'] == 'bob' and p['role'] == 'ReadOnly' for p in j['policy']['permissions'])" \
    "the vouched content is in force"
expect 0 "audit verify" -- "$VMENC" --json audit verify
json "j['ok'] and j['intact']" "audit chain intact"
grep -q '"principal":"bob","op":"policy.reseal".*"outcome":"denied"' "$W/audit.log" && ok "bob's reseal audited as denied" ||
    bad "bob's reseal audited"
grep -q "\"principal\":\"alice\",\"op\":\"policy.reseal\".*$before.*$after" "$W/audit.log" &&
    ok "alice's reseal audited with both hashes" || bad "alice's reseal audited"

echo "$((n - fails)) passed, $fails failed"
((fails == 0))
