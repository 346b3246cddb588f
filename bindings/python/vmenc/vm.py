"""Hosts, VMs, virtual disks, VM state files and in-place conversion.

Every operation that touches keys takes the acting ``principal``; the
library authorizes it against the policy, runs it, and audits it.
"""
from __future__ import annotations

import enum
from ctypes import (byref, c_int, c_size_t, c_uint32, c_uint64, c_void_p, create_string_buffer,
                    sizeof)
from dataclasses import dataclass
from typing import Callable, Optional

from . import _lib
from ._handle import Handle
from .audit import Audit
from .errors import DeniedError, UsageError, check, error_for
from .kms import KeyManager
from .policy import Decision, Op, Policy

DEFAULT_KMS_TIMEOUT = 10.0


class DiskState(enum.IntEnum):
    """A disk's encryption state (plain, encrypted, converting...)."""
    PLAIN = 0
    ENCRYPTED = 1
    ENCRYPTING = 2
    DECRYPTING = 3
    REKEYING = 4


class ConvertKind(enum.IntEnum):
    """What an in-place conversion does: encrypt, decrypt or deep rekey."""
    ENCRYPT = 1
    DECRYPT = 2
    REKEY = 3


class FileClass(enum.IntEnum):
    """VM state file classes (NVRAM, suspend state, snapshot state and memory, swap)."""
    NVRAM = 1
    VMSS = 2
    VMSN = 3
    VMEM = 4
    VSWP = 5


@dataclass(frozen=True)
class VMInfo:
    """A VM's status: name, UUID, encrypted, locked, key provider and KEK ID, disks, storage policy."""
    name: str
    uuid: str
    encrypted: bool
    locked: bool
    key_provider: str
    kek_id: str
    num_disks: int
    num_missing_keys: int
    storage_policy: str


@dataclass(frozen=True)
class DiskInfo:
    """One disk's status: ID, capacity, sector size, state, key provider and KEK ID."""
    disk_id: str
    file_name: str
    capacity: int
    sector_size: int
    state: DiskState
    key_provider: str
    kek_id: str
    locked: bool


@dataclass(frozen=True)
class Progress:
    """Progress of an in-place conversion (bytes done and total, segments, rate)."""
    state: DiskState
    bytes_done: int
    bytes_total: int
    segments_done: int
    segments_total: int
    bytes_per_second: int
    done: bool

    @classmethod
    def _from_c(cls, p: _lib.ConvertProgress) -> "Progress":
        return cls(DiskState(p.state), p.bytes_done, p.bytes_total, p.segments_done, p.segments_total,
                   p.bytes_per_second, bool(p.done))


