"""Issue 18's acceptance line through the Python binding: a NoCryptoAdmin
cannot encrypt, decrypt, open a console, download an encrypted VM (disk or
any state file) or configure key managers - by any sequence of calls.

alice is the workspace's Admin; bob holds NoCryptoAdmin on the root. alice
writes secret markers into an encrypted VM through the hypervisor's own
path (power-on opens). bob then tries every crypto operation the binding
offers, each once by name and then in a seeded random sequence mixed with
edits bob may make (new users, non-crypto roles, groups), acting also
through the principals he creates. Afterwards no principal of bob's holds a
Cryptographer.* privilege anywhere, alice holds every privilege, her data
reads back intact, and none of the bytes bob got contain a marker.

The non-export opens (the hypervisor's power-on path) are not "downloads":
the library grants them to whoever may power the VM on, as vSphere does,
and trusts the embedding hypervisor to use them only to run the VM.
"""
import os
import random

import pytest

import vmenc
from vmenc import EditOp, FileClass, Op

PASS = b"nocrypto workspace passphrase"
MIB = 1 << 20
ENC_POLICY = "VM Encryption Policy"
PLAIN_POLICY = "Datastore Default"
MARK = b"ALICE-SECRET-MARKER-"
CRYPTO = [p for p in vmenc.policy.privileges() if p.startswith("Cryptographer.")]
# (class, index) of every state file kind; VMSN/VMEM take a snapshot number.
FILES = [(FileClass.NVRAM, 0), (FileClass.VMSS, 0), (FileClass.VMSN, 1), (FileClass.VMEM, 1),
         (FileClass.VSWP, 0)]


def marker(tag):
    return MARK + tag.encode() + b"-END"


class World:
    def __init__(self, d):
        self.dir = os.path.join(d, "ws")
        vmenc.Workspace.create(self.dir, bytearray(PASS), "alice", kdf_ops=1, kdf_mem_kib=8)
        self.ws = vmenc.Workspace(self.dir, bytearray(PASS), no_sync=True)
        self.p = self.ws.policy
        # Trusted bootstrap (the plain calls): bob is a NoCryptoAdmin of the
        # whole inventory; a group holding Admin exists for him to try to join.
        self.p.add_user("bob")
        self.p.grant("bob", "root", vmenc.policy.ROLE_NO_CRYPTO_ADMIN)
        self.p.add_group("cryptos")
        self.p.grant("cryptos", "root", vmenc.policy.ROLE_ADMIN)
        self.host = self.ws.host.host_id
        self.got = []  # every byte string bob obtained
        self.secret = self.ws.create_vm("alice", "secret", storage_policy=ENC_POLICY, memory_bytes=MIB)
        self.plain = self.ws.create_vm("alice", "plainvm", storage_policy=PLAIN_POLICY)
        self.disk = self.secret.add_disk("alice", MIB)
        self.pdisk = self.plain.add_disk("alice", MIB)
        assert self.secret.info().encrypted and not self.plain.info().encrypted
        # alice's data, through the hypervisor's own path.
        with self.secret.open_disk("alice", self.disk) as dk:
            dk.pwrite(4096, marker("disk"))
        for cls, idx in FILES:
            with self.secret.open_file("alice", cls, idx, create=True) as f:
                f.pwrite(512, marker(cls.name))
        with self.plain.open_disk("alice", self.pdisk) as dk:
            dk.pwrite(0, marker("plaindisk"))
        self.secret.config_set("alice", "guestinfo.secret", marker("config").decode(), secret=True)
        self.objects = ["root", "dc", self.host, self.ws.folder, "secret", "plainvm"]
        self.bobs = ["bob"]  # bob and the principals he creates

    def close(self):
        for vm in (self.secret, self.plain):
            vm.close()
        self.ws.close()


@pytest.fixture
def world(tmp_path):
    w = World(str(tmp_path))
    yield w
    w.close()


def refused(fn, *a, **kw):
    """Call fn; it must be refused by the policy (DeniedError or a host-mode
    refusal); anything it returned counts as bytes obtained."""
    try:
        r = fn(*a, **kw)
    except vmenc.DeniedError:
        return
    raise AssertionError(f"{fn.__name__}{a} was allowed: {r!r}")


def read_all(handle, size):
    return handle.pread(0, size)


