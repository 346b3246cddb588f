"""Key manager and clusters (file provider), policy, audit."""
import os

import pytest

import vmenc
from conftest import ALIAS, fast_file_endpoint, make_policy


def test_endpoint_repr_hides_secrets():
    ep = vmenc.FileEndpoint("/x/ks", bytearray(b"hunter2-passphrase"))
    assert "hunter2" not in repr(ep) and "redacted" in repr(ep)
    p = vmenc.PKCS11Endpoint("/usr/lib/softhsm/libsofthsm2.so", "tok", b"1234-pin")
    assert "1234-pin" not in repr(p)


def test_keymgr_file_provider(tmp_path):
    ks = str(tmp_path / "ks.vks")
    with vmenc.KeyManager() as mgr:
        mgr.add_cluster(ALIAS, [fast_file_endpoint(ks)])
        kid = mgr.create_kek(ALIAS, "vm-kek")
        kek = mgr.get_kek(ALIAS, kid)
        kcv = mgr.kek_check_value(ALIAS, kid)
        assert len(kcv) == 16
        ctx = vmenc.WrapContext("uuid-1", None, "vm-home")
        dek = vmenc.DEK.generate()
        wk = mgr.wrap_dek(ALIAS, kid, dek, ctx)
        assert wk.kek_id == kid and wk.provider_alias == ALIAS
        assert mgr.unwrap_dek(wk, ctx) == dek
        assert wk.unwrap(kek, ctx) == dek
        st = mgr.stats()
        assert st.hits + st.misses > 0
        with pytest.raises(vmenc.KeyNotFoundError):
            mgr.get_kek(ALIAS, "00000000-0000-4000-8000-000000000000")
        with pytest.raises(vmenc.KMSError) as ei:
            mgr.create_kek("nope")
        assert ei.value.name == "VMENC_E_NO_SUCH_PROVIDER"
        mgr.forget()
        assert mgr.unwrap_dek(wk, ctx) == dek  # fetched again from the keystore
    # wrong passphrase: the cluster cannot be built
    with vmenc.KeyManager() as mgr:
        with pytest.raises(vmenc.AuthError):
            mgr.add_cluster(ALIAS, [vmenc.FileEndpoint(ks, b"wrong", kdf_ops=1, kdf_mem_kib=8)])


def test_cluster_object(tmp_path):
    c = vmenc.Cluster("kp2", [fast_file_endpoint(str(tmp_path / "a.vks"))], no_jitter=True)
    assert len(c) == 1 and c.alias == "kp2"
    kid = c.create_kek()
    assert c.get_kek(kid)
    assert c.check_health() == 1
    info = c.endpoint_info(0)
    assert info.type_name == "file" and info.num_calls >= 2
    with vmenc.KeyManager() as mgr:
        mgr.add_cluster_object(c)
        assert mgr.get_kek("kp2", kid)
        c.close()  # a view now: the manager owns it
        assert mgr.get_kek("kp2", kid)


def test_policy_checks_and_json():
    with make_policy() as p:
        p.add_object("vm01", vmenc.ObjectType.VM, "vms")
        d = p.check("bob", vmenc.Op.ENCRYPT_VM, vm="vm01")
        assert not d and d.status == vmenc.Status.E_DENIED and d.missing_privilege.startswith("Cryptographer.")
        with pytest.raises(vmenc.DeniedError):
            d.raise_for_status()
        assert p.check("alice", vmenc.Op.ENCRYPT_VM, vm="vm01")
        assert p.has_privilege("alice", "vm01", "Cryptographer.Decrypt")
        assert not p.has_privilege("bob", "vm01", "Cryptographer.Decrypt")
        with pytest.raises(vmenc.PolicyError):
            p.check("alice", vmenc.Op.ENCRYPT_VM, vm="no-such-vm")
        p.add_role("Operator", ["VirtualMachine.Interact.PowerOn", "System.View"])
        doc = p.to_json()
    with vmenc.Policy.from_json(doc) as q:
        assert q.to_json() == doc
        assert q.host_state("esx01") == vmenc.HostState.INCAPABLE
        assert q.enable_host_encryption("alice", "esx01").allowed
        assert q.host_state("esx01") == vmenc.HostState.SAFE
    with pytest.raises(vmenc.Error) as ei:
        vmenc.Policy.from_json(b'{"version": 1, "bogus": 1}')
    assert ei.value.path.startswith("$")
    with pytest.raises(vmenc.ParseError):
        vmenc.Policy.from_json(b'{"version": 1,')
    assert "Cryptographer.Decrypt" in vmenc.privileges()


def test_audit_log_verify_and_callbacks(tmp_path):
    key = bytearray(vmenc.random_bytes(32))
    path = str(tmp_path / "audit.log")
    seen = []
    with vmenc.AuditLog(path, key) as log, vmenc.Audit() as audit:
        audit.add_log(log)
        audit.add_callback(lambda ev, js: seen.append((ev.operation, js)))
        audit.emit("alice", "vm.encrypt", target="vm01", key_provider="kp", key_ids=["k1", "k2"])
        seq = log.append("bob", "vm.open", outcome=vmenc.Outcome.DENIED, status=-500, reason="no privilege")
        assert seq == 2
        last_seq, last_hash = log.position()
        assert last_seq == 2 and len(last_hash) == 32
    assert seen and seen[0][0] == "vm.encrypt" and '"k1"' in seen[0][1]
    r = vmenc.verify_files([path], key, expected_last_seq=2)
    assert r.ok and r.num_records == 2 and r.defect == vmenc.Defect.NONE
    data = bytearray(open(path, "rb").read())
    i = data.index(b"vm.open")
    data[i:i + 7] = b"vm.OPEN"
    r = vmenc.verify_buffer(bytes(data), key, expected_last_seq=2)
    assert not r.ok and r.defect == vmenc.Defect.EDITED and r.bad_index == 1
    with pytest.raises(vmenc.AuditError):
        r.raise_for_status()
    r = vmenc.verify_files([path], key, expected_last_seq=5)
    assert r.defect == vmenc.Defect.TRUNCATED
    with pytest.raises(vmenc.UsageError):
        vmenc.event_to_json("", "x")
    assert '"principal":"carol"' in vmenc.event_to_json("carol", "op").replace(" ", "")
    # a raising callback is reported as a failed sink, not swallowed
    with vmenc.AuditLog(str(tmp_path / "b.log"), key) as log2, vmenc.Audit() as audit:
        audit.add_log(log2)
        audit.add_callback(lambda ev, js: 1 / 0)
        with pytest.raises(vmenc.AuditError):
            audit.emit("alice", "x")
        assert isinstance(audit.callback_errors[-1], ZeroDivisionError)


