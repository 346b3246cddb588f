import os
import shutil
import subprocess

import pytest

import vmenc

ALIAS = "native-kp"
POLICY = "VM Encryption Policy"


def fast_file_endpoint(path, create=True):
    return vmenc.FileEndpoint(path, bytearray(b"test passphrase"), create=create, kdf_ops=1, kdf_mem_kib=8)


def make_policy():
    p = vmenc.Policy("vcenter")
    p.add_object("dc1", vmenc.ObjectType.DATACENTER, "vcenter")
    p.add_object("esx01", vmenc.ObjectType.HOST, "dc1")
    p.add_object("vms", vmenc.ObjectType.FOLDER, "dc1")
    p.add_user("alice")
    p.add_user("bob")
    p.grant("alice", "vcenter", vmenc.policy.ROLE_ADMIN)
    p.grant("bob", "vcenter", vmenc.policy.ROLE_NO_CRYPTO_ADMIN)
    p.set_storage_policy(POLICY, encrypt=True,
                         file_classes=vmenc.policy.FILE_VM_HOME | vmenc.policy.FILE_DISKS,
                         key_provider=ALIAS, migration=vmenc.Migration.REQUIRED)
    p.set_storage_policy("Datastore Default", encrypt=False)
    return p


class HostEnv:
    def __init__(self, d):
        self.dir = d
        self.keymgr = vmenc.KeyManager()
        self.keymgr.add_cluster(ALIAS, [fast_file_endpoint(os.path.join(d, "ks.vks"))])
        self.policy = make_policy()
        self.audit_key = bytearray(vmenc.random_bytes(32))
        self.log = vmenc.AuditLog(os.path.join(d, "audit.log"), self.audit_key, fsync="never")
        self.audit = vmenc.Audit()
        self.audit.add_log(self.log)
        self.host = vmenc.Host("esx01", self.keymgr, self.policy, self.audit, no_sync=True)

    def close(self):
        for o in (self.host, self.audit, self.log, self.policy, self.keymgr):
            o.close()


@pytest.fixture
def hostenv(tmp_path):
    env = HostEnv(str(tmp_path))
    yield env
    env.close()