class Host(Handle):
    """One hypervisor host. Borrows a key manager, a policy and an audit
    dispatcher (with at least one sink), which stay alive while it lives."""

    _free = _lib.lib.vmenc_host_free

    def __init__(self, host_id: str, keymgr: KeyManager, policy: Policy, audit: Audit, *,
                 kms_timeout: float = DEFAULT_KMS_TIMEOUT, no_sync: bool = False) -> None:
        o = _lib.HostOptions(sizeof(_lib.HostOptions), _lib.enc(host_id), keymgr._as_parameter_,
                             policy._as_parameter_, audit._as_parameter_, int(kms_timeout * 1000),
                             _lib.CLOCK_FN(), None, 1 if no_sync else 0)
        out = c_void_p()
        check(_lib.lib.vmenc_host_new(byref(o), byref(out)))
        super().__init__(out)
        self._policy: Optional[Policy] = policy
        for parent in (keymgr, policy, audit):
            self._borrow(parent)

    @classmethod
    def _borrowed(cls, ptr: int, owner: Handle) -> "Host":
        self = cls.__new__(cls)
        Handle.__init__(self, ptr, owner=owner)
        self._policy = getattr(owner, "policy", None)
        return self

    @property
    def host_id(self) -> str:
        """The host's inventory name."""
        return _lib.dec(_lib.lib.vmenc_host_id(self))

    def create_vm(self, principal: str, home_dir: str, name: str, folder: str, *,
                  pool: Optional[str] = None, datastore: Optional[str] = None,
                  storage_policy: Optional[str] = None, kek_id: Optional[str] = None,
                  memory_bytes: int = 0) -> "VM":
        """Create a VM in ``home_dir`` (see also :meth:`Workspace.create_vm`, which adds disks all or nothing)."""
        o = _lib.VMCreateOptions(sizeof(_lib.VMCreateOptions), _lib.enc(principal), _lib.enc(home_dir),
                                 _lib.enc(name), _lib.enc(folder), _lib.enc(pool), _lib.enc(datastore),
                                 _lib.enc(storage_policy), _lib.enc(kek_id), memory_bytes, 0)
        out = c_void_p()
        check(_lib.lib.vmenc_vm_create(self, byref(o), byref(out)))
        return VM._adopt(out, self)

    def open_vm(self, principal: str, vmx_path: str, *, allow_locked: bool = False) -> "VM":
        """Open a VM. If a KEK cannot be fetched the VM is locked: with
        ``allow_locked`` it is returned anyway (see :meth:`VM.unlock`), else
        :class:`vmenc.VMLockedError` is raised."""
        out = c_void_p()
        return VM._opened(_lib.lib.vmenc_vm_open(self, _lib.enc(principal), _lib.enc(vmx_path), byref(out)),
                          out, self, allow_locked)

    def register_vm(self, principal: str, vmx_path: str, folder: str, pool: Optional[str] = None, *,
                    allow_locked: bool = False) -> "VM":
        """Add an existing VM home to this host's inventory (REGISTER_VM) and open it."""
        out = c_void_p()
        s = _lib.lib.vmenc_vm_register(self, _lib.enc(principal), _lib.enc(vmx_path), _lib.enc(folder),
                                       _lib.enc(pool), byref(out))
        return VM._opened(s, out, self, allow_locked)

    def __repr__(self) -> str:
        return f"<vmenc.Host{' closed' if self.closed else ' ' + repr(self.host_id)}>"


def _apply_opts(progress, segment_bytes):
    if progress is None:
        fn = _lib.PROGRESS_FN()
    else:
        def tramp(_ctx, disk_id, p):
            try:
                return 1 if progress(_lib.dec(disk_id), Progress._from_c(p.contents)) is False else 0
            except BaseException:  # noqa: BLE001 - stop the conversion; it is resumable
                return 1
        fn = _lib.PROGRESS_FN(tramp)
    return _lib.ApplyOptions(sizeof(_lib.ApplyOptions), fn, None, segment_bytes, 0), fn


