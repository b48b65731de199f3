"""Soak: 24 hours of a hub with four wearables at 1 Hz, time-compressed, on a real broker.

What runs: a real ``Hub`` (the daemon's object, ``Hub.start`` connects its real paho link to a
real mosquitto) in a worker process of its own, so that its RSS is the hub's. Its clock is moved
by hand through 24 scenario hours as fast as the hub goes. Every scenario second, each connected
wearable's GATT bytes go through ``Hub.on_payload`` (two straps: Heart Rate Measurement; two
patches: Temperature Measurement; every 10 minutes a Battery Level), i.e. 345,600 vital-sign
payloads; Bluetooth itself is not involved. The jobs the daemon's scheduler runs every N real
seconds run every N scenario seconds instead: ``tick`` every 1 s, ``heartbeat`` every 30 s,
``publish_vitals`` every 60 s, ``compact`` every 3600 s (the real scheduler is paused), and
``store.flush`` every 10 s rather than every second (see FLUSH_EVERY_S; the store itself
commits a reading batch only every 60 real seconds or 2,000 readings). The event loop runs between scenario seconds, so PUBACKs drain the outbox.

Disconnects: every wearable drops its link every 10 minutes (staggered) for 30 s:
``on_connection_change(False)``, no payloads, ``on_connection_change(True)``; 576 in all.

The story, so that there are alerts to account for (core temperature = patch + 0.5 °C offset):

| when | what | alerts expected |
|---|---|---|
| 04:00-05:30 | both patches up to 38.6 °C for ~1 h | FEVER raised, escalated, cleared |
| 10:00-12:00 | 39.4 °C and both straps at 125 bpm | FEVER, then TACHYCARDIA, which turns the fever alert into FEVER_TACHYCARDIA; escalations; both cleared |
| 16:00-16:40 | strap-1 at 118 bpm | TACHYCARDIA raised, cleared |
| 19:00-19:04 | strap-2 reports no skin contact | SENSOR_CONTACT_LOST raised, cleared |
| 21:00-21:15 | patch-2 out of range for 15 min | DEVICE_DISCONNECTED and NO_DATA raised, cleared |
| ~22:20 | strap-2's battery reaches 20 % | BATTERY_LOW raised, still open at the end |

Accounting: every alert transition the hub journaled (SQLite ``journal`` table) must have reached
the care-team subscriber (``crs/v1/+/+/alert/event``, matched by ``event_id``; duplicates are
counted, not errors), the outbox must be empty at the end, the RAISED kinds must be exactly the
table's, and only BATTERY_LOW may still be open.

RSS: VmRSS of the worker (hub, its store and paho link, the feeder), once per scenario hour;
growth = the value at 24:00 minus the value at 02:00 (after warm-up). Floor: the same payloads
through a bare loop (decode, plain batched SQLite INSERT, the same hourly retention DELETE) in
a worker process of its own. What still grows after 02:00 is bounded windows filling (traced
per scenario hour with tracemalloc, glibc's mallinfo2 and sqlite3_memory_used): the temperature
baseline's readings waiting out its 6 h learning lag (16 B each, ~0.35 MB a 1 Hz patch when
full, later than 06:00 because nothing is learned around a fever), SQLite's page cache (512 KiB,
full by 03:00) and the heap of compaction's first fold (13:00). On a second day (``--end-h 48``)
the baseline's trend, sustain and clear windows fill once a time-of-day baseline exists (~0.5 MB
a patch, 24:00-28:00); from 28:00 to 48:00 the RSS stays within 0.1 MB.

Database: the files ``crs-hub.sqlite3`` + ``-wal`` (+ ``-shm``) while the hub runs, largest size
seen (hourly and at the end). The soak runs with ``raw_retention_h = 12`` so that compaction
really folds raw readings into minute rows during the run (with the default 48 h it would have
nothing to do in 24 h). The bound it is checked against is :func:`db_bound_bytes`. Floor: the
bare loop's database (raw rows only, same retention).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sqlite3
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import (
    T0,
    Receiver,
    StepClock,
    broker,
    emit_rows,
    quiet_logging,
    rss_mb,
    run_worker,
)
from bench.ingest import DEVICES, HR, TEMP, heart_rate_bytes, hub_config, temperature_bytes
from bench.report import Row
from daemon.decoding import CHARACTERISTICS, HeartRateMeasurement, TemperatureMeasurement, decode
from daemon.encoding import encode_battery, encode_heart_rate
from daemon.hub import Hub

BATTERY = CHARACTERISTICS["battery_level"]
H = 3600
DAY_S = 24 * H
RAW_RETENTION_H = 12.0
MINUTE_RETENTION_DAYS = 35.0
DISCONNECT_EVERY_S = 600
DISCONNECT_FOR_S = 30
BATTERY_EVERY_S = 600
GOAL_RSS_GROWTH_MB = 2.0
WARM_H = 2

# Conservative per-row sizes for the database bound (SQLite, 4 KiB pages). Measured on this
# schema: ~52 B per raw reading including its ts index entry, ~60 B per minute row; journal
# entries carry the AlertEvent JSON (~1.2 KB).
RAW_ROW_B = 64
MINUTE_ROW_B = 96
JOURNAL_ROW_B = 4096
WAL_ALLOWANCE_B = 8 * 1024 * 1024  # SQLite checkpoints at 1000 pages (4 MiB); twice that
FIXED_B = 1024 * 1024  # schema, outbox, freelist slack
COMPACT_EVERY_S = 3600
# The daemon commits buffered readings every real second (4 readings a commit here); the soak
# does every 10 scenario seconds, or the run would be 86,400 fsyncs long. Alerts, outbox
# messages and status updates still commit one by one, as in the daemon.
FLUSH_EVERY_S = 10


def db_bound_bytes(*, devices: int, rate_hz: float, raw_retention_h: float,
                   minute_retention_days: float, elapsed_s: float, journal_entries: int,
                   vitals_per_device: int = 1) -> int:
    """Upper bound of the hub's database files for ``devices`` wearables at ``rate_hz``.

    raw rows: at most raw retention + one compaction interval of readings (compaction runs
    hourly), but never more than were taken; minute rows: one per device, vital and minute of
    minute retention; plus the journal, a WAL allowance and fixed overhead. Battery readings
    (one per 10 min) fit in the rounding.
    """
    raw_s = min(elapsed_s, raw_retention_h * 3600 + COMPACT_EVERY_S)
    raw_rows = devices * rate_hz * raw_s * vitals_per_device
    minute_rows = devices * vitals_per_device * min(elapsed_s, minute_retention_days * 86400) / 60
    return int(raw_rows * RAW_ROW_B + minute_rows * MINUTE_ROW_B
               + journal_entries * JOURNAL_ROW_B + WAL_ALLOWANCE_B + FIXED_B)


# --- the scripted story -----------------------------------------------------------------------


def _ramp(t: float, start: float, up_s: float, end: float, down_s: float, base: float,
          peak: float) -> float:
    """base until start, linear to peak over up_s, peak until end, back to base over down_s."""
    if t < start or t >= end + down_s:
        return base
    if t < start + up_s:
        return base + (peak - base) * (t - start) / up_s
    if t < end:
        return peak
    return peak + (base - peak) * (t - end) / down_s


def core_temperature(device: str, t: float) -> float:
    # Falls at under 2 °C/h: faster than physiology allows is a loose patch, not a recovery
    # (the implausible-fall guard, daemon/temperature_fall.py), and would never clear.
    base = 36.8 if device == "patch-1" else 36.9
    if 4 * H <= t < 6 * H:
        return _ramp(t, 4 * H, 900, 5 * H, 3600, base, 38.6)
    if 10 * H <= t < 13 * H:
        return _ramp(t, 10 * H, 900, 11.5 * H, 4800, base, 39.4)
    return base


def heart_rate(device: str, t: float) -> int:
    base = 72 if device == "strap-1" else 76
    if 10 * H <= t < 13 * H:
        return round(_ramp(t, 10 * H, 600, 11.5 * H, 600, base, 125))
    if device == "strap-1" and 16 * H <= t < 17 * H:
        return round(_ramp(t, 16 * H, 120, 16 * H + 2400, 120, base, 118))
    return base


def contact(device: str, t: float) -> bool:
    return not (device == "strap-2" and 19 * H <= t < 19 * H + 240)


def battery(device: str, t: float) -> int:
    drain_per_h = 3.6 if device == "strap-2" else 1.0
    return max(1, int(100 - drain_per_h * t / H))


LONG_OUTAGE = ("patch-2", 21 * H, 21 * H + 900)


def connected(device: str, index: int, t: float) -> bool:
    dev, start, end = LONG_OUTAGE
    if device == dev and start <= t < end:
        return False
    offset = 60 + 150 * index
    return t < offset or (t - offset) % DISCONNECT_EVERY_S >= DISCONNECT_FOR_S


# (kind, the scenario hour by which it has been raised, the hour it started from). Tachycardia
# without fever needs its 30 min window (16.0 -> by 16.75); the long outage is one alarm per
# wearable, raised as device_disconnected and escalated (severity_changed) to no_data.
EPISODES = (
    ("fever", 4.5, 4.0), ("fever", 10.5, 10.0), ("tachycardia", 10.5, 10.0),
    ("tachycardia", 16.75, 16.0), ("sensor_contact_lost", 19.1, 19.0),
    ("device_disconnected", 21.25, 21.0), ("battery_low", 22.5, 22.0),
)
STILL_OPEN_AT_24H = {"battery_low"}


def expected_raised(start_h: float, end_h: float) -> Counter[str]:
    """The alerts the story raises within a run from start_h to end_h."""
    return Counter(kind for kind, by_h, from_h in EPISODES if from_h >= start_h and by_h <= end_h)


class Payloads:
    """Cached GATT bytes for the story's values."""

    def __init__(self) -> None:
        self._hr: dict[tuple[int, bool], bytes] = {}
        self._temp: dict[float, bytes] = {}

    def heart_rate(self, bpm: int, has_contact: bool) -> bytes:
        key = (bpm, has_contact)
        if key not in self._hr:
            self._hr[key] = (heart_rate_bytes(bpm) if has_contact
                             else encode_heart_rate(bpm, contact=False))
        return self._hr[key]

    def temperature(self, core_c: float) -> bytes:
        raw = round(core_c - 0.5, 2)  # the patch profile adds +0.5 °C (axillary)
        if raw not in self._temp:
            self._temp[raw] = temperature_bytes(raw)
        return self._temp[raw]