# -- the attempts. Each takes (world, actor, rng) and asserts refusal.

def try_grant_admin_root(w, who, rng):
    refused(w.ws.edit_policy, who, EditOp.GRANT, name=rng.choice(w.bobs), obj="root",
            role=vmenc.policy.ROLE_ADMIN)


def try_grant_admin_vm(w, who, rng):
    refused(w.p.grant_as, who, rng.choice(w.bobs), rng.choice(["secret", "plainvm", "dc"]),
            vmenc.policy.ROLE_ADMIN)


def try_crypto_role(w, who, rng):
    privs = ["System.Read"] + rng.sample(CRYPTO, rng.randint(1, 2))
    refused(w.ws.edit_policy, who, EditOp.ADD_ROLE, name=f"R{rng.randrange(1000)}", privileges=privs)


def try_join_admin_group(w, who, rng):
    refused(w.p.add_member_as, who, "cryptos", rng.choice(w.bobs))


def try_weaken_alice(w, who, rng):
    obj = rng.choice(w.objects)
    if rng.random() < 0.5:
        refused(w.ws.edit_policy, who, EditOp.REVOKE, name="alice", obj="root")
    else:
        role = rng.choice([vmenc.policy.ROLE_NO_ACCESS, vmenc.policy.ROLE_READ_ONLY,
                           vmenc.policy.ROLE_NO_CRYPTO_ADMIN])
        refused(w.p.grant_as, who, "alice", obj, role)


def try_storage_policy_def(w, who, rng):
    refused(w.p.set_storage_policy_as, who, f"sp{rng.randrange(100)}", encrypt=True,
            file_classes=vmenc.policy.FILE_VM_HOME | vmenc.policy.FILE_DISKS, key_provider="native")


def try_encrypt(w, who, rng):
    refused(w.plain.apply_storage_policy, who, ENC_POLICY)


def try_decrypt(w, who, rng):
    refused(w.secret.apply_storage_policy, who, PLAIN_POLICY)


def try_rekey(w, who, rng):
    if rng.random() < 0.5:
        refused(w.secret.rekey_shallow, who)
    else:
        refused(w.secret.rekey_deep, who)


def try_clone(w, who, rng):
    n = f"c{rng.randrange(10**6)}"
    if rng.random() < 0.5:
        refused(w.secret.clone, who, os.path.join(w.ws.datastore_dir, n), n, w.ws.folder)
    else:
        refused(w.plain.clone, who, os.path.join(w.ws.datastore_dir, n), n, w.ws.folder,
                storage_policy=ENC_POLICY)
    assert not os.path.exists(os.path.join(w.ws.datastore_dir, n))


def try_disk_export(w, who, rng):
    ro = rng.random() < 0.5
    try:
        d = w.secret.open_disk(who, w.disk, readonly=ro, export=True)
    except vmenc.DeniedError:
        return
    with d:
        w.got.append(d.pread(0, MIB))
    raise AssertionError(f"{who} opened the encrypted disk for export (readonly={ro})")


def try_file_export(w, who, rng):
    cls, idx = rng.choice(FILES)
    ro = rng.random() < 0.5
    try:
        f = w.secret.open_file(who, cls, idx, readonly=ro, export=True)
    except vmenc.DeniedError:
        return
    with f:
        w.got.append(f.pread(0, f.size))
    raise AssertionError(f"{who} opened {cls.name} for export (readonly={ro})")


def try_console(w, who, rng):
    d = w.p.check(who, Op.CONSOLE, vm="secret")
    assert not d.allowed, d
    if w.p.has_privilege(who, "secret", "VirtualMachine.Interact.ConsoleInteract"):
        assert d.missing_privilege == "Cryptographer.Access", d  # the crypto half refuses
    try:
        w.got.append(w.secret.config_get(who, "guestinfo.secret").encode())
    except vmenc.DeniedError:
        return
    raise AssertionError(f"{who} read a secret configuration entry (console privilege)")


def try_export_check(w, who, rng):
    for op in (Op.EXPORT_VM, Op.UPLOAD_FILES, Op.ENCRYPT_VM, Op.DECRYPT_VM, Op.REKEY_DEEP,
               Op.MANAGE_KEYS, Op.MANAGE_KEY_SERVERS, Op.MANAGE_ENCRYPTION_POLICIES):
        d = w.p.check(who, op, vm="secret")
        assert not d.allowed, (op, d)


