"""Key managers, clusters of key-provider endpoints, and endpoint configurations.

Endpoint configurations are plain objects (:class:`FileEndpoint`,
:class:`KMIPEndpoint`, :class:`PKCS11Endpoint`) whose ``repr`` hides the
passphrase or PIN. The C library copies a secret into its secure memory when
a provider is built; pass it as a ``bytearray`` and wipe it afterwards
(:func:`vmenc.memzero`) if your copy must go.
"""
from __future__ import annotations

from ctypes import (POINTER, byref, c_char_p, c_size_t, c_uint, c_uint8, c_void_p,
                    create_string_buffer, sizeof)
from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

from . import _lib
from ._handle import Handle
from .errors import check
from .keys import DEK, KEK, WrapContext, WrappedKey, WRAP_ALGS, _ctx

DEFAULT_TIMEOUT = 10.0
KEK_CHECK_VALUE_BYTES = 16


def _ms(timeout: Optional[float]) -> int:
    if timeout is None:
        timeout = DEFAULT_TIMEOUT
    if timeout < 0:
        raise ValueError("timeout must be >= 0")
    return min(int(timeout * 1000), 0xFFFFFFFF)


def _secret_repr(v) -> str:
    return "None" if v is None else "<redacted>"


@dataclass(repr=False)
class FileEndpoint:
    """The embedded encrypted keystore ("file" provider)."""
    path: str
    passphrase: Union[bytes, bytearray]
    create: bool = False
    kdf_ops: Optional[int] = None
    kdf_mem_kib: Optional[int] = None
    max_kdf_ops: Optional[int] = None
    max_kdf_mem_kib: Optional[int] = None

    type = "file"

    def _address(self) -> str:
        return self.path

    def _secret(self):
        return self.passphrase

    def _options(self) -> list:
        o = []
        if self.create:
            o.append("create=1")
        for k in ("kdf_ops", "kdf_mem_kib", "max_kdf_ops", "max_kdf_mem_kib"):
            v = getattr(self, k)
            if v is not None:
                o.append(f"{k}={int(v)}")
        return o

    def __repr__(self) -> str:
        return f"FileEndpoint(path={self.path!r}, passphrase={_secret_repr(self.passphrase)}, create={self.create})"


@dataclass(repr=False)
class KMIPEndpoint:
    """A KMIP server ("kmip" provider; KMIP 1.2-2.0 over mutual TLS)."""
    address: str  # "host:port"
    ca: Optional[str] = None
    cert: Optional[str] = None
    key: Optional[str] = None
    server_name: Optional[str] = None
    connect_timeout_ms: Optional[int] = None
    request_timeout_ms: Optional[int] = None

    type = "kmip"

    def _address(self) -> str:
        return self.address

    def _secret(self):
        return None

    def _options(self) -> list:
        o = []
        for k in ("ca", "cert", "key", "server_name", "connect_timeout_ms", "request_timeout_ms"):
            v = getattr(self, k)
            if v is not None:
                o.append(f"{k}={v}")
        return o

    def __repr__(self) -> str:
        return f"KMIPEndpoint(address={self.address!r}, ca={self.ca!r}, cert={self.cert!r}, key={self.key!r})"


@dataclass(repr=False)
class PKCS11Endpoint:
    """A PKCS#11 token ("pkcs11" provider; the KEK never leaves the token)."""
    module: str
    token_label: str
    pin: Union[bytes, bytearray]
    mechanism: Optional[str] = None  # "kwp", "kw" or "gcm"
    key_label: Optional[str] = None
    max_sessions: Optional[int] = None
    forget_pin: bool = False
    allow_extractable_kek: bool = False

    type = "pkcs11"

    def _address(self) -> str:
        return self.module

    def _secret(self):
        return self.pin

    def _options(self) -> list:
        o = [f"token_label={self.token_label}"]
        for k in ("mechanism", "key_label", "max_sessions"):
            v = getattr(self, k)
            if v is not None:
                o.append(f"{k}={v}")
        if self.forget_pin:
            o.append("forget_pin=1")
        if self.allow_extractable_kek:
            o.append("allow_extractable_kek=1")
        return o

    def __repr__(self) -> str:
        return (f"PKCS11Endpoint(module={self.module!r}, token_label={self.token_label!r}, "
                f"pin={_secret_repr(self.pin)})")


