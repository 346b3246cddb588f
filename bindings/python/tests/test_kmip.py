"""The key manager against a real PyKMIP server over mutual TLS
(tests/kms/pykmip.sh starts and stops it)."""
import os
import shutil
import socket
import subprocess

import pytest

import vmenc

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "..", "..", "..", "tests", "kms", "pykmip.sh")


def _has_pykmip() -> bool:
    py = os.environ.get("PYKMIP_PYTHON", "/usr/bin/python3")
    return os.path.exists(py) and subprocess.run([py, "-c", "import kmip"], capture_output=True).returncode == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def kmip_server(tmp_path_factory):
    if os.environ.get("VMENC_SKIP_KMIP"):
        pytest.skip("VMENC_SKIP_KMIP is set")
    if not _has_pykmip() or shutil.which("openssl") is None:
        pytest.skip("python3-pykmip (Debian) or openssl not installed")
    d = str(tmp_path_factory.mktemp("pykmip"))
    port = _free_port()
    subprocess.run(["bash", SCRIPT, d, str(port)], check=True, capture_output=True, timeout=60)
    try:
        yield d, port
    finally:
        subprocess.run(["bash", SCRIPT, "--stop", d, str(port)], capture_output=True, timeout=60)


def test_keymgr_against_pykmip(kmip_server):
    d, port = kmip_server
    certs = os.path.join(d, "certs")
    ep = vmenc.KMIPEndpoint(f"127.0.0.1:{port}", ca=os.path.join(certs, "ca.crt"),
                            cert=os.path.join(certs, "client.crt"), key=os.path.join(certs, "client.key"))
    with vmenc.KeyManager() as mgr:
        mgr.add_cluster("kmip", [ep])
        assert mgr.check_health("kmip", timeout=10) == 1
        kid = mgr.create_kek("kmip", "vmenc-python-test", timeout=15)
        kek = mgr.get_kek("kmip", kid, timeout=10)
        ctx = vmenc.WrapContext("uuid-kmip", "scsi0:0", "disk")
        dek = vmenc.DEK.generate()
        wk = mgr.wrap_dek("kmip", kid, dek, ctx, timeout=10)
        assert wk.kek_id == kid
        mgr.forget()
        assert mgr.unwrap_dek(wk, ctx, timeout=10) == dek  # KEK fetched from the server again
        assert wk.unwrap(kek, ctx) == dek
        mgr.revoke_kek("kmip", kid, timeout=10)
        mgr.forget()
        with pytest.raises(vmenc.KMSError) as ei:
            mgr.get_kek("kmip", kid, timeout=10)
        assert ei.value.name == "VMENC_E_KEY_STATE"
        mgr.destroy_kek("kmip", kid, timeout=10)


def test_kmip_unavailable_and_bad_ca(kmip_server, tmp_path):
    d, port = kmip_server
    certs = os.path.join(d, "certs")
    dead = vmenc.KMIPEndpoint(f"127.0.0.1:{_free_port()}", ca=os.path.join(certs, "ca.crt"),
                              cert=os.path.join(certs, "client.crt"), key=os.path.join(certs, "client.key"))
    with vmenc.KeyManager() as mgr:
        mgr.add_cluster("dead", [dead])
        with pytest.raises(vmenc.KMSUnavailableError):
            mgr.create_kek("dead", timeout=2)
    # a CA that did not sign the server: certificate verification fails
    other = str(tmp_path / "other")
    subprocess.run(["bash", SCRIPT, "--certs-only", other], check=True, capture_output=True, timeout=60)
    bad = vmenc.KMIPEndpoint(f"127.0.0.1:{port}", ca=os.path.join(other, "certs", "ca.crt"),
                             cert=os.path.join(certs, "client.crt"), key=os.path.join(certs, "client.key"))
    with vmenc.KeyManager() as mgr:
        mgr.add_cluster("bad", [bad])
        with pytest.raises(vmenc.KMSError):
            mgr.create_kek("bad", timeout=5)


def test_delete_vm_destroy_keys_at_pykmip(kmip_server, tmp_path):
    """Crypto-shredding with a real KMIP server (issue 24 item 1): a VM
    under a KMIP-backed storage policy is deleted with destroy_keys; the KEK
    is destroyed at PyKMIP, and a copy of the VM home made before the delete
    opens locked afterwards."""
    d, port = kmip_server
    certs = os.path.join(d, "certs")
    wsdir = str(tmp_path / "ws")
    pw = bytearray(b"kmip shredding passphrase")
    vmenc.Workspace.create(wsdir, pw, "alice", kdf_ops=1, kdf_mem_kib=8192)
    with vmenc.Workspace(wsdir, pw, no_sync=True) as ws:
        ws.add_kms("alice", "kmip", "kmip", [f"127.0.0.1:{port}"],
                   options=[f"ca={certs}/ca.crt", f"cert={certs}/client.crt", f"key={certs}/client.key"])
        ws.policy.set_storage_policy("KMIP Policy", encrypt=True,
                                     file_classes=vmenc.policy.FILE_VM_HOME | vmenc.policy.FILE_DISKS,
                                     key_provider="kmip", migration=vmenc.Migration.OPPORTUNISTIC)
        vm = ws.create_vm("alice", "k1", disks=[1 << 20], storage_policy="KMIP Policy")
        with vm, vm.open_disk("alice", "scsi0:0") as disk:
            disk.pwrite(0, b"kmip-shredded data")
        home = os.path.dirname(ws.vm_path("k1"))
        backup = str(tmp_path / "backup")
        shutil.copytree(home, backup)
        r = ws.delete_vm("alice", "k1", destroy_keys=True)
        assert r.key_provider == "kmip" and r.num_keys_destroyed == 1
        ws.keymgr.forget()
        with pytest.raises(vmenc.KMSError):
            ws.keymgr.get_kek("kmip", r.kek_id, timeout=10)
        shutil.copytree(backup, home)
        with pytest.raises(vmenc.VMLockedError):
            ws.host.register_vm("alice", ws.vm_path("k1"), ws.folder)
