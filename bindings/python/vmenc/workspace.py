"""A workspace: one directory holding everything a host needs (keystore,
policy, audit log, datastore), loaded in one call. See docs/workspace.md."""
from __future__ import annotations

from ctypes import byref, c_size_t, c_void_p, create_string_buffer, sizeof, string_at
from typing import Optional

from . import _lib
from ._handle import Handle
from .audit import Audit
from .errors import Error, check, error_for
from .kms import KeyManager
from .policy import Decision, EditOp, Policy, _decision, _edit_result, _edit_struct
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

    def _view(self, key, fn, cls):
        v = self._views.get(key)
        if v is None or v.closed:
            v = cls._borrowed(fn(self), self)
            self._views[key] = v
        return v

    @property
    def host(self) -> Host:
        return self._view("host", _lib.lib.vmenc_workspace_host, Host)

    @property
    def policy(self) -> Policy:
        return self._view("policy", _lib.lib.vmenc_workspace_policy, Policy)

    @property
    def keymgr(self) -> KeyManager:
        return self._view("keymgr", _lib.lib.vmenc_workspace_keymgr, KeyManager)

    @property
    def audit(self) -> Audit:
        return self._view("audit", _lib.lib.vmenc_workspace_audit, Audit)

    @property
    def directory(self) -> str:
        return _lib.dec(_lib.lib.vmenc_workspace_dir(self))

    @property
    def id(self) -> str:
        return _lib.dec(_lib.lib.vmenc_workspace_id(self))

    @property
    def datastore_dir(self) -> str:
        return _lib.dec(_lib.lib.vmenc_workspace_datastore_dir(self))

    @property
    def folder(self) -> str:
        return _lib.dec(_lib.lib.vmenc_workspace_folder(self))

    @property
    def audit_log_path(self) -> str:
        return _lib.dec(_lib.lib.vmenc_workspace_audit_log_path(self))

    def vm_path(self, name: str) -> str:
        buf = create_string_buffer(4096)
        check(_lib.lib.vmenc_workspace_vm_path(self, _lib.enc(name), buf, len(buf)))
        return buf.value.decode()

    def open_vm(self, principal: str, name: str, *, allow_locked: bool = False) -> VM:
        out = c_void_p()
        s = _lib.lib.vmenc_workspace_open_vm(self, _lib.enc(principal), _lib.enc(name), byref(out))
        return VM._opened(s, out, self.host, allow_locked)

    def create_vm(self, principal: str, name: str, **kw) -> VM:
        """Create VM ``name`` in the datastore and the workspace's folder."""
        import os
        home = os.path.join(self.datastore_dir, name)
        return self.host.create_vm(principal, home, name, kw.pop("folder", self.folder), **kw)

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

    def close(self) -> None:
        for v in list(getattr(self, "_views", {}).values()):
            v.close()
        super().close()

    def __repr__(self) -> str:
        return f"<vmenc.Workspace{' closed' if self.closed else ' ' + repr(self.directory)}>"