# ---- authorized edits (issue 18): bob, a NoCryptoAdmin, cannot escalate ----

def test_bob_cannot_grant_himself_admin():
    p = make_policy()
    with pytest.raises(vmenc.DeniedError) as ei:
        p.grant_as("bob", "bob", "vcenter", vmenc.policy.ROLE_ADMIN)
    d = ei.value.decision
    assert not d.allowed and d.missing_privilege.startswith("Cryptographer.")
    assert d.missing_object == "vcenter" and "bob" in d.message
    assert not p.has_privilege("bob", "vms", "Cryptographer.Decrypt")
    # what he holds he may grant; alice may grant anything
    p.add_user("dave")
    assert p.grant_as("bob", "dave", "vms", vmenc.policy.ROLE_NO_CRYPTO_ADMIN).allowed
    assert p.grant_as("alice", "dave", "vms", vmenc.policy.ROLE_ADMIN).allowed
    # nor may he revoke alice (no locking crypto administrators out)
    with pytest.raises(vmenc.DeniedError):
        p.revoke_as("bob", "alice", "vcenter")
    assert p.has_privilege("alice", "vms", "Cryptographer.Decrypt")


def test_bob_cannot_define_a_crypto_role():
    p = make_policy()
    with pytest.raises(vmenc.DeniedError) as ei:
        p.add_role_as("bob", "R", ["System.Read", "Cryptographer.Access"])
    assert ei.value.decision.missing_privilege == "Cryptographer.Access"
    with pytest.raises(vmenc.PolicyError) as ei:
        p.grant("bob", "vcenter", "R")  # the role was not added
    assert ei.value.name == "VMENC_E_NOT_FOUND"
    assert p.add_role_as("bob", "R", ["System.Read"]).allowed
    # nor join a group that holds crypto privileges
    p.add_group("cryptos")
    p.grant("cryptos", "vcenter", vmenc.policy.ROLE_ADMIN)
    with pytest.raises(vmenc.DeniedError):
        p.add_member_as("bob", "cryptos", "bob")
    with pytest.raises(vmenc.DeniedError):
        p.edit_as("bob", vmenc.EditOp.ADD_MEMBER, name="cryptos", member="bob")


def test_check_uses_the_recorded_encryption():
    p = make_policy()
    p.add_object("vm1", vmenc.ObjectType.VM, "vms")
    p.set_host_state("esx01", vmenc.HostState.PREPARED)
    p.set_host_state("esx01", vmenc.HostState.SAFE)
    p.set_vm_state("vm1", "esx01", True)
    d = p.check("bob", vmenc.Op.EXPORT_VM, vm="vm1")  # no VM_ENCRYPTED flag
    assert not d.allowed and d.missing_privilege == "Cryptographer.Access"


def test_workspace_edits_are_audited(tmp_path):
    d = str(tmp_path / "ws")
    pw = bytearray(b"test passphrase")
    vmenc.Workspace.create(d, pw, "alice", kdf_ops=1, kdf_mem_kib=8)
    with vmenc.Workspace(d, pw, no_sync=True) as ws:
        ws.policy.add_user("bob")  # the trusted bootstrap path
        ws.policy.grant("bob", "root", vmenc.policy.ROLE_NO_CRYPTO_ADMIN)
        ws.policy.add_user("nobody")
        with pytest.raises(vmenc.DeniedError) as ei:
            ws.edit_policy("bob", vmenc.EditOp.GRANT, name="bob", obj="root", role="Admin")
        assert ei.value.decision.missing_privilege.startswith("Cryptographer.")
        assert ws.edit_policy("alice", vmenc.EditOp.ADD_USER, name="erin").allowed
        assert b'"version"' in ws.policy_show("alice")
        with pytest.raises(vmenc.DeniedError) as ei:
            ws.policy_show("nobody")
        assert ei.value.decision.missing_privilege == "System.Read"
        ws.authorize_audit_read("bob")
        with pytest.raises(vmenc.DeniedError):
            ws.authorize_audit_read("nobody", "audit.verify")
        log = ws.audit_log_path
    import json
    recs = [json.loads(line) for line in open(log)]
    denied = [r for r in recs if r["op"] == "policy.grant" and r["outcome"] == "denied"]
    assert len(denied) == 1 and denied[0]["principal"] == "bob" and "Cryptographer." in denied[0]["reason"]
    assert any(r["op"] == "policy.add_user" and r["outcome"] == "success" for r in recs)
    assert any(r["op"] == "policy.show" and r["principal"] == "nobody" and r["outcome"] == "denied" for r in recs)
    assert any(r["op"] == "audit.verify" and r["principal"] == "nobody" for r in recs)