Endpoint = Union[FileEndpoint, KMIPEndpoint, PKCS11Endpoint]


class _CEndpoint:
    """An endpoint converted to vmenc_kms_endpoint_config, with its buffers kept alive."""

    def __init__(self, ep: Endpoint) -> None:
        opts = [_lib.enc(o) for o in ep._options()]
        self.options = (c_char_p * (len(opts) + 1))(*opts, None)
        sec = ep._secret()
        sp, sn = _lib.inbuf(sec) if sec is not None else (None, 0)
        self.secret = sp
        self.cfg = _lib.EndpointConfig(sizeof(_lib.EndpointConfig), _lib.enc(ep.type),
                                       _lib.enc(ep._address()),
                                       self.options, _lib.addr(sp), sn)


def _cluster_opts(backoff_initial_ms: int, backoff_max_ms: int, no_jitter: bool):
    return _lib.ClusterOptions(sizeof(_lib.ClusterOptions), backoff_initial_ms, backoff_max_ms,
                               1 if no_jitter else 0)


@dataclass(frozen=True)
class EndpointInfo:
    """Health of one endpoint of a cluster (state, failures, back-off)."""
    name: str
    type_name: str
    consecutive_failures: int
    backoff_remaining_ms: int
    last_status: int
    num_calls: int
    num_failures: int


class Cluster(Handle):
    """A named, ordered list of replicating endpoints of one provider type, with failover.

    Hand it to a :class:`KeyManager` with :meth:`KeyManager.add_cluster_object`
    (which takes ownership), or use it directly.
    """

    _free = _lib.lib.vmenc_kms_cluster_free

    def __init__(self, alias: str, endpoints: Sequence[Endpoint] = (), *, backoff_initial_ms: int = 0,
                 backoff_max_ms: int = 0, no_jitter: bool = False) -> None:
        o = _cluster_opts(backoff_initial_ms, backoff_max_ms, no_jitter)
        out = c_void_p()
        check(_lib.lib.vmenc_kms_cluster_new(_lib.enc(alias), byref(o), byref(out)))
        super().__init__(out)
        try:
            for ep in endpoints:
                self.add_endpoint(ep)
        except BaseException:
            self.close()
            raise

    def add_endpoint(self, ep: Endpoint) -> None:
        """Build a provider for ``ep`` and append it (connects lazily for KMIP)."""
        c = _CEndpoint(ep)
        check(_lib.lib.vmenc_kms_cluster_add_endpoint_config(self, byref(c.cfg)))

    @property
    def alias(self) -> str:
        """The cluster's alias."""
        return _lib.dec(_lib.lib.vmenc_kms_cluster_alias(self))

    def __len__(self) -> int:
        return int(_lib.lib.vmenc_kms_cluster_num_endpoints(self))

    def endpoint_info(self, index: int) -> EndpointInfo:
        """Health of endpoint ``index`` (:class:`EndpointInfo`)."""
        i = _lib.EndpointInfo(sizeof(_lib.EndpointInfo))
        check(_lib.lib.vmenc_kms_cluster_endpoint_info(self, index, byref(i)))
        return EndpointInfo(_lib.dec(i.name), _lib.dec(i.type_name), i.consecutive_failures,
                            i.backoff_remaining_ms, i.last_status, i.num_calls, i.num_failures)

    @property
    def num_failovers(self) -> int:
        """How often a call moved on to another endpoint."""
        return int(_lib.lib.vmenc_kms_cluster_num_failovers(self))

    def create_kek(self, name: Optional[str] = None, timeout: Optional[float] = None) -> str:
        """Create a KEK at the first healthy endpoint; return its ID."""
        buf = create_string_buffer(_lib.KMS_KEY_ID_CAP)
        check(_lib.lib.vmenc_kms_cluster_create_kek(self, _lib.enc(name), _ms(timeout), buf,
                                                    len(buf), None))
        return buf.value.decode()

    def get_kek(self, key_id: str, timeout: Optional[float] = None) -> KEK:
        """Fetch KEK ``key_id`` (a :class:`KEK` in secure memory)."""
        out = c_void_p()
        check(_lib.lib.vmenc_kms_cluster_get_kek(self, _lib.enc(key_id), _ms(timeout), byref(out), None))
        return KEK._adopt(out)

    def revoke_kek(self, key_id: str, timeout: Optional[float] = None) -> None:
        """Revoke KEK ``key_id`` at the KMS."""
        check(_lib.lib.vmenc_kms_cluster_revoke_kek(self, _lib.enc(key_id), _ms(timeout), None))

    def destroy_kek(self, key_id: str, timeout: Optional[float] = None) -> None:
        """Destroy KEK ``key_id`` at the KMS (revoking first where the KMS needs it)."""
        check(_lib.lib.vmenc_kms_cluster_destroy_kek(self, _lib.enc(key_id), _ms(timeout), None))

    def check_health(self, timeout: Optional[float] = None) -> int:
        """Probe every endpoint; return how many answered (raises if none did)."""
        n = c_size_t()
        check(_lib.lib.vmenc_kms_cluster_check_health(self, _ms(timeout), byref(n)))
        return n.value

    def __repr__(self) -> str:
        if self.closed:
            return "<vmenc.Cluster closed>"
        return f"<vmenc.Cluster alias={self.alias!r} endpoints={len(self)}>"


