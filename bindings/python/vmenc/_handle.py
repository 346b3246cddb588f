"""The base of every object that owns a C handle. Private module."""
from __future__ import annotations

import threading
from ctypes import c_void_p
from typing import Any, Callable, Optional

from .errors import UsageError, Status


class Handle:
    """Owns one C pointer, freed exactly once.

    ``close()`` (or leaving a ``with`` block) frees it; the finalizer is only
    a safety net. Objects that other handles borrow (a key manager under a
    host, a VM under its disks) are kept alive by those borrowers: ``close()``
    then only marks the object closed, and the C object is freed when the
    last borrower is closed.
    """

    _free: Optional[Callable[[Any], Any]] = None  # C free function, set by subclasses

    def __init__(self, ptr: c_void_p | int | None, owner: Optional["Handle"] = None) -> None:
        self._ptr = ptr.value if isinstance(ptr, c_void_p) else ptr
        self._lock = threading.Lock()
        self._closed = False
        self._borrowers = 0
        self._owner = owner  # non-owning view: keeps |owner| alive, frees nothing
        self._parents: list[Handle] = []
        if owner is not None:
            owner._retain()

    # -- borrowing
    def _retain(self) -> None:
        with self._lock:
            if self._closed:
                raise UsageError(Status.E_BAD_STATE, f"{type(self).__name__} is closed")
            self._borrowers += 1

    def _release(self) -> None:
        with self._lock:
            self._borrowers -= 1
            free_now = self._closed and self._borrowers == 0
        if free_now:
            self._destroy()

    def _borrow(self, parent: "Handle") -> None:
        """Keep |parent| alive (and unfreed) for as long as this object lives."""
        parent._retain()
        self._parents.append(parent)

    # -- lifetime
    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def _as_parameter_(self) -> int:
        # A closed handle is passed as NULL, which every vmenc function
        # refuses with VMENC_E_INVALID_ARG (raised as UsageError); ctypes
        # would wrap an exception raised here in ctypes.ArgumentError.
        p = self._ptr
        return 0 if (self._closed or p is None) else p

    def _destroy(self) -> Any:
        p, self._ptr = self._ptr, None
        result = None
        if p is not None and self._owner is None and type(self)._free is not None:
            result = type(self)._free(p)
        parents, self._parents = self._parents, []
        for parent in parents:
            parent._release()
        if self._owner is not None:
            owner, self._owner = self._owner, None
            owner._release()
        return result

    def close(self) -> None:
        """Free the C object (wiping any key material it holds). Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            free_now = self._borrowers == 0
        if free_now:
            self._destroy()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # safety net only
        try:
            if not self._closed:
                self.close()
        except Exception:
            pass
