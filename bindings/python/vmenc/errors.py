"""Status codes and the exception hierarchy.

Every failing C call raises a subclass of :class:`Error` that carries the
numeric ``status``, its enumerator ``name`` ("VMENC_E_AUTH") and the
library's message. The class says the *category* (the C library groups codes
in blocks of 100), so a caller can branch on the kind without knowing every
code::

    try:
        vm = host.open_vm("bob", path)
    except vmenc.KMSUnavailableError:
        ...  # retry later
    except vmenc.DeniedError as e:
        print("not allowed:", e.privilege, "missing on", e.object)
"""
from __future__ import annotations

import enum
import re
from typing import Optional

from . import _lib


class Status(enum.IntEnum):
    """The C library's ``vmenc_status`` values (stable forever once released)."""

    OK = 0
    E_INVALID_ARG = -100
    E_BUFFER_TOO_SMALL = -101
    E_UNSUPPORTED = -102
    E_NOT_INITIALIZED = -103
    E_UNIMPLEMENTED = -104
    E_BAD_STATE = -105
    E_CPU_UNSUPPORTED = -106
    E_WEAK_KEY = -107
    E_BAD_SECTOR_SIZE = -108
    E_BAD_LENGTH = -109
    E_UNKNOWN_IMPL = -110
    E_ABI_VERSION = -111
    E_PARSE = -200
    E_TRUNCATED = -201
    E_BAD_VERSION = -202
    E_TOO_LARGE = -203
    E_TRAILING_DATA = -204
    E_BAD_ENCODING = -205
    E_DEPTH_LIMIT = -206
    E_BAD_ALGORITHM = -207
    E_BAD_MAGIC = -208
    E_BAD_PATH = -209
    E_AUTH = -300
    E_CRYPTO = -301
    E_RANDOM = -302
    E_WRONG_PASSPHRASE = -303
    E_KEY_MISMATCH = -304
    E_CONTEXT_MISMATCH = -305
    E_SELFTEST = -306
    E_ROUNDTRIP = -307
    E_KMS = -400
    E_KMS_UNAVAILABLE = -401
    E_KMS_TIMEOUT = -402
    E_KMS_TLS = -403
    E_KMS_CERT_VERIFY = -404
    E_KMS_NAME_MISMATCH = -405
    E_KMS_AUTH = -406
    E_KEY_NOT_FOUND = -407
    E_KMS_PROTOCOL = -408
    E_KMS_REFUSED = -409
    E_KEY_STATE = -410
    E_TOKEN_NOT_FOUND = -411
    E_PROVIDER_EXISTS = -412
    E_NO_SUCH_PROVIDER = -413
    E_KMS_PERMISSION = -414
    E_PIN_LOCKED = -415
    E_KMS_WRONG_KEY = -416
    E_VM_LOCKED = -417
    E_DENIED = -500
    E_HOST_MODE = -501
    E_POLICY_INVALID = -502
    E_NOT_FOUND = -503
    E_EXISTS = -504
    E_CYCLE = -505
    E_ILLEGAL_TRANSITION = -506
    E_AUDIT_TAMPERED = -600
    E_AUDIT_TRUNCATED = -601
    E_AUDIT_SINK = -602
    E_NOMEM = -700
    E_IO = -701
    E_LOCKED = -702
    E_LIMIT = -703
    E_INTERRUPTED = -704
    E_NO_SPACE = -705
    E_CONFLICT = -706
    E_INTERNAL = -900

class Category(enum.IntEnum):
    """``vmenc_status_category``: the block a status falls in."""
    OK = 0
    USAGE = 1
    PARSE = 2
    CRYPTO = 3
    PROVIDER = 4
    POLICY = 5
    AUDIT = 6
    RESOURCE = 7
    INTERNAL = 9
    UNKNOWN = 10


class Error(Exception):
    """Base of every vmenc error.

    Attributes: ``status`` (int), ``name`` ("VMENC_E_..."), ``category``
    (:class:`Category`), ``detail`` (extra context from the call, e.g. the
    JSON path of a policy error, or "").
    """

    def __init__(self, status: int, detail: str = "") -> None:
        self.status = int(status)
        self.name = _lib.dec(_lib.lib.vmenc_status_name(self.status))
        self.category = Category(_lib.lib.vmenc_status_category_of(self.status))
        self.detail = detail
        msg = _lib.dec(_lib.lib.vmenc_strerror(self.status))
        text = f"{msg} ({self.name}, {self.status})"
        if detail:
            text += f": {detail}"
        super().__init__(text)


