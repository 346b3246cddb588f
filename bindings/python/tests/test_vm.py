"""Host, VM, disks, state files, conversion, workspace."""
import os
import threading

import pytest

import vmenc
from conftest import POLICY

MIB = 1 << 20


def test_encrypted_vm_end_to_end(hostenv):
    h = hostenv.host
    home = os.path.join(hostenv.dir, "vm01")
    with h.create_vm("alice", home, "vm01", "vms", storage_policy=POLICY) as vm:
        info = vm.info()
        assert info.encrypted and not info.locked and info.key_provider == "native-kp"
        did = vm.add_disk("alice", 4 * MIB, sector_size=4096)
        [d] = vm.disks()
        assert d.disk_id == did and d.state == vmenc.DiskState.ENCRYPTED and d.capacity == 4 * MIB
        pattern = bytes(range(256)) * 16 * 64  # 256 KiB
        with vm.open_disk("alice", did) as disk:
            assert disk.encrypted and disk.size == 4 * MIB and disk.sector_size == 4096
            disk.pwrite(MIB, pattern)
            disk.pwrite(13, b"unaligned!")
            assert disk.pread(MIB, len(pattern)) == pattern
            assert disk.pread(13, 10) == b"unaligned!"
            buf = bytearray(4096)
            disk.readinto(MIB, buf)
            assert bytes(buf) == pattern[:4096]
            # many threads at once, disjoint ranges
            def worker(i):
                blob = bytes([i]) * 65536
                disk.pwrite(2 * MIB + i * 65536, blob)
                assert disk.pread(2 * MIB + i * 65536, 65536) == blob
            ts = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
            [t.start() for t in ts]
            [t.join() for t in ts]
        extent = os.path.join(home, d.file_name.replace(".vmdk", "-flat.vmdk"))
        raw = open(extent, "rb").read()
        assert pattern[:4096] not in raw  # no plaintext on the datastore
        with vm.open_file("alice", vmenc.FileClass.NVRAM, create=True) as f:
            f.pwrite(0, b"nvram" * 1000)
            assert f.pread(0, 5) == b"nvram" and f.size == 5000
        vm.config_set("alice", "guestinfo.secret", "s3cret", secret=True)
        assert vm.config_get("alice", "guestinfo.secret") == "s3cret"
        with pytest.raises(vmenc.DeniedError):
            vm.config_get("bob", "guestinfo.secret")
        with pytest.raises(vmenc.DeniedError):
            vm.open_disk("bob", did, export=True)
        vm.rekey_shallow("alice")
        vmx = os.path.join(home, "vm01.vmx")
    # reopen after a "restart" of the cache: KEK fetched again by ID
    hostenv.keymgr.forget()
    with h.open_vm("bob", vmx) as vm, vm.open_disk("bob", did, readonly=True) as disk:
        assert disk.pread(MIB, len(pattern)) == pattern
        with pytest.raises(vmenc.UsageError):
            disk.pwrite(0, b"x")
    r = vmenc.verify_files([hostenv.log.path], hostenv.audit_key)
    assert r.ok and r.num_records > 5


def test_conversion_encrypt_then_rollback(hostenv):
    h = hostenv.host
    home = os.path.join(hostenv.dir, "vm02")
    with h.create_vm("alice", home, "vm02", "vms") as vm:
        did = vm.add_disk("alice", 4 * MIB)
        data = os.urandom(4 * MIB)
        with vm.open_disk("alice", did) as disk:
            disk.pwrite(0, data)
        with pytest.raises(vmenc.DeniedError):
            vm.apply_storage_policy("bob", POLICY)
        seen = []
        vm.apply_storage_policy("alice", POLICY, segment_bytes=MIB,
                                progress=lambda disk_id, p: seen.append((disk_id, p.bytes_done)))
        assert seen and seen[-1][0] == did
        assert vm.disks()[0].state == vmenc.DiskState.ENCRYPTED
        with vm.open_disk("alice", did) as disk:
            assert disk.pread(0, len(data)) == data
            # disk-level engine: deep rekey, rolled back half way
            disk.convert_begin("alice", vmenc.ConvertKind.REKEY, segment_bytes=MIB)
            p = disk.convert_step(MIB)
            assert not p.done and p.state == vmenc.DiskState.REKEYING
            disk.convert_rollback("alice")
            while not disk.convert_step(MIB).done:
                pass
            assert disk.pread(0, len(data)) == data
            p = disk.convert("alice", vmenc.ConvertKind.DECRYPT, segment_bytes=MIB)
            assert p.done and p.state == vmenc.DiskState.PLAIN and not disk.encrypted
            assert disk.pread(0, len(data)) == data


def test_locked_vm(hostenv, tmp_path):
    home = os.path.join(hostenv.dir, "vm03")
    with hostenv.host.create_vm("alice", home, "vm03", "vms", storage_policy=POLICY):
        pass
    vmx = os.path.join(home, "vm03.vmx")
    # a second host whose key provider is a different (empty) keystore
    mgr = vmenc.KeyManager()
    from conftest import fast_file_endpoint
    mgr.add_cluster("native-kp", [fast_file_endpoint(str(tmp_path / "other.vks"))])
    with mgr, vmenc.Host("esx01", mgr, hostenv.policy, hostenv.audit) as h2:
        with pytest.raises(vmenc.VMLockedError):
            h2.open_vm("alice", vmx)
        with h2.open_vm("alice", vmx, allow_locked=True) as vm:
            assert vm.info().locked
            [(alias, kek, st)] = vm.missing_keys()
            assert alias == "native-kp" and st == vmenc.Status.E_KEY_NOT_FOUND
            with pytest.raises(vmenc.VMLockedError):
                vm.add_disk("alice", MIB)


def test_handles_outlive_their_parents(hostenv):
    """Closing a parent while a child is open defers the free (no use-after-free)."""
    home = os.path.join(hostenv.dir, "vm04")
    vm = hostenv.host.create_vm("alice", home, "vm04", "vms", storage_policy=POLICY)
    did = vm.add_disk("alice", MIB)
    disk = vm.open_disk("alice", did)
    vm.close()
    hostenv.host.close()
    disk.pwrite(0, b"still here")
    assert disk.pread(0, 10) == b"still here"
    disk.close()
    disk.close()  # idempotent


def test_workspace(tmp_path):
    d = str(tmp_path / "ws")
    pw = bytearray(b"workspace passphrase")
    vmenc.Workspace.create(d, pw, "admin", kdf_ops=1, kdf_mem_kib=8)
    with pytest.raises(vmenc.AuthError):
        vmenc.Workspace(d, b"wrong passphrase")
    with vmenc.Workspace(d, pw, no_sync=True) as ws:
        assert ws.folder and ws.id and ws.host.host_id
        with ws.create_vm("admin", "web01", storage_policy="VM Encryption Policy") as vm:
            did = vm.add_disk("admin", MIB)
        assert ws.vms() == ["web01"]
        with ws.open_vm("admin", "web01") as vm, vm.open_disk("admin", did) as disk:
            disk.pwrite(0, b"hello")
            assert disk.pread(0, 5) == b"hello"
        assert ws.policy.check("admin", vmenc.Op.VIEW, vm="web01")
        assert ws.vm_path("web01").endswith("web01/web01.vmx")
        log = ws.audit_log_path
    with pytest.raises(vmenc.PolicyError) as ei:
        vmenc.Workspace(str(tmp_path / "nothing"))
    assert ei.value.name == "VMENC_E_NOT_FOUND"