def try_add_kms(w, who, rng):
    n = f"kp{rng.randrange(1000)}"
    refused(w.ws.add_kms, who, n, "file", [os.path.join(w.dir, n + ".vks")], create=True)
    assert not os.path.exists(os.path.join(w.dir, n + ".vks"))


def try_remove_kms(w, who, rng):
    refused(w.ws.remove_kms, who, "native")


def try_create_key(w, who, rng):
    refused(w.ws.create_key, who, "native")


def try_backup(w, who, rng):
    path = os.path.join(w.dir, f"backup{rng.randrange(1000)}.vkb")
    refused(w.ws.kms_backup, who, "native", path, bytearray(b"a long backup passphrase"))
    assert not os.path.exists(path)


ATTEMPTS = [try_grant_admin_root, try_grant_admin_vm, try_crypto_role, try_join_admin_group,
            try_weaken_alice, try_storage_policy_def, try_encrypt, try_decrypt, try_rekey, try_clone,
            try_disk_export, try_file_export, try_console, try_export_check, try_add_kms,
            try_remove_kms, try_create_key, try_backup]


# -- edits bob may make; they change the state the attempts run against.
def allowed_edit(w, who, rng):
    k = 0 if len(w.bobs) < 3 and rng.random() < 0.5 else rng.randrange(4)
    try:
        if k == 0 and len(w.bobs) < 4:
            n = f"m{len(w.bobs)}"
            w.p.add_user_as(who, n)
            w.p.grant_as(who, n, rng.choice(w.objects), vmenc.policy.ROLE_NO_CRYPTO_ADMIN)
            w.bobs.append(n)
        elif k == 1:
            w.p.add_role_as(who, f"ok{rng.randrange(1000)}", ["System.Read", "VirtualMachine.Interact.PowerOn"])
        elif k == 2:
            g = f"g{rng.randrange(3)}"
            try:
                w.p.add_group_as(who, g)
            except vmenc.Error:
                pass
            w.p.add_member_as(who, g, rng.choice(w.bobs))
            w.p.grant_as(who, g, rng.choice(w.objects), vmenc.policy.ROLE_NO_CRYPTO_ADMIN)
        elif len(w.bobs) > 1:
            # never bob's own root permission: a bob who demoted himself tests nothing
            w.p.grant_as(who, rng.choice(w.bobs[1:]), rng.choice(w.objects),
                         rng.choice([vmenc.policy.ROLE_NO_CRYPTO_ADMIN, vmenc.policy.ROLE_READ_ONLY]))
    except vmenc.Error:
        pass  # a benign edit may fail (exists, a principal in the group...); not the point


def assert_invariants(w):
    for who in w.bobs:
        for obj in w.objects:
            held = [p for p in CRYPTO if w.p.has_privilege(who, obj, p)]
            assert not held, f"{who} holds {held} on {obj}"
            for op in (Op.CONSOLE, Op.EXPORT_VM, Op.ENCRYPT_VM, Op.DECRYPT_VM):
                if obj == "secret":
                    assert not w.p.check(who, op, vm=obj).allowed, (who, op)
    for obj in w.objects:
        for p in vmenc.policy.privileges():
            assert w.p.has_privilege("alice", obj, p), f"alice lost {p} on {obj}"
    # alice's data, through the hypervisor path
    with w.secret.open_disk("alice", w.disk, readonly=True) as dk:
        assert dk.pread(4096, len(marker("disk"))) == marker("disk")
    for cls, idx in FILES:
        with w.secret.open_file("alice", cls, idx, readonly=True) as f:
            assert f.pread(512, len(marker(cls.name))) == marker(cls.name)
    assert w.secret.info().encrypted and not w.plain.info().encrypted
    assert w.secret.config_get("alice", "guestinfo.secret") == marker("config").decode()
    for b in w.got:
        assert MARK not in b, "bob obtained alice's secret bytes"
    # alice can still export (she holds Cryptographer.Access): the check is not vacuous
    with w.secret.open_file("alice", FileClass.NVRAM, readonly=True, export=True) as f:
        assert marker("NVRAM") in f.pread(0, f.size)


@pytest.mark.parametrize("attempt", ATTEMPTS, ids=[a.__name__ for a in ATTEMPTS])
def test_nocrypto_each_attempt_refused(world, attempt):
    attempt(world, "bob", random.Random(attempt.__name__))
    assert_invariants(world)


