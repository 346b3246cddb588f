"""Who may do what to which VM: privileges, roles, principals, inventory,
permissions, storage policies, host encryption mode, and decisions."""
from __future__ import annotations

import enum
from ctypes import byref, c_int, c_size_t, c_void_p, pointer, sizeof, string_at
from dataclasses import dataclass
from typing import Iterable, Optional, Union

from . import _lib
from ._handle import Handle
from .errors import DeniedError, Error, check, error_for

ROLE_ADMIN = "Admin"
ROLE_NO_CRYPTO_ADMIN = "NoCryptoAdmin"
ROLE_READ_ONLY = "ReadOnly"
ROLE_NO_ACCESS = "NoAccess"


class ObjectType(enum.IntEnum):
    """Inventory object types (root, datacenter, folder, host, cluster, pool, datastore, VM)."""
    ROOT = 0
    DATACENTER = 1
    FOLDER = 2
    CLUSTER = 3
    HOST = 4
    RESOURCE_POOL = 5
    DATASTORE = 6
    VM = 7


class HostState(enum.IntEnum):
    """A host's encryption mode (incapable, prepared, safe, pending incapable)."""
    INCAPABLE = 0
    PREPARED = 1
    SAFE = 2
    PENDING_INCAPABLE = 3


class Op(enum.IntEnum):
    """Operations the policy decides (vmenc_policy_op)."""
    ENCRYPT_VM = 1
    CREATE_VM = 2
    DECRYPT_VM = 3
    CLONE_VM = 4
    ADD_DISK = 5
    REKEY_SHALLOW = 6
    REKEY_DEEP = 7
    MIGRATE_VM = 8
    REGISTER_VM = 9
    REGISTER_HOST = 10
    ENABLE_HOST_ENCRYPTION = 11
    CONSOLE = 12
    EXPORT_VM = 13
    MANAGE_KEYS = 14
    MANAGE_KEY_SERVERS = 15
    MANAGE_ENCRYPTION_POLICIES = 16
    READ_KEY_SERVERS = 17
    POWER_ON = 18
    POWER_OFF = 19
    EDIT_SETTINGS = 20
    SNAPSHOT = 21
    VIEW = 22
    UPLOAD_FILES = 23
    READ_POLICY = 24


class EditOp(enum.IntEnum):
    """An authorized policy edit (vmenc_policy_edit_op)."""
    ADD_ROLE = 1
    ADD_USER = 2
    ADD_GROUP = 3
    ADD_MEMBER = 4
    ADD_OBJECT = 5
    GRANT = 6
    REVOKE = 7
    SET_STORAGE_POLICY = 8
    DISABLE_HOST_ENCRYPTION = 9


class Migration(enum.IntEnum):
    """A storage policy's migration encryption: disabled, opportunistic or required."""
    DISABLED = 0
    OPPORTUNISTIC = 1
    REQUIRED = 2


# Storage policy file classes.
FILE_VM_HOME = 1 << 0
FILE_DISKS = 1 << 1
FILE_CORE_DUMPS = 1 << 2

# Request flags.
REQ_VM_ENCRYPTED = 1 << 0
REQ_TARGET_ENCRYPTED = 1 << 1
REQ_POWERED_ON = 1 << 2


def privilege_name(priv: int) -> Optional[str]:
    """vSphere name of privilege number ``priv`` ("Cryptographer.Decrypt"), or None."""
    n = _lib.lib.vmenc_policy_privilege_name(priv)
    return n.decode() if n else None


def privilege_from_name(name: str) -> int:
    """The privilege number of a vSphere privilege name (UsageError if unknown)."""
    out = c_int()
    check(_lib.lib.vmenc_policy_privilege_from_name(_lib.enc(name), byref(out)))
    return out.value


def privileges() -> list:
    """Every privilege name of this library build, in enum order."""
    return [privilege_name(i) for i in range(_lib.lib.vmenc_policy_privilege_count())]


@dataclass(frozen=True)
class Decision:
    """The answer of :meth:`Policy.check`: allowed or why not."""
    allowed: bool
    status: int
    missing_privilege: Optional[str]
    missing_object: str
    enable_host_encryption: bool
    host: str
    message: str

    def __bool__(self) -> bool:
        return self.allowed

    def raise_for_status(self) -> None:
        """Raise :class:`vmenc.DeniedError` (or the matching error) unless allowed."""
        check(self.status, self.message)

    @classmethod
    def _from_c(cls, d: _lib.PolicyDecision) -> "Decision":
        return cls(bool(d.allowed), int(d.status), privilege_name(d.missing_privilege),
                   _lib.dec(d.missing_object), bool(d.enable_host_encryption), _lib.dec(d.host),
                   _lib.dec(d.message))