class VM(Handle):
    """One VM. Thread-safe; management calls on one VM are serialised in C.
    Disks and state files opened from it keep it alive."""

    _free = _lib.lib.vmenc_vm_free

    @classmethod
    def _adopt(cls, ptr, host: Host) -> "VM":
        self = cls.__new__(cls)
        Handle.__init__(self, ptr)
        self._borrow(host)
        return self

    def _check(self, status: int, principal: str, *ops: Op) -> None:
        """Raise for ``status``; a denial carries the missing privilege: the
        policy is asked, for each operation in ``ops``, why ``principal`` may
        not (the C call itself returns only VMENC_E_DENIED)."""
        if status != -500 or not ops:
            check(status)
            return
        host = self._parents[0] if self._parents else None
        policy = getattr(host, "_policy", None)
        decision: Optional[Decision] = None
        if policy is not None and not policy.closed:
            try:
                flags = 1 if self.info().encrypted else 0  # VMENC_REQ_VM_ENCRYPTED
                for op in ops:
                    d = policy.check(principal, op, vm=self.name, host=host.host_id, flags=flags)
                    if not d.allowed:
                        decision = d
                        break
            except Exception:  # explaining must never hide the denial itself
                decision = None
        err = error_for(status, decision.message if decision is not None else "")
        if decision is not None and isinstance(err, DeniedError):
            err._set_decision(decision)
        raise err

    def _apply_ops(self, name: str) -> tuple:
        """The operations applying storage policy ``name`` needs, as the policy plans
        it for this VM's home: encrypt, decrypt or a change of key provider."""
        host = self._parents[0] if self._parents else None
        policy = getattr(host, "_policy", None)
        fallback = (Op.ENCRYPT_VM, Op.DECRYPT_VM, Op.REKEY_SHALLOW)
        if policy is None or policy.closed:
            return fallback
        info = self.info()
        st = _lib.VMCryptoState(sizeof(_lib.VMCryptoState), int(info.encrypted),
                                _lib.enc(info.key_provider) if info.encrypted else None, 0, None, 0, None, 0)
        acts = (_lib.PolicyAction * 8)()
        n = c_size_t()
        if _lib.lib.vmenc_policy_plan_storage_policy(policy, _lib.enc(name), byref(st), acts, 8, byref(n)):
            return fallback
        by_type = {1: Op.ENCRYPT_VM, 2: Op.ENCRYPT_VM, 4: Op.DECRYPT_VM, 5: Op.DECRYPT_VM, 7: Op.REKEY_SHALLOW,
                   8: Op.REKEY_SHALLOW}
        ops = tuple(dict.fromkeys(by_type[a.type] for a in acts[:n.value] if a.type in by_type))
        return ops or fallback

    @classmethod
    def _opened(cls, status, out, host, allow_locked) -> "VM":
        if status == -417 and out.value:  # VMENC_E_VM_LOCKED: a locked VM we own
            vm = cls._adopt(out, host)
            if allow_locked:
                return vm
            vm.close()
        check(status)
        return cls._adopt(out, host)

    @property
    def name(self) -> str:
        """The VM's name."""
        return _lib.dec(_lib.lib.vmenc_vm_name(self))

    @property
    def uuid(self) -> str:
        """The VM's UUID."""
        return _lib.dec(_lib.lib.vmenc_vm_uuid(self))

    @property
    def home_dir(self) -> str:
        """The VM's home directory."""
        return _lib.dec(_lib.lib.vmenc_vm_home_dir(self))

    def info(self) -> VMInfo:
        """The VM's status (:class:`VMInfo`)."""
        i = _lib.VMInfo(sizeof(_lib.VMInfo))
        check(_lib.lib.vmenc_vm_get_info(self, byref(i)))
        return VMInfo(_lib.dec(i.name), _lib.dec(i.uuid), bool(i.encrypted), bool(i.locked),
                      _lib.dec(i.key_provider), _lib.dec(i.kek_id), i.num_disks, i.num_missing_keys,
                      _lib.dec(i.storage_policy))

    def disks(self) -> list:
        """The status of every disk (:class:`DiskInfo`)."""
        out = []
        for idx in range(self.info().num_disks):
            d = _lib.DiskInfo(sizeof(_lib.DiskInfo))
            check(_lib.lib.vmenc_vm_get_disk_info(self, idx, byref(d)))
            out.append(DiskInfo(_lib.dec(d.disk_id), _lib.dec(d.file_name), d.capacity, d.sector_size,
                                DiskState(d.state), _lib.dec(d.key_provider), _lib.dec(d.kek_id),
                                bool(d.locked)))
        return out

    def missing_keys(self) -> list:
        """[(provider alias, KEK ID, last status)] of a locked VM."""
        res = []
        for idx in range(self.info().num_missing_keys):
            a, k, s = create_string_buffer(64), create_string_buffer(_lib.KMS_KEY_ID_CAP), c_int()
            check(_lib.lib.vmenc_vm_get_missing_key(self, idx, a, len(a), k, len(k), byref(s)))
            res.append((a.value.decode(), k.value.decode(), s.value))
        return res

    def unlock(self, principal: str) -> None:
        """Retry fetching the keys of a locked VM; VMLockedError if one is still missing."""
        self._check(_lib.lib.vmenc_vm_unlock(self, _lib.enc(principal)), principal, Op.POWER_ON)

    def add_disk(self, principal: str, capacity: int, *, sector_size: int = 512,
                 disk_id: Optional[str] = None, file_base: Optional[str] = None,
                 datastore: Optional[str] = None) -> str:
        """Add a zero-filled disk (encrypted if the VM's policy says so); return its ID."""
        o = _lib.DiskCreateOptions(sizeof(_lib.DiskCreateOptions), _lib.enc(disk_id), capacity, sector_size,
                                   _lib.enc(file_base), _lib.enc(datastore), 0)
        buf = create_string_buffer(_lib.DISK_ID_MAX + 1)
        self._check(_lib.lib.vmenc_vm_add_disk(self, _lib.enc(principal), byref(o), buf, len(buf)), principal,
                    Op.ADD_DISK)
        return buf.value.decode()

    def remove_disk(self, principal: str, disk_id: str, *, delete_files: bool = False) -> None:
        """Remove disk ``disk_id`` from the configuration (EDIT_SETTINGS); with
        ``delete_files`` its descriptor and extent are deleted too."""
        self._check(_lib.lib.vmenc_vm_remove_disk(self, _lib.enc(principal), _lib.enc(disk_id),
                                                  1 if delete_files else 0), principal, Op.EDIT_SETTINGS)

    def rekey_shallow(self, principal: str, key_provider: Optional[str] = None,
                      kek_id: Optional[str] = None) -> None:
        """Re-wrap every key under a new KEK (data not re-encrypted). A new
        ``key_provider`` other than the one the VM's storage policy names
        leaves that policy (the VM's ``storage_policy`` becomes "")."""
        self._check(_lib.lib.vmenc_vm_rekey_shallow(self, _lib.enc(principal), _lib.enc(key_provider),
                                                    _lib.enc(kek_id)), principal, Op.REKEY_SHALLOW)

    def apply_storage_policy(self, principal: str, name: str, *,
                             progress: Optional[Callable[[str, Progress], Optional[bool]]] = None,
                             segment_bytes: int = 0) -> None:
        """Bring the VM to storage policy ``name``, converting disks in place.
        ``progress(disk_id, Progress)`` may return False to stop (resumable);
        the call then raises :class:`vmenc.ResourceError` (INTERRUPTED)."""
        o, _keep = _apply_opts(progress, segment_bytes)
        s = _lib.lib.vmenc_vm_apply_storage_policy_ex(self, _lib.enc(principal), _lib.enc(name), byref(o))
        self._check(s, principal, *(self._apply_ops(name) if s == -500 else ()))

    def rekey_deep(self, principal: str, *, progress=None, segment_bytes: int = 0) -> None:
        """New DEKs: re-encrypt every disk in place (resumable; ``progress`` as apply_storage_policy)."""
        o, _keep = _apply_opts(progress, segment_bytes)
        self._check(_lib.lib.vmenc_vm_rekey_deep(self, _lib.enc(principal), byref(o)), principal, Op.REKEY_DEEP)

    def resume(self, principal: str, *, progress=None, segment_bytes: int = 0) -> None:
        """Finish an interrupted conversion or storage-policy application."""
        o, _keep = _apply_opts(progress, segment_bytes)
        self._check(_lib.lib.vmenc_vm_resume(self, _lib.enc(principal), byref(o)), principal, Op.ENCRYPT_VM,
                    Op.DECRYPT_VM, Op.REKEY_DEEP)

    def clone(self, principal: str, home_dir: str, name: str, folder: str, *, pool: Optional[str] = None,
              datastore: Optional[str] = None, storage_policy: Optional[str] = None,
              keep_keys: bool = False) -> "VM":
        """Clone the VM into ``home_dir`` as ``name`` (new keys unless ``keep_keys``)."""
        o = _lib.VMCloneOptions(sizeof(_lib.VMCloneOptions), _lib.enc(principal), _lib.enc(home_dir),
                                _lib.enc(name), _lib.enc(folder), _lib.enc(pool), _lib.enc(datastore),
                                _lib.enc(storage_policy), 1 if keep_keys else 0)
        out = c_void_p()
        self._check(_lib.lib.vmenc_vm_clone(self, byref(o), byref(out)), principal, Op.CLONE_VM)
        return VM._adopt(out, self._parents[0])

    def open_disk(self, principal: str, disk_id: str, *, readonly: bool = False,
                  export: bool = False) -> "Disk":
        """Open a disk for I/O. Without ``export`` this is the hypervisor's own
        path (power-on); with it, out-of-band access: read-only is a download
        (EXPORT_VM), writable an upload and a download (UPLOAD_FILES and
        EXPORT_VM), each needing Cryptographer.Access on an encrypted VM.
        DeniedError when the policy refuses."""
        flags = (1 if readonly else 0) | (2 if export else 0)
        out = c_void_p()
        ops = ((Op.EXPORT_VM,) if readonly else (Op.UPLOAD_FILES, Op.EXPORT_VM)) if export else (Op.POWER_ON,)
        self._check(_lib.lib.vmenc_disk_open(self, _lib.enc(principal), _lib.enc(disk_id), flags, byref(out)),
                    principal, *ops)
        return Disk._adopt(out, self)

    def open_file(self, principal: str, cls: FileClass, index: int = 0, *, create: bool = False,
                  truncate: bool = False, readonly: bool = False, export: bool = False) -> "VMFile":
        """Open state file ``cls`` (``index``: the snapshot number for VMSN/VMEM).
        ``export`` as for :meth:`open_disk`: without it the open is the
        hypervisor's power-on path; with it a tool copying the file out
        (``readonly``: EXPORT_VM) or in (UPLOAD_FILES and EXPORT_VM), each
        needing Cryptographer.Access on an encrypted VM. DeniedError when the
        policy refuses."""
        flags = ((1 if create else 0) | (2 if truncate else 0) | (4 if readonly else 0)
                 | (_lib.VM_FILE_EXPORT if export else 0))
        out = c_void_p()
        ops = ((Op.EXPORT_VM,) if readonly else (Op.UPLOAD_FILES, Op.EXPORT_VM)) if export else (Op.POWER_ON,)
        self._check(_lib.lib.vmenc_vm_file_open(self, _lib.enc(principal), int(cls), index, flags, byref(out)),
                    principal, *ops)
        return VMFile._adopt(out, self)

    def config_set(self, principal: str, key: str, value: Optional[str], *, secret: bool = False) -> None:
        """Set (or with None remove) configuration entry ``key``; ``secret`` stores it encrypted."""
        self._check(_lib.lib.vmenc_vm_config_set(self, _lib.enc(principal), _lib.enc(key), _lib.enc(value),
                                                 1 if secret else 0), principal, Op.EDIT_SETTINGS, Op.CONSOLE)

    def config_get(self, principal: str, key: str) -> str:
        """Read configuration entry ``key`` (a secret one needs the console privilege)."""
        n = c_size_t()
        buf = create_string_buffer(4097)
        s = _lib.lib.vmenc_vm_config_get(self, _lib.enc(principal), _lib.enc(key), buf, len(buf), byref(n))
        if s == -101:
            buf = create_string_buffer(n.value + 1)
            s = _lib.lib.vmenc_vm_config_get(self, _lib.enc(principal), _lib.enc(key), buf, len(buf), byref(n))
        check(s)
        return buf.value.decode()

    def __repr__(self) -> str:
        if self.closed:
            return "<vmenc.VM closed>"
        return f"<vmenc.VM name={self.name!r} uuid={self.uuid!r}>"


