#!/usr/bin/python3
"""scripts/broker_chaos_check.py - the property checker of scripts/broker-chaos.sh.

What it is: it decides, from the cluster's etcd history alone and with no
code of the broker, whether every KEK release the brokers audited went to a
host that, at the etcd revision the broker decided on, was
  - enrolled: host/<id> names that host and the SHA-256 of the certificate
    the script issued it (computed here, from the certificate file), and
    hosts/<id>/tpm holds an approved binding (not revoked);
  - in encryption mode: host/<id> encryption_mode "safe";
  - attested (when broker/config asks for it): the quote the release names
    (by its nonce) is in attest/<id>'s history with result ok at or before
    that revision, and it verifies again here - signature with the AK bound
    at that revision, nonce, PCR selection, digest of the PCR values - with
    tests/tpm/verify_quote.py's parsers; and its digest is an approved
    measurement (measurements/*) at that revision;
  - entitled to that KEK: the cluster key's KEK (named by the cluster
    document), or the KEK of a VM record naming it whose owner/<uuid> (on a
    lease) is that host, or, when no VM record names it, a KEK
    broker/created/<hex> says was created for that host.
It also compares the keys each host received (the host-side tap's log,
scripts/broker_chaos_tap.py) with the audited releases: a key received more
often than it was audited for that host is an unaudited release.
Formats: docs/broker.md ("etcd keys", "Chaos"), docs/control.md (the VM
record's bytes), docs/attest.md (the quote). Safety rule: it trusts nothing
the broker concluded - only the facts etcd recorded and what it recomputes.

Usage: broker_chaos_check.py HISTORY CLUSTER TAP_LOG HOST=CERT... [--forge-release] [--forge-tap]
  HISTORY   'etcdctl watch --prefix /vmenc/CLUSTER/ --rev=1 -w json' output
  --forge-release  change one audited release to another host (must be caught)
  --forge-tap      add one key to the tap's log that no broker audited (must be caught)
Prints the figures and each violation; exit 1 on any violation.
"""
import base64
import hashlib
import json
import os
import re
import struct
import subprocess
import sys
from collections import Counter

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "tpm"))
import verify_quote as vq  # noqa: E402  (the TPM structure parsers, not the broker's)

from cryptography.exceptions import InvalidSignature  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa  # noqa: E402


def load_history(path):
    """[(revision, key, value or None for a delete, lease)] in revision order."""
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            resp = json.loads(line)
            for ev in resp.get("Events") or []:
                kv = ev["kv"]
                key = base64.b64decode(kv["key"]).decode("utf-8", "replace")
                rev = int(kv["mod_revision"])
                if ev.get("type", 0) in (1, "DELETE"):
                    out.append((rev, key, None, 0))
                else:
                    out.append((rev, key, base64.b64decode(kv.get("value", "")), int(kv.get("lease", 0))))
    out.sort(key=lambda e: e[0])
    return out


def fingerprint(cert):
    der = subprocess.run(["openssl", "x509", "-in", cert, "-outform", "DER"], check=True,
                         capture_output=True).stdout
    return hashlib.sha256(der).hexdigest()


def str8(b, p):
    n = b[p]
    return b[p + 1:p + 1 + n].decode(), p + 1 + n


def str16(b, p):
    n = struct.unpack(">H", b[p:p + 2])[0]
    return b[p + 2:p + 2 + n].decode(), p + 2 + n


def vm_record_kek(v):
    """(encrypted, kek_id) of a stored VM record (docs/control.md: record bytes || MAC)."""
    if v[:4] != b"VMCR":
        return None
    p = 5
    _uuid, p = str8(v, p)
    p += 8                                  # revision
    _name, p = str8(v, p)
    flags = v[p]
    p += 1 + 32 + 8                         # flags, key hash, key generation
    _prov, p = str8(v, p)
    kek, p = str16(v, p)
    return bool(flags & 1), kek


def wrapped_kek(text):
    """The KEK id inside a wrapped key's text form "vmwk1:<base64>" (docs/keys.md)."""
    raw = base64.b64decode(text.split(":", 1)[1])
    if raw[:4] != b"VMWK":
        return None
    _prov, p = str8(raw, 6)
    kek, _ = str8(raw, p)
    return kek