class UsageError(Error, ValueError):
    """The caller passed something the API does not accept (-1xx)."""


class ParseError(Error, ValueError):
    """Input bytes are malformed (-2xx)."""


class CryptoError(Error):
    """A cryptographic or authentication failure (-3xx)."""


class AuthError(CryptoError):
    """Authentication failed: wrong key, wrong context, tampering, wrong passphrase."""


class KMSError(Error):
    """The key manager or a key provider failed or refused (-4xx)."""


class KMSUnavailableError(KMSError):
    """No endpoint answered (connection failure, TLS, or deadline passed)."""


class KeyNotFoundError(KMSError, LookupError):
    """The key provider knows no key with that ID."""


class VMLockedError(KMSError):
    """A KEK the VM needs cannot be fetched (yet)."""


class PolicyError(Error):
    """The policy refused or the policy model rejected the request (-5xx)."""


class DeniedError(PolicyError, PermissionError):
    """The principal lacks a privilege, or the host cannot enter encryption mode.

    Attributes, besides :class:`Error`'s: ``privilege`` - the missing
    privilege's vSphere name (``"Cryptographer.Decrypt"``), or None when the
    refusal was not about a privilege (host mode) or the library did not say;
    ``object`` - the inventory object it was missing on, or None;
    ``decision`` - the full :class:`vmenc.Decision` when one was made.
    """

    def __init__(self, status: int, detail: str = "") -> None:
        super().__init__(status, detail)
        self.privilege: Optional[str] = _privilege_in(detail)
        self.object: Optional[str] = None
        self.decision = None

    def _set_decision(self, decision) -> None:
        """Attach a :class:`vmenc.Decision` and take the privilege and object from it."""
        self.decision = decision
        if decision.missing_privilege:
            self.privilege = decision.missing_privilege
        if decision.missing_object:
            self.object = decision.missing_object


def _privilege_in(text: str) -> Optional[str]:
    """The first privilege name (as the library spells it) in ``text``, or None."""
    if not text:
        return None
    names = _privilege_names()
    for word in re.findall(r"[A-Z][A-Za-z]*(?:\.[A-Za-z]+)+", text):
        if word in names:
            return word
    return None


_PRIV_NAMES: Optional[frozenset] = None


def _privilege_names() -> frozenset:
    global _PRIV_NAMES
    if _PRIV_NAMES is None:
        n = int(_lib.lib.vmenc_policy_privilege_count())
        _PRIV_NAMES = frozenset(_lib.dec(_lib.lib.vmenc_policy_privilege_name(i)) for i in range(n + 1)
                                if _lib.lib.vmenc_policy_privilege_name(i))
    return _PRIV_NAMES


class AuditError(Error):
    """Audit trail failure: tampering found, log cut short, sink failed (-6xx)."""


class ResourceError(Error):
    """Environment: memory, I/O, locks, limits, disk full (-7xx)."""


class InternalError(Error):
    """A bug in vmenc (-9xx)."""


_BY_STATUS = {
    Status.E_AUTH: AuthError,
    Status.E_WRONG_PASSPHRASE: AuthError,
    Status.E_CONTEXT_MISMATCH: AuthError,
    Status.E_KMS_UNAVAILABLE: KMSUnavailableError,
    Status.E_KMS_TIMEOUT: KMSUnavailableError,
    Status.E_KEY_NOT_FOUND: KeyNotFoundError,
    Status.E_VM_LOCKED: VMLockedError,
    Status.E_DENIED: DeniedError,
    Status.E_HOST_MODE: DeniedError,
}

_BY_CATEGORY = {
    Category.USAGE: UsageError,
    Category.PARSE: ParseError,
    Category.CRYPTO: CryptoError,
    Category.PROVIDER: KMSError,
    Category.POLICY: PolicyError,
    Category.AUDIT: AuditError,
    Category.RESOURCE: ResourceError,
    Category.INTERNAL: InternalError,
}


def error_for(status: int, detail: str = "") -> Error:
    """The exception object for a (failing) status."""
    cls = _BY_STATUS.get(status)
    if cls is None:
        cls = _BY_CATEGORY.get(Category(_lib.lib.vmenc_status_category_of(status)), Error)
    return cls(status, detail)


def check(status: int, detail: str = "") -> None:
    """Raise the matching :class:`Error` unless ``status`` is VMENC_OK."""
    if status != 0:
        raise error_for(status, detail)


def strerror(status: int) -> str:
    """The library's short English description of ``status``."""
    return _lib.dec(_lib.lib.vmenc_strerror(int(status)))
