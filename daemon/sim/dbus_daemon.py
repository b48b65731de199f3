"""A private ``dbus-daemon`` for the simulated BlueZ.

The simulator never touches the machine's real system bus: it starts its own bus with a
generated config (system-like, unix socket in a temp dir, EXTERNAL auth, everything allowed)
and hands back the address. Clients such as bleak are pointed at it with
``DBUS_SYSTEM_BUS_ADDRESS``, which dbus-fast reads each time it opens a system bus.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path
from types import TracebackType

DBUS_DAEMON = "/usr/bin/dbus-daemon"

_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_type="method_return"/>
    <allow send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="signal"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
  </policy>
  <!-- generous limits: the simulator may emit hundreds of signals a second -->
  <limit name="max_replies_per_connection">50000</limit>
  <limit name="max_match_rules_per_connection">50000</limit>
</busconfig>
"""


def dbus_daemon_path() -> str | None:
    """The dbus-daemon binary, or None when it is not installed."""
    if os.access(DBUS_DAEMON, os.X_OK):
        return DBUS_DAEMON
    return shutil.which("dbus-daemon")


class PrivateDbusDaemon:
    """``async with PrivateDbusDaemon() as address:`` runs a throw-away system-like bus."""

    def __init__(self, *, binary: str | None = None, start_timeout_s: float = 10.0) -> None:
        self._binary = binary or dbus_daemon_path()
        self._start_timeout_s = start_timeout_s
        self._tmpdir: str | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._log: Path | None = None
        self.address: str | None = None

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    async def start(self) -> str:
        if self._binary is None:
            raise FileNotFoundError("dbus-daemon is not installed")
        self._tmpdir = tempfile.mkdtemp(prefix="crs-sim-dbus-")
        socket_path = Path(self._tmpdir) / "system_bus_socket"
        config_path = Path(self._tmpdir) / "bus.conf"
        config_path.write_text(_CONFIG.format(socket=socket_path))
        self._log = log = Path(self._tmpdir) / "dbus-daemon.log"
        # stderr goes to a file, not a pipe: nobody drains it while the bus runs
        with log.open("wb") as err_file:
            self._proc = await asyncio.create_subprocess_exec(
                self._binary,
                f"--config-file={config_path}",
                "--nofork",
                "--nopidfile",
                "--print-address=1",
                stdout=asyncio.subprocess.PIPE,
                stderr=err_file,
            )
        assert self._proc.stdout is not None
        try:
            line = await asyncio.wait_for(self._proc.stdout.readline(), self._start_timeout_s)
        except TimeoutError:
            await self.stop()
            raise RuntimeError("dbus-daemon did not print its address in time") from None
        address = line.decode().strip()
        if not address:
            err = log.read_text(errors="replace") if log.exists() else ""
            await self.stop()
            raise RuntimeError(f"dbus-daemon failed to start: {err}")
        self.address = address
        return address

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 5.0)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None
        self.address = None

    async def __aenter__(self) -> str:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