def story(start_s: int, end_s: int) -> Any:
    """Yield (t, [(device, uuid, bytes)...], [(device, connected)...]) per scenario second."""
    cache = Payloads()
    was = {d: True for d, _, _ in DEVICES}
    for t in range(start_s, end_s):
        changes = []
        payloads = []
        for index, (device, profile, _) in enumerate(DEVICES):
            up = connected(device, index, t)
            if up != was[device]:
                changes.append((device, up))
                was[device] = up
            if not up:
                continue
            if profile == "heart_rate_strap":
                payloads.append((device, HR, cache.heart_rate(heart_rate(device, t),
                                                              contact(device, t))))
            else:
                payloads.append((device, TEMP, cache.temperature(core_temperature(device, t))))
            if (t + 37 * index) % BATTERY_EVERY_S == 0:
                payloads.append((device, BATTERY, encode_battery(battery(device, t))))
        yield t, payloads, changes


# --- workers ----------------------------------------------------------------------------------


def db_files_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())


async def hub_worker(port: int, start_s: int, end_s: int, workdir: Path) -> dict[str, Any]:
    clock = StepClock()
    clock.set(start_s)
    config = hub_config(
        workdir / "data", port,
        storage={"raw_retention_h": RAW_RETENTION_H,
                 "minute_retention_days": MINUTE_RETENTION_DAYS},
        escalation={"enabled": True},  # the default: unacknowledged alerts re-announced
    )
    hub = Hub(config, clock=clock)
    await hub.start()
    assert hub.scheduler is not None
    hub.scheduler.pause()  # its jobs run below, in scenario time
    if not await hub.wait_connected(10):
        raise RuntimeError("the hub could not connect to mosquitto")
    for device, _, _ in DEVICES:
        hub.on_connection_change(device, True)
    db_path = hub.store.path
    rss: list[tuple[float, float]] = []
    db_sizes: list[tuple[float, int]] = []
    started = time.perf_counter()
    vitals_every = int(config.vitals.interval_s)
    for t, payloads, changes in story(start_s, end_s):
        clock.set(t)
        for device, up in changes:
            hub.on_connection_change(device, up)
        for device, uuid, data in payloads:
            hub.on_payload(device, uuid, data)
        hub.tick()
        if t % FLUSH_EVERY_S == FLUSH_EVERY_S - 1:
            hub.store.flush()
        if t % 30 == 29:
            hub.heartbeat()
        if t % vitals_every == vitals_every - 1:
            hub.publish_vitals()
        if t % COMPACT_EVERY_S == COMPACT_EVERY_S - 1:
            hub.compact()
            rss.append(((t + 1) / H, rss_mb()))
            db_sizes.append(((t + 1) / H, db_files_bytes(db_path)))
        await asyncio.sleep(0)
    fed_s = time.perf_counter() - started
    deadline = time.monotonic() + 30
    while hub.outbox.pending and time.monotonic() < deadline:  # noqa: ASYNC110 (a DB count)
        await asyncio.sleep(0.05)
    rss.append((end_s / H, rss_mb()))
    db_sizes.append((end_s / H, db_files_bytes(db_path)))
    raw_rows, minute_rows = hub.store.count_readings()
    journal = [{"event_id": e.event_id, "alert_id": e.alert_id, "kind": e.kind,
                "state": e.state, "at_h": (e.at - T0).total_seconds() / H}
               for e in hub.store.journal()]
    result = {
        "fed_s": fed_s, "rss": rss, "db_sizes": db_sizes, "journal": journal,
        "outbox_pending": hub.outbox.pending, "raw_rows": raw_rows, "minute_rows": minute_rows,
        "open_alerts": sorted(str(k) for k in hub.open_alert_kinds()),
        "counters": {"payloads": hub.counters.payloads, "readings": hub.counters.readings,
                     "decode_errors": hub.counters.decode_errors,
                     "no_readings": hub.counters.no_readings},
        "outbox_stats": hub.outbox.stats.__dict__,
    }
    await hub.stop()
    return result


