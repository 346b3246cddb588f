"""A workspace: one directory holding everything a host needs (keystore,
policy, audit log, datastore), loaded in one call. See docs/workspace.md."""
from __future__ import annotations

from ctypes import byref, c_char_p, c_size_t, c_uint64, c_void_p, create_string_buffer, sizeof, string_at
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

from . import _lib
from ._handle import Handle
from .audit import Audit
from .errors import Error, check, error_for
from .kms import KeyManager
from .policy import Decision, EditOp, Op, Policy, _decision, _edit_result, _edit_struct
from .vm import VM, Host


def _ws_error(status: int, e: _lib.WorkspaceError) -> Error:
    detail = _lib.dec(e.message)
    f = _lib.dec(e.file)
    if f:
        detail = f"{f}{':' + str(e.line) if e.line else ''}: {detail}"
    err = error_for(status, detail)
    err.file = f  # type: ignore[attr-defined]
    err.line = int(e.line)  # type: ignore[attr-defined]
    return err


@dataclass(frozen=True)
class ResealResult:
    """What :meth:`Workspace.reseal_policy` did."""
    old_sha256: str      # policy.json as it was on disk
    new_sha256: str      # ... and as written
    generation: int      # the new seal's generation
    was_sealed: bool     # the old file carried a seal line
    seal_was_valid: bool  # ... which verified


@dataclass(frozen=True)
class DeleteResult:
    """What :meth:`Workspace.delete_vm` did (or, with ``dry_run``, would do)."""
    num_files: int           # files removed from the VM home
    num_bytes: int           # their size
    num_keys: int            # distinct KEKs the VM uses
    num_keys_destroyed: int  # of which destroyed at their key provider
    num_keys_kept: int       # of which kept (still used elsewhere, or no destroy_keys)
    key_provider: str        # the VM key's provider ("" for a plain VM)
    kek_id: str              # the VM key's KEK ID ("" for a plain VM)
    message: str             # why a key was kept, or the step that failed ("")


@dataclass(frozen=True)
class KMSInfo:
    """One key provider of the workspace (a [kms] section), as loaded."""
    alias: str
    type: str                # "file", "kmip", "pkcs11"
    endpoints: tuple         # as configured
    num_loaded: int          # endpoints built at open
    load_status: int         # 0, or the first endpoint's failure
    load_detail: str         # names the provider and the file or endpoint at fault ("" if loaded)
    embedded: bool           # the workspace's own keystore
    audit_key: bool          # holds the audit chain key's KEK

    @property
    def loaded(self) -> bool:
        """True when every endpoint was built."""
        return self.load_status == 0


def _cstr_array(items: Sequence[str], terminate: bool):
    arr = (c_char_p * (len(items) + (1 if terminate else 0) or 1))(*[_lib.enc(i) for i in items])
    return arr


