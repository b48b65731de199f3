"""Memory: resident set size of a running ``crs-hub run`` after warm-up.

The daemon is the real process (bench/daemon_env.py): ``python -m daemon.cli run`` with four
simulated wearables each notifying at 1 Hz in real time over the simulated BlueZ and real
bleak, a real mosquitto, the default config otherwise (vitals published every 60 s, heartbeat
every 30 s, SQLite store). Warm-up: READY=1, then all four wearables connected (its STATUS=
line), then a further settling time. The patient's page is on and in use throughout: a phone
(bench/phone.py) signs in with the hub's access code and loads the status page, chart and all,
every 2 s from the first connection to the end. The annunciator is on (writing its sound to
files, as there is no sound card). After the settling time VmRSS is read from
/proc/<pid>/status once a second; the row shows the largest value seen.

Floor: a ``python`` process that imports the same third-party stack the daemon runs on (asyncio,
sqlite3, bleak, bleak-retry-connector, dbus-fast, paho-mqtt, pydantic, APScheduler) and does
nothing: what any Python daemon on this stack costs before it does anything.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import emit_rows, idle_python_rss, rss_mb
from bench.daemon_env import WEARABLES, environment
from bench.phone import Phone
from bench.report import Row

GOAL_MB = 60.0
FLOOR_IMPORTS = (
    "import asyncio, sqlite3, time, bleak, bleak_retry_connector, dbus_fast, pydantic, "
    "paho.mqtt.client, apscheduler.schedulers.asyncio; print('up', flush=True); time.sleep(60)"
)


def floor_rss() -> float:
    return idle_python_rss(FLOOR_IMPORTS)


async def measure(settle_s: float, sample_s: float, workdir: Path) -> dict[str, Any]:
    floor = await asyncio.to_thread(floor_rss)
    async with environment(workdir) as env:
        daemon = env.launch("memory")
        try:
            ready_s = await daemon.wait_ready()
            connected = await daemon.wait_status(f"{len(WEARABLES)}/{len(WEARABLES)} wearables",
                                                 30.0)
            if not connected:
                raise RuntimeError(f"wearables did not all connect: {daemon.status!r}")
            phone = await asyncio.to_thread(Phone(env.page_url).start)
            sent_before = env.sim.notifications_sent
            await asyncio.sleep(settle_s)
            samples: list[float] = []
            deadline = time.monotonic() + sample_s
            while time.monotonic() < deadline:
                samples.append(rss_mb(daemon.process.pid))
                await asyncio.sleep(1.0)
            daemon.poll_notify()
            sent = env.sim.notifications_sent - sent_before
            status = daemon.status
            await asyncio.to_thread(phone.stop)
        finally:
            exit_code = await daemon.stop()
            daemon.notify.close()
    return {"rss_mb": samples, "floor_mb": floor, "ready_s": ready_s, "status": status,
            "notifications_during": sent, "exit_code": exit_code,
            "page_loads": phone.loads, "page_failures": phone.failures[:5],
            "settle_s": settle_s, "sample_s": sample_s}


def rows(result: dict[str, Any]) -> list[Row]:
    samples = result["rss_mb"]
    figure = max(samples)
    return [Row(
        key="memory_rss", name="Daemon RSS after warm-up (4 wearables at 1 Hz)", unit="MB",
        figure=figure, floor=result["floor_mb"], goal=f"<= {GOAL_MB:g} MB",
        passed=figure <= GOAL_MB and result["notifications_during"] > 0
        and result["page_loads"] > 0 and not result["page_failures"],
        floor_label="idle python that imported the same libraries",
        note=f"peak of {len(samples)} samples after {result['settle_s']:g} s of settling; "
        f"{result['notifications_during']} notifications and {result['page_loads']} status "
        f"page loads meanwhile ({len(result['page_failures'])} failed); last STATUS: "
        f"{result['status']}",
        detail=result,
    )]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    settle, sample = (3.0, 2.0) if args.quick else (30.0, 30.0)
    with tempfile.TemporaryDirectory(prefix="crs-bench-memory-") as tmp:
        result = asyncio.run(measure(settle, sample, Path(tmp)))
    emit_rows(rows(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