def floor_worker(start_s: int, end_s: int, workdir: Path) -> dict[str, Any]:
    path = workdir / "floor.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE readings (ts REAL NOT NULL, device TEXT NOT NULL, "
               "vital TEXT NOT NULL, value REAL NOT NULL)")
    db.execute("CREATE INDEX readings_ts ON readings (ts)")
    base = T0.timestamp()
    rss: list[tuple[float, float]] = []
    sizes: list[tuple[float, int]] = []
    rows: list[tuple[float, str, str, float]] = []
    started = time.perf_counter()
    for t, payloads, _ in story(start_s, end_s):
        for device, uuid, data in payloads:
            with contextlib.suppress(ValueError):
                result = decode(uuid, data)
                if isinstance(result, HeartRateMeasurement):
                    rows.append((base + t, device, "heart_rate", float(result.heart_rate_bpm)))
                elif isinstance(result, TemperatureMeasurement):
                    rows.append((base + t, device, "temperature", result.temperature_c))
        if t % FLUSH_EVERY_S == FLUSH_EVERY_S - 1:
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT INTO readings VALUES (?, ?, ?, ?)", rows)
            db.execute("COMMIT")
            rows = []
        if t % COMPACT_EVERY_S == COMPACT_EVERY_S - 1:
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM readings WHERE ts < ?",
                       (base + t + 1 - RAW_RETENTION_H * H,))
            db.execute("COMMIT")
            rss.append(((t + 1) / H, rss_mb()))
            sizes.append(((t + 1) / H, db_files_bytes(path)))
    fed_s = time.perf_counter() - started
    rss.append((end_s / H, rss_mb()))
    sizes.append((end_s / H, db_files_bytes(path)))
    db.close()
    return {"fed_s": fed_s, "rss": rss, "db_sizes": sizes}


