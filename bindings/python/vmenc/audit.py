"""The tamper-evident audit trail: hash-chained JSON-lines logs, the
dispatcher with Python callback sinks, and the verifier.

Events never carry secrets: pass key *IDs*, never key bytes. The chain key is
a secret: pass it as a ``bytearray`` and wipe it after opening if needed.
"""
from __future__ import annotations

import enum
from ctypes import byref, c_char_p, c_size_t, c_uint64, c_uint8, c_void_p, create_string_buffer, sizeof
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from . import _lib
from ._handle import Handle
from .errors import check

HASH_BYTES = 32
CHAIN_ID_BYTES = 16


class Outcome(enum.IntEnum):
    """The outcome of an audited operation: success, denied or failed."""
    SUCCESS = 0
    DENIED = 1
    FAILED = 2


def _event(principal, operation, target, key_provider, key_ids, outcome, status, reason, time_ms):
    ids = [_lib.enc(k) for k in key_ids]
    arr = (c_char_p * max(len(ids), 1))(*ids)
    ev = _lib.AuditEvent(sizeof(_lib.AuditEvent), time_ms, _lib.enc(principal), _lib.enc(operation),
                         _lib.enc(target), _lib.enc(key_provider), arr, len(ids), int(outcome),
                         status, _lib.enc(reason))
    return ev, arr


def event_to_json(principal: str, operation: str, *, target: Optional[str] = None,
                  key_provider: Optional[str] = None, key_ids: Sequence[str] = (),
                  outcome: Outcome = Outcome.SUCCESS, status: int = 0, reason: Optional[str] = None,
                  time_ms: int = 0) -> str:
    """The canonical JSON object of an event (validated, not recorded)."""
    ev, _keep = _event(principal, operation, target, key_provider, key_ids, outcome, status, reason, time_ms)
    n = c_size_t()
    buf = create_string_buffer(4096)
    s = _lib.lib.vmenc_audit_event_to_json(byref(ev), buf, len(buf), byref(n))
    if s == -101:
        buf = create_string_buffer(n.value)
        s = _lib.lib.vmenc_audit_event_to_json(byref(ev), buf, len(buf), byref(n))
    check(s)
    return buf.raw[:n.value].decode()


_FSYNC = {"every": 0, "never": 2}


class AuditLog(Handle):
    """An open, locked, hash-chained log file for appending."""

    _free = _lib.lib.vmenc_audit_log_free

    def __init__(self, path: str, key, *, fsync="every", recover: bool = False, verify_all: bool = False,
                 start_seq: int = 0, start_hash: Optional[bytes] = None,
                 start_chain_id: Optional[bytes] = None) -> None:
        """``fsync`` is "every", "never" or an int N (sync every N records)."""
        kp, kn = _lib.inbuf(key)
        if isinstance(fsync, int):
            mode, every = 1, fsync
        else:
            mode, every = _FSYNC[fsync], 0
        flags = (1 if recover else 0) | (2 if verify_all else 0)
        sh = bytes(start_hash) if start_hash is not None else None
        ci = bytes(start_chain_id) if start_chain_id is not None else None
        o = _lib.AuditLogOptions(sizeof(_lib.AuditLogOptions), _lib.enc(path), _lib.addr(kp), kn, mode,
                                 every, flags, start_seq, _lib.addr(sh), _lib.addr(ci))
        out = c_void_p()
        check(_lib.lib.vmenc_audit_log_open(byref(o), byref(out)))
        super().__init__(out)
        self.path = path

    def append(self, principal: str, operation: str, *, target: Optional[str] = None,
               key_provider: Optional[str] = None, key_ids: Sequence[str] = (),
               outcome: Outcome = Outcome.SUCCESS, status: int = 0, reason: Optional[str] = None,
               time_ms: int = 0) -> int:
        """Append one record; return its sequence number."""
        ev, _keep = _event(principal, operation, target, key_provider, key_ids, outcome, status, reason,
                           time_ms)
        seq = c_uint64()
        check(_lib.lib.vmenc_audit_log_append(self, byref(ev), byref(seq)))
        return seq.value

    def sync(self) -> None:
        """Make every record appended so far durable (fsync)."""
        check(_lib.lib.vmenc_audit_log_sync(self))

    def rotate(self, new_path: str) -> None:
        """Continue the chain in ``new_path`` (must not exist or be empty)."""
        check(_lib.lib.vmenc_audit_log_rotate(self, _lib.enc(new_path)))
        self.path = new_path

    def position(self) -> tuple:
        """(last sequence number, its 32-byte hash)."""
        seq, h = c_uint64(), (c_uint8 * HASH_BYTES)()
        check(_lib.lib.vmenc_audit_log_position(self, byref(seq), h))
        return seq.value, bytes(h)

    def stats(self) -> dict:
        """Counters of the log (records and bytes written, syncs)."""
        s = _lib.AuditLogStats(sizeof(_lib.AuditLogStats))
        check(_lib.lib.vmenc_audit_log_get_stats(self, byref(s)))
        return {"records": s.records, "bytes": s.bytes, "syncs": s.syncs}

    def __repr__(self) -> str:
        return f"<vmenc.AuditLog path={getattr(self, 'path', None)!r}{' closed' if self.closed else ''}>"


