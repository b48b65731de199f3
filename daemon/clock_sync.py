"""Is the hub's wall clock synchronised? (the kernel's own view, whatever sets the time)

A Raspberry Pi without a real-time clock boots with the time of its last shutdown until NTP
corrects it. The rules do not care (they run on the monotonic clock, daemon/monitor.py), but
care teams read times from the hub's events, so the hub's status says whether they can be
trusted. A status field rather than a technical alarm: an unsynchronised clock does not stop the
monitoring, and every boot would otherwise start with an alarm the patient cannot act on.

``adjtimex(2)`` with no modes set only reads; it returns TIME_ERROR (5) while the kernel's clock
is not synchronised (STA_UNSYNC), which chrony, ntpd and systemd-timesyncd all clear once they
have set it. Written by hand (ctypes, daemon/libc.py) because no maintained library wraps it.
"""

from __future__ import annotations

import ctypes
import logging

from daemon.libc import libc as c_library

log = logging.getLogger(__name__)

TIME_ERROR = 5
_TIMEX_BYTES = 512  # larger than struct timex on every Linux ABI; modes (the first int) = 0


def clock_synchronized() -> bool | None:
    """True or False from the kernel; None where it cannot be asked (not Linux)."""
    libc = c_library()
    if libc is None:
        return None
    try:
        buffer = ctypes.create_string_buffer(_TIMEX_BYTES)
        state = libc.adjtimex(buffer)
    except (OSError, AttributeError):
        return None
    if state < 0:
        log.debug("adjtimex failed: errno %d", ctypes.get_errno())
        return None
    return state != TIME_ERROR