def _decision() -> _lib.PolicyDecision:
    return _lib.PolicyDecision(sizeof(_lib.PolicyDecision))


def _edit_struct(op: EditOp, *, name: Optional[str] = None, obj: Optional[str] = None,
                 role: Optional[str] = None, member: Optional[str] = None, propagate: bool = True,
                 object_type: int = 0, privileges: Iterable[Union[str, int]] = (),
                 storage_policy: Optional[_lib.StoragePolicySpec] = None) -> tuple:
    """A vmenc_policy_edit and the objects its pointers refer to (keep both alive)."""
    ps = [privilege_from_name(p) if isinstance(p, str) else int(p) for p in privileges]
    arr = (c_int * max(len(ps), 1))(*ps)
    e = _lib.PolicyEdit(sizeof(_lib.PolicyEdit), int(op), _lib.enc(name), _lib.enc(obj), _lib.enc(role),
                        _lib.enc(member), int(propagate), int(object_type), arr, len(ps),
                        pointer(storage_policy) if storage_policy is not None else None)
    return e, (arr, storage_policy)


def _edit_result(status: int, d: _lib.PolicyDecision) -> "Decision":
    """The decision of an applied edit; raise (with ``.decision``) otherwise."""
    decision = Decision._from_c(d)
    if status:
        err = error_for(status, decision.message)
        if isinstance(err, DeniedError):
            err._set_decision(decision)
        else:
            err.decision = decision  # type: ignore[attr-defined]
        raise err
    return decision


def _storage_spec(name: str, encrypt: bool, file_classes: int, key_provider: Optional[str],
                  migration: "Migration") -> _lib.StoragePolicySpec:
    return _lib.StoragePolicySpec(sizeof(_lib.StoragePolicySpec), _lib.enc(name), int(encrypt),
                                  file_classes, _lib.enc(key_provider), int(migration))


def _doc_error(status: int, e: _lib.PolicyError) -> Error:
    detail = _lib.dec(e.message)
    path = _lib.dec(e.path)
    if path:
        detail = f"{path}: {detail}"
    err = error_for(status, detail)
    err.path = path  # type: ignore[attr-defined]
    err.offset = int(e.offset)  # type: ignore[attr-defined]
    return err


def _jsonbytes(doc: Union[str, bytes, bytearray]) -> bytes:
    return doc.encode("utf-8") if isinstance(doc, str) else bytes(doc)