def log_file_tail(path: str, key) -> tuple:
    """(sequence number, hash) of the last record of the log at ``path``, checked under ``key``."""
    kp, kn = _lib.inbuf(key)
    seq, h = c_uint64(), (c_uint8 * HASH_BYTES)()
    check(_lib.lib.vmenc_audit_log_file_tail(kp, kn, _lib.enc(path), byref(seq), h))
    return seq.value, bytes(h)


@dataclass(frozen=True)
class AuditEventView:
    """What a callback sink receives."""
    time_ms: int
    principal: str
    operation: str
    target: str
    key_provider: str
    key_ids: tuple
    outcome: Outcome
    status: int
    reason: str


class Audit(Handle):
    """A dispatcher: delivers each event to its logs and Python callbacks.

    A callback ``fn(event: AuditEventView, json: str)`` may run on any thread
    (it is called from C with the GIL taken). An exception in it makes the
    emit report VMENC_E_AUDIT_SINK; it is never swallowed silently: the last
    one is kept in :attr:`callback_errors`.
    """

    _free = _lib.lib.vmenc_audit_free

    def __init__(self) -> None:
        out = c_void_p()
        check(_lib.lib.vmenc_audit_new(byref(out)))
        super().__init__(out)
        self._callbacks: list = []
        self.callback_errors: list = []

    @classmethod
    def _borrowed(cls, ptr: int, owner: Handle) -> "Audit":
        self = cls.__new__(cls)
        Handle.__init__(self, ptr, owner=owner)
        self._callbacks, self.callback_errors = [], []
        return self

    def add_log(self, log: AuditLog) -> None:
        """Add a log sink; the log stays open at least as long as this dispatcher."""
        check(_lib.lib.vmenc_audit_add_log(self, log))
        self._borrow(log)

    def add_callback(self, fn: Callable[[AuditEventView, str], None]) -> None:
        """Call ``fn(event)`` for every event (an :class:`AuditEventView`, valid during the call)."""
        def tramp(_ctx, evp, js, n):
            try:
                e = evp.contents
                ids = tuple(_lib.dec(e.key_ids[i]) for i in range(e.num_key_ids))
                fn(AuditEventView(e.time_ms, _lib.dec(e.principal), _lib.dec(e.operation),
                                  _lib.dec(e.target), _lib.dec(e.key_provider), ids, Outcome(e.outcome),
                                  e.status, _lib.dec(e.reason)), js[:n].decode() if js else "")
                return 0
            except BaseException as exc:  # noqa: BLE001 - reported as a failed sink
                self.callback_errors.append(exc)
                del self.callback_errors[:-16]
                return -602
        cb = _lib.AUDIT_CALLBACK(tramp)
        check(_lib.lib.vmenc_audit_add_callback(self, cb, None))
        self._callbacks.append(cb)  # the C dispatcher holds this pointer

    def emit(self, principal: str, operation: str, *, target: Optional[str] = None,
             key_provider: Optional[str] = None, key_ids: Sequence[str] = (),
             outcome: Outcome = Outcome.SUCCESS, status: int = 0, reason: Optional[str] = None,
             time_ms: int = 0) -> None:
        """Record one event in every sink; raises AuditError if a sink fails."""
        ev, _keep = _event(principal, operation, target, key_provider, key_ids, outcome, status, reason,
                           time_ms)
        check(_lib.lib.vmenc_audit_emit(self, byref(ev)))

    def __repr__(self) -> str:
        return f"<vmenc.Audit{' closed' if self.closed else ''}>"