class Disk(Handle):
    """One open virtual disk: decrypted reads, encrypted writes, at any offset.
    Any number of threads may read and write at once (the GIL is released)."""

    @classmethod
    def _adopt(cls, ptr, vm: VM) -> "Disk":
        self = cls.__new__(cls)
        Handle.__init__(self, ptr)
        self._borrow(vm)
        return self

    def close(self) -> None:
        """Flush (unless read-only) and release the disk. Raises if the flush failed
        (the handle is released either way)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            p, self._ptr = self._ptr, None
        s = _lib.lib.vmenc_disk_close(p)
        Handle._destroy(self)
        check(s)

    def _range(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0:
            raise UsageError(-100, f"offset {offset} and length {length} must not be negative")
        size = self.size
        if offset + length > size:
            raise UsageError(-100, f"a read of {length} bytes at offset {offset} passes the end of the disk "
                                   f"({size} bytes); read at most {max(size - offset, 0)} bytes there")

    def pread(self, offset: int, length: int) -> bytes:
        """Read ``length`` decrypted bytes at byte ``offset`` (any alignment).
        A range past the end of the disk raises :class:`vmenc.UsageError`
        saying so (a disk has a fixed size: there is no short read)."""
        self._range(offset, length)
        buf = create_string_buffer(length)
        check(_lib.lib.vmenc_disk_pread(self, offset, length, buf))
        return buf.raw

    def readinto(self, offset: int, buf) -> int:
        """Fill the writable buffer ``buf`` from byte ``offset``; return its length.
        Past the end: :class:`vmenc.UsageError`, as :meth:`pread`."""
        o, n = _lib.outbuf(buf)
        self._range(offset, n)
        check(_lib.lib.vmenc_disk_pread(self, offset, n, o))
        return n

    def pwrite(self, offset: int, data) -> int:
        """Write ``data`` at byte ``offset`` (encrypted); return the number of bytes."""
        p, n = _lib.inbuf(data)
        check(_lib.lib.vmenc_disk_pwrite(self, offset, p, n))
        return n

    def flush(self) -> None:
        """Make every completed write durable."""
        check(_lib.lib.vmenc_disk_flush(self))

    @property
    def size(self) -> int:
        """The capacity in bytes."""
        v = c_uint64()
        check(_lib.lib.vmenc_disk_get_size(self, byref(v)))
        return v.value

    @property
    def sector_size(self) -> int:
        """The sector size (the XTS data unit): 512 or 4096."""
        v = c_uint32()
        check(_lib.lib.vmenc_disk_get_sector_size(self, byref(v)))
        return v.value

    @property
    def encrypted(self) -> bool:
        """Whether the disk is encrypted."""
        v = c_int()
        check(_lib.lib.vmenc_disk_is_encrypted(self, byref(v)))
        return bool(v.value)

    def convert_begin(self, principal: str, kind: ConvertKind, *, segment_bytes: int = 0) -> None:
        """Start converting this open disk in place (``kind``); step with :meth:`convert_step`."""
        o = _lib.ConvertOptions(sizeof(_lib.ConvertOptions), segment_bytes, 0)
        check(_lib.lib.vmenc_disk_convert_begin(self, _lib.enc(principal), int(kind), byref(o)))

    def convert_step(self, max_bytes: int = 0) -> Progress:
        """Convert up to ``max_bytes`` more (0: one segment); return the :class:`Progress`."""
        p = _lib.ConvertProgress(sizeof(_lib.ConvertProgress))
        check(_lib.lib.vmenc_disk_convert_step(self, max_bytes, byref(p)))
        return Progress._from_c(p)

    def convert_rollback(self, principal: str) -> None:
        """Take a running conversion back to where it began."""
        check(_lib.lib.vmenc_disk_convert_rollback(self, _lib.enc(principal)))

    def convert_progress(self) -> Progress:
        """The running conversion's :class:`Progress`."""
        p = _lib.ConvertProgress(sizeof(_lib.ConvertProgress))
        check(_lib.lib.vmenc_disk_convert_get_progress(self, byref(p)))
        return Progress._from_c(p)

    def convert(self, principal: str, kind: ConvertKind, *, segment_bytes: int = 0,
                step_bytes: int = 64 << 20) -> Progress:
        """convert_begin + convert_step until done."""
        self.convert_begin(principal, kind, segment_bytes=segment_bytes)
        while True:
            p = self.convert_step(step_bytes)
            if p.done:
                return p

    def __repr__(self) -> str:
        if self.closed:
            return "<vmenc.Disk closed>"
        return f"<vmenc.Disk size={self.size} encrypted={self.encrypted}>"


