#!/usr/bin/env bash
# tests/audit_anchor.test.sh BUILD_DIR SOURCE_DIR - the anchored audit log
# through the real vmenc binary (docs/audit.md "The sealed checkpoint"):
# a workspace's log cut short by N records, emptied, replaced by an older
# copy (alone, and then written to), a record edited, the checkpoint file
# tampered with or removed - each must make `vmenc audit verify` fail (exit
# 4) naming what the checkpoint sealed and what the log has; restoring the
# original files makes it pass again (verify never repairs anything, and a
# failed command never moves the checkpoint over a damaged log).
set -uo pipefail
BUILD=${1:?build dir}
SRC=${2:?source dir}
VMENC="$BUILD/vmenc"
T=$(mktemp -d /tmp/vmenc-anchor-test-XXXXXX)
trap 'rm -rf "$T"' EXIT
W="$T/ws"
export VMENC_WORKSPACE="$W" VMENC_USER=alice VMENC_NO_SYNC=1
echo "test passphrase" > "$T/pass"
export VMENC_PASSPHRASE="test passphrase"
fails=0
n=0
ok()   { n=$((n+1)); echo "ok $n - $*"; }
bad()  { n=$((n+1)); fails=$((fails+1)); echo "not ok $n - $*"; }
expect() {
    local want=$1 what=$2; shift 3
    "$@" >"$T/out" 2>"$T/err"
    local rc=$?
    if [[ $rc == "$want" ]]; then ok "$what (exit $rc)"; else
        bad "$what: exit $rc, wanted $want"; sed 's/^/    stdout: /' "$T/out" | head -3; sed 's/^/    stderr: /' "$T/err" | head -5; fi
}
json() {
    if /usr/bin/python3 -c "import json,sys; j=json.loads(open(sys.argv[1]).read().splitlines()[-1]); sys.exit(0 if ($1) else 1)" "$T/out" 2>"$T/jerr"; then
        ok "$2"; else bad "$2 (json: $(head -c 400 "$T/out"))"; fi
}
errsays() { grep -q -- "$1" "$T/err" && ok "$2" || bad "$2 (stderr: $(head -c 300 "$T/err"))"; }
CP="$W/audit.log.checkpoint"

expect 0 "init" -- "$VMENC" init "$W" --admin alice --host esx01 --kdf-memory 8192 --kdf-passes 1
[[ -f "$CP" ]] && ok "init seals a checkpoint" || bad "init seals a checkpoint"
for u in bob carol dave erin frank; do
    expect 0 "policy user $u" -- "$VMENC" policy user $u
done
expect 0 "audit verify, intact" -- "$VMENC" --json audit verify
json "j['intact'] and j['checkpoint']['state'] == 'ok' and j['checkpoint']['sealed_seq'] >= 6" "checkpoint ok in JSON"
cp "$W/audit.log" "$T/log.orig"
cp "$CP" "$T/cp.orig"
# The verify command sealed its own record when it closed: the checkpoint
# now seals the last line of the log.
last=$(wc -l < "$W/audit.log")
sealed=$last
restore() { cp "$T/log.orig" "$W/audit.log"; cp "$T/cp.orig" "$CP"; }

# ---- cut short by N records ----
# (`audit verify` audits itself before it verifies, so the log it checks
# has one record more than was left; cut by one, that record can end
# exactly where the sealed one did: then it is "diverged", also a failure.)
for N in 1 3 5; do
    head -n -$N "$T/log.orig" > "$W/audit.log"
    expect 4 "log cut by $N record(s) is detected" -- "$VMENC" --json audit verify
    if [[ $N == 1 ]]; then want="('cut', 'diverged')"; else want="('cut',)"; fi
    json "not j['intact'] and j['checkpoint']['state'] in $want and j['checkpoint']['log_last_seq'] == $((last - N + 1))" "cut by $N: JSON says cut, log ends at $((last - N + 1))"
    errsays "sealed record $sealed" "cut by $N: the error names the sealed sequence number"
    expect 4 "still detected on a second verify (no repair, checkpoint not moved)" -- "$VMENC" audit verify
    restore
done
expect 0 "verify passes again after restoring" -- "$VMENC" audit verify
cp "$W/audit.log" "$T/log.orig"; cp "$CP" "$T/cp.orig"
sealed=$(( $(wc -l < "$W/audit.log") ))

# ---- emptied ----
: > "$W/audit.log"
expect 4 "emptied log is detected" -- "$VMENC" --json audit verify
json "j['checkpoint']['state'] == 'cut' and j['checkpoint']['log_chain_differs']" "emptied: JSON says cut, another chain"
errsays "emptied" "emptied: the error says emptied"
rm -f "$W/audit.log"
expect 4 "removed log is detected" -- "$VMENC" audit verify
restore
expect 0 "verify passes after restoring the emptied log" -- "$VMENC" audit verify
cp "$W/audit.log" "$T/log.orig"; cp "$CP" "$T/cp.orig"

# ---- replaced by an older copy ----
cp "$W/audit.log" "$T/log.old"
for u in gina hank ivan; do "$VMENC" policy user $u >/dev/null 2>&1; done
cp "$W/audit.log" "$T/log.new"; cp "$CP" "$T/cp.new"
cp "$T/log.old" "$W/audit.log"
expect 4 "older copy of the log is detected" -- "$VMENC" --json audit verify
json "j['checkpoint']['state'] == 'cut'" "older copy: cut"
for u in jo kim lee mo ned; do "$VMENC" policy user $u >/dev/null 2>&1; done
expect 4 "older copy written to since is detected" -- "$VMENC" --json audit verify
json "j['checkpoint']['state'] == 'diverged'" "older copy written to: diverged"
errsays "diverged" "older copy written to: the error says diverged"
cp "$T/log.new" "$W/audit.log"; cp "$T/cp.new" "$CP"
expect 0 "verify passes with the newer log back" -- "$VMENC" audit verify
cp "$W/audit.log" "$T/log.orig"; cp "$CP" "$T/cp.orig"

