"""`crs-hub replay`: run a recording through the same monitor the daemon runs, on the recording's
own clock, and print every alert event the hub would have published (one JSON per line).

It exists for care teams tuning thresholds on a patient's recorded week (clinical.md §3: one
programme needed 150+ high alerts before its thresholds were narrowed). The recording format is
a contract, so that recordings from anywhere replay alike (README "Replaying a recording"):

    time,device,kind,value[,sensor_contact][,monotonic_s]

- ``time``: the hub's wall clock, ISO 8601 with an offset, or seconds since the Unix epoch.
- ``monotonic_s`` (optional): the hub's monotonic clock. When present it gives true elapsed time,
  and ``time`` may step either way (a clock step); when absent, wall time is true time.
- ``device``: a device id from the config (empty for hub-level rows such as ``adapter_problem``).
- ``kind``: a GATT characteristic (``2a37``, ``0x2A1C`` or a full UUID; ``value`` is the payload
  in hex, decoded exactly as the daemon decodes it: a malformed payload is counted and skipped);
  a vital name (``temperature``, ``heart_rate``, ``spo2``, ...; ``value`` in the device's own unit
  before the site offset; ``sensor_contact`` ``true``/``false``/empty); an event ``connected``,
  ``disconnected``, ``adapter_problem`` (``value``: the reason; empty = the adapter works again);
  ``manual_temperature`` (``value``: °C as read); ``symptom`` (``value``: a symptom name).

Rows are processed in file order. The outcome equals the daemon ticking once a second from the
first row: before each row, every whole second since the first row up to the row's time is
ticked; ``--tail S`` ticks on S seconds after the last row. Broker, outbox and disk alarms do not
arise in a replay (the hub's link is taken as up).
"""

from __future__ import annotations

import csv
import json
import random
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from daemon.alerts import AlertState
from daemon.config import Config
from daemon.decoding import normalize_uuid
from daemon.monitor import (
    AdapterProblem,
    BrokerLink,
    ConnectionChange,
    DeviceReading,
    GattPayload,
    ManualReading,
    Monitor,
    MonitorInput,
    Start,
    SymptomReport,
    Tick,
)
from daemon.payloads import AlertEvent
from daemon.profiles import DeviceProfile, load_profiles
from daemon.readings import Vital

REQUIRED_COLUMNS = ("time", "device", "kind", "value")
OPTIONAL_COLUMNS = ("sensor_contact", "monotonic_s")
_EVENTS = {"connected", "disconnected", "adapter_problem", "manual_temperature", "symptom"}
_VITALS = {v.value: v for v in Vital}
_HUB_LEVEL = {"adapter_problem", "manual_temperature", "symptom"}
_CONTACT = {"": None, "true": True, "false": False, "1": True, "0": False}


