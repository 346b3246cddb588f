"""XTS-AES sector encryption (IEEE 1619; tweak = sector number, "plain64")."""
from __future__ import annotations

import struct
from ctypes import addressof, c_char, c_void_p, create_string_buffer, byref, sizeof
from typing import Optional, Sequence, Tuple, Union

from . import _lib
from ._handle import Handle
from .errors import check

KEYBYTES_256 = 64
KEYBYTES_128 = 32
IMPLEMENTATIONS = ("vaes-avx512", "vaes-avx2", "aesni", "portable")

# One I/O of a vector: (first_sector, buffer) in place, or
# (first_sector, data, out).
IOV = Union[Tuple[int, object], Tuple[int, object, object]]

# vmenc_xts_iov is {uint64_t, const uint8_t *, uint8_t *, size_t}: the
# struct module's native mode lays "QPPN" out exactly as the C compiler
# does, padding between entries included, which the check below confirms.
# Packing all entries with one cached Struct is several times cheaper than
# setting ctypes Structure fields one by one.
_IOV_FMT = "QPPN"
if struct.calcsize("@" + _IOV_FMT * 2) != 2 * sizeof(_lib.XTSIov):
    raise _lib.LibraryError("vmenc_xts_iov layout differs from struct '@QPPN'")
_IOV_STRUCTS: dict = {}
_from_buffer = c_void_p.from_buffer  # an 8-byte view: the cheapest way to a buffer's address
_PAIRS = {2}
_BYTEARRAYS = {bytearray}


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
        """The data unit in bytes."""
        return _lib.lib.vmenc_xts_sector_size(self._ptr if not self._closed else 0)

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
        if type(out) is bytearray and len(out) >= 8 and (data is out or type(data) is bytes):
            # Fast path (the common hypervisor loop). The view exports |out|'s
            # buffer until it dies after the call, so another thread cannot
            # resize the bytearray while C (without the GIL) writes to it.
            view = _from_buffer(out)
            o = addressof(view)
            on = len(out)
            if data is out:
                p = o
            else:
                p = data
                if len(data) != on:
                    raise ValueError("input and output lengths differ")
            check(fn(self._ptr if not self._closed else 0, first_sector, p, o, on))
            return
        o, on = _lib.outbuf(out)
        if data is out:
            p, n = o, on
        else:
            p, n = _lib.inbuf(data)
        if n != on:
            raise ValueError("input and output lengths differ")
        check(fn(self, first_sector, p, o, n))

    def encrypt_iov(self, iov: Sequence[IOV]) -> None:
        """Encrypt a vector of I/Os in one C call (``vmenc_xts_encrypt_iov``).

        Each entry is ``(first_sector, buffer)`` to encrypt a writable buffer
        (``bytearray``, writable ``memoryview``, ...) in place, or
        ``(first_sector, data, out)`` to encrypt ``data`` into ``out`` (same
        length; ``data`` may be ``bytes``). Entries are whole sectors and are
        processed in order, exactly as that many :meth:`encrypt_into` calls,
        but every entry is checked before anything is written: one bad entry
        raises and leaves every buffer untouched. An empty vector does
        nothing. The point is speed: one ctypes call (~1 µs) per batch
        instead of per I/O, with no copy of the data.
        """
        self._iov(_lib.lib.vmenc_xts_encrypt_iov, iov)

    def decrypt_iov(self, iov: Sequence[IOV]) -> None:
        """Inverse of :meth:`encrypt_iov`, with the same checks."""
        self._iov(_lib.lib.vmenc_xts_decrypt_iov, iov)

    def _iov(self, fn, iov: Sequence[IOV]) -> None:
        # |keep| holds the buffer views until the call returns: they keep
        # every buffer exported (no bytearray resize, no free) while C runs
        # without the GIL.
        if not isinstance(iov, (list, tuple)):
            iov = list(iov)
        num = len(iov)
        flat = None
        if num and set(map(len, iov)) == _PAIRS:
            # Fast path, all (sector, bytearray) in place: the per-entry work
            # is done by map/slice assignment in C, not by bytecode.
            sectors, bufs = zip(*iov)
            if set(map(type, bufs)) == _BYTEARRAYS:
                try:
                    keep = list(map(_from_buffer, bufs))
                except ValueError:  # a buffer under 8 bytes: the general path reports it
                    keep = None
                if keep is not None:
                    addrs = list(map(addressof, keep))
                    flat = [0] * (4 * num)
                    flat[0::4] = sectors
                    flat[1::4] = addrs
                    flat[2::4] = addrs
                    flat[3::4] = map(len, bufs)
        if flat is None:
            keep, flat = self._iov_general(iov)
        packer = _IOV_STRUCTS.get(num)
        if packer is None:
            packer = _IOV_STRUCTS.setdefault(num, struct.Struct("@" + _IOV_FMT * num))
        try:
            packed = packer.pack(*flat)
        except struct.error as e:  # a sector number outside 0..2^64-1, or not an int
            raise ValueError(f"bad first_sector in I/O vector: {e}") from None
        check(fn(self._ptr if not self._closed else 0, packed if num else None, num))
        del keep

    @staticmethod
    def _iov_general(iov: Sequence[IOV]) -> Tuple[list, list]:
        keep: list = []
        flat: list = []
        for entry in iov:
            if len(entry) == 2:
                sector, buf = entry
                o, n = _lib.outbuf(buf)
                keep.append(o)
                a = _lib.addr(o) or 0
                flat += (sector, a, a, n)
            elif len(entry) == 3:
                sector, data, out = entry
                o, n = _lib.outbuf(out)
                p, pn = _lib.inbuf(data)
                if pn != n:
                    raise ValueError("input and output lengths differ")
                keep += (o, p)
                flat += (sector, _lib.addr(p) or 0, _lib.addr(o) or 0, n)
            else:
                raise ValueError("an I/O is (first_sector, buffer) or (first_sector, data, out)")
        return keep, flat

    def encrypt_unit(self, tweak: bytes, data) -> bytes:
        """Encrypt one data unit (>= 16 bytes, ciphertext stealing) with a raw 16-byte tweak."""
        return self._unit(_lib.lib.vmenc_xts_encrypt_unit, tweak, data)

    def decrypt_unit(self, tweak: bytes, data) -> bytes:
        """Decrypt one data unit with a raw 16-byte tweak."""
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