# ---- a record edited ----
sed -i '3s/"principal":"alice"/"principal":"mallory"/' "$W/audit.log"
expect 4 "an edited record is detected" -- "$VMENC" --json audit verify
json "j['defect'] == 'edited'" "edited: defect edited"
restore

# ---- the checkpoint tampered with / removed ----
/usr/bin/python3 - "$CP" <<'PY'
import sys
p = sys.argv[1]; b = bytearray(open(p, 'rb').read()); b[20] ^= 1; open(p, 'wb').write(bytes(b))
PY
expect 4 "a tampered checkpoint is detected" -- "$VMENC" --json audit verify
json "j['checkpoint']['state'] == 'bad'" "tampered checkpoint: state bad"
errsays "checkpoint" "tampered checkpoint: the error names the checkpoint"
restore
rm -f "$CP"
expect 4 "a removed checkpoint is an error, not a pass" -- "$VMENC" --json audit verify
json "j['checkpoint']['state'] == 'missing'" "removed checkpoint: state missing"
expect 4 "and stays an error (no command recreates it)" -- "$VMENC" audit verify
restore
expect 0 "verify passes with the checkpoint back" -- "$VMENC" audit verify

# ---- adopting the first checkpoint (a workspace created before checkpoints) ----
# A workspace without a checkpoint fails verify with a message naming the
# verb; a principal without every privilege on the root is refused (and
# audited); the admin adopts; verify passes; adoption never replaces a
# checkpoint; a log cut after adoption fails verify.
expect 0 "policy user quinn" -- "$VMENC" policy user quinn
rm -f "$CP"
expect 4 "no checkpoint: verify fails" -- "$VMENC" audit verify
errsays "vmenc audit checkpoint --adopt" "no checkpoint: the error names the adopt verb"
VMENC_USER=quinn expect 3 "adopt by a non-admin is denied" -- "$VMENC" audit checkpoint --adopt
[[ ! -f "$CP" ]] && ok "denied adopt wrote nothing" || bad "denied adopt wrote a checkpoint"
grep -q '"op":"audit.checkpoint.adopt".*"outcome":"denied"' "$W/audit.log" && ok "the denial is audited" || bad "the denial is audited"
# a log that is not intact is not adopted
cp "$W/audit.log" "$T/log.pre"
sed -i '2s/"principal":"alice"/"principal":"mallory"/' "$W/audit.log"
expect 4 "adopt refuses an edited log" -- "$VMENC" audit checkpoint --adopt
[[ ! -f "$CP" ]] && ok "nothing sealed over an edited log" || bad "a checkpoint was sealed over an edited log"
errsays "not intact" "adopt on an edited log says why"
cp "$T/log.pre" "$W/audit.log"
expect 0 "adopt by the admin" -- "$VMENC" --json audit checkpoint --adopt
json "j['ok'] and j['sealed_seq'] >= 1 and 'trusted' in j['trust']" "adopt JSON: sealed_seq and the trust statement"
[[ -f "$CP" ]] && ok "adopt wrote the checkpoint" || bad "adopt wrote no checkpoint"
grep -q '"op":"audit.checkpoint.adopt".*"outcome":"success".*trusted on the hash chain alone' "$W/audit.log" \
    && ok "the adoption is audited with its trust statement" || bad "the adoption is audited"
expect 0 "verify passes after adoption" -- "$VMENC" --json audit verify
json "j['intact'] and j['checkpoint']['state'] == 'ok'" "after adoption: checkpoint ok"
expect 2 "adopt again is refused (never replaces a checkpoint)" -- "$VMENC" audit checkpoint --adopt
errsays "exists" "adopt again says a checkpoint exists"
expect 0 "policy user rhea" -- "$VMENC" policy user rhea
expect 0 "audit verify seals" -- "$VMENC" audit verify
cp "$W/audit.log" "$T/log.adopted"
head -n -2 "$T/log.adopted" > "$W/audit.log"
expect 4 "a log cut after adoption fails verify" -- "$VMENC" --json audit verify
json "j['checkpoint']['state'] in ('cut', 'diverged')" "cut after adoption: found by the adopted checkpoint"
cp "$T/log.adopted" "$W/audit.log"
expect 2 "audit checkpoint without --adopt is a usage error" -- "$VMENC" audit checkpoint

# ---- --cluster without cluster mode: a clear refusal, never a silent pass ----
expect 2 "audit show --cluster outside cluster mode" -- "$VMENC" audit show --cluster
errsays "not in cluster mode" "show --cluster says why"
expect 2 "audit verify --cluster outside cluster mode" -- "$VMENC" --json audit verify --cluster
json "not j['ok'] and j['error']['status'] == 'VMENC_E_UNSUPPORTED'" "verify --cluster: JSON error"
expect 2 "verify FILE --cluster is a usage error" -- "$VMENC" audit verify "$W/audit.log" --cluster

# ---- help ----
expect 0 "audit verify --help mentions the checkpoint" -- "$VMENC" audit verify --help
grep -q checkpoint "$T/out" && ok "help text" || bad "help text"

echo "1..$n"
exit $((fails > 0))