class RecordingError(ValueError):
    """A malformed recording row: ``line N: reason`` (N is the physical line, header = 1)."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


@dataclass(frozen=True, slots=True)
class _Row:
    line: int
    at: datetime
    mono_s: float | None
    inp: MonitorInput


@dataclass
class ReplayResult:
    events: list[AlertEvent] = field(default_factory=list)
    rows: int = 0
    bad_rows: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def _parse_time(text: str) -> datetime:
    text = text.strip()
    try:
        return datetime.fromtimestamp(float(text), UTC)
    except ValueError:
        pass
    except (OverflowError, OSError) as exc:
        raise ValueError(f"time {text!r} is out of range") from exc
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"time {text!r} is neither ISO 8601 nor Unix seconds") from None
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"time {text!r} has no UTC offset")
    return value.astimezone(UTC)


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{what} {text!r} is not a finite number")
    return value


class _RowParser:
    """One row to one monitor input. Built for speed: a patient-week is ~615,000 rows."""

    def __init__(self, config: Config, header: list[str]) -> None:
        self._devices = {d.id for d in config.devices}
        self._uuid_cache: dict[str, str] = {}
        self._col = {name: header.index(name) for name in header}
        self._width = len(header)

    def parse(self, line: int, values: list[str]) -> _Row:
        if len(values) != self._width:
            raise ValueError(f"{len(values)} fields, the header has {self._width}")
        col = self._col
        at = _parse_time(values[col["time"]])
        mono: float | None = None
        if "monotonic_s" in col and (mono_text := values[col["monotonic_s"]].strip()):
            mono = _number(mono_text, "monotonic_s")
        device = values[col["device"]].strip()
        kind = values[col["kind"]].strip().lower()
        value = values[col["value"]].strip()
        contact: bool | None = None
        if "sensor_contact" in col:
            contact_text = values[col["sensor_contact"]].strip().lower()
            if contact_text not in _CONTACT:
                raise ValueError(f"sensor_contact {contact_text!r} must be true, false or empty")
            contact = _CONTACT[contact_text]
        if kind not in _HUB_LEVEL and device not in self._devices:
            raise ValueError(f"unknown device {device!r} (not in the config)")
        inp: MonitorInput
        if (vital := _VITALS.get(kind)) is not None:
            inp = DeviceReading(device, vital, _number(value, "value"), contact, at, mono)
        elif kind in _EVENTS:
            inp = self._event(kind, device, value, at, mono)
        else:
            characteristic = self._characteristic(kind)
            try:
                data = bytes.fromhex(value)
            except ValueError:
                raise ValueError(f"value {value!r} is not hex bytes") from None
            inp = GattPayload(device, characteristic, data, at, mono)
        return _Row(line, at, mono, inp)

    def _characteristic(self, kind: str) -> str:
        cached = self._uuid_cache.get(kind)
        if cached is None:
            try:
                cached = self._uuid_cache[kind] = normalize_uuid(kind)
            except ValueError:
                raise ValueError(f"unknown kind {kind!r} (not a characteristic, vital or "
                                 "event)") from None
        return cached

    @staticmethod
    def _event(kind: str, device: str, value: str, at: datetime,
               mono: float | None) -> MonitorInput:
        if kind in ("connected", "disconnected"):
            return ConnectionChange(device, kind == "connected", at, mono)
        if kind == "adapter_problem":
            return AdapterProblem(value or None, at, mono)
        if kind == "manual_temperature":
            return ManualReading(_number(value, "value"), at, mono)
        if not value:
            raise ValueError("symptom needs a symptom name as its value")
        return SymptomReport(value, at, mono)


def read_recording(config: Config, source: TextIO, *, skip_bad: bool = False
                   ) -> tuple[list[_Row], list[str]]:
    """Parse and check every row before anything runs (a bad row is reported before any event
    is printed). Returns the rows and, with ``skip_bad``, the problems of the rows skipped."""
    reader = csv.reader(source)
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise RecordingError(1, "empty recording (no header line)") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    unknown = [c for c in header if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if missing or unknown:
        parts = ([f"missing column(s) {', '.join(missing)}"] if missing else []) + (
            [f"unknown column(s) {', '.join(unknown)}"] if unknown else [])
        raise RecordingError(1, "; ".join(parts))
    parser = _RowParser(config, header)
    rows: list[_Row] = []
    bad: list[str] = []
    for values in reader:
        line = reader.line_num
        if not values or values == [""]:
            continue
        try:
            rows.append(parser.parse(line, values))
        except ValueError as exc:
            if not skip_bad:
                raise RecordingError(line, str(exc)) from None
            bad.append(f"line {line}: {exc}")
    return rows, bad


def seeded_ids(seed: int | None) -> Callable[[], str]:
    """Alert and event ids: random UUID4s, reproducible with a seed."""
    if seed is None:
        return lambda: str(uuid.uuid4())
    rng = random.Random(seed)
    return lambda: str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _inputs(rows: list[_Row], tail_s: float) -> Iterator[MonitorInput]:
    """Rows with the daemon's once-a-second ticks between them, on true (monotonic) time."""
    if not rows:
        return
    first = rows[0]
    yield Start(first.at, first.mono_s)
    yield BrokerLink(True, first.at, first.mono_s)  # broker alarms do not arise in a replay
    origin = first.mono_s if first.mono_s is not None else first.at.timestamp()
    next_tick = 1
    wall, true = first.at, origin
    for row in rows:
        row_true = row.mono_s if row.mono_s is not None else row.at.timestamp()
        while origin + next_tick <= row_true:
            elapsed = origin + next_tick - true
            yield Tick(wall + timedelta(seconds=elapsed),
                       None if row.mono_s is None else origin + next_tick)
            next_tick += 1
        wall, true = row.at, row_true
        yield row.inp
    end = true + tail_s
    while origin + next_tick <= end:
        yield Tick(wall + timedelta(seconds=origin + next_tick - true),
                   None if rows[-1].mono_s is None else origin + next_tick)
        next_tick += 1


def replay_rows(config: Config, rows: list[_Row], *, tail_s: float = 0.0,
                seed: int | None = None, profiles: dict[str, DeviceProfile] | None = None,
                on_event: Callable[[AlertEvent], None] | None = None) -> ReplayResult:
    monitor = Monitor(config, profiles if profiles is not None
                      else load_profiles(config.device_profiles_dir), new_id=seeded_ids(seed))
    result = ReplayResult(rows=len(rows))
    for inp in _inputs(rows, tail_s):
        out = monitor.handle(inp)
        for event in out.events:
            result.events.append(event)
            if on_event is not None:
                on_event(event)
    result.summary = summarise(result.events, monitor)
    return result


def replay_file(config: Config, path: Path, *, tail_s: float = 0.0, seed: int | None = None,
                skip_bad: bool = False, on_event: Callable[[AlertEvent], None] | None = None
                ) -> ReplayResult:
    with path.open(newline="", encoding="utf-8") as source:
        rows, bad = read_recording(config, source, skip_bad=skip_bad)
    result = replay_rows(config, rows, tail_s=tail_s, seed=seed, on_event=on_event)
    result.bad_rows = bad
    result.summary["bad_rows"] = len(bad)
    return result


def summarise(events: list[AlertEvent], monitor: Monitor) -> dict[str, Any]:
    raised = [e for e in events if e.state is AlertState.RAISED]
    clinical = Counter(e.kind.value for e in raised if not e.technical)
    technical = Counter(e.kind.value for e in raised if e.technical)
    per_day: dict[str, Counter[str]] = {}
    for e in raised:
        per_day.setdefault(e.event_at.astimezone(UTC).date().isoformat(), Counter())[
            e.kind.value] += 1
    c = monitor.counters
    return {
        "alerts_raised": dict(sorted(clinical.items())),
        "technical_alarms_raised": dict(sorted(technical.items())),
        "raised_per_utc_day": {day: dict(sorted(k.items())) for day, k in sorted(per_day.items())},
        "re_announcements": sum(e.state is AlertState.ESCALATED for e in events),
        "acknowledged": sum(e.state is AlertState.ACKNOWLEDGED for e in events),
        "cleared": sum(e.state is AlertState.CLEARED for e in events),
        "still_open": [a.transition.kind.value for a in monitor.open_alerts()],
        "payloads": c.payloads,
        "readings": c.readings,
        "malformed_payloads": c.decode_errors,
        "no_readings": c.no_readings,
    }


def summary_text(summary: dict[str, Any]) -> str:
    lines = ["replay summary:"]
    for key, value in summary.items():
        lines.append(f"  {key}: {json.dumps(value, sort_keys=True)}")
    return "\n".join(lines)
