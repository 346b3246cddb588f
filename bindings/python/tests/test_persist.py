"""The workspace makes every policy change durable by itself (no save call),
and refuses a policy document changed outside the library (docs/workspace.md)."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

import vmenc

MIB = 1 << 20
PASS = b"persist passphrase"

# Run in a new interpreter: open the workspace (its own audit log, since the
# writer still holds the main one) and report what the policy and the
# datastore say.
REOPEN = textwrap.dedent("""
    import json, sys
    import vmenc
    with vmenc.Workspace(sys.argv[1], bytearray(sys.argv[2].encode()), audit_log="reader.log") as ws:
        p = ws.policy
        d = p.check("carol", vmenc.Op.VIEW, vm="web01")
        doc = json.loads(p.to_json())
        with ws.open_vm("admin", "web01") as vm:
            print(json.dumps({
                "carol_view": bool(d.allowed),
                "users": [u["name"] for u in doc["users"]],
                "vms": ws.vms(),
                "disks": len(vm.disks()),
                "encrypted": vm.info().encrypted,
                "host_state": int(p.host_state(ws.host.host_id)),
            }))
""")


def reopen(d):
    r = subprocess.run([sys.executable, "-c", REOPEN, d, PASS.decode()], capture_output=True, text=True,
                       env=os.environ.copy(), timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_changes_are_durable_without_save(tmp_path):
    d = str(tmp_path / "ws")
    vmenc.Workspace.create(d, bytearray(PASS), "admin", kdf_ops=1, kdf_mem_kib=8)
    ws = vmenc.Workspace(d, bytearray(PASS))
    try:
        ws.policy.add_user("carol")
        with ws.create_vm("admin", "web01", storage_policy="VM Encryption Policy") as vm:
            vm.add_disk("admin", MIB)
        ws.policy.grant("carol", "web01", vmenc.policy.ROLE_READ_ONLY)
        # No save_policy(), and the workspace is still open here.
        seen = reopen(d)
    finally:
        ws.close()
    assert seen["carol_view"] and "carol" in seen["users"]
    assert seen["vms"] == ["web01"] and seen["disks"] == 1 and seen["encrypted"]
    assert seen["host_state"] == int(vmenc.HostState.SAFE)


def test_tampered_document_refused(tmp_path):
    d = str(tmp_path / "ws")
    vmenc.Workspace.create(d, bytearray(PASS), "admin", kdf_ops=1, kdf_mem_kib=8)
    path = os.path.join(d, "policy.json")
    with open(path, "rb") as f:
        good = f.read()
    assert good.splitlines()[-1].startswith(b"#vmenc-seal v1 ")
    bad = good.replace(b'"admin"', b'"admim"', 1)
    assert bad != good
    with open(path, "wb") as f:
        f.write(bad)
    with pytest.raises(vmenc.AuthError) as ei:
        vmenc.Workspace(d, bytearray(PASS))
    assert ei.value.file == path and "vmenc policy reseal" in str(ei.value)
    with open(path, "wb") as f:
        f.write(good)
    with vmenc.Workspace(d, bytearray(PASS)) as ws:
        assert ws.policy.has_privilege("admin", "root", "Cryptographer.Access")
        ws.save_policy()  # kept for compatibility: does nothing, never fails
