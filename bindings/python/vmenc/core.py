"""Library version, CPU features, randomness, wiping."""
from __future__ import annotations

from ctypes import c_uint8

from . import _lib
from .errors import check

CPU_FEATURES = {
    "aesni": 1 << 0, "pclmulqdq": 1 << 1, "avx": 1 << 2, "avx2": 1 << 3, "avx512f": 1 << 4,
    "avx512vl": 1 << 5, "avx512bw": 1 << 6, "vaes": 1 << 7, "vpclmulqdq": 1 << 8,
    "ssse3": 1 << 9, "sse41": 1 << 10,
}


def version() -> str:
    """The runtime library's version string ("0.1.0")."""
    return _lib.VERSION


def version_number() -> int:
    """The runtime library's version as 0xMMmmpp."""
    return _lib.VERSION_NUMBER


def cpu_features() -> frozenset:
    """Names of the CPU features the CPU *and* the OS support ("aesni", "avx2", ...)."""
    bits = _lib.lib.vmenc_cpu_features()
    return frozenset(n for n, b in CPU_FEATURES.items() if bits & b)


def random_bytes(n: int) -> bytes:
    """``n`` bytes from libsodium's CSPRNG."""
    buf = (c_uint8 * n)()
    check(_lib.lib.vmenc_random_bytes(buf, n))
    return bytes(buf)


def memzero(buf) -> None:
    """Wipe a writable buffer (bytearray, memoryview, ctypes array) in place.

    Python cannot wipe ``bytes`` or ``str`` (immutable, and copies may exist
    elsewhere in the interpreter): keep secrets in a ``bytearray`` and wipe
    it with this function when done.
    """
    p, n = _lib.outbuf(buf)
    if n:
        _lib.lib.vmenc_memzero(p, n)