def test_nocrypto_random_sequence(world):
    seed = int(os.environ.get("VMENC_NOCRYPTO_SEED", "18"))
    rng = random.Random(seed)
    for step in range(200):
        who = rng.choice(world.bobs)
        if rng.random() < 0.25:
            allowed_edit(world, who, rng)
        else:
            attempt = rng.choice(ATTEMPTS)
            try:
                attempt(world, who, rng)
            except AssertionError as e:
                raise AssertionError(f"seed {seed} step {step}: {who} {attempt.__name__}: {e}") from e
    assert len(world.bobs) > 1, "the sequence never acted through a principal bob made"
    assert_invariants(world)


def test_nocrypto_denials_audited(world):
    try_grant_admin_root(world, "bob", random.Random(1))
    try_file_export(world, "bob", random.Random(2))
    try_create_key(world, "bob", random.Random(3))
    with open(world.ws.audit_log_path, "rb") as f:
        log = f.read()
    denied = [ln for ln in log.splitlines() if b'"principal":"bob"' in ln and b'"outcome":"denied"' in ln]
    ops = {op for ln in denied for op in (b"policy.grant", b"vm.file_export", b"vm.file_upload",
                                          b"kms.create_key") if op in ln}
    assert b"policy.grant" in ops and b"kms.create_key" in ops and ops & {b"vm.file_export", b"vm.file_upload"}


def _hand_edit(w, old, new):
    """Edit policy.json outside the library (the seal line dropped)."""
    path = os.path.join(w.dir, "policy.json")
    with open(path, "rb") as f:
        lines = f.read().splitlines(keepends=True)
    assert lines[-1].startswith(b"#vmenc-seal v1 ")
    doc = b"".join(lines[:-1])
    assert old in doc
    doc = doc.replace(old, new, 1)
    with open(path, "wb") as f:
        f.write(doc)
    return path, doc


def _reopen(w):
    w.ws = vmenc.Workspace(w.dir, bytearray(PASS), no_sync=True)
    w.p = w.ws.policy
    w.secret = w.ws.open_vm("alice", "secret")
    w.plain = w.ws.open_vm("alice", "plainvm")


def test_nocrypto_cannot_reseal(world):
    # A document changed outside the library is refused at open, and only an
    # administrator of it (alice) may vouch for it; bob (NoCryptoAdmin in it)
    # is refused, audited, and nothing is written.
    world.close()
    path, doc = _hand_edit(world, b'{"name": "bob"}', b'{"name": "bob"}, {"name": "carol"}')
    with pytest.raises(vmenc.AuthError):
        vmenc.Workspace(world.dir, bytearray(PASS))
    with pytest.raises(vmenc.DeniedError):
        vmenc.Workspace.reseal_policy(world.dir, bytearray(PASS), "bob")
    with open(path, "rb") as f:
        assert f.read() == doc, "a refused reseal wrote the document"
    with pytest.raises(vmenc.AuthError):
        vmenc.Workspace(world.dir, bytearray(PASS))
    r = vmenc.Workspace.reseal_policy(world.dir, bytearray(PASS), "alice")
    assert not r.was_sealed and not r.seal_was_valid and len(r.new_sha256) == 64 and r.generation > 0
    _reopen(world)
    assert not world.p.has_privilege("bob", "root", "Cryptographer.Access")
    assert world.p.has_privilege("alice", "root", "Cryptographer.Access")
    with open(world.ws.audit_log_path, "rb") as f:
        log = f.read()
    assert any(b'"op":"policy.reseal"' in ln and b'"principal":"bob"' in ln and b'"outcome":"denied"' in ln
               for ln in log.splitlines())


@pytest.mark.xfail(strict=True, reason="library: vmenc_workspace_reseal_policy authorizes the principal "
                   "against the very document it is asked to vouch for, so a hand edit that makes bob "
                   "Admin lets bob reseal it (the passphrase is the only gate); see the h6 report")
def test_nocrypto_cannot_reseal_own_promotion(world):
    world.close()
    _hand_edit(world, b'"NoCryptoAdmin"', b'"Admin"')
    with pytest.raises(vmenc.DeniedError):
        vmenc.Workspace.reseal_policy(world.dir, bytearray(PASS), "bob")