# --- orchestration ----------------------------------------------------------------------------


def growth(rss: list[list[float]], warm_h: float) -> float:
    after = [mb for h, mb in rss if h >= warm_h]
    return after[-1] - after[0] if len(after) > 1 else 0.0


def _worker_args(kind: str, start_h: float, end_h: float, workdir: Path) -> list[str]:
    return ["--worker", kind, "--start-h", str(start_h), "--end-h", str(end_h),
            "--workdir", str(workdir)]


def measure(start_h: float, end_h: float, workdir: Path) -> dict[str, Any]:
    events: Counter[str] = Counter()
    states: list[bytes] = []
    lock = threading.Lock()

    def on_message(t: float, topic: str, payload: bytes) -> None:
        with lock:
            if topic.endswith("/alert/event"):
                events[json.loads(payload)["event_id"]] += 1
            else:
                states.append(payload)

    with broker(workdir) as mq:
        receiver = Receiver(mq.port, ["crs/v1/+/+/alert/event", "crs/v1/+/+/alert/state"],
                            "bench-soak-care-team", on_message).start()
        try:
            # The floor runs alongside (it shares nothing with the hub but the machine).
            floor_box: dict[str, Any] = {}
            floor_thread = threading.Thread(target=lambda: floor_box.update(run_worker(
                "bench.soak", _worker_args("floor", start_h, end_h, workdir),
                timeout=900).data))
            floor_thread.start()
            hub = run_worker("bench.soak", [*_worker_args("hub", start_h, end_h, workdir),
                                            "--port", str(mq.port)], timeout=900).data
            floor_thread.join()
            if not floor_box:
                raise RuntimeError("the floor worker failed")
            journal_ids = {e["event_id"] for e in hub["journal"]}
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                with lock:
                    if journal_ids <= set(events):
                        break
                time.sleep(0.1)
            time.sleep(0.5)
        finally:
            receiver.stop()
    with lock:
        received = dict(events)
        last_state = json.loads(states[-1]) if states else {}
    return {"start_h": start_h, "end_h": end_h, "hub": hub, "floor": floor_box,
            "received": received,
            "last_state_open": [a["kind"] for a in last_state.get("open", [])]}


