"""A real ``crs-hub run`` process against the simulated BlueZ and a real mosquitto.

The benchmark process hosts the simulated BlueZ (private dbus-daemon, four scripted wearables
sending at 1 Hz in real time: two chest straps, two temperature patches) and a mosquitto; the
daemon is ``python -m daemon.cli run --config <file>`` in its own process, exactly as systemd
starts it, with ``DBUS_SYSTEM_BUS_ADDRESS`` pointing at the simulator's bus and
``NOTIFY_SOCKET`` at a datagram socket the benchmark binds (so READY=1 and STATUS= arrive here
as they would at systemd).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import signal
import socket
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import PYTHON, REPO, broker
from bench.phone import install_access_code
from daemon.sim import SimTiming, SimulatedBluez
from daemon.sim.scenarios import Scenario
from daemon.sim.wearables import (
    SimWearable,
    TimelineEvent,
    battery_stream,
    constant,
    heart_rate_strap,
    heart_rate_stream,
    merge,
    temperature_stream,
    thermometer_patch,
)
from tests.support.mosquitto import free_port

WEARABLES = (
    ("strap-1", "heart_rate_strap", "F0:0D:C0:DE:B0:01", 72.0),
    ("strap-2", "heart_rate_strap", "F0:0D:C0:DE:B0:02", 78.0),
    ("patch-1", "temperature_patch", "F0:0D:C0:DE:B0:03", 36.4),
    ("patch-2", "temperature_patch", "F0:0D:C0:DE:B0:04", 36.5),
)
RADIO = SimTiming(advert_interval_s=0.1, connect_latency_s=0.02, resolve_latency_s=0.02,
                  connect_timeout_s=2.0, temporary_timeout_s=60.0)


def _wearable(index: int, profile: str, address: str, value: float) -> SimWearable:
    def timeline() -> Iterator[TimelineEvent]:
        if profile == "heart_rate_strap":
            vitals = heart_rate_stream(constant(value), interval_s=1.0, seed=index)
        else:
            vitals = temperature_stream(constant(value), interval_s=1.0, seed=index)
        return merge(vitals, battery_stream(90, drain_percent_per_hour=1.0))

    if profile == "heart_rate_strap":
        return heart_rate_strap(address, timeline, name=f"Polar H10 BENCH{index}",
                                battery_percent=90)
    return thermometer_patch(address, timeline, name=f"TempPatch BENCH{index}",
                             battery_percent=90)


def scenario() -> Scenario:
    return Scenario(
        name="bench-4x1hz", description="two straps and two patches, each sending at 1 Hz",
        wearables=tuple(_wearable(i, p, a, v) for i, (_, p, a, v) in enumerate(WEARABLES, 1)),
        duration_s=None)


def config_text(data_dir: Path, port: int, page_port: int = 0) -> str:
    devices = "\n".join(
        f'[[devices]]\nid = "{d}"\nprofile = "{p}"\naddress = "{a}"\n' for d, p, a, _ in WEARABLES
    )
    return (
        f'[hub]\nid = "hub-bench"\ndata_dir = "{data_dir}"\n\n'
        '[patient]\nid = "p-bench"\ncare_team_name = "the bench team"\n'
        'care_team_phone = "+1 555 0100"\n\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\nreconnect_max_s = 1\n\n'
        # The patient's page runs in the measured daemon (issue 11: the RSS goal holds with it).
        f'[status_page]\nhost = "127.0.0.1"\nport = {page_port}\n\n'
        f'[annunciator]\nwav_dir = "{data_dir}/sounds"\n\n'
        f'{devices}'
    )


class NotifySocket:
    """A bound AF_UNIX datagram socket standing in for systemd's; a thread timestamps each
    datagram with ``time.perf_counter()`` as it arrives."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: queue.Queue[tuple[float, str]] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.put((time.perf_counter(), data.decode(errors="replace")))

    def drain(self) -> list[tuple[float, str]]:
        out = []
        with contextlib.suppress(queue.Empty):
            while True:
                out.append(self.messages.get_nowait())
        return out

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
        with contextlib.suppress(OSError):
            self.path.unlink()


@dataclass
class Daemon:
    process: subprocess.Popen[bytes]
    started: float  # perf_counter just before Popen
    notify: NotifySocket
    ready_at: float | None = None
    status: str = ""
    log: list[str] = field(default_factory=list)

    def poll_notify(self) -> None:
        for t, text in self.notify.drain():
            self.log.append(text)
            for line in text.splitlines():
                if line == "READY=1" and self.ready_at is None:
                    self.ready_at = t
                elif line.startswith("STATUS="):
                    self.status = line.removeprefix("STATUS=")

    async def wait_ready(self, within_s: float = 30.0) -> float:
        deadline = time.monotonic() + within_s
        while self.ready_at is None:
            self.poll_notify()
            if self.ready_at is not None:
                break
            if self.process.poll() is not None:
                raise RuntimeError(f"crs-hub run exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError("crs-hub run sent no READY=1")
            await asyncio.sleep(0.002)
        return self.ready_at - self.started

    async def wait_status(self, text: str, within_s: float) -> bool:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            self.poll_notify()
            if text in self.status:
                return True
            await asyncio.sleep(0.1)
        return False

    async def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        for _ in range(200):
            if self.process.poll() is not None:
                break
            await asyncio.sleep(0.05)
        else:
            self.process.kill()
        self.process.wait()
        return self.process.returncode


@dataclass
class Environment:
    workdir: Path
    port: int
    sim: SimulatedBluez
    config_path: Path
    page_port: int

    @property
    def page_url(self) -> str:
        return f"http://127.0.0.1:{self.page_port}"

    def launch(self, name: str = "run") -> Daemon:
        notify = NotifySocket(self.workdir / f"notify-{name}.sock")
        env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": self.sim.bus_address,
               "NOTIFY_SOCKET": str(notify.path), "PYTHONUNBUFFERED": "1"}
        log = (self.workdir / f"daemon-{name}.log").open("ab")
        started = time.perf_counter()
        process = subprocess.Popen(
            [PYTHON, "-m", "daemon.cli", "run", "--config", str(self.config_path)],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return Daemon(process, started, notify)


@contextlib.asynccontextmanager
async def environment(workdir: Path) -> AsyncIterator[Environment]:
    with broker(workdir) as mq:
        async with SimulatedBluez(scenario(), time_scale=1.0, timing=RADIO) as sim:
            config_path = workdir / "crs-hub.toml"
            page_port = free_port()
            config_path.write_text(config_text(workdir / "data", mq.port, page_port))
            install_access_code(workdir / "data")
            yield Environment(workdir, mq.port, sim, config_path, page_port)
