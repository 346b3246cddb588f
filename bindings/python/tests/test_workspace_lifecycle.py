"""Issue 24 through the Python binding: a VM's life in a workspace (create
with disks all or nothing, delete with crypto-shredding, unregister), the
context manager that saves, sessions bound to a principal, denials that
name the missing privilege, pread past the end, a missing provider file,
and a docstring on every public method."""
import inspect
import os
import shutil

import pytest

import vmenc

PASS = b"python lifecycle passphrase"
POLICY = "VM Encryption Policy"
MARKER = b"python lifecycle marker"


@pytest.fixture
def wsdir(tmp_path):
    d = str(tmp_path / "ws")
    vmenc.Workspace.create(d, bytearray(PASS), "alice", host_id="esx01", kdf_ops=1, kdf_mem_kib=8192)
    with vmenc.Workspace(d, bytearray(PASS), no_sync=True) as ws:
        ws.policy.add_user("bob")
        ws.policy.grant("bob", "root", vmenc.policy.ROLE_NO_CRYPTO_ADMIN)
        ws.policy.add_user("carol")
        ws.policy.grant("carol", "root", vmenc.policy.ROLE_READ_ONLY)
    return d


def open_ws(d):
    return vmenc.Workspace(d, bytearray(PASS), no_sync=True)


def make_vm(ws, name, policy=POLICY):
    vm = ws.create_vm("alice", name, disks=[1 << 20], storage_policy=policy)
    with vm, vm.open_disk("alice", "scsi0:0") as disk:
        disk.pwrite(4096, MARKER)


def read_marker(ws, name):
    with ws.open_vm("alice", name) as vm, vm.open_disk("alice", "scsi0:0", readonly=True) as disk:
        return disk.pread(4096, len(MARKER))


def test_context_manager_saves_without_save_policy(wsdir):
    with open_ws(wsdir) as ws:
        make_vm(ws, "web01")
        ws.policy.add_user("dave")
    # no save_policy() anywhere: a fresh open sees both
    with open_ws(wsdir) as ws:
        assert "web01" in ws.vms()
        assert ws.policy.has_privilege("alice", "web01", "System.Read")
        ws.policy.grant("dave", "web01", vmenc.policy.ROLE_READ_ONLY)  # dave exists
        assert read_marker(ws, "web01") == MARKER


def test_create_bad_disk_size_says_so_and_leaves_nothing(wsdir):
    with open_ws(wsdir) as ws:
        with pytest.raises(vmenc.UsageError, match="disk 0: 1000 bytes is not a positive multiple of the "
                                                   "512-byte sector"):
            ws.create_vm("alice", "x2", disks=[1000])
        assert "x2" not in ws.vms()
        ws.create_vm("alice", "x2", disks=[4096]).close()  # the name is free
        assert "x2" in ws.vms()


def test_delete_destroy_keys_shreds_a_backup(wsdir, tmp_path):
    with open_ws(wsdir) as ws:
        make_vm(ws, "shred")
        home = os.path.dirname(ws.vm_path("shred"))
        backup = str(tmp_path / "backup")
        shutil.copytree(home, backup)
        plan = ws.delete_vm("alice", "shred", destroy_keys=True, dry_run=True)
        assert plan.num_keys_destroyed == 1 and plan.num_files >= 3
        assert os.path.isdir(home)
        r = ws.delete_vm("alice", "shred", destroy_keys=True)
        assert r.num_keys_destroyed == 1 and r.kek_id
        assert not os.path.exists(home) and "shred" not in ws.vms()
        shutil.copytree(backup, home)
        with pytest.raises(vmenc.VMLockedError):
            ws.host.register_vm("alice", ws.vm_path("shred"), ws.folder)
        with pytest.raises((vmenc.KeyNotFoundError, vmenc.KMSError)):
            ws.keymgr.get_kek(r.key_provider, r.kek_id)


def test_unregister_keeps_files(wsdir):
    with open_ws(wsdir) as ws:
        make_vm(ws, "mig")
        ws.unregister_vm("alice", "mig")
        with pytest.raises(vmenc.Error):
            ws.policy.has_privilege("alice", "mig", "System.Read")  # not in the inventory
        ws.host.register_vm("alice", ws.vm_path("mig"), ws.folder).close()
        assert read_marker(ws, "mig") == MARKER