def quote_ok(rec, ak_public_hex, nonce_hex, pcrs_sel):
    """Verify a recorded quote again; the hex digest of its PCR values, or raise vq.Fail."""
    key, _name, _attrs = vq.parse_public(bytes.fromhex(ak_public_hex))
    msg, sig_b = bytes.fromhex(rec["attest"]), bytes.fromhex(rec["sig"])
    alg, halg, sig = vq.parse_signature(sig_b)
    h = vq.HASHES[halg][2]()
    try:
        if alg == vq.ALG_ECDSA:
            if not isinstance(key, ec.EllipticCurvePublicKey):
                raise vq.Fail("ECDSA signature, AK not EC")
            key.verify(sig, msg, ec.ECDSA(h))
        else:
            if not isinstance(key, rsa.RSAPublicKey):
                raise vq.Fail("RSA signature, AK not RSA")
            pad = padding.PKCS1v15() if alg == vq.ALG_RSASSA else padding.PSS(padding.MGF1(h), padding.PSS.MAX_LENGTH)
            key.verify(sig, msg, pad, h)
    except InvalidSignature:
        raise vq.Fail("the quote's signature does not verify with the AK bound at that revision")
    a = vq.parse_attest(msg)
    if a["extraData"] != bytes.fromhex(nonce_hex):
        raise vq.Fail("the quote's extraData is not the release's nonce")
    if a["pcrSelect"] != vq.parse_select(pcrs_sel):
        raise vq.Fail(f"the quote's PCR selection {a['pcrSelect']} is not {pcrs_sel}")
    values = bytes.fromhex(rec["pcr_values"])
    digest = hashlib.new(vq.HASHES[halg][1], values).digest()
    if digest != a["pcrDigest"]:
        raise vq.Fail("the quote's pcrDigest is not the digest of the PCR values sent")
    return digest.hex()


