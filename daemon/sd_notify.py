"""systemd readiness, status and watchdog notifications over ``$NOTIFY_SOCKET`` (sd_notify(3)).

The protocol is stable and tiny (newline-separated ``KEY=value`` in one AF_UNIX datagram), so it
is spoken directly, as in systemd's MIT-0 ``notify-selfcontained-example.py``, rather than through
a dependency. Without ``$NOTIFY_SOCKET`` (tests, ``crs-hub run`` in a terminal) every call is a
no-op. A failed send is logged once and otherwise ignored: losing a notification must never take
the hub down (systemd's watchdog is the backstop if the hub really is stuck).

STATUS text shows up in ``systemctl status`` and the journal, so callers put counts and states in
it, never readings, patient ids or MAC addresses.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


def _socket_address(value: str) -> str | None:
    """``/path`` or ``@abstract`` -> an address for ``sendto``; anything else is unsupported."""
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]  # abstract namespace: '@' stands for the leading NUL byte
    return None


def _one_line(text: str) -> str:
    # A newline would start a new KEY=value assignment in the datagram.
    return " ".join(text.splitlines()).strip()


@dataclass
class Notifier:
    """Talks to the service manager; ``address is None`` makes every method a no-op."""

    address: str | None = None
    watchdog_usec: int | None = None
    _sock: socket.socket | None = field(default=None, init=False, repr=False)
    _warned: bool = field(default=False, init=False, repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "")
        address = _socket_address(raw) if raw else None
        if raw and address is None:
            log.warning("NOTIFY_SOCKET %r is not a unix socket address; not notifying systemd", raw)
        return cls(address=address, watchdog_usec=_watchdog_usec(env))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def ready(self, status: str) -> None:
        """READY=1: call only once BLE, the outbox and MQTT are really up (Type=notify)."""
        self.notify(f"READY=1\nSTATUS={_one_line(status)}")

    def status(self, text: str) -> None:
        self.notify(f"STATUS={_one_line(text)}")

    def watchdog(self) -> None:
        """WATCHDOG=1: call from the main loop, only after its liveness checks pass."""
        self.notify("WATCHDOG=1")

    def stopping(self) -> None:
        self.notify("STOPPING=1")

    def extend_timeout(self, seconds: float) -> None:
        """Ask for more start/stop time (e.g. a slow BLE connect) instead of being killed."""
        self.notify(f"EXTEND_TIMEOUT_USEC={max(0, round(seconds * 1_000_000))}")

    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings (half of WatchdogSec=), or None if it is off."""
        if self.watchdog_usec is None or self.watchdog_usec <= 0:
            return None
        return self.watchdog_usec / 2 / 1_000_000

    def notify(self, message: str) -> bool:
        """Send one datagram; True if it was sent. Never raises."""
        if self.address is None:
            return False
        try:
            if self._sock is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                sock.setblocking(False)  # a full queue must not stall the event loop
                self._sock = sock
            self._sock.sendto(message.encode("utf-8"), self.address)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("cannot notify systemd via NOTIFY_SOCKET (%s); further failures "
                            "are not logged", exc)
            return False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _watchdog_usec(env: Mapping[str, str]) -> int | None:
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = env.get("WATCHDOG_PID")
    # The watchdog belongs to one process; a child that inherited the variables must not ping.
    if pid is not None and pid.strip() != str(os.getpid()):
        return None
    return usec if usec > 0 else None
