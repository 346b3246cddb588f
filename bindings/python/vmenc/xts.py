"""XTS-AES sector encryption (IEEE 1619; tweak = sector number, "plain64")."""
from __future__ import annotations

from ctypes import c_char, c_void_p, create_string_buffer, byref
from typing import Optional

from . import _lib
from ._handle import Handle
from .errors import check

KEYBYTES_256 = 64
KEYBYTES_128 = 32
_ARRAYS: dict = {}
IMPLEMENTATIONS = ("vaes-avx512", "vaes-avx2", "aesni", "portable")


def impl_available(impl: str) -> bool:
    """Whether backend ``impl`` can run on this CPU/OS (raises for an unknown name)."""
    s = _lib.lib.vmenc_xts_impl_available(_lib.enc(impl))
    if s == -106:  # VMENC_E_CPU_UNSUPPORTED
        return False
    check(s)
    return True


class XTS(Handle):
    """An expanded XTS-AES key for one sector size. Immutable; thread-safe.

    ``key`` is 64 bytes (XTS-AES-256) or 32 (XTS-AES-128). The key schedule
    lives in libsodium secure memory and is wiped by :meth:`close`. Pass the
    key as a ``bytearray`` and wipe it (:func:`vmenc.memzero`) after this
    constructor returns if you need your copy gone.
    """

    _free = _lib.lib.vmenc_xts_free

    def __init__(self, key, sector_size: int = 512, impl: Optional[str] = None) -> None:
        p, n = _lib.inbuf(key)
        out = c_void_p()
        check(_lib.lib.vmenc_xts_new_impl(p, n, sector_size, _lib.enc(impl), byref(out)))
        super().__init__(out)

    @classmethod
    def _adopt(cls, ptr: c_void_p) -> "XTS":
        self = cls.__new__(cls)
        Handle.__init__(self, ptr)
        return self

    @classmethod
    def from_dek(cls, dek, sector_size: int = 512) -> "XTS":
        """An XTS-AES-256 context from a :class:`vmenc.DEK` (the key never leaves secure memory)."""
        out = c_void_p()
        check(_lib.lib.vmenc_xts_new_from_dek(dek, sector_size, byref(out)))
        return cls._adopt(out)

    @property
    def impl(self) -> str:
        """The backend in use: "vaes-avx512", "vaes-avx2", "aesni" or "portable"."""
        return _lib.dec(_lib.lib.vmenc_xts_impl_name(self))

    @property
    def sector_size(self) -> int:
        return int(_lib.lib.vmenc_xts_sector_size(self))

    def _run(self, fn, first_sector: int, data) -> bytes:
        p, n = _lib.inbuf(data)
        out = create_string_buffer(n)
        check(fn(self, first_sector, p, out, n))
        return out.raw

    def encrypt(self, first_sector: int, data) -> bytes:
        """Encrypt whole sectors; the first is numbered ``first_sector``."""
        return self._run(_lib.lib.vmenc_xts_encrypt, first_sector, data)

    def decrypt(self, first_sector: int, data) -> bytes:
        """Inverse of :meth:`encrypt`."""
        return self._run(_lib.lib.vmenc_xts_decrypt, first_sector, data)

    def encrypt_into(self, first_sector: int, data, out) -> None:
        """Encrypt ``data`` into the writable buffer ``out`` (same length; may be
        the same object, for in-place encryption). No allocation or copy."""
        self._into(_lib.lib.vmenc_xts_encrypt, first_sector, data, out)

    def decrypt_into(self, first_sector: int, data, out) -> None:
        """Inverse of :meth:`encrypt_into`."""
        self._into(_lib.lib.vmenc_xts_decrypt, first_sector, data, out)

    def _into(self, fn, first_sector, data, out) -> None:
        if type(out) is bytearray and (data is out or type(data) is bytes):
            # Fast path (the common hypervisor loop): no memoryview, cached array type.
            on = len(out)
            t = _ARRAYS.get(on)
            if t is None:
                t = _ARRAYS.setdefault(on, c_char * on)
            o = t.from_buffer(out) if on else None
            if data is out:
                p, n = o, on
            else:
                p, n = data, len(data)
            if n != on:
                raise ValueError("input and output lengths differ")
            check(fn(self._ptr if not self._closed else 0, first_sector, p, o, n))
            return
        o, on = _lib.outbuf(out)
        if data is out:
            p, n = o, on
        else:
            p, n = _lib.inbuf(data)
        if n != on:
            raise ValueError("input and output lengths differ")
        check(fn(self, first_sector, p, o, n))

    def encrypt_unit(self, tweak: bytes, data) -> bytes:
        """Encrypt one data unit (>= 16 bytes, ciphertext stealing) with a raw 16-byte tweak."""
        return self._unit(_lib.lib.vmenc_xts_encrypt_unit, tweak, data)

    def decrypt_unit(self, tweak: bytes, data) -> bytes:
        return self._unit(_lib.lib.vmenc_xts_decrypt_unit, tweak, data)

    def _unit(self, fn, tweak, data) -> bytes:
        if len(tweak) != 16:
            raise ValueError("tweak must be 16 bytes")
        p, n = _lib.inbuf(data)
        out = create_string_buffer(n)
        check(fn(self, bytes(tweak), p, out, n))
        return out.raw

    def __repr__(self) -> str:
        if self.closed:
            return "<vmenc.XTS closed>"
        return f"<vmenc.XTS impl={self.impl!r} sector_size={self.sector_size}>"
