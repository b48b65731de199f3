"""Start-up: process start to READY=1 of ``crs-hub run``.

``python -m daemon.cli run --config <file>`` is started as systemd would (see
bench/daemon_env.py: simulated BlueZ with four wearables, a real mosquitto, ``NOTIFY_SOCKET``
bound by the benchmark). The time is from just before ``Popen`` to the arrival of the READY=1
datagram, which the daemon sends once its store is open, the MQTT link is connected and the
Bluetooth sessions are running (daemon/service.py). Each run is stopped with SIGTERM before the
next; the first run creates the database, the others reopen it (a restart). The row shows the
median run; the worst is in the JSON.

Floor: ``Popen`` to exit of ``python -c pass`` with the same interpreter, median of as many runs.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import PYTHON, emit_rows
from bench.daemon_env import environment
from bench.report import Row

GOAL_S = 1.0


def python_startup_s() -> float:
    started = time.perf_counter()
    subprocess.run([PYTHON, "-c", "pass"], check=True)
    return time.perf_counter() - started


async def measure(runs: int, workdir: Path) -> dict[str, Any]:
    floor = [python_startup_s() for _ in range(runs)]
    ready: list[float] = []
    exits: list[int] = []
    async with environment(workdir) as env:
        for i in range(runs):
            daemon = env.launch(f"startup{i}")
            try:
                ready.append(await daemon.wait_ready())
            finally:
                exits.append(await daemon.stop())
                daemon.notify.close()
    return {"ready_s": ready, "floor_s": floor, "exit_codes": exits}


def rows(result: dict[str, Any]) -> list[Row]:
    ready, floor = result["ready_s"], result["floor_s"]
    figure = statistics.median(ready)
    return [Row(
        key="startup_ready", name=f"Start-up to READY=1 (median of {len(ready)})", unit="s",
        figure=figure, floor=statistics.median(floor), goal=f"<= {GOAL_S:g} s",
        passed=figure <= GOAL_S, floor_label="`python -c pass`, Popen to exit",
        note=f"worst run {max(ready):.2f} s; exit codes after SIGTERM {result['exit_codes']}",
        detail=result,
    )]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.startup")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="crs-bench-startup-") as tmp:
        result = asyncio.run(measure(3 if args.quick else 7, Path(tmp)))
    emit_rows(rows(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
