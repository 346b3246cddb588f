#!/usr/bin/python3
"""scripts/broker_chaos_check.py - the property checker of scripts/broker-chaos.sh.

What it is: it decides, from the cluster's etcd history alone and with no
code of the broker, whether every KEK release the brokers audited went to a
host that, at the etcd revision the broker decided on, was
  - enrolled: host/<id> names that host and the SHA-256 of the certificate
    the script issued it (computed here, from the certificate file), and
    hosts/<id>/tpm holds an approved binding (not revoked);
  - in encryption mode: host/<id> encryption_mode "safe";
  - attested (when broker/config asks for it, for every KEK but the cluster key's,
    which needs no quote - docs/broker.md "Attestation"): the quote the release names
    (by its nonce) is in attest/<id>'s history with result ok at or before
    that revision, and it verifies again here - signature with the AK bound
    at that revision, nonce, PCR selection, digest of the PCR values - with
    tests/tpm/verify_quote.py's parsers; and its digest is an approved
    measurement (measurements/*) at that revision;
  - entitled to that KEK: the cluster key's KEK (named by the cluster
    document), or the KEK of a VM record naming it whose owner/<uuid> (on a
    lease) is that host - or, with no live owner, whose placement/<uuid> is
    that host (the one host that may take the ownership) - or, when no VM
    record names it, a KEK
    broker/created/<hex> says was created for that host.
It also compares the keys each host received (the host-side tap's log,
scripts/broker_chaos_tap.py) with the audited releases: a key received more
often than it was audited for that host is an unaudited release.
Formats: docs/broker.md ("etcd keys", "Chaos"), docs/control.md (the VM
record's bytes), docs/attest.md (the quote). Safety rule: it trusts nothing
the broker concluded - only the facts etcd recorded and what it recomputes.

Usage: broker_chaos_check.py HISTORY CLUSTER TAP_LOG HOST=CERT... [--self-test]
       broker_chaos_check.py --dump PREFIX HISTORY
  HISTORY   'etcdctl watch --prefix /vmenc/CLUSTER/ --rev=1 -w json' output, up to
            the current revision (what --dump writes)
  --self-test  then check forged copies of the history, one per kind of violation
               (the host unregistered, another certificate, not in encryption mode, TPM
               binding revoked, a quote over other PCR values, measurement not approved,
               the VM owned by another host, an unaudited key): each must be reported
Prints the figures and each violation; exit 1 on any violation or a forgery missed.
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


def audited_releases(hist, pre):
    """[(event revision, broker, event)] of every successful release the brokers audited."""
    out = []
    for rev, key, val, _lease in hist:
        if val is not None and key.startswith(pre + "broker/events/"):
            ev = json.loads(val)
            if ev.get("op") == "broker.kek.release" and ev.get("outcome") == "success":
                out.append((rev, key.split("/")[5], ev))
    return out


def decision_rev(ev):
    m = REASON_RE.search(ev.get("reason", ""))
    return int(m.group(1)) if m else 0


def check(hist, pre, releases, fps, tap_lines):
    """(violations, held per host, audited, received): the property over |releases|."""
    violations = []
    state, leases, i = {}, {}, 0
    attest_hist = {}                        # host -> [record], in revision order
    audited, held = Counter(), Counter()
    for rev_e, broker, ev in sorted(releases, key=lambda x: decision_rev(x[2])):
        principal = ev.get("principal", "")
        kek = (ev.get("key_ids") or ["?"])[0]
        host = principal[5:] if principal.startswith("host:") else None
        audited[(host, kek)] += 1
        m = REASON_RE.search(ev.get("reason", ""))
        tag = f"{broker} release of KEK {kek} to {principal} at rev {m.group(1) if m else '?'}"

        def bad(why):
            violations.append(f"{tag}: {why}")

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
                    attest_hist.setdefault(k[len(pre) + 7:], []).append(v)
            i += 1

        def doc(k):
            v = state.get(pre + k)
            return json.loads(v) if v is not None else None

        # 1. enrolled (its certificate registered), 2. in encryption mode
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
        # The cluster key's KEK needs no quote (docs/broker.md "Attestation": it releases no VM
        # data, and a host refused it could not open its workspace to say why): enrolled and in
        # encryption mode suffice. Every other KEK needs the attestation broker/config asks for.
        cdoc = doc("cluster")
        cluster_kek = cdoc is not None and wrapped_kek(cdoc.get("key", "x:")) == kek
        cfg = doc("broker/config") or {"attestation": "off"}
        if cfg.get("attestation") != "off" and not cluster_kek:
            # enrolled: an approved TPM binding; attested: the release's quote verifies again
            tpm = doc(f"hosts/{host}/tpm")
            if tpm is None or tpm.get("status") != "approved":
                bad("no approved TPM binding (not enrolled, revoked or awaiting approval)")
                continue
            if cfg["attestation"] != "per-release":
                bad(f"attestation mode {cfg['attestation']} is not checked by this checker")
                continue
            nonce = m.group(2)
            if nonce is None:
                bad("per-release attestation, but the release names no quote")
                continue
            recs = [json.loads(v) for v in attest_hist.get(host, [])]
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
        # 3. entitled to the KEK
        if cluster_kek:
            held[host] += 1
            continue
        vms = []
        for k, v in state.items():
            if k.startswith(pre + "vm/"):
                rk = vm_record_kek(v)
                if rk is not None and rk[0] and rk[1] == kek:
                    vms.append(k[len(pre) + 3:])
        if vms:
            # the owner (a live owner/<uuid> on a lease), or - with no live
            # owner - the host placement/<uuid> names (the one host that may
            # take the ownership: it is taking it)
            entitled = []
            for u in vms:
                ov = state.get(pre + f"owner/{u}")
                if ov is not None and leases.get(pre + f"owner/{u}", 0) != 0:
                    entitled.append(ov.decode().split("\n")[0])
                else:
                    pv = state.get(pre + f"placement/{u}")
                    if pv is not None:
                        entitled.append(pv.decode().split("\n")[0])
            if host not in entitled:
                bad(f"VM {vms[0]} is owned by (or, unowned, placed on) {entitled or 'nobody'}, not {host}")
                continue
        else:
            cr = doc("broker/created/" + kek.encode().hex())
            if cr is None or cr.get("host") != host:
                bad("a KEK that no VM record names and that was not created for this host")
                continue
        held[host] += 1

    # 4. no unaudited release: keys received (tap) <= releases audited, per host and KEK
    received = Counter()
    for line in tap_lines:
        if line.strip():
            h, k = line.split()
            received[(h, k)] += 1
    for (h, k), n in sorted(received.items()):
        if n > audited[(h, k)]:
            violations.append(f"{h} received KEK {k} {n} times, the brokers audited {audited[(h, k)]} releases")
    return violations, held, audited, received


def forgeries(hist, pre, releases, tap_lines):
    """One forged input per check: (name, expected words, hist, releases, tap_lines). Each
    changes the facts just before a real release's decision revision (revision r - 0.5)."""
    vm_rel = [x for x in releases if re.search(r"owns VM |VM [0-9a-f-]{36} is placed on", x[2].get("reason", ""))]
    any_rel = sorted(releases, key=lambda x: decision_rev(x[2]))
    out = []
    if not any_rel:
        return out

    def at(rel, key, value, lease=1):
        r = decision_rev(rel[2])
        return sorted(hist + [(r - 0.5, pre + key, value, lease)], key=lambda e: e[0])

    def host_of(rel):
        return rel[2]["principal"][5:]

    quoted = [x for x in any_rel if (REASON_RE.search(x[2].get("reason", "")) or [None, None, None])[2]]
    rel = quoted[len(quoted) // 2] if quoted else any_rel[len(any_rel) // 2]
    h = host_of(rel)
    hd = json.loads([v for _, k, v, _l in hist if k == pre + f"host/{h}" and v is not None][0])
    out.append(("unregistered host", "not a registered host", at(rel, f"host/{h}", None), releases, tap_lines))
    out.append(("another certificate", "does not name this host's certificate",
                at(rel, f"host/{h}", json.dumps(dict(hd, cert_sha256="00" * 32)).encode()), releases, tap_lines))
    out.append(("not in encryption mode", "not in encryption mode",
                at(rel, f"host/{h}", json.dumps(dict(hd, encryption_mode="incapable")).encode()), releases, tap_lines))
    out.append(("TPM binding revoked", "no approved TPM binding", at(rel, f"hosts/{h}/tpm", None), releases,
                tap_lines))
    nonce = REASON_RE.search(rel[2]["reason"]).group(2)
    if nonce is not None:
        q = [json.loads(v) for _, k, v, _l in hist if k == pre + f"attest/{h}" and v is not None and
             json.loads(v).get("nonce") == nonce][-1]
        pv = bytearray.fromhex(q["pcr_values"])
        pv[0] ^= 1
        out.append(("a quote over other PCR values", "the quote does not verify",
                    at(rel, f"attest/{h}", json.dumps(dict(q, pcr_values=pv.hex())).encode()), releases, tap_lines))
        hist2 = [e for e in hist if not (e[1].startswith(pre + "measurements/") and e[0] < decision_rev(rel[2]))]
        out.append(("measurement not approved", "is not an approved measurement", hist2, releases, tap_lines))
    if vm_rel:
        rel = vm_rel[0]
        uuid = re.search(r"VM ([0-9a-f-]{36})", rel[2]["reason"]).group(1)
        other = "esx0" + ("2" if host_of(rel) != "esx02" else "3")
        out.append(("VM owned by another host", "is owned by",
                    at(rel, f"owner/{uuid}", f"{other}\n1\n1".encode()), releases, tap_lines))
    out.append(("an unaudited key", "the brokers audited 0 releases", hist, releases,
                tap_lines + [f"{host_of(any_rel[0])} forged-kek"]))
    return out


def dump(prefix, out_path):
    """Write etcd's history under |prefix| (a watch from revision 1) up to the
    current revision to |out_path|; etcdctl's endpoints and credentials come
    from the ETCDCTL_* environment."""
    head = json.loads(subprocess.run(["etcdctl", "get", prefix, "--prefix", "--keys-only", "--limit=1", "-w", "json"],
                                     check=True, capture_output=True, text=True).stdout)["header"]["revision"]
    w = subprocess.Popen(["etcdctl", "watch", "--prefix", prefix, "--rev=1", "-w", "json"], stdout=subprocess.PIPE,
                         text=True)
    seen = 0
    with open(out_path, "w") as f:
        for line in w.stdout:
            f.write(line)
            if line.startswith("{"):
                for ev in json.loads(line).get("Events") or []:
                    seen = max(seen, int(ev["kv"]["mod_revision"]))
            if seen >= head:
                break
    w.kill()
    w.wait()
    if seen < head:
        sys.exit(f"history incomplete: up to revision {seen} of {head}")


def main():
    if sys.argv[1] == "--dump":
        dump(sys.argv[2], sys.argv[3])
        return
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    self_test = "--self-test" in sys.argv
    hist_path, cluster, tap_path, *host_certs = args
    pre = f"/vmenc/{cluster}/"
    fps = {}
    for hc in host_certs:
        h, cert = hc.split("=", 1)
        fps[h] = fingerprint(cert)
    hist = load_history(hist_path)
    releases = audited_releases(hist, pre)
    tap_lines = open(tap_path).read().split("\n") if os.path.exists(tap_path) else []
    violations, held, audited, received = check(hist, pre, releases, fps, tap_lines)
    for v in violations:
        print(f"VIOLATION: {v}")
    per_host = ", ".join(f"{h} {held[h]}" for h in sorted(fps))
    kinds = Counter("cluster key" if "cluster key" in ev["reason"] else "VM owned" if "owns VM" in ev["reason"]
                    else "VM placed" if "is placed on host" in ev["reason"]
                    else "created for the host" for _, _, ev in releases)
    print(f"checked {len(releases)} audited releases ({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))}) "
          f"against etcd history ({len(hist)} events): {sum(held.values())} held ({per_host}); keys received "
          f"by hosts: {sum(received.values())} (audited, not received: "
          f"{sum(max(0, audited[x] - received[x]) for x in audited)}); violations: {len(violations)}")
    rc = 1 if violations else 0
    if self_test:
        # the checker must see each kind of violation when there is one
        missed = []
        forged = forgeries(hist, pre, releases, tap_lines)
        for name, words, h2, r2, t2 in forged:
            v2, _, _, _ = check(h2, pre, r2, fps, t2)
            if not any(words in v for v in v2):
                missed.append(name)
        print(f"self-test: {len(forged) - len(missed)} of {len(forged)} forged violations reported"
              + (f"; MISSED: {', '.join(missed)}" if missed else f" ({', '.join(f[0] for f in forged)})"))
        if missed or len(forged) < 6:
            rc = 1
    sys.exit(rc)


if __name__ == "__main__":
    main()