@dataclass(frozen=True)
class KeyManagerStats:
    """Counters of a key manager (cache hits and misses, failovers, errors...)."""
    hits: int
    misses: int
    failovers: int
    errors: int
    evictions: int
    expirations: int
    wrong_keys: int
    remote_ops: int
    cached: int
    roundtrip_failures: int


class KeyManager(Handle):
    """A host's key manager: clusters by alias, and a KEK cache in secure memory.

    Thread-safe (every method may run from many threads; the C library does
    not hold the GIL while it talks to a KMS)."""

    _free = _lib.lib.vmenc_keymgr_free

    def __init__(self, *, cache_capacity: int = 0, cache_ttl_ms: int = 0,
                 remote_wrap_alg: Optional[str] = None, roundtrip_proof: bool = True) -> None:
        o = _lib.KeymgrOptions(sizeof(_lib.KeymgrOptions), cache_capacity, cache_ttl_ms,
                               WRAP_ALGS[remote_wrap_alg] if remote_wrap_alg else 0,
                               0 if roundtrip_proof else 1)
        out = c_void_p()
        check(_lib.lib.vmenc_keymgr_new(byref(o), byref(out)))
        super().__init__(out)

    @classmethod
    def _borrowed(cls, ptr: int, owner: Handle) -> "KeyManager":
        self = cls.__new__(cls)
        Handle.__init__(self, ptr, owner=owner)
        return self

    def add_cluster(self, alias: str, endpoints: Sequence[Endpoint], *, backoff_initial_ms: int = 0,
                    backoff_max_ms: int = 0, no_jitter: bool = False) -> None:
        """Add key provider ``alias`` with these endpoints (all one type). Nothing is added on failure."""
        cs = [_CEndpoint(ep) for ep in endpoints]
        arr = (_lib.EndpointConfig * max(len(cs), 1))(*[c.cfg for c in cs])
        o = _cluster_opts(backoff_initial_ms, backoff_max_ms, no_jitter)
        check(_lib.lib.vmenc_keymgr_add_cluster(self, _lib.enc(alias), arr, len(cs), byref(o)))

    def add_cluster_object(self, cluster: Cluster) -> None:
        """Take ownership of ``cluster`` (it becomes a view owned by this manager)."""
        check(_lib.lib.vmenc_keymgr_take_cluster(self, cluster))
        with cluster._lock:
            cluster._owner = self  # the manager frees it now
        self._retain()

    def remove_cluster(self, alias: str) -> None:
        """Remove cluster ``alias`` and drop its cached KEKs."""
        check(_lib.lib.vmenc_keymgr_remove_cluster(self, _lib.enc(alias)))

    def create_kek(self, alias: str, name: Optional[str] = None, timeout: Optional[float] = None) -> str:
        """Create a KEK in cluster ``alias``; return its ID."""
        buf = create_string_buffer(_lib.KMS_KEY_ID_CAP)
        check(_lib.lib.vmenc_keymgr_create_kek(self, _lib.enc(alias), _lib.enc(name), _ms(timeout),
                                               buf, len(buf)))
        return buf.value.decode()

    def get_kek(self, alias: str, key_id: str, timeout: Optional[float] = None) -> KEK:
        """Fetch KEK ``key_id`` of cluster ``alias`` (cached in memory)."""
        out = c_void_p()
        check(_lib.lib.vmenc_keymgr_get_kek(self, _lib.enc(alias), _lib.enc(key_id), _ms(timeout),
                                            byref(out)))
        return KEK._adopt(out)

    def wrap_dek(self, alias: str, kek_id: str, dek: DEK, context: Optional[WrapContext] = None,
                 timeout: Optional[float] = None) -> WrappedKey:
        """Wrap ``dek`` for KEK (alias, kek_id), proving the record opens again before returning it."""
        c = _ctx(context)
        out = c_void_p()
        check(_lib.lib.vmenc_keymgr_wrap_dek(self, _lib.enc(alias), _lib.enc(kek_id), dek, byref(c),
                                             _ms(timeout), byref(out)))
        return WrappedKey._adopt(out)

    def unwrap_dek(self, wrapped: WrappedKey, context: Optional[WrapContext] = None,
                   timeout: Optional[float] = None) -> DEK:
        """Unwrap a :class:`WrappedKey` bound to ``ctx``; AuthError for a wrong context or tampering."""
        c = _ctx(context)
        out = c_void_p()
        check(_lib.lib.vmenc_keymgr_unwrap_dek(self, wrapped, byref(c), _ms(timeout), byref(out)))
        return DEK._adopt(out)

    def revoke_kek(self, alias: str, key_id: str, timeout: Optional[float] = None) -> None:
        """Revoke a KEK at its KMS and drop it from the cache."""
        check(_lib.lib.vmenc_keymgr_revoke_kek(self, _lib.enc(alias), _lib.enc(key_id), _ms(timeout)))

    def destroy_kek(self, alias: str, key_id: str, timeout: Optional[float] = None) -> None:
        """Destroy a KEK at its KMS and drop it from the cache."""
        check(_lib.lib.vmenc_keymgr_destroy_kek(self, _lib.enc(alias), _lib.enc(key_id), _ms(timeout)))

    def forget(self, alias: Optional[str] = None, key_id: Optional[str] = None) -> None:
        """Drop cached KEKs: one, all of ``alias``, or all."""
        check(_lib.lib.vmenc_keymgr_forget(self, _lib.enc(alias), _lib.enc(key_id)))

    def check_health(self, alias: str, timeout: Optional[float] = None) -> int:
        """Probe every endpoint of ``alias``; return how many are healthy."""
        n = c_size_t()
        check(_lib.lib.vmenc_keymgr_check_health(self, _lib.enc(alias), _ms(timeout), byref(n)))
        return n.value

    def kek_check_value(self, alias: str, key_id: str) -> bytes:
        """The keyed check value (16 bytes; reveals nothing about the key)."""
        buf = (c_uint8 * KEK_CHECK_VALUE_BYTES)()
        check(_lib.lib.vmenc_keymgr_kek_check_value(self, _lib.enc(alias), _lib.enc(key_id), buf,
                                                    len(buf)))
        return bytes(buf)

    def pin_check_value(self, alias: str, key_id: str, kcv: bytes) -> None:
        """Pin the key check value of a KEK, so other bytes served later are refused."""
        check(_lib.lib.vmenc_keymgr_pin_check_value(self, _lib.enc(alias), _lib.enc(key_id),
                                                    bytes(kcv), len(kcv)))

    def stats(self) -> KeyManagerStats:
        """The counters (:class:`KeyManagerStats`)."""
        s = _lib.KeymgrStats(sizeof(_lib.KeymgrStats))
        check(_lib.lib.vmenc_keymgr_get_stats(self, byref(s)))
        return KeyManagerStats(*(getattr(s, f) for f, _ in _lib.KeymgrStats._fields_[1:]))

    def __repr__(self) -> str:
        return f"<vmenc.KeyManager{' closed' if self.closed else ''}>"


def create_keystore(path: str, passphrase, *, kdf_ops: int = 0, kdf_mem_kib: int = 0) -> None:
    """Write a new, empty file keystore (never overwrites: :class:`vmenc.PolicyError` EXISTS)."""
    p, n = _lib.inbuf(passphrase)
    o = _lib.FileOptions(sizeof(_lib.FileOptions), 0, kdf_ops, kdf_mem_kib, 0, 0)
    check(_lib.lib.vmenc_kms_file_create(_lib.enc(path), p, n, byref(o)))
