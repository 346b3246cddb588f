"""Data-encryption keys, key-encryption keys and wrapped-key records.

Key bytes live only in the C library's secure memory; there is no way to
read them back from Python, and ``repr`` never shows them.
"""
from __future__ import annotations

from ctypes import byref, c_char_p, c_size_t, c_void_p, create_string_buffer, string_at
from dataclasses import dataclass
from typing import Optional

from . import _lib
from ._handle import Handle
from .errors import check

DEK_BYTES = 64
KEK_BYTES = 32

WRAP_ALGS = {"aes256-gcm": 1, "aes256-kwp": 2}
_ALG_NAMES = {v: k for k, v in WRAP_ALGS.items()}


@dataclass(frozen=True)
class WrapContext:
    """What a wrapped key is bound to; a record opens only under the same context."""
    vm_uuid: Optional[str] = None
    disk_id: Optional[str] = None
    purpose: Optional[str] = None

    def _to_c(self) -> _lib.WrapContext:
        return _lib.WrapContext(len_ctx(), _lib.enc(self.vm_uuid), _lib.enc(self.disk_id),
                                _lib.enc(self.purpose))


def len_ctx() -> int:
    """The wrap context (VM UUID, disk ID, purpose) as the C struct, with its buffers."""
    from ctypes import sizeof
    return sizeof(_lib.WrapContext)


def _ctx(context: Optional[WrapContext]) -> _lib.WrapContext:
    return (context or WrapContext())._to_c()


class _Key(Handle):
    _equal = None

    @classmethod
    def _adopt(cls, ptr):
        self = cls.__new__(cls)
        Handle.__init__(self, ptr)
        return self

    def __eq__(self, other) -> bool:
        """Constant-time comparison of the key bytes (in C)."""
        if type(other) is not type(self):
            return NotImplemented
        s = type(self)._equal(self, other)
        if s == -304:  # VMENC_E_KEY_MISMATCH
            return False
        check(s)
        return True

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<vmenc.{type(self).__name__} {'closed' if self.closed else 'in secure memory'}>"


class DEK(_Key):
    """A 64-byte XTS-AES-256 data-encryption key in secure memory."""

    _free = _lib.lib.vmenc_dek_free
    _equal = _lib.lib.vmenc_dek_equal

    def __init__(self) -> None:
        raise TypeError("use DEK.generate() or DEK.from_bytes()")

    @classmethod
    def generate(cls) -> "DEK":
        """A fresh random DEK (the two halves are distinct)."""
        out = c_void_p()
        check(_lib.lib.vmenc_dek_generate(byref(out)))
        return cls._adopt(out)

    @classmethod
    def from_bytes(cls, key) -> "DEK":
        """Copy 64 bytes into a new DEK. Pass a bytearray and wipe it afterwards."""
        p, n = _lib.inbuf(key)
        out = c_void_p()
        check(_lib.lib.vmenc_dek_new_from_bytes(p, n, byref(out)))
        return cls._adopt(out)

    def wrap(self, kek: "KEK", provider_alias: str, kek_id: str,
             context: Optional[WrapContext] = None, alg: str = "aes256-gcm") -> "WrappedKey":
        """Wrap this DEK under ``kek`` locally into a record naming the provider and KEK ID."""
        c = _ctx(context)
        out = c_void_p()
        check(_lib.lib.vmenc_dek_wrap(self, kek, WRAP_ALGS[alg], _lib.enc(provider_alias),
                                      _lib.enc(kek_id), byref(c), byref(out)))
        return WrappedKey._adopt(out)

    def xts(self, sector_size: int = 512):
        """An :class:`vmenc.XTS` context for this key."""
        from .xts import XTS
        return XTS.from_dek(self, sector_size)


class KEK(_Key):
    """A 32-byte AES-256 key-encryption key in secure memory."""

    _free = _lib.lib.vmenc_kek_free
    _equal = _lib.lib.vmenc_kek_equal

    def __init__(self) -> None:
        raise TypeError("use KEK.generate() or KEK.from_bytes()")

    @classmethod
    def generate(cls) -> "KEK":
        """A new random KEK (for tests and custom providers; real KEKs come from a key provider)."""
        out = c_void_p()
        check(_lib.lib.vmenc_kek_generate(byref(out)))
        return cls._adopt(out)

    @classmethod
    def from_bytes(cls, key) -> "KEK":
        """A KEK from 32 raw bytes (copied into secure memory; wipe your copy)."""
        p, n = _lib.inbuf(key)
        out = c_void_p()
        check(_lib.lib.vmenc_kek_new_from_bytes(p, n, byref(out)))
        return cls._adopt(out)


