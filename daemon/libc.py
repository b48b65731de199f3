"""The C library, for the two calls Python's standard library lacks: ``adjtimex`` (is the clock
synchronised? daemon/clock_sync.py) and glibc's ``malloc_trim`` (give freed heap back).

Why ``malloc_trim``: CPython frees most memory to glibc, not to the system, and glibc keeps the
free pages inside its heap (start-up, wearables connecting, page loads, the hourly compaction's
sort), where they count in the daemon's RSS on a hub with a 60 MB memory goal. The heartbeat
calls ``malloc_trim(0)`` to return them (bench/memory.py's daemon: 58.4 -> 57.6 MB). Written by hand
(ctypes, a few lines) because no maintained library wraps either call.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging

log = logging.getLogger(__name__)


@functools.cache
def libc() -> ctypes.CDLL | None:
    """The C library, or None where there is none to load. Looked up once per process:
    find_library runs ``ldconfig -p`` (a subprocess) on every call."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name, use_errno=True)
    except OSError:
        return None


def trim_heap() -> bool:
    """Give the heap's free pages back to the system; False where the C library is not glibc."""
    lib = libc()
    trim = getattr(lib, "malloc_trim", None) if lib is not None else None
    if trim is None:
        return False
    released = bool(trim(0))
    log.debug("malloc_trim: %s", "memory released" if released else "nothing to release")
    return True