class VMFile(Handle):
    """One open VM state file (NVRAM, suspend/snapshot state: authenticated; swap: XTS)."""

    @classmethod
    def _adopt(cls, ptr, vm: VM) -> "VMFile":
        self = cls.__new__(cls)
        Handle.__init__(self, ptr)
        self._borrow(vm)
        return self

    def close(self) -> None:
        """Close the file (flushes first); idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            p, self._ptr = self._ptr, None
        s = _lib.lib.vmenc_vm_file_close(p)
        Handle._destroy(self)
        check(s)

    def pread(self, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes (short only at end of file); every chunk authenticated first."""
        buf, n = create_string_buffer(length), c_size_t()
        check(_lib.lib.vmenc_vm_file_pread(self, offset, length, buf, byref(n)))
        return buf.raw[:n.value]

    def pwrite(self, offset: int, data) -> int:
        """Write ``data`` at byte ``offset`` (re-authenticating the chunks it touches)."""
        p, n = _lib.inbuf(data)
        check(_lib.lib.vmenc_vm_file_pwrite(self, offset, p, n))
        return n

    @property
    def size(self) -> int:
        """The file's plaintext size in bytes."""
        v = c_uint64()
        check(_lib.lib.vmenc_vm_file_get_size(self, byref(v)))
        return v.value

    def flush(self) -> None:
        """Make every completed write durable."""
        check(_lib.lib.vmenc_vm_file_flush(self))

    def __repr__(self) -> str:
        return f"<vmenc.VMFile{' closed' if self.closed else ''}>"