def test_denied_error_names_the_privilege(wsdir):
    with open_ws(wsdir) as ws:
        make_vm(ws, "db01")
        with pytest.raises(vmenc.DeniedError) as e:
            ws.delete_vm("carol", "db01")
        assert e.value.privilege == "VirtualMachine.Inventory.Delete"
        with pytest.raises(vmenc.DeniedError) as e:
            ws.delete_vm("bob", "db01", destroy_keys=True)
        assert e.value.privilege == "Cryptographer.ManageKeys"
        with ws.open_vm("alice", "db01") as vm:
            with pytest.raises(vmenc.DeniedError) as e:
                vm.apply_storage_policy("bob", "Datastore Default")
            assert e.value.privilege == "Cryptographer.Decrypt"
            assert e.value.object
            with pytest.raises(vmenc.DeniedError) as e:
                vm.open_disk("bob", "scsi0:0", readonly=True, export=True)
            assert e.value.privilege == "Cryptographer.Access"
        with pytest.raises(vmenc.DeniedError) as e:
            ws.edit_policy("bob", vmenc.EditOp.GRANT, name="bob", obj="root", role=vmenc.policy.ROLE_ADMIN)
        assert e.value.privilege is not None and e.value.privilege.startswith("Cryptographer.")
        assert isinstance(e.value, PermissionError)


def test_session_binds_the_principal(wsdir):
    with open_ws(wsdir) as ws:
        alice, carol = ws.session("alice"), ws.session("carol")
        alice.create_vm("s1", disks=[1 << 20], storage_policy=POLICY).close()
        assert carol.check(vmenc.Op.POWER_ON, vm="s1").allowed is False
        with pytest.raises(vmenc.DeniedError):
            carol.delete_vm("s1")
        with alice.open_vm("s1") as vm:
            assert vm.info().encrypted
        assert alice.delete_vm("s1").num_keys_kept == 1
        assert "alice" in repr(alice)
        with pytest.raises(ValueError):
            ws.session("")


def test_pread_past_the_end_is_a_clear_error(wsdir):
    with open_ws(wsdir) as ws:
        make_vm(ws, "p1")
        with ws.open_vm("alice", "p1") as vm, vm.open_disk("alice", "scsi0:0", readonly=True) as disk:
            assert len(disk.pread(disk.size - 10, 10)) == 10
            with pytest.raises(vmenc.UsageError, match=r"passes the end of the disk \(1048576 bytes\)"):
                disk.pread(disk.size - 10, 11)
            with pytest.raises(vmenc.UsageError, match="passes the end"):
                disk.readinto(disk.size, bytearray(1))


def test_missing_secret_file_leaves_only_that_provider_out(wsdir, tmp_path):
    secret = str(tmp_path / "tenant.secret")
    with open(secret, "w") as f:
        f.write("tenant passphrase\n")
    with open_ws(wsdir) as ws:
        ws.add_kms("alice", "tenant", "file", [str(tmp_path / "tenant.vks")],
                   options=["kdf_ops=1", "kdf_mem_kib=8192"], secret_file=secret, create=True)
    os.unlink(secret)
    with open_ws(wsdir) as ws:
        info = {k.alias: k for k in ws.kms_providers()}
        assert info["native"].loaded and info["native"].audit_key
        assert not info["tenant"].loaded
        assert "tenant" in info["tenant"].load_detail and secret in info["tenant"].load_detail
        ws.remove_kms("alice", "tenant")
        assert [k.alias for k in ws.kms_providers()] == ["native"]


def _public_members():
    for name in vmenc.__all__:
        obj = getattr(vmenc, name)
        if inspect.isclass(obj) and obj.__module__.startswith("vmenc"):
            yield name, obj
            for mname, m in vars(obj).items():
                if mname.startswith("_"):
                    continue
                if isinstance(m, (staticmethod, classmethod)):
                    m = m.__func__
                if isinstance(m, property):
                    m = m.fget
                if inspect.isfunction(m):
                    yield f"{name}.{mname}", m
        elif inspect.isfunction(obj) and obj.__module__.startswith("vmenc"):
            yield name, obj


def test_every_public_method_has_a_docstring():
    missing = [n for n, o in _public_members()
               if not (inspect.getdoc(o) or "").strip() and not (inspect.isclass(o) and issubclass(o, int))]
    assert not missing, "no docstring: " + ", ".join(missing)