def rows(result: dict[str, Any]) -> list[Row]:
    hub, floor = result["hub"], result["floor"]
    start_h, end_h = result["start_h"], result["end_h"]
    hours = end_h - start_h
    seconds = hours * H
    warm_h = start_h + min(WARM_H, hours / 2)
    rss_growth = growth(hub["rss"], warm_h)
    floor_growth = growth(floor["rss"], warm_h)
    journal = hub["journal"]
    received = result["received"]
    journal_ids = {e["event_id"] for e in journal}
    missing = sorted(journal_ids - set(received))
    unknown = sorted(set(received) - journal_ids)
    duplicates = sum(n - 1 for n in received.values() if n > 1)
    raised = Counter(e["kind"] for e in journal if e["state"] == "raised")
    by_state = Counter(e["state"] for e in journal)
    expected = expected_raised(start_h, end_h)
    expected_open = STILL_OPEN_AT_24H if end_h >= 24 else set()
    story_ok = raised == expected and set(hub["open_alerts"]) == expected_open
    alerts_ok = (not missing and not unknown and hub["outbox_pending"] == 0 and story_ok
                 and hub["counters"]["decode_errors"] == 0)
    db_max = max(size for _, size in hub["db_sizes"])
    floor_db = max(size for _, size in floor["db_sizes"])
    bound = db_bound_bytes(devices=len(DEVICES), rate_hz=1.0, raw_retention_h=RAW_RETENTION_H,
                           minute_retention_days=MINUTE_RETENTION_DAYS, elapsed_s=seconds,
                           journal_entries=len(journal))
    production = db_bound_bytes(devices=len(DEVICES), rate_hz=1.0, raw_retention_h=48,
                                minute_retention_days=35, elapsed_s=10**9,
                                journal_entries=1000)
    label = f"{hours:g} h"
    warm_sample = next(((h, mb) for h, mb in hub["rss"] if h >= warm_h), hub["rss"][-1])
    return [
        Row(key="soak_rss_growth", name=f"Soak {label}: RSS growth after warm-up", unit="MB",
            figure=rss_growth, floor=floor_growth, goal=f"<= {GOAL_RSS_GROWTH_MB:g} MB",
            passed=rss_growth <= GOAL_RSS_GROWTH_MB,
            floor_label="bare decode + SQLite insert loop over the same payloads",
            note=f"{hub['counters']['payloads']:,} payloads in {hub['fed_s']:.0f} s "
            f"({seconds / hub['fed_s']:,.0f}x real time); RSS "
            f"{warm_sample[1]:.1f} MB at {warm_sample[0]:g} h (after warm-up), "
            f"{hub['rss'][-1][1]:.1f} MB at {end_h:g} h"
            + (f"; last 10 h: {growth(hub['rss'], end_h - 10):+.2f} MB" if hours > 12 else ""),
            detail={"rss": hub["rss"], "floor_rss": floor["rss"], "warm_h": warm_h}),
        Row(key="soak_db_size", name=f"Soak {label}: database size", unit="MB",
            figure=db_max / 1e6, floor=floor_db / 1e6, goal=f"<= {bound / 1e6:.1f} MB (bound)",
            passed=db_max <= bound,
            floor_label="the same raw readings, same retention, in a bare table",
            note=f"raw retention {RAW_RETENTION_H:g} h so compaction folds during the run; "
            f"{hub['raw_rows']:,} raw + {hub['minute_rows']:,} minute rows at the end; "
            f"bound for the defaults (48 h raw, 35 d minutes, 4 x 1 Hz, 1,000 journal "
            f"entries): {production / 1e6:.0f} MB",
            detail={"db_sizes": hub["db_sizes"], "floor_db_sizes": floor["db_sizes"],
                    "bound_bytes": bound, "production_bound_bytes": production}),
        Row(key="soak_alerts", name=f"Soak {label}: alert events delivered", unit="alerts",
            figure=float(len(journal_ids & set(received))), floor=float(len(journal_ids)),
            goal="all journaled events received, outbox empty, alerts as scripted",
            passed=alerts_ok, floor_label="alert events the hub journaled",
            note=f"{sum(raised.values())} alerts raised ({dict(sorted(raised.items()))}, "
            f"scripted {dict(sorted(expected.items()))}); events by state "
            f"{dict(sorted(by_state.items()))}; {len(missing)} missing, {duplicates} "
            f"duplicates, outbox {hub['outbox_pending']} left; open at the end: "
            f"{hub['open_alerts']}",
            detail={"missing": missing[:20], "unknown": unknown[:20], "duplicates": duplicates,
                    "raised": dict(raised), "expected_raised": dict(expected),
                    "open_at_end": hub["open_alerts"],
                    "last_state_open": result["last_state_open"],
                    "outbox_stats": hub["outbox_stats"], "counters": hub["counters"]}),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak")
    parser.add_argument("--quick", action="store_true",
                        help="scenario 03:30-06:00 only (the first fever episode)")
    parser.add_argument("--start-h", type=float, default=None)
    parser.add_argument("--end-h", type=float, default=None)
    parser.add_argument("--worker", choices=["hub", "floor"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    start_h = args.start_h if args.start_h is not None else (3.5 if args.quick else 0.0)
    end_h = args.end_h if args.end_h is not None else (6.0 if args.quick else 24.0)
    start_s, end_s = int(start_h * H), int(end_h * H)
    if args.worker == "hub":
        quiet_logging(args.workdir / "hub.log")
        out = asyncio.run(hub_worker(args.port, start_s, end_s, args.workdir))
        print(json.dumps(out), flush=True)
        return 0
    if args.worker == "floor":
        print(json.dumps(floor_worker(start_s, end_s, args.workdir)), flush=True)
        return 0
    with tempfile.TemporaryDirectory(prefix="crs-bench-soak-") as tmp:
        result = measure(start_h, end_h, Path(tmp))
    emit_rows(rows(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
