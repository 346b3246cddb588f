#!/usr/bin/env bash
# tests/audit_cluster.test.sh BUILD_DIR SOURCE_DIR - the cluster's audit
# mirror through the vmenc binary (docs/audit.md "The cluster mirror",
# docs/cluster.md "Events") with a real 3-member etcd cluster (mutual TLS)
# and two hosts:
#  1. every record of both hosts reaches etcd, including each host's history
#     from before it joined: `audit show --cluster` lists exactly the lines of
#     both local logs, each host's in sequence order, all by time;
#  2. `audit verify --cluster --json` is ok and in sync on both hosts (the
#     machine-checkable answer the cluster chaos test reads);
#  3. host 1's log cut short, then emptied: its `audit verify --cluster`
#     fails (exit 4, state cut, naming both ends) and repairs nothing;
#     host 2's still passes;
#  4. host 1's log replaced by a rewritten chain: diverged.
# Skips (exit 77) when etcd is not installed or the cluster cannot start.
set -uo pipefail
BUILD=$(cd "${1:?build dir}" && pwd)
SRC=$(cd "${2:?source dir}" && pwd)
VMENC=$BUILD/vmenc
START=$SRC/tests/support/etcd/start-etcd-cluster.sh
STOP=$SRC/tests/support/etcd/stop-etcd-cluster.sh

skip() { echo "SKIP: $*"; exit 77; }
command -v etcd >/dev/null || skip "etcd is not installed (apt-get install etcd-server etcd-client)"
[[ -x $VMENC ]] || skip "the CLI is not built"