class WrappedKey(Handle):
    """A wrapped-key record (docs/wrapped-key-format.md). Holds no plaintext key."""

    _free = _lib.lib.vmenc_wrapped_key_free

    def __init__(self) -> None:
        raise TypeError("use WrappedKey.parse(), WrappedKey.from_text() or DEK.wrap()")

    @classmethod
    def _adopt(cls, ptr) -> "WrappedKey":
        self = cls.__new__(cls)
        Handle.__init__(self, ptr)
        return self

    @classmethod
    def parse(cls, data) -> "WrappedKey":
        """Parse the binary form (raises :class:`vmenc.ParseError`)."""
        p, n = _lib.inbuf(data)
        out = c_void_p()
        check(_lib.lib.vmenc_wrapped_key_parse(p, n, byref(out)))
        return cls._adopt(out)

    @classmethod
    def from_text(cls, text: str) -> "WrappedKey":
        """Parse the text form ``vmwk1:<base64>`` (strict)."""
        b = _lib.enc(text)
        out = c_void_p()
        check(_lib.lib.vmenc_wrapped_key_parse_text(b, len(b), byref(out)))
        return cls._adopt(out)

    def to_bytes(self) -> bytes:
        """The binary wrapped-key record (docs/wrapped-key-format.md)."""
        out, n = c_void_p(), c_size_t()
        check(_lib.lib.vmenc_wrapped_key_serialize(self, byref(out), byref(n)))
        try:
            return string_at(out, n.value)
        finally:
            _lib.lib.vmenc_buffer_free(out)

    __bytes__ = to_bytes

    def to_text(self) -> str:
        """The text form, ``vmwk1:`` + base64, as stored in configuration files."""
        out = c_void_p()
        check(_lib.lib.vmenc_wrapped_key_to_text(self, byref(out)))
        try:
            return string_at(out).decode("ascii")
        finally:
            _lib.lib.vmenc_buffer_free(out)

    @property
    def alg(self) -> str:
        """The wrap algorithm of the record."""
        return _ALG_NAMES.get(_lib.lib.vmenc_wrapped_key_alg(self), "unknown")

    @property
    def provider_alias(self) -> str:
        """The key provider (cluster alias) whose KEK wraps it."""
        return _lib.dec(_lib.lib.vmenc_wrapped_key_provider_alias(self))

    @property
    def kek_id(self) -> str:
        """The ID of the KEK that wraps it."""
        return _lib.dec(_lib.lib.vmenc_wrapped_key_kek_id(self))

    def unwrap(self, kek: KEK, context: Optional[WrapContext] = None) -> DEK:
        """Recover the DEK (raises :class:`vmenc.AuthError` for a wrong KEK/context or tampering)."""
        c = _ctx(context)
        out = c_void_p()
        check(_lib.lib.vmenc_wrapped_key_unwrap(self, kek, byref(c), byref(out)))
        return DEK._adopt(out)

    def __repr__(self) -> str:
        if self.closed:
            return "<vmenc.WrappedKey closed>"
        return (f"<vmenc.WrappedKey alg={self.alg!r} provider={self.provider_alias!r} "
                f"kek_id={self.kek_id!r}>")


def aes_kwp_wrap(kek, data) -> bytes:
    """RFC 5649 AES key wrap with padding (raw primitive)."""
    kp, kn = _lib.inbuf(kek)
    p, n = _lib.inbuf(data)
    cap = (n + 7) // 8 * 8 + 8
    out, outn = create_string_buffer(cap), c_size_t()
    check(_lib.lib.vmenc_aes_kwp_wrap(kp, kn, p, n, out, cap, byref(outn)))
    return out.raw[:outn.value]


def aes_kwp_unwrap(kek, data) -> bytearray:
    """Inverse of :func:`aes_kwp_wrap`; returns a bytearray the caller can wipe."""
    kp, kn = _lib.inbuf(kek)
    p, n = _lib.inbuf(data)
    out = bytearray(max(n - 8, 1))
    o, cap = _lib.outbuf(out)
    outn = c_size_t()
    try:
        check(_lib.lib.vmenc_aes_kwp_unwrap(kp, kn, p, n, o, cap, byref(outn)))
    except BaseException:
        _lib.lib.vmenc_memzero(o, cap)
        raise
    res = out[:outn.value]
    _lib.lib.vmenc_memzero(o, cap)
    return res