class Workspace(Handle):
    """An open workspace. Its host, policy, key manager and audit dispatcher
    are views owned by the workspace (closing them does nothing; the
    workspace stays alive while they or VMs opened through it are in use)."""

    _free = _lib.lib.vmenc_workspace_free

    def __init__(self, directory: str, passphrase=None, *, audit_log: Optional[str] = None,
                 lock_timeout: float = 0.0, no_sync: bool = False) -> None:
        pp, pn = _lib.inbuf(passphrase) if passphrase is not None else (None, 0)
        o = _lib.WorkspaceOpenOptions(sizeof(_lib.WorkspaceOpenOptions), _lib.addr(pp), pn,
                                      _lib.enc(audit_log), int(lock_timeout * 1000), 1 if no_sync else 0)
        e = _lib.WorkspaceError(sizeof(_lib.WorkspaceError))
        out = c_void_p()
        s = _lib.lib.vmenc_workspace_open(_lib.enc(directory), byref(o), byref(e), byref(out))
        if s:
            raise _ws_error(s, e)
        super().__init__(out)
        self._views: dict = {}

    @staticmethod
    def create(directory: str, passphrase, admin: str, *, host_id: Optional[str] = None,
               key_provider: Optional[str] = None, folder: Optional[str] = None,
               default_policies: bool = True, kdf_ops: int = 0, kdf_mem_kib: int = 0) -> None:
        """Make a new workspace in ``directory`` (created, or empty)."""
        pp, pn = _lib.inbuf(passphrase)
        o = _lib.WorkspaceCreateOptions(sizeof(_lib.WorkspaceCreateOptions), _lib.addr(pp), pn,
                                        _lib.enc(admin), _lib.enc(host_id), _lib.enc(key_provider),
                                        _lib.enc(folder), kdf_ops, kdf_mem_kib, 1 if default_policies else 0)
        e = _lib.WorkspaceError(sizeof(_lib.WorkspaceError))
        s = _lib.lib.vmenc_workspace_create(_lib.enc(directory), byref(o), byref(e))
        if s:
            raise _ws_error(s, e)

    @staticmethod
    def reseal_policy(directory: str, passphrase, principal: str, *,
                      audit_log: Optional[str] = None, no_sync: bool = False) -> ResealResult:
        """Re-seal the policy document of the workspace in ``directory`` as it is
        on disk (the recovery for one edited outside the library, which
        opening refuses with AuthError). ``principal`` must hold the Admin role
        on the root of that document (DeniedError otherwise, nothing written);
        audited as "policy.reseal" either way. Other failures as opening."""
        pp, pn = _lib.inbuf(passphrase) if passphrase is not None else (None, 0)
        o = _lib.WorkspaceOpenOptions(sizeof(_lib.WorkspaceOpenOptions), _lib.addr(pp), pn,
                                      _lib.enc(audit_log), 0, 1 if no_sync else 0)
        e = _lib.WorkspaceError(sizeof(_lib.WorkspaceError))
        r = _lib.WorkspaceResealResult(sizeof(_lib.WorkspaceResealResult))
        s = _lib.lib.vmenc_workspace_reseal_policy(_lib.enc(directory), byref(o), _lib.enc(principal),
                                                   byref(e), byref(r))
        if s:
            raise _ws_error(s, e)
        return ResealResult(_lib.dec(r.old_sha256), _lib.dec(r.new_sha256), int(r.generation),
                            bool(r.was_sealed), bool(r.seal_was_valid))

    def _view(self, key, fn, cls):
        v = self._views.get(key)
        if v is None or v.closed:
            v = cls._borrowed(fn(self), self)
            self._views[key] = v
        return v

    @property
    def host(self) -> Host:
        """The host every VM operation goes through (a view owned by the workspace)."""
        return self._view("host", _lib.lib.vmenc_workspace_host, Host)

    @property
    def policy(self) -> Policy:
        """The policy loaded from the sealed document (a view)."""
        return self._view("policy", _lib.lib.vmenc_workspace_policy, Policy)

    @property
    def keymgr(self) -> KeyManager:
        """The key manager, one cluster per key provider (a view; checks no principal)."""
        return self._view("keymgr", _lib.lib.vmenc_workspace_keymgr, KeyManager)

    @property
    def audit(self) -> Audit:
        """The audit dispatcher whose sink is the workspace's log (a view)."""
        return self._view("audit", _lib.lib.vmenc_workspace_audit, Audit)

    @property
    def directory(self) -> str:
        """The workspace directory."""
        return _lib.dec(_lib.lib.vmenc_workspace_dir(self))

    @property
    def id(self) -> str:
        """The workspace's UUID."""
        return _lib.dec(_lib.lib.vmenc_workspace_id(self))

    @property
    def datastore_dir(self) -> str:
        """The datastore directory (one folder per VM)."""
        return _lib.dec(_lib.lib.vmenc_workspace_datastore_dir(self))

    @property
    def folder(self) -> str:
        """The inventory folder new VMs go to."""
        return _lib.dec(_lib.lib.vmenc_workspace_folder(self))

    @property
    def audit_log_path(self) -> str:
        """The path of the audit log this workspace appends to."""
        return _lib.dec(_lib.lib.vmenc_workspace_audit_log_path(self))

    def vm_path(self, name: str) -> str:
        """The path of VM ``name``'s configuration (datastore/NAME/NAME.vmx)."""
        buf = create_string_buffer(4096)
        check(_lib.lib.vmenc_workspace_vm_path(self, _lib.enc(name), buf, len(buf)))
        return buf.value.decode()

    def open_vm(self, principal: str, name: str, *, allow_locked: bool = False) -> VM:
        """Open VM ``name`` for ``principal``; VMLockedError when a key is missing, unless ``allow_locked``."""
        out = c_void_p()
        s = _lib.lib.vmenc_workspace_open_vm(self, _lib.enc(principal), _lib.enc(name), byref(out))
        return VM._opened(s, out, self.host, allow_locked)

    def create_vm(self, principal: str, name: str, *, disks: Sequence[int] = (), sector_size: int = 0,
                  storage_policy: Optional[str] = None, kek_id: Optional[str] = None, memory_bytes: int = 0,
                  folder: Optional[str] = None, pool: Optional[str] = None,
                  datastore: Optional[str] = None) -> VM:
        """Create VM ``name`` in the datastore (``folder``: default the
        workspace's) with one disk per size in ``disks`` (bytes, multiples of
        ``sector_size``: 512 or 4096), all or nothing: a bad size raises
        UsageError naming the disk and the sector before anything is made,
        and a later failure removes the VM again. Encrypted from birth when
        ``storage_policy`` encrypts. Saved at once (no save call needed).
        ``pool``/``datastore`` (policy objects to check) take the host's
        create path, without ``disks``."""
        if pool is not None or datastore is not None:
            if disks:
                raise TypeError("disks= cannot be combined with pool= or datastore=")
            import os
            home = os.path.join(self.datastore_dir, name)
            return self.host.create_vm(principal, home, name, folder or self.folder, pool=pool,
                                       datastore=datastore, storage_policy=storage_policy, kek_id=kek_id,
                                       memory_bytes=memory_bytes)
        caps = (c_uint64 * max(len(disks), 1))(*[int(d) for d in disks])
        spec = _lib.WorkspaceVMSpec(sizeof(_lib.WorkspaceVMSpec), _lib.enc(name), _lib.enc(folder),
                                    _lib.enc(storage_policy), _lib.enc(kek_id), memory_bytes, caps, len(disks),
                                    sector_size, 0)
        e = _lib.WorkspaceError(sizeof(_lib.WorkspaceError))
        out = c_void_p()
        s = _lib.lib.vmenc_workspace_create_vm(self, _lib.enc(principal), byref(spec), byref(e), byref(out))
        if s:
            raise _ws_error(s, e)
        return VM._adopt(out, self.host)

    def delete_vm(self, principal: str, name: str, *, keep_files: bool = False, destroy_keys: bool = False,
                  dry_run: bool = False) -> DeleteResult:
        """Delete VM ``name``: its files (unless ``keep_files``), its authority
        record and its inventory entry (VirtualMachine.Inventory.Delete).
        ``destroy_keys`` also destroys, at the key provider, every KEK of the
        VM that nothing else of the workspace uses (Cryptographer.ManageKeys):
        afterwards no copy of its files, a backup included, can be decrypted.
        ``dry_run`` only plans. Every step is audited. DeniedError (with
        ``.privilege``), ResourceError LOCKED when another process has the VM
        open (nothing removed), KMS errors when a key cannot be destroyed
        (before any file goes)."""
        flags = ((_lib.WORKSPACE_DELETE_KEEP_FILES if keep_files else 0)
                 | (_lib.WORKSPACE_DELETE_DESTROY_KEYS if destroy_keys else 0)
                 | (_lib.WORKSPACE_DELETE_DRY_RUN if dry_run else 0))
        r = _lib.WorkspaceDeleteResult(sizeof(_lib.WorkspaceDeleteResult))
        s = _lib.lib.vmenc_workspace_delete_vm(self, _lib.enc(principal), _lib.enc(name), flags, byref(r))
        res = DeleteResult(int(r.num_files), int(r.num_bytes), int(r.num_keys), int(r.num_keys_destroyed),
                           int(r.num_keys_kept), _lib.dec(r.key_provider), _lib.dec(r.kek_id),
                           _lib.dec(r.message))
        if s:
            err = error_for(s, res.message)
            err.result = res  # type: ignore[attr-defined]
            raise err
        return res

    def unregister_vm(self, principal: str, name: str) -> None:
        """Take VM ``name`` out of the inventory and this host's control store,
        keeping its files and keys (VirtualMachine.Inventory.Unregister); the
        home can be registered again (:meth:`Host.register_vm`)."""
        check(_lib.lib.vmenc_workspace_unregister_vm(self, _lib.enc(principal), _lib.enc(name)))

    def kms_providers(self) -> list:
        """The key providers ([kms] sections) as loaded, in configuration order:
        a list of :class:`KMSInfo`. A provider whose secret_file or keystore
        is missing is listed with ``loaded`` False and a ``load_detail`` naming
        the file; its VMs open locked."""
        out = []
        for i in range(int(_lib.lib.vmenc_workspace_num_kms(self))):
            k = _lib.WorkspaceKMSInfo(sizeof(_lib.WorkspaceKMSInfo))
            check(_lib.lib.vmenc_workspace_get_kms_info(self, i, byref(k)))
            eps = []
            for j in range(int(k.num_endpoints)):
                buf = create_string_buffer(4096)
                check(_lib.lib.vmenc_workspace_kms_endpoint(self, i, j, buf, len(buf)))
                eps.append(buf.value.decode())
            out.append(KMSInfo(_lib.dec(k.alias), _lib.dec(k.type), tuple(eps), int(k.num_loaded),
                               int(k.load_status), _lib.dec(k.load_detail), bool(k.embedded), bool(k.audit_key)))
        return out

    def session(self, principal: str) -> "Session":
        """A :class:`Session`: this workspace's operations bound to ``principal``."""
        return Session(self, principal)

    def vms(self) -> list:
        """Names of the VMs in the datastore, in name order."""
        names: list = []

        def cb(_ctx, name):
            names.append(_lib.dec(name))
            return 0
        fn = _lib.WORKSPACE_VM_FN(cb)
        check(_lib.lib.vmenc_workspace_foreach_vm(self, fn, None))
        return names

    def save_policy(self) -> None:
        """Does nothing; kept for compatibility. Every change to the policy
        (a VM created, a grant, a disk added...) is written to the
        workspace's sealed policy document by the call that makes it."""
        check(_lib.lib.vmenc_workspace_save_policy(self))

    # -- audited policy edits and views (the edit rule: docs/policy.md)
    def edit_policy(self, actor: str, op: EditOp, **fields) -> Decision:
        """Apply one policy edit on behalf of ``actor``, decided by the library and
        audited (applied, denied with the missing privilege, or failed). Fields as
        :meth:`Policy.edit_as`. Raises DeniedError with ``.decision`` when refused."""
        e, keep = _edit_struct(op, **fields)
        d = _decision()
        s = _lib.lib.vmenc_workspace_policy_edit(self, _lib.enc(actor), byref(e), byref(d))
        del keep
        return _edit_result(s, d)

    def policy_show(self, principal: str) -> bytes:
        """The policy document, for a ``principal`` holding System.Read on the root
        (audited; DeniedError otherwise)."""
        out, n = c_void_p(), c_size_t()
        d = _decision()
        s = _lib.lib.vmenc_workspace_policy_show(self, _lib.enc(principal), byref(out), byref(n), byref(d))
        _edit_result(s, d)
        try:
            return string_at(out, n.value)
        finally:
            _lib.lib.vmenc_policy_buffer_free(out)

    def authorize_audit_read(self, principal: str, operation: str = "audit.show") -> None:
        """Raise DeniedError unless ``principal`` may read the audit log (System.Read on
        the root); the read or its denial is audited as ``operation``."""
        d = _decision()
        _edit_result(_lib.lib.vmenc_workspace_audit_read(self, _lib.enc(principal), _lib.enc(operation),
                                                         byref(d)), d)

    def authorize(self, principal: str, op: Op, operation: str, target: Optional[str] = None, *,
                  vm: Optional[str] = None, folder: Optional[str] = None, host: Optional[str] = None,
                  pool: Optional[str] = None, datastore: Optional[str] = None, flags: int = 0) -> Decision:
        """Authorize an operation the caller carries out itself through lower
        layers (e.g. creating a key with :attr:`keymgr`: ``Op.MANAGE_KEYS``).
        A denial is audited at once as ``operation`` on ``target`` and raises
        DeniedError (``.decision`` set); an allowed call must be followed by
        :meth:`audit_result` once the operation has run."""
        req = _lib.PolicyRequest(sizeof(_lib.PolicyRequest), int(op), _lib.enc(vm), _lib.enc(folder),
                                 _lib.enc(host), _lib.enc(pool), _lib.enc(datastore), flags)
        d = _decision()
        s = _lib.lib.vmenc_workspace_authorize(self, _lib.enc(principal), byref(req), _lib.enc(operation),
                                               _lib.enc(target), byref(d))
        return _edit_result(s, d)

    def audit_result(self, principal: str, operation: str, target: Optional[str] = None, *,
                     status: int = 0, key_provider: Optional[str] = None, key_id: Optional[str] = None,
                     reason: Optional[str] = None) -> None:
        """Record the outcome of an operation allowed by :meth:`authorize`."""
        check(_lib.lib.vmenc_workspace_audit_result(self, _lib.enc(principal), _lib.enc(operation),
                                                    _lib.enc(target), _lib.enc(key_provider),
                                                    _lib.enc(key_id), int(status), _lib.enc(reason)))

    # -- key providers (policy MANAGE_KEY_SERVERS / MANAGE_KEYS; audited)
    def add_kms(self, principal: str, alias: str, type: str, endpoints: Sequence[str], *,
                options: Iterable[str] = (), secret_file: Optional[str] = None,
                create: bool = False) -> None:
        """Add a key provider (a [kms] section) on behalf of ``principal``
        (MANAGE_KEY_SERVERS; DeniedError otherwise)."""
        eps = _cstr_array(list(endpoints), False)
        opts = list(options)
        oa = _cstr_array(opts, True) if opts else None
        spec = _lib.WorkspaceKMSSpec(sizeof(_lib.WorkspaceKMSSpec), _lib.enc(alias), _lib.enc(type), eps,
                                     len(endpoints), oa, _lib.enc(secret_file),
                                     _lib.WORKSPACE_KMS_CREATE if create else 0)
        check(_lib.lib.vmenc_workspace_add_kms(self, _lib.enc(principal), byref(spec)))

    def create_key(self, principal: str, alias: str, name: Optional[str] = None,
                   timeout: Optional[float] = None) -> str:
        """Create a KEK in key provider ``alias`` on behalf of ``principal``
        (MANAGE_KEYS, as ``vmenc kms create-key``): authorized, created with
        :attr:`keymgr`, and audited as "kms.create_key"; return its ID.
        DeniedError (audited, nothing created) when refused."""
        self.authorize(principal, Op.MANAGE_KEYS, "kms.create_key", alias)
        try:
            kid = self.keymgr.create_kek(alias, name, timeout)
        except Error as e:
            self.audit_result(principal, "kms.create_key", alias, status=e.status, key_provider=alias)
            raise
        self.audit_result(principal, "kms.create_key", alias, key_provider=alias, key_id=kid)
        return kid

    def remove_kms(self, principal: str, alias: str) -> None:
        """Remove key provider ``alias`` (MANAGE_KEY_SERVERS); its keys are not destroyed."""
        check(_lib.lib.vmenc_workspace_remove_kms(self, _lib.enc(principal), _lib.enc(alias)))

    def kms_backup(self, principal: str, alias: str, backup_path: str, backup_passphrase) -> None:
        """Export file keystore ``alias`` to ``backup_path`` (MANAGE_KEYS). Keep the
        passphrase in a bytearray and wipe it afterwards."""
        pp, pn = _lib.inbuf(backup_passphrase)
        check(_lib.lib.vmenc_workspace_kms_backup(self, _lib.enc(principal), _lib.enc(alias),
                                                  _lib.enc(backup_path), _lib.addr(pp), pn))

    def close(self) -> None:
        """Close the views and free the workspace (nothing to save: every change
        was written when it was made). Idempotent."""
        for v in list(getattr(self, "_views", {}).values()):
            v.close()
        super().close()

    def __exit__(self, *exc) -> None:
        """Leaving a ``with`` block saves and closes: every policy change is
        already durable, and :meth:`save_policy` confirms it before the close."""
        try:
            if not self.closed:
                self.save_policy()
        finally:
            self.close()

    def __repr__(self) -> str:
        return f"<vmenc.Workspace{' closed' if self.closed else ' ' + repr(self.directory)}>"


