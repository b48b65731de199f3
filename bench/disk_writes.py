"""Disk writes: bytes a day the hub's store sends to the SD card, four wearables at 1 Hz.

What runs, in a worker process of its own: the daemon's ``Store`` (daemon/store.py), its
``Outbox`` and a real ``MqttLink`` (paho v5) to a real mosquitto, driven with the store traffic
the daemon's shell makes, in scenario time (one scenario second per loop turn, the store's
batch interval on the scenario clock):

- every second: 4 readings (2 heart rates, 2 temperatures) through ``add_readings`` and a
  ``flush_due()`` call (the shell's 1 s timer; the store commits when its 60 s batch is due;
  a shell that calls ``flush()`` every second instead commits every second);
- every 30 s (the heartbeat): one retained device-status message per wearable through
  ``enqueue`` + ``Outbox.kick``, PUBACK -> ``delete_outbox``;
- every 30 min: one alert transition (``record_transition``: a journal row and two outbox
  messages, event and retained state, each about 1 KB);
- every hour: ``compact_readings`` (raw retention 1 h here so that every hour folds an hour of
  readings, as the default 48 h retention does in steady state).

The figure is ``write_bytes`` of ``/proc/self/io`` (bytes this process caused to be written to
the block layer, in 4 KiB page units, WAL, database file and ``-shm`` alike) over scenario hours
1 to 3 (after the first hour, so the database has its steady size), scaled to 24 h. Logging goes
to stderr (the daemon's goes to journald), not to the measured disk. The machine's temp dir must
be a real disk: on tmpfs nothing reaches the block layer and the row says so.

Floor, in its own worker process: the same readings as plain batched inserts every 60 s into a
minimal table ``(ts REAL, device TEXT, vital TEXT, value REAL)`` (WAL, SQLite defaults), no
outbox, no journal, no compaction - what storing the readings at all costs.

Before this row existed, the daemon at ec5de8e (a commit, fsync and several 4 KiB pages every
second, AUTOINCREMENT outbox with an index, a ts index on raw readings) wrote about 1.6 GB a day:
1,644 MB/day, measured by ``write_bytes`` over scenario hours 1-3 of the real ``Hub`` of that
commit fed the soak's payloads at the daemon's cadence (flush, tick every 1 s, heartbeat every
30 s, compaction hourly); main's rewritten Hub (f593395), measured the same way:
1,638 MB/day. The same Hub with this store: 106 MB/day once its 1 s timer calls
``store.flush_due`` (284 MB/day while it still calls ``store.flush``, a commit every second).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sqlite3
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.common import T0, broker, emit_rows, run_worker
from bench.ingest import hub_config
from bench.report import Row
from daemon.mqtt_link import LinkCallbacks, MqttLink
from daemon.outbox import Outbox
from daemon.readings import Reading, Vital
from daemon.store import JournalEntry, OutboundMessage, Store

GOAL_MB_PER_DAY = 150.0
BEFORE_MB_PER_DAY = 1644.0  # the real Hub at ec5de8e, hours 1-3 of this traffic (see docstring)
DAY_S = 86_400
WARM_S = 3600
DEVICES = (("strap-1", Vital.HEART_RATE), ("strap-2", Vital.HEART_RATE),
           ("patch-1", Vital.TEMPERATURE), ("patch-2", Vital.TEMPERATURE))


def write_bytes() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    raise RuntimeError("no write_bytes in /proc/self/io")


def readings_at(t: int) -> list[Reading]:
    at = T0 + timedelta(seconds=t)
    return [Reading(device, vital, (72.0 + t % 7) if vital is Vital.HEART_RATE
                    else 36.8 + (t % 5) / 50, at) for device, vital in DEVICES]


def status_payload(device: str, t: int) -> bytes:
    at = (T0 + timedelta(seconds=t)).isoformat()
    return json.dumps({"schema": "crs-hub/device-status/1", "device": device,
                       "profile": "heart_rate_strap", "connected": True,
                       "last_reading_at": at, "battery_percent": 87, "updated_at": at}).encode()


async def store_worker(port: int, workdir: Path, end_s: int) -> dict[str, Any]:
    scenario = {"t": 0.0}
    store = Store(workdir / "crs-hub.sqlite3", monotonic=lambda: scenario["t"])
    settings = hub_config(workdir, port).mqtt
    outbox: Outbox | None = None

    def published(mid: int, ok: bool, reason: str) -> None:
        assert outbox is not None
        outbox.on_published(mid, ok, reason)

    link = MqttLink(settings, client_id="crs-bench-disk",
                    callbacks=LinkCallbacks(published=published))
    outbox = Outbox(store, link, wall_clock=lambda: T0.timestamp() + scenario["t"])
    link.start()
    link.callbacks.connected = outbox.on_connected
    await asyncio.wait_for(link.connected_event.wait(), 10)
    record = json.dumps({"pad": "x" * 1100}).encode()
    start_bytes = 0
    transitions = statuses = 0
    for t in range(end_s):
        scenario["t"] = float(t)
        if t == WARM_S:
            start_bytes = write_bytes()
        store.add_readings(readings_at(t))
        store.flush_due()
        if t % 30 == 29:
            for device, _ in DEVICES:
                store.enqueue(OutboundMessage(f"crs/v1/hub-bench/p-bench/device/{device}/status",
                                              status_payload(device, t), 1, True),
                              T0 + timedelta(seconds=t), exclude=outbox.seqs_in_flight)
                statuses += 1
            outbox.kick()
        if t % 1800 == 900:
            at = T0 + timedelta(seconds=t)
            entry = JournalEntry(0, f"a{t}", f"e{t}", "raised", "fever", "high", at, "hub",
                                 record.decode())
            store.record_transition(entry, [
                OutboundMessage("crs/v1/hub-bench/p-bench/alert/event", record, 1, False),
                OutboundMessage("crs/v1/hub-bench/p-bench/alert/state", record, 1, True)])
            transitions += 1
            outbox.kick()
        if t % 3600 == 3599:
            store.compact_readings(T0 + timedelta(seconds=t), 3600, 35 * DAY_S)
        # Let PUBACKs arrive (and delete their rows) within the same scenario second.
        deadline = time.monotonic() + 5
        while outbox.in_flight and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.0005)
        await asyncio.sleep(0)
    written = write_bytes() - start_bytes
    pending = outbox.pending
    await link.stop()
    store.close()
    return {"bytes": written, "span_s": end_s - WARM_S, "statuses": statuses,
            "transitions": transitions, "pending_at_end": pending,
            "acknowledged": outbox.stats.acknowledged}


def floor_worker(workdir: Path, end_s: int) -> dict[str, Any]:
    db = sqlite3.connect(workdir / "floor.sqlite3", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE readings (ts REAL, device TEXT, vital TEXT, value REAL)")
    batch: list[tuple[float, str, str, float]] = []
    start_bytes = 0
    for t in range(end_s):
        if t == WARM_S:
            start_bytes = write_bytes()
        batch += [(r.observed_at.timestamp(), r.device, r.vital.value, r.value)
                  for r in readings_at(t)]
        if t % 60 == 59:
            db.execute("BEGIN")
            db.executemany("INSERT INTO readings VALUES (?, ?, ?, ?)", batch)
            db.execute("COMMIT")
            batch = []
    written = write_bytes() - start_bytes
    db.close()
    return {"bytes": written, "span_s": end_s - WARM_S}


def per_day_mb(result: dict[str, Any]) -> float:
    return float(result["bytes"]) / float(result["span_s"]) * DAY_S / 1e6


def rows(hub: dict[str, Any], floor: dict[str, Any]) -> list[Row]:
    figure, floor_mb = per_day_mb(hub), per_day_mb(floor)
    measurable = floor["bytes"] > 0
    passed = measurable and figure <= GOAL_MB_PER_DAY and hub["pending_at_end"] == 0
    note = (f"was {BEFORE_MB_PER_DAY:,.0f} MB/day (real Hub, ec5de8e); store traffic of the daemon: "
            "4 readings/s, 4 status messages/30 s, 1 alert/30 min, hourly compaction")
    if not measurable:
        note = "the temp dir is not on a block device (tmpfs?): nothing was measured"
    return [Row(
        key="disk_writes", name="Disk writes, 4 wearables at 1 Hz", unit="MB/day",
        figure=figure, floor=floor_mb, goal=f"<= {GOAL_MB_PER_DAY:g} MB/day", passed=passed,
        floor_label="same readings, plain 60 s batched INSERTs, minimal table",
        note=note, detail={"hub": hub, "floor": floor},
    )]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.disk_writes")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--worker", choices=("store", "floor"))
    parser.add_argument("--end-s", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="crs-bench-disk-") as tmp:
        workdir = Path(tmp)
        if args.worker == "store":
            with broker(workdir) as mq:
                print(json.dumps(asyncio.run(store_worker(mq.port, workdir, args.end_s))))
            return 0
        if args.worker == "floor":
            print(json.dumps(floor_worker(workdir, args.end_s)))
            return 0
    end_s = WARM_S + (3600 if args.quick else 7200)
    common = ["--end-s", str(end_s)]
    hub = run_worker("bench.disk_writes", ["--worker", "store", *common], timeout=600).data
    floor = run_worker("bench.disk_writes", ["--worker", "floor", *common], timeout=600).data
    emit_rows(rows(hub, floor))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
