"""vmenc: Python binding of the vmenc VM-encryption library (ctypes over the C ABI).

Finds ``libvmenc.so.0`` through the dynamic loader, or at the path in the
environment variable ``VMENC_LIBRARY``, and checks its version at import
(:class:`LibraryError`, a subclass of ImportError, if unsuitable).

Every object that owns a C handle is a context manager; ``close()`` frees
it and wipes key material. Errors are :class:`Error` subclasses by category.
Key bytes never appear in a ``repr``.
"""
from ._lib import LibraryError
from .core import cpu_features, memzero, random_bytes, version, version_number
from .errors import (AuditError, AuthError, Category, CryptoError, DeniedError, Error, InternalError,
                     KeyNotFoundError, KMSError, KMSUnavailableError, ParseError, PolicyError,
                     ResourceError, Status, UsageError, VMLockedError, strerror)
from .xts import XTS, impl_available
from .keys import DEK, KEK, WrapContext, WrappedKey, aes_kwp_unwrap, aes_kwp_wrap
from .kms import (Cluster, EndpointInfo, FileEndpoint, KeyManager, KeyManagerStats, KMIPEndpoint,
                  PKCS11Endpoint, create_keystore)
from .policy import (Decision, EditOp, HostState, Migration, ObjectType, Op, Policy, privilege_from_name,
                     privilege_name, privileges)
from .audit import (Audit, AuditEventView, AuditLog, Defect, Outcome, VerifyResult, event_to_json,
                    log_file_tail, verify_buffer, verify_files)
from .vm import ConvertKind, Disk, DiskInfo, DiskState, FileClass, Host, Progress, VM, VMFile, VMInfo
from .workspace import DeleteResult, KMSInfo, ResealResult, Session, Workspace
from . import policy

__version__ = "0.5.0"

__all__ = [n for n in dir() if not n.startswith("_")]