class Policy(Handle):
    """A policy model. Thread-safe (readers share a read lock, writers are atomic).

    Build one programmatically (``Policy("vcenter")`` then ``add_*``/``grant``)
    or load a JSON document (:meth:`from_json`, format: docs/policy.md).
    """

    _free = _lib.lib.vmenc_policy_free

    def __init__(self, root_name: str = "root") -> None:
        out = c_void_p()
        check(_lib.lib.vmenc_policy_new(_lib.enc(root_name), byref(out)))
        super().__init__(out)

    @classmethod
    def _adopt(cls, ptr, owner: Optional[Handle] = None) -> "Policy":
        self = cls.__new__(cls)
        Handle.__init__(self, ptr, owner=owner)
        return self

    @classmethod
    def _borrowed(cls, ptr, owner: Handle) -> "Policy":
        return cls._adopt(ptr, owner=owner)

    @classmethod
    def from_json(cls, document: Union[str, bytes]) -> "Policy":
        """Load a policy document. A rejected document raises an :class:`vmenc.Error`
        whose ``path`` attribute is the JSON path of the offending value."""
        b = _jsonbytes(document)
        e = _lib.PolicyError(sizeof(_lib.PolicyError))
        out = c_void_p()
        s = _lib.lib.vmenc_policy_load_json(b, len(b), byref(e), byref(out))
        if s:
            raise _doc_error(s, e)
        return cls._adopt(out)

    def reload_json(self, document: Union[str, bytes]) -> None:
        """Replace the whole content atomically (unchanged on failure)."""
        b = _jsonbytes(document)
        e = _lib.PolicyError(sizeof(_lib.PolicyError))
        s = _lib.lib.vmenc_policy_reload_json(self, b, len(b), byref(e))
        if s:
            raise _doc_error(s, e)

    def to_json(self) -> bytes:
        """The canonical JSON document."""
        out, n = c_void_p(), c_size_t()
        check(_lib.lib.vmenc_policy_save_json(self, byref(out), byref(n)))
        try:
            return string_at(out, n.value)
        finally:
            _lib.lib.vmenc_policy_buffer_free(out)

    # -- construction
    def add_role(self, name: str, privileges: Iterable[Union[str, int]]) -> None:
        """Add a custom role with ``privileges`` (names or numbers). Trusted bootstrap path."""
        ps = [privilege_from_name(p) if isinstance(p, str) else int(p) for p in privileges]
        arr = (c_int * max(len(ps), 1))(*ps)
        check(_lib.lib.vmenc_policy_add_role(self, _lib.enc(name), arr, len(ps)))

    def add_user(self, name: str) -> None:
        """Add a user. Trusted bootstrap path (use :meth:`add_user_as` for a principal)."""
        check(_lib.lib.vmenc_policy_add_user(self, _lib.enc(name)))

    def add_group(self, name: str) -> None:
        """Add a group. Trusted bootstrap path."""
        check(_lib.lib.vmenc_policy_add_group(self, _lib.enc(name)))

    def add_member(self, group: str, member: str) -> None:
        """Make ``member`` a member of ``group``. Trusted bootstrap path."""
        check(_lib.lib.vmenc_policy_add_member(self, _lib.enc(group), _lib.enc(member)))

    def add_object(self, name: str, type: ObjectType, parent: str) -> None:
        """Add an inventory object under ``parent``. Trusted bootstrap path."""
        check(_lib.lib.vmenc_policy_add_object(self, _lib.enc(name), int(type), _lib.enc(parent)))

    def set_vm_state(self, vm: str, host: Optional[str], encrypted: bool) -> None:
        """Record which host VM ``vm`` is on and whether it is encrypted."""
        check(_lib.lib.vmenc_policy_set_vm_state(self, _lib.enc(vm), _lib.enc(host), int(encrypted)))

    def grant(self, principal: str, obj: str, role: str, propagate: bool = True) -> None:
        """Give ``principal`` ``role`` on ``obj``. Trusted bootstrap path (use :meth:`grant_as`)."""
        check(_lib.lib.vmenc_policy_grant(self, _lib.enc(principal), _lib.enc(obj), _lib.enc(role),
                                          int(propagate)))

    def revoke(self, principal: str, obj: str) -> None:
        """Remove ``principal``'s permission on ``obj``. Trusted bootstrap path."""
        check(_lib.lib.vmenc_policy_revoke(self, _lib.enc(principal), _lib.enc(obj)))

    def set_host_state(self, host: str, state: HostState) -> None:
        """Set a host's encryption mode. Trusted bootstrap path."""
        check(_lib.lib.vmenc_policy_set_host_state(self, _lib.enc(host), int(state)))

    def host_state(self, host: str) -> HostState:
        """A host's encryption mode (:class:`HostState`)."""
        out = c_int()
        check(_lib.lib.vmenc_policy_get_host_state(self, _lib.enc(host), byref(out)))
        return HostState(out.value)

    def set_storage_policy(self, name: str, *, encrypt: bool, file_classes: int = 0,
                           key_provider: Optional[str] = None,
                           migration: Migration = Migration.OPPORTUNISTIC) -> None:
        """Add or replace a storage policy. Trusted bootstrap path."""
        spec = _lib.StoragePolicySpec(sizeof(_lib.StoragePolicySpec), _lib.enc(name), int(encrypt),
                                      file_classes, _lib.enc(key_provider), int(migration))
        check(_lib.lib.vmenc_policy_set_storage_policy(self, byref(spec)))

    # -- authorized edits (the edit rule, docs/policy.md): each returns the
    # Decision when applied and raises DeniedError (or the edit's error) with
    # the Decision as ``.decision`` otherwise; nothing changes then. The
    # construction calls above are the trusted bootstrap path.
    def edit_as(self, actor: str, op: EditOp, **fields) -> Decision:
        """Apply one edit on behalf of ``actor`` (fields: name, obj, role, member,
        propagate, object_type, privileges, storage_policy)."""
        e, keep = _edit_struct(op, **fields)
        d = _decision()
        s = _lib.lib.vmenc_policy_edit_as(self, _lib.enc(actor), byref(e), byref(d))
        del keep
        return _edit_result(s, d)

    def add_role_as(self, actor: str, name: str, privileges: Iterable[Union[str, int]]) -> Decision:
        """Add a role on behalf of ``actor`` (the edit rule decides); returns the Decision, DeniedError if refused."""
        return self.edit_as(actor, EditOp.ADD_ROLE, name=name, privileges=privileges)

    def add_user_as(self, actor: str, name: str) -> Decision:
        """Add a user on behalf of ``actor``; DeniedError if refused."""
        return self.edit_as(actor, EditOp.ADD_USER, name=name)

    def add_group_as(self, actor: str, name: str) -> Decision:
        """Add a group on behalf of ``actor``; DeniedError if refused."""
        return self.edit_as(actor, EditOp.ADD_GROUP, name=name)

    def add_member_as(self, actor: str, group: str, member: str) -> Decision:
        """Add a group member on behalf of ``actor``; DeniedError if refused."""
        return self.edit_as(actor, EditOp.ADD_MEMBER, name=group, member=member)

    def add_object_as(self, actor: str, name: str, type: ObjectType, parent: str) -> Decision:
        """Add an inventory object on behalf of ``actor``; DeniedError if refused."""
        return self.edit_as(actor, EditOp.ADD_OBJECT, name=name, object_type=int(type), obj=parent)

    def grant_as(self, actor: str, principal: str, obj: str, role: str, propagate: bool = True) -> Decision:
        """Grant on behalf of ``actor`` (no escalation: only privileges it holds); DeniedError if refused."""
        return self.edit_as(actor, EditOp.GRANT, name=principal, obj=obj, role=role, propagate=propagate)

    def revoke_as(self, actor: str, principal: str, obj: str) -> Decision:
        """Revoke on behalf of ``actor``; DeniedError if refused."""
        return self.edit_as(actor, EditOp.REVOKE, name=principal, obj=obj)

    def set_storage_policy_as(self, actor: str, name: str, *, encrypt: bool, file_classes: int = 0,
                              key_provider: Optional[str] = None,
                              migration: Migration = Migration.OPPORTUNISTIC) -> Decision:
        """Define a storage policy on behalf of ``actor``; DeniedError if refused."""
        spec = _storage_spec(name, encrypt, file_classes, key_provider, migration)
        return self.edit_as(actor, EditOp.SET_STORAGE_POLICY, storage_policy=spec)

    def disable_host_encryption_as(self, actor: str, host: str) -> Decision:
        """Take a host out of encryption mode on behalf of ``actor``; DeniedError if refused."""
        return self.edit_as(actor, EditOp.DISABLE_HOST_ENCRYPTION, name=host)

    # -- decisions
    def check(self, principal: str, op: Op, *, vm: Optional[str] = None, folder: Optional[str] = None,
              host: Optional[str] = None, pool: Optional[str] = None, datastore: Optional[str] = None,
              flags: int = 0) -> Decision:
        """Decide whether ``principal`` may perform ``op``. Returns a :class:`Decision`
        for allowed, denied and host-mode answers; raises for malformed requests."""
        req = _lib.PolicyRequest(sizeof(_lib.PolicyRequest), int(op), _lib.enc(vm), _lib.enc(folder),
                                 _lib.enc(host), _lib.enc(pool), _lib.enc(datastore), flags)
        d = _decision()
        s = _lib.lib.vmenc_policy_check(self, _lib.enc(principal), byref(req), byref(d))
        if s in (0, -500, -501):
            return Decision._from_c(d)
        check(s, _lib.dec(d.message))
        raise AssertionError("unreachable")

    def has_privilege(self, principal: str, obj: str, privilege: Union[str, int]) -> bool:
        """Whether ``principal`` holds ``privilege`` on ``obj``."""
        p = privilege_from_name(privilege) if isinstance(privilege, str) else int(privilege)
        out = c_int()
        check(_lib.lib.vmenc_policy_has_privilege(self, _lib.enc(principal), _lib.enc(obj), p, byref(out)))
        return bool(out.value)

    def enable_host_encryption(self, principal: str, host: str) -> Decision:
        """Switch ``host`` to encryption mode on behalf of ``principal``; returns the Decision."""
        d = _decision()
        s = _lib.lib.vmenc_policy_enable_host_encryption(self, _lib.enc(principal), _lib.enc(host), byref(d))
        if s in (0, -500, -501):
            return Decision._from_c(d)
        check(s)
        raise AssertionError("unreachable")

    def __repr__(self) -> str:
        return f"<vmenc.Policy{' closed' if self.closed else ''}>"