class Session:
    """A workspace seen by one principal: every call is made on behalf of
    ``principal``, so it cannot be forgotten or mixed up between calls (the
    library still decides and audits each one). Cheap: it holds the
    workspace, not a copy; closing the workspace ends it.

    >>> with vmenc.Workspace(d, passphrase) as ws:
    ...     alice = ws.session("alice")
    ...     vm = alice.create_vm("web01", disks=[1 << 30], storage_policy="VM Encryption Policy")
    """

    def __init__(self, workspace: Workspace, principal: str) -> None:
        if not principal:
            raise ValueError("a session needs a principal")
        self.workspace = workspace
        self.principal = principal

    def open_vm(self, name: str, *, allow_locked: bool = False) -> VM:
        """:meth:`Workspace.open_vm` as this principal."""
        return self.workspace.open_vm(self.principal, name, allow_locked=allow_locked)

    def create_vm(self, name: str, **kw) -> VM:
        """:meth:`Workspace.create_vm` as this principal."""
        return self.workspace.create_vm(self.principal, name, **kw)

    def delete_vm(self, name: str, **kw) -> DeleteResult:
        """:meth:`Workspace.delete_vm` as this principal."""
        return self.workspace.delete_vm(self.principal, name, **kw)

    def unregister_vm(self, name: str) -> None:
        """:meth:`Workspace.unregister_vm` as this principal."""
        self.workspace.unregister_vm(self.principal, name)

    def edit_policy(self, op: EditOp, **fields) -> Decision:
        """:meth:`Workspace.edit_policy` with this principal as the actor."""
        return self.workspace.edit_policy(self.principal, op, **fields)

    def policy_show(self) -> bytes:
        """:meth:`Workspace.policy_show` as this principal."""
        return self.workspace.policy_show(self.principal)

    def check(self, op: Op, **request) -> Decision:
        """Whether this principal may perform ``op`` (:meth:`Policy.check`; not audited)."""
        return self.workspace.policy.check(self.principal, op, **request)

    def add_kms(self, alias: str, type: str, endpoints: Sequence[str], **kw) -> None:
        """:meth:`Workspace.add_kms` as this principal."""
        self.workspace.add_kms(self.principal, alias, type, endpoints, **kw)

    def remove_kms(self, alias: str) -> None:
        """:meth:`Workspace.remove_kms` as this principal."""
        self.workspace.remove_kms(self.principal, alias)

    def create_key(self, alias: str, name: Optional[str] = None, timeout: Optional[float] = None) -> str:
        """:meth:`Workspace.create_key` as this principal."""
        return self.workspace.create_key(self.principal, alias, name, timeout)

    def __repr__(self) -> str:
        return f"<vmenc.Session {self.principal!r} on {self.workspace!r}>"
