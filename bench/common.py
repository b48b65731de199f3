"""Helpers shared by the benchmark rows: a real mosquitto, MQTT receivers, RSS, percentiles,
worker subprocesses, and a hand-moved clock."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from bench.report import Row

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


# --- measurement helpers ---------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): a value that was really observed, never
    interpolated below it, so p99 of 200 samples is the 2nd-worst one."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def rss_mb(pid: int | None = None) -> float:
    """Resident set size from /proc/<pid>/status (VmRSS, kB), in MB (10^6 bytes)."""
    status = Path(f"/proc/{pid or 'self'}/status").read_text()
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise RuntimeError("no VmRSS in /proc status")


def idle_python_rss(code: str) -> float:
    """RSS of a python that ran ``code`` (imports, then print('up') and sleep): a memory floor."""
    proc = subprocess.Popen([PYTHON, "-c", code], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        time.sleep(0.5)
        return rss_mb(proc.pid)
    finally:
        proc.kill()
        proc.wait()


class StepClock:
    """Scenario time the benchmark moves by hand (the hub's ``clock``)."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def set(self, seconds: float) -> datetime:
        self.now = T0 + timedelta(seconds=seconds)
        return self.now


def quiet_logging(path: Path) -> None:
    """Log the way the daemon does (INFO, its format), but to a file, as journald would take it."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    for name in ("bleak", "dbus_fast", "apscheduler"):
        logging.getLogger(name).setLevel(logging.WARNING)


# --- mosquitto -------------------------------------------------------------------------------


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/sbin")
    if not found:
        raise RuntimeError("mosquitto is not installed")
    return found


@contextlib.contextmanager
def broker(workdir: Path, extra_config: str = "") -> Iterator[Any]:
    """A real mosquitto on a free loopback port (tests/support/mosquitto.py's launcher)."""
    from tests.support.mosquitto import running_mosquitto

    with running_mosquitto(mosquitto_binary(), workdir / "mosquitto", extra_config) as mq:
        yield mq


# --- MQTT ------------------------------------------------------------------------------------


class Receiver:
    """A subscriber on its own paho network thread; ``on_message(t, topic, payload)`` gets the
    ``time.perf_counter()`` of the moment paho handed the message over."""

    def __init__(self, port: int, topics: Sequence[str], client_id: str,
                 on_message: Callable[[float, str, bytes], None]) -> None:
        self._subscribed = threading.Event()
        self._topics = list(topics)
        self._on_message_cb = on_message
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=MQTTProtocolVersion.MQTTv5)
        self.client.max_inflight_messages_set(100)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self._port = port
        self._acks = 0

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any,
                    props: Any) -> None:
        for topic in self._topics:
            client.subscribe(topic, qos=1)

    def _on_subscribe(self, *args: Any) -> None:
        self._acks += 1
        if self._acks >= len(self._topics):
            self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._on_message_cb(time.perf_counter(), msg.topic, bytes(msg.payload))

    def start(self, timeout: float = 10.0) -> Receiver:
        self.client.connect("127.0.0.1", self._port)
        self.client.loop_start()
        if not self._subscribed.wait(timeout):
            raise RuntimeError("subscriber got no SUBACK")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publisher(port: int, client_id: str) -> mqtt.Client:
    """A bare paho v5 client on its own network thread, connected."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=MQTTProtocolVersion.MQTTv5)
    connected = threading.Event()
    client.on_connect = lambda *a: connected.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    if not connected.wait(10):
        raise RuntimeError("publisher could not connect")
    return client


# --- worker subprocesses ---------------------------------------------------------------------


@dataclass
class WorkerResult:
    data: dict[str, Any]
    stderr: str


def run_worker(module: str, args: Sequence[str] = (), *, timeout: float = 600.0,
               env: dict[str, str] | None = None) -> WorkerResult:
    """``python -m <module> <args>`` from the repository root; its last stdout line is JSON."""
    proc = subprocess.run(
        [PYTHON, "-m", module, *args], cwd=REPO, capture_output=True, text=True,
        timeout=timeout, env={**os.environ, **(env or {})}, check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{module} failed (exit {proc.returncode}): {proc.stderr[-3000:]}")
    return WorkerResult(json.loads(lines[-1]), proc.stderr)


def emit_rows(rows: Sequence[Row]) -> None:
    """A row module's output when run as a worker: one JSON line."""
    print(json.dumps([row.to_json() for row in rows]), flush=True)


def rows_from(data: Any) -> list[Row]:
    return [Row.from_json(item) for item in data]
