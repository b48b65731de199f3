"""Ingest cost: readings per second through decode -> store -> rules, on one core, no Bluetooth.

What runs: the real ``Hub.on_payload`` (the entry point the Bluetooth sessions call) of a hub
whose config names a broker that is never contacted (``Hub.start`` is not called, so the outbox
never publishes). Each call does what it does in the daemon: read the hub clock, decode the GATT
bytes, turn them into readings with the device's site offset, buffer them in the SQLite store
(WAL; raw readings committed lazily in batches of at most 2,000 readings or 60 s, see
daemon/store.py), and run ClinicalRules and TechnicalAlarms on each one.

The stream is the soak's: 4 wearables at 1 Hz (two chest straps sending Heart Rate Measurement
with contact and one RR interval, two temperature patches sending Temperature Measurement), with
normal vitals and a little noise, so no alert is raised; scenario time advances one second per
four payloads. At 1 Hz a patch's 300 s fever window holds 300 readings, which is the rules'
worst case (a real patch reports about once a minute).

Floor, in the same process: the same payloads through the same ``decode`` and a plain
``INSERT`` into the same readings table (same schema, WAL, ``synchronous=FULL``, 500 rows per
transaction) - the least any hub must do with a reading. Hub and floor alternate, three rounds
each (one with --quick); the row shows the median round. The process pins itself to one CPU.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import os
import pstats
import random
import sqlite3
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from bench.common import T0, StepClock, emit_rows
from bench.report import Row
from daemon.config import Config, parse_config
from daemon.decoding import CHARACTERISTICS, HeartRateMeasurement, TemperatureMeasurement, decode
from daemon.encoding import encode_heart_rate, encode_temperature
from daemon.hub import Hub
from daemon.monitor import Start
from daemon.profiles import DeviceProfile, load_profiles

HR = CHARACTERISTICS["heart_rate_measurement"]
TEMP = CHARACTERISTICS["temperature_measurement"]
GOAL_RATE = 20_000.0
GOAL_RATIO = 2.0

DEVICES = (
    ("strap-1", "heart_rate_strap", "AA:BB:CC:DD:EE:01"),
    ("strap-2", "heart_rate_strap", "AA:BB:CC:DD:EE:02"),
    ("patch-1", "temperature_patch", "AA:BB:CC:DD:EE:03"),
    ("patch-2", "temperature_patch", "AA:BB:CC:DD:EE:04"),
)

Payload = tuple[str, str, bytes]


def hub_config(data_dir: Path, port: int = 1, **sections: object) -> Config:
    data: dict[str, object] = {
        "hub": {"id": "hub-bench", "data_dir": str(data_dir)},
        "patient": {"id": "p-bench", "care_team_name": "the bench team",
                    "care_team_phone": "+1 555 0100"},
        "devices": [{"id": d, "profile": p, "address": a} for d, p, a in DEVICES],
        "mqtt": {"host": "127.0.0.1", "port": port, "reconnect_max_s": 1},
        "escalation": {"enabled": False},
        "vitals": {"publish": False},
    }
    data.update(sections)
    return parse_config(data)


def heart_rate_bytes(bpm: int) -> bytes:
    return encode_heart_rate(bpm, contact=True, rr_intervals_ms=(round(60_000 / bpm),))


def temperature_bytes(celsius: float) -> bytes:
    return encode_temperature(round(celsius, 2), temperature_type=1)


def normal_stream(seconds: int, seed: int = 7) -> list[Payload]:
    """One payload per device per second, normal vitals with noise (no alert)."""
    rng = random.Random(seed)
    hr = [heart_rate_bytes(b) for b in range(66, 83)]
    temp = [temperature_bytes(36.2 + i * 0.02) for i in range(20)]  # + 0.5 offset: 36.7-37.1
    out: list[Payload] = []
    for _ in range(seconds):
        out.append(("strap-1", HR, rng.choice(hr)))
        out.append(("strap-2", HR, rng.choice(hr)))
        out.append(("patch-1", TEMP, rng.choice(temp)))
        out.append(("patch-2", TEMP, rng.choice(temp)))
    return out


def run_hub(payloads: list[Payload], data_dir: Path,
            profiles: dict[str, DeviceProfile]) -> tuple[float, Hub]:
    clock = StepClock()
    hub = Hub(hub_config(data_dir), clock=clock, profiles=profiles)
    hub.submit(Start(clock()))  # what Hub.start does first: every wearable is expected
    on_payload = hub.on_payload
    gc.collect()
    start = time.perf_counter()
    for i, (device, uuid, data) in enumerate(payloads):
        if i % 4 == 0:
            clock.now = T0 + timedelta(seconds=i // 4)
        on_payload(device, uuid, data)
    hub.store.flush()
    elapsed = time.perf_counter() - start
    hub.store.close()
    return elapsed, hub


def run_floor(payloads: list[Payload], path: Path) -> float:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE readings (ts REAL NOT NULL, device TEXT NOT NULL, "
               "vital TEXT NOT NULL, value REAL NOT NULL)")
    db.execute("CREATE INDEX readings_ts ON readings (ts)")
    base = T0.timestamp()
    rows: list[tuple[float, str, str, float]] = []
    gc.collect()
    start = time.perf_counter()
    for i, (device, uuid, data) in enumerate(payloads):
        result = decode(uuid, data)
        if isinstance(result, HeartRateMeasurement):
            rows.append((base + i // 4, device, "heart_rate", float(result.heart_rate_bpm)))
        elif isinstance(result, TemperatureMeasurement):
            rows.append((base + i // 4, device, "temperature", result.temperature_c))
        if len(rows) >= 500:
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT INTO readings VALUES (?, ?, ?, ?)", rows)
            db.execute("COMMIT")
            rows = []
    if rows:
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT INTO readings VALUES (?, ?, ?, ?)", rows)
        db.execute("COMMIT")
    elapsed = time.perf_counter() - start
    db.close()
    return elapsed


def profile_hub(payloads: list[Payload], workdir: Path, profiles: dict[str, DeviceProfile],
                top: int = 60) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    run_hub(payloads, workdir / "profile", profiles)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def measure(seconds: int, rounds: int, workdir: Path) -> dict[str, object]:
    payloads = normal_stream(seconds)
    profiles = load_profiles(None)
    # Warm-up (imports, caches) with a short run of each.
    run_hub(payloads[:4000], workdir / "warm", profiles)
    run_floor(payloads[:4000], workdir / "warm.sqlite3")
    hub_rates, floor_rates = [], []
    readings = 0
    for r in range(rounds):
        floor_rates.append(len(payloads) / run_floor(payloads, workdir / f"floor{r}.sqlite3"))
        elapsed, hub = run_hub(payloads, workdir / f"hub{r}", profiles)
        readings = hub.counters.readings
        if readings != len(payloads) or hub.tracked:
            raise RuntimeError(f"hub took {readings} readings of {len(payloads)}, "
                               f"{len(hub.tracked)} alert(s) open")
        hub_rates.append(readings / elapsed)
    return {"hub_rates": hub_rates, "floor_rates": floor_rates, "readings": readings}


def rows(result: dict[str, object]) -> list[Row]:
    hub_rates = result["hub_rates"]
    floor_rates = result["floor_rates"]
    assert isinstance(hub_rates, list) and isinstance(floor_rates, list)
    figure = statistics.median(hub_rates)
    floor = statistics.median(floor_rates)
    passed = figure >= GOAL_RATE and floor / figure <= GOAL_RATIO
    return [Row(
        key="ingest_rate", name="Ingest, one core", unit="readings/s", figure=figure,
        floor=floor, goal=f">= {GOAL_RATE:,.0f}/s and <= {GOAL_RATIO:g}x floor", passed=passed,
        ratio_kind="floor/figure", floor_label="same decode + plain batched SQLite INSERT",
        note=f"{result['readings']:,} readings per round, 4 wearables at 1 Hz; the ratio is "
        "how many times slower than the floor",
        detail={"hub_rates": hub_rates, "floor_rates": floor_rates},
    )]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--profile", action="store_true",
                        help="print a cProfile of one hub round instead of the row")
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})
    seconds = 10_000 if args.quick else 43_200  # 40,000 or 172,800 readings (12 h of 4 x 1 Hz)
    with tempfile.TemporaryDirectory(prefix="crs-bench-ingest-") as tmp:
        workdir = Path(tmp)
        if args.profile:
            print(profile_hub(normal_stream(seconds), workdir, load_profiles(None)))
            return 0
        result = measure(seconds, 1 if args.quick else 3, workdir)
    emit_rows(rows(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