REASON_RE = re.compile(r"\[etcd rev (\d+)(?:, quote nonce ([0-9a-f]{64}))?\]")


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    flags = {a for a in sys.argv[1:] if a.startswith("--")}
    hist_path, cluster, tap_path, *host_certs = args
    pre = f"/vmenc/{cluster}/"
    fps = {}
    for hc in host_certs:
        h, cert = hc.split("=", 1)
        fps[h] = fingerprint(cert)
    hist = load_history(hist_path)

    releases = []                           # (event revision, broker, event dict)
    for rev, key, val, _lease in hist:
        if val is not None and key.startswith(pre + "broker/events/"):
            ev = json.loads(val)
            if ev.get("op") == "broker.kek.release" and ev.get("outcome") == "success":
                releases.append((rev, key.split("/")[4], ev))
    violations = []
    if "--forge-release" in flags:
        # the first release of a VM's KEK, handed to another registered host instead
        for i, (rev, br, ev) in enumerate(releases):
            if "owns VM" in ev.get("reason", ""):
                other = sorted(h for h in fps if f"host:{h}" != ev["principal"])[0]
                forged = dict(ev, principal=f"host:{other}")
                releases.append((rev, br, forged))
                print(f"forged: a release of {ev['key_ids'][0]} to host:{other} (really to {ev['principal']})")
                break
        else:
            print("forged: no VM-KEK release to forge from")
            violations.append("nothing to forge")

    # replay the history up to each release's decision revision
    state, leases, i = {}, {}, 0
    attest_hist = {}                        # host -> [(rev, record)]
    audited = Counter()
    checked = Counter()
    for rev_e, broker, ev in sorted(releases, key=lambda r: (int(REASON_RE.search(r[2].get("reason", "")).group(1))
                                                              if REASON_RE.search(r[2].get("reason", "")) else 0)):
        principal = ev.get("principal", "")
        kek = (ev.get("key_ids") or ["?"])[0]
        host = principal[5:] if principal.startswith("host:") else None
        audited[(host, kek)] += 1
        m = REASON_RE.search(ev.get("reason", ""))
        tag = f"{broker} release of {kek} to {principal}"

        def bad(why):
            violations.append(f"{tag} at rev {m.group(1) if m else '?'}: {why}")

        if host is None or m is None:
            bad("the event names no host or no decision revision")
            continue
        r = int(m.group(1))
        if not 0 < r <= rev_e:
            bad(f"decision revision {r} is not before the event's own revision {rev_e}")
            continue
        while i < len(hist) and hist[i][0] <= r:
            _, k, v, lease = hist[i]
            if v is None:
                state.pop(k, None)
            else:
                state[k] = v
                leases[k] = lease
                if k.startswith(pre + "attest/"):
                    attest_hist.setdefault(k[len(pre) + 7:], []).append((hist[i][0], v))
            i += 1

        def doc(k):
            v = state.get(pre + k)
            return json.loads(v) if v is not None else None

        # 1. enrolled, 2. encryption mode
        hd = doc(f"host/{host}")
        if hd is None:
            bad("not a registered host")
            continue
        if hd.get("host") != host or hd.get("cert_sha256") != fps.get(host):
            bad("host/<id> does not name this host's certificate")
            continue
        if hd.get("encryption_mode") != "safe":
            bad(f"not in encryption mode ({hd.get('encryption_mode')})")
            continue
        cfg = doc("broker/config") or {"attestation": "off"}
        if cfg.get("attestation") != "off":
            tpm = doc(f"hosts/{host}/tpm")
            if tpm is None or tpm.get("status") != "approved":
                bad("no approved TPM binding (not enrolled, revoked or awaiting approval)")
                continue
            # 3. attested: the release's quote, verified again, digest approved at r
            if cfg["attestation"] != "per-release":
                bad(f"attestation mode {cfg['attestation']} is not checked by this checker")
                continue
            nonce = m.group(2)
            if nonce is None:
                bad("per-release attestation, but the release names no quote")
                continue
            recs = [json.loads(v) for _, v in attest_hist.get(host, [])]
            recs = [q for q in recs if q.get("nonce") == nonce and q.get("result") == "ok"]
            if not recs:
                bad("no successful quote on that nonce in attest/<host>'s history")
                continue
            try:
                digest = quote_ok(recs[-1], tpm["ak_public"], nonce, cfg.get("pcrs", "sha256:0,1,2,3,4,5,6,7"))
            except (vq.Fail, ValueError, KeyError) as e:
                bad(f"the quote does not verify: {e}")
                continue
            approved = [k for k, v in state.items() if k.startswith(pre + "measurements/") and
                        json.loads(v).get("digest") == digest and json.loads(v).get("pcrs") == cfg.get("pcrs")]
            if not approved:
                bad(f"the quote's digest {digest[:16]}... is not an approved measurement")
                continue
        # 4. entitled to the KEK
        cdoc = doc("cluster")
        if cdoc is not None and wrapped_kek(cdoc.get("key", "x:")) == kek:
            checked[host] += 1
            continue
        vms = []
        for k, v in state.items():
            if k.startswith(pre + "vm/"):
                rk = vm_record_kek(v)
                if rk is not None and rk[0] and rk[1] == kek:
                    vms.append(k[len(pre) + 3:])
        if vms:
            owners = []
            for u in vms:
                ov = state.get(pre + f"owner/{u}")
                if ov is not None and leases.get(pre + f"owner/{u}", 0) != 0:
                    owners.append(ov.decode().split("\n")[0])
            if host not in owners:
                bad(f"VM {vms[0]} is owned by {owners or 'nobody'}, not by {host}")
                continue
        else:
            cr = doc("broker/created/" + kek.encode().hex())
            if cr is None or cr.get("host") != host:
                bad("a KEK that no VM record names and that was not created for this host")
                continue
        checked[host] += 1

    # 5. no unaudited release: keys received (tap) <= releases audited, per host and KEK
    received = Counter()
    lines = open(tap_path).read().split("\n") if os.path.exists(tap_path) else []
    if "--forge-tap" in flags:
        lines.append(f"{sorted(fps)[0]} forged-kek-id")
        print(f"forged: a key received by {sorted(fps)[0]} that no broker audited")
    for line in lines:
        if line.strip():
            h, k = line.split()
            received[(h, k)] += 1
    for (h, k), n in sorted(received.items()):
        if n > audited[(h, k)]:
            violations.append(f"{h} received KEK {k} {n} times, the brokers audited {audited[(h, k)]} releases")

    for v in violations:
        print(f"VIOLATION: {v}")
    per_host = ", ".join(f"{h} {checked[h]}" for h in sorted(fps))
    print(f"checked {len(releases)} audited releases against etcd history ({len(hist)} revisions' events): "
          f"{sum(checked.values())} held ({per_host}); keys received by hosts: {sum(received.values())} "
          f"(audited and not received: {sum(max(0, audited[x] - received[x]) for x in audited)}); "
          f"violations: {len(violations)}")
    sys.exit(1 if violations else 0)


if __name__ == "__main__":
    main()