T=$(mktemp -d /tmp/vmenc-auditcl-test-XXXXXX)
cleanup() {
    [[ -f $T/etcd/pids ]] && "$STOP" "$T/etcd" >/dev/null 2>&1
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fails=0 n=0
ok()  { n=$((n+1)); echo "ok $n - $*"; }
bad() { n=$((n+1)); fails=$((fails+1)); echo "not ok $n - $*"; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
json() { # json FILE EXPR WHAT: EXPR over j = the last JSON line of FILE
    if /usr/bin/python3 -c "import json,sys; j=json.loads(open(sys.argv[1]).read().splitlines()[-1]); sys.exit(0 if ($2) else 1)" "$1" 2>/dev/null; then
        ok "$3"; else bad "$3 (json: $(tail -c 400 "$1"))"; fi
}

ENV_OUT=$("$START" "$T/etcd" 2>"$T/etcd-start.err") || { cat "$T/etcd-start.err"; skip "the etcd cluster cannot start here"; }
eval "$ENV_OUT"
TLS=(--endpoints "$VMENC_ETCD_ENDPOINTS" --cacert "$VMENC_ETCD_CACERT" --cert "$VMENC_ETCD_CERT" --key "$VMENC_ETCD_KEY")

export VMENC_NO_SYNC=1 VMENC_USER=alice
unset VMENC_PASSPHRASE VMENC_WORKSPACE
echo "audit cluster test passphrase" > "$T/pass"
echo "shared keystore passphrase" > "$T/shared.pass"
w1() { "$VMENC" --workspace "$T/ws1" --passphrase-file "$T/pass" "$@"; }
w2() { "$VMENC" --workspace "$T/ws2" --passphrase-file "$T/pass" "$@"; }
KDF=(--kdf-memory 8192 --kdf-passes 1)
FAST=(--option kdf_ops=1 --option kdf_mem_kib=8192)

# ---- 1. two hosts; every record mirrored ------------------------------------------------
for h in 1 2; do
    "$VMENC" init "$T/ws$h" --admin alice --host "esx0$h" "${KDF[@]}" --passphrase-file "$T/pass" -q || bad "init ws$h"
done
sed -i "s|^datastore = .*|datastore = \"$T/ws1/datastore\"|" "$T/ws2/vmenc.conf"
w1 kms add shared --type file --endpoint "$T/shared.vks" --create --secret-file "$T/shared.pass" "${FAST[@]}" -q &&
w2 kms add shared --type file --endpoint "$T/shared.vks" --secret-file "$T/shared.pass" "${FAST[@]}" -q ||
    bad "shared key provider"
check "cluster init on esx01" w1 cluster init "${TLS[@]}" --name ac --key-provider shared --ttl 3 -q
check "cluster join on esx02" w2 cluster join "${TLS[@]}" --name ac --ttl 3 -q
w1 policy user u1 -q && w2 policy user u2 -q && w1 policy user u3 -q || bad "policy users"
w2 --json audit show --cluster > "$T/show" && ok "audit show --cluster" || bad "audit show --cluster: exit $?"
/usr/bin/python3 - "$T/show" "$T/ws1/audit.log" "$T/ws2/audit.log" > "$T/show.check" <<'PY'
import json, sys
events = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
local = {"esx01": open(sys.argv[2]).read().splitlines(), "esx02": open(sys.argv[3]).read().splitlines()}
bad = []
by_host = {}
for e in events:
    by_host.setdefault(e["host"], []).append(e)
times = [e["record"]["time"] for e in events]
if times != sorted(times): bad.append("not ordered by time")
for h, lines in local.items():
    got = by_host.get(h, [])
    seqs = [e["seq"] for e in got]
    if seqs != list(range(1, len(seqs) + 1)): bad.append("%s: seqs %s" % (h, seqs[:5]))
    # the show command audits itself after listing: the local log may hold one record more
    mirrored = [json.dumps(e["record"], separators=(",", ":"), ensure_ascii=False) for e in got]
    if [json.loads(l) for l in lines[:len(got)]] != [e["record"] for e in got]: bad.append("%s: records differ" % h)
    if len(lines) - len(got) not in (0, 1): bad.append("%s: %d local, %d mirrored" % (h, len(lines), len(got)))
    if not any(e["record"]["op"] == "workspace.create" for e in got): bad.append("%s: history before the join missing" % h)
print("hosts=%d events=%d" % (len(by_host), len(events)))
print("; ".join(bad) if bad else "OK")
PY
[[ $(tail -1 "$T/show.check") == OK ]] && ok "show --cluster: both hosts' records, each in order, by time, history included ($(head -1 "$T/show.check"))" ||
    bad "show --cluster: $(cat "$T/show.check")"

# ---- 2. verify --cluster on both hosts -----------------------------------------------------
w1 --json audit verify --cluster > "$T/v1"; rc1=$?
w2 --json audit verify --cluster > "$T/v2"; rc2=$?
[[ $rc1 == 0 && $rc2 == 0 ]] && ok "verify --cluster passes on both hosts" || bad "verify --cluster: exit $rc1 / $rc2"
json "$T/v1" "j['ok'] and j['in_sync'] and j['state'] == 'ok' and j['not_mirrored'] == 0 and j['broken_hosts'] == 0 and j['hosts'] == 2" "esx01: ok, in sync, 2 hosts, no broken chain"
json "$T/v2" "j['ok'] and j['in_sync'] and j['mirror_seq'] == j['log_last_seq']" "esx02: mirror head = log head"

# ---- 3. host 1's log cut short, emptied ------------------------------------------------------
cp "$T/ws1/audit.log" "$T/log1.orig"
cp "$T/ws1/audit.log.checkpoint" "$T/cp1.orig"
last=$(wc -l < "$T/log1.orig")
head -n -3 "$T/log1.orig" > "$T/ws1/audit.log"
w1 --json audit verify --cluster > "$T/v1" 2> "$T/e1"; rc=$?
[[ $rc == 4 ]] && ok "a cut log fails verify --cluster (exit 4)" || bad "cut log: exit $rc"
json "$T/v1" "not j['ok'] and j['state'] == 'cut' and j['mirror_seq'] == $last" "cut: JSON state cut, the cluster holds up to $last"
grep -q "cut short" "$T/e1" && ok "cut: the message says cut short" || bad "cut: $(cat "$T/e1")"
w1 --json audit verify --cluster > "$T/v1" 2>/dev/null; rc=$?
[[ $rc == 4 ]] && ok "still cut on a second verify (nothing repaired)" || bad "second verify: exit $rc"
w2 --json audit verify --cluster > "$T/v2"; rc=$?
[[ $rc == 0 ]] && ok "host 2 still passes" || bad "host 2: exit $rc"
: > "$T/ws1/audit.log"
w1 --json audit verify --cluster > "$T/v1" 2> "$T/e1"; rc=$?
[[ $rc == 4 ]] && ok "an emptied log fails verify --cluster" || bad "emptied: exit $rc"
grep -q "emptied\|cut short" "$T/e1" && ok "emptied: named" || bad "emptied: $(cat "$T/e1")"

# ---- 4. a rewritten chain --------------------------------------------------------------------
# An older copy (the first 4 records) written to by a process that has no
# mirror: the records after 4 are not the mirrored ones.
head -n 4 "$T/log1.orig" > "$T/ws1/audit.log"
cp "$T/cp1.orig" "$T/ws1/audit.log.checkpoint"
mv "$T/ws1/cluster.json" "$T/cluster1.json"       # host 1 as a single host: no mirror
for i in $(seq $((last - 4))); do w1 audit tail -n 1 -q >/dev/null 2>&1; done   # with verify's own record: past the mirrored head
mv "$T/cluster1.json" "$T/ws1/cluster.json"
w1 --json audit verify --cluster > "$T/v1" 2> "$T/e1"; rc=$?
[[ $rc == 4 ]] && ok "a rewritten log fails verify --cluster" || bad "rewritten: exit $rc"
json "$T/v1" "j['state'] == 'diverged' and j['diverged_seq'] == 5" "rewritten: diverged at record 5"
grep -q "diverged" "$T/e1" && ok "rewritten: the message says diverged" || bad "rewritten: $(cat "$T/e1")"

echo "1..$n"
exit $((fails > 0))
