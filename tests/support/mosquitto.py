"""A real mosquitto broker on a free loopback port, for tests and benchmarks."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Mosquitto:
    binary: str
    workdir: Path
    port: int
    extra_config: str = ""
    process: subprocess.Popen[bytes] | None = None

    @property
    def config_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    def write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        # As root, mosquitto drops to the 'mosquitto' user and then cannot write its
        # persistence file in pytest's tmp dir; broker-restart tests need it to persist.
        user = "user root\n" if os.geteuid() == 0 else ""
        base = (
            user + f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            f"persistence true\npersistence_location {self.workdir}/\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
        )
        # Listener-specific extras (password_file, acl_file) must follow the listener line.
        self.config_path.write_text(
            self.extra_config if "listener" in self.extra_config else base + self.extra_config
        )

    def start(self, timeout: float = 10.0) -> None:
        self.write_config()
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [self.binary, "-c", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log_path.read_text()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return
            time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening in time")

    def kill(self) -> None:
        """kill -9: the broker gets no chance to save anything."""
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(5)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self) -> None:
        self.stop()
        self.start()


@contextlib.contextmanager
def running_mosquitto(binary: str, workdir: Path, extra_config: str = "") -> Iterator[Mosquitto]:
    broker = Mosquitto(binary=binary, workdir=workdir, port=free_port(), extra_config=extra_config)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