class Defect(enum.IntEnum):
    """What the verifier found wrong with a log (edited, deleted, reordered, cut short...)."""
    NONE = 0
    EDITED = 1
    MALFORMED = 2
    DELETED = 3
    REORDERED = 4
    INSERTED = 5
    DUPLICATED = 6
    TRUNCATED = 7
    TORN = 8
    WRONG_KEY = 9


@dataclass(frozen=True)
class VerifyResult:
    """What the verifier found. ``ok`` is True for an intact chain."""
    status: int
    defect: Defect
    num_records: int
    bad_file: int
    bad_index: int
    bad_offset: int
    bad_seq: int
    last_seq: int
    last_hash: bytes

    @property
    def ok(self) -> bool:
        """True when the log verified with no defect."""
        return self.status == 0

    def __bool__(self) -> bool:
        return self.ok

    def raise_for_status(self) -> None:
        """Raise the matching AuditError unless the log verified."""
        check(self.status, f"{self.defect.name.lower()} at file {self.bad_file} line {self.bad_index}"
              if self.status else "")


def _verify(fn, args, key, start_seq, start_hash, expected_last_seq) -> VerifyResult:
    kp, kn = _lib.inbuf(key)
    sh = bytes(start_hash) if start_hash is not None else None
    o = _lib.AuditVerifyOptions(sizeof(_lib.AuditVerifyOptions), _lib.addr(kp), kn, start_seq,
                                _lib.addr(sh), expected_last_seq)
    r = _lib.AuditVerifyResult(sizeof(_lib.AuditVerifyResult))
    s = fn(byref(o), *args, byref(r))
    if s not in (0, -600, -601, -300):
        check(s)
    return VerifyResult(s, Defect(r.defect), r.num_records, r.bad_file, r.bad_index, r.bad_offset,
                        r.bad_seq, r.last_seq, bytes(r.last_hash))


def verify_files(paths: Sequence[str], key, *, start_seq: int = 0, start_hash: Optional[bytes] = None,
                 expected_last_seq: int = 0) -> VerifyResult:
    """Verify one chain stored in ``paths`` (oldest first). Defects are returned,
    not raised (use :meth:`VerifyResult.raise_for_status`); I/O errors raise."""
    ps = [_lib.enc(p) for p in paths]
    arr = (c_char_p * max(len(ps), 1))(*ps)
    return _verify(_lib.lib.vmenc_audit_verify_files, (arr, len(ps)), key, start_seq, start_hash,
                   expected_last_seq)


def verify_buffer(data: bytes, key, *, start_seq: int = 0, start_hash: Optional[bytes] = None,
                  expected_last_seq: int = 0) -> VerifyResult:
    """:func:`verify_files` for one log held in memory."""
    p, n = _lib.inbuf(data)
    return _verify(_lib.lib.vmenc_audit_verify_buffer, (p, n), key, start_seq, start_hash,
                   expected_last_seq)
