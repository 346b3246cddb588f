"""examples/embed/block_layer.py - the C block-layer example in Python:
a workspace, an encrypted VM with one disk, and a queue of guest requests.

    python3 block_layer.py WORKDIR      (libvmenc found normally or via VMENC_LIBRARY)
"""
import sys

import vmenc

PASS = bytearray(b"block layer demo passphrase")  # a host takes it from its secret store


def main(workdir: str) -> int:
    vmenc.Workspace.create(workdir, PASS, "admin", kdf_ops=1, kdf_mem_kib=8)
    with vmenc.Workspace(workdir, PASS, no_sync=True) as ws:
        vmenc.memzero(PASS)
        with ws.create_vm("admin", "guest01", storage_policy="VM Encryption Policy") as vm:
            disk_id = vm.add_disk("admin", 8 << 20, sector_size=4096)
            with vm.open_disk("admin", disk_id) as disk:
                queue = [(True, 0, 4096, 0xA1), (True, 1 << 20, 65536, 0xB2), (True, 12345, 100, 0xC3),
                         (False, 0, 4096, 0xA1), (False, 1 << 20, 65536, 0xB2), (False, 12345, 100, 0xC3)]
                bad = 0
                for write, off, n, fill in queue:
                    if write:
                        disk.pwrite(off, bytes([fill]) * n)
                    elif disk.pread(off, n) != bytes([fill]) * n:
                        bad += 1
                disk.flush()
                print(f"block_layer.py: vmenc {vmenc.version()}, disk {disk_id} of {vm.name}: "
                      f"{len(queue)} requests served, encrypted={disk.encrypted}, mismatches={bad}")
                ok = bad == 0 and disk.encrypted
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
