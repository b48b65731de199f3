"""Personal-baseline early warning on temperature: a low-severity notice for the care team only.

Why: wearables' strength is trend. A continuous patch saw subtle pattern changes about 3.5 h
before fever (Flora et al., Cancer Cell 2021), and Mount Sinai alarmed on the patient's own
baseline + 2 SD beside the fixed 38 °C (Rajeeve et al., ASH 2023; clinical.md §3). The fixed
38.0 °C rule (daemon/rules.py) stays the trigger for the patient; this engine only tells a nurse
"this patient is running warmer than usual", so it never speaks to the patient (AlertKind
TEMPERATURE_TREND is ``is_care_team_only``; the monitor routes it to the care-team topic).

Baseline (per device: sites and offsets differ, clinical.md §2.2): the patient's own afebrile
readings (< ``fever_c``, with contact), learned with a lag of ``baseline_lag_s`` so that a slow
pre-fever rise is not absorbed into "usual" before it is judged, and never while the notice is
open. Circadian-aware: body temperature swings about half a degree over the day, so readings are
binned by local hour of day (``bin_hours`` wide). A bin with fewer than ``min_bin_samples``
gives no notice at that time of day: a whole-day average would put the normal evening peak above
a baseline learned from the morning trough (the fixed fever rule runs regardless). The SD has a
floor (``sd_floor_c``) so an unusually steady day cannot make noise look like a rise. No notice
before ``min_baseline_samples`` readings in all.

Each reading is judged as its *excess* over the baseline mean of its own time of day, so the
daily curve and bin edges never look like a rise. Notice (TEMPERATURE_TREND / LOW), raised on
either, only while the latest reading is below ``fever_c`` and no fever alert is open (at or
above it the fever rule owns the patient):

* sustained rise: the low median of the excesses within ``sustain_window_s`` (3 h; at least
  ``sustain_min_samples`` spanning ``sustain_min_span_s``) is above ``sd_k`` SD. Longer than the
  false rises a patch sees (a warm blanket for an hour, exertion), shorter than a plateau below
  38 °C under antipyretics;
* rising trend: the least-squares slope of the excesses over ``trend_window_s`` (1.5 h, at least
  ``trend_min_samples`` spanning 3/4 of it) AND over each of its two halves is >=
  ``trend_slope_c_per_h``, with the median excess of the last half above
  ``trend_min_excess_sd`` SD. Both halves: a ramp rises in both, a step (a blanket pulled up)
  in only one, so this path catches the slow pre-fever climb (Flora 2021) and not artefacts.

Clears once the median excess of the last ``clear_window_s`` has been at or below ``clear_k`` SD
for ``clear_hold_s`` on every device that was high. Pure: time arrives on the readings; the zone is passed in.
"""

from __future__ import annotations

import bisect
import math
import statistics
from array import array
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from daemon.alert_book import AlertBook, IdFactory, uuid4_id
from daemon.alerts import AlertKind, AlertState, AlertTransition, Severity
from daemon.emergency_rules import FEVER_KINDS
from daemon.readings import Reading, Vital

TrendKey = Literal["temperature_trend"]
TREND: TrendKey = "temperature_trend"


class TemperatureTrendThresholds(BaseModel):
    """``[thresholds.temperature_trend]``. Sources inline; numbers marked inference are ours."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    enabled: bool = True
    # ASTCT 2019 fever: readings at or above it are not "afebrile" and belong to the fever rule.
    fever_c: float = Field(38.0, gt=30.0, lt=45.0)
    # Mount Sinai / Current Health: baseline + 2 SD (Rajeeve, ASH 2023).
    sd_k: float = Field(2.0, gt=0)
    # Inference: a thermometer's own error is +-0.1-0.3 °C (ISO 80601-2-56 allows 0.3 in the lab).
    sd_floor_c: float = Field(0.15, gt=0)
    # Inference: 2 h bins follow the day's curve (trough early morning, peak early evening)
    # closely enough that its slope within a bin stays small, and fill in a day or two at a
    # patch's one reading a minute.
    bin_hours: int = Field(2, ge=1, le=24)
    min_bin_samples: int = Field(60, ge=2)
    min_baseline_samples: int = Field(240, ge=2)  # about 4 h of a patch's data
    baseline_lag_s: float = Field(6 * 3600.0, ge=0)
    # Sustained: the low median of 3 h above +2 SD, i.e. more than 1.5 h of it (inference).
    sustain_window_s: float = Field(3 * 3600.0, gt=0)
    sustain_min_samples: int = Field(60, ge=1)
    sustain_min_span_s: float = Field(2.5 * 3600.0, ge=0)
    # Trend: +0.3 °C/h over 90 min and over each half of it, still below fever (inference;
    # Flora 2021 saw changes ~3.5 h ahead of fever; bench/protocols.py: 1 h windows gain lead
    # but triple the false notices, 2 h lose a tenth of an hour of lead).
    trend_window_s: float = Field(5400.0, gt=0)
    trend_min_samples: int = Field(30, ge=6)
    trend_slope_c_per_h: float = Field(0.3, gt=0)
    trend_min_excess_sd: float = Field(1.0, ge=0)
    # Hysteresis: clears once the last 30 min sit at or below +1 SD for an hour.
    clear_window_s: float = Field(1800.0, gt=0)
    clear_k: float = Field(1.0, ge=0)
    clear_hold_s: float = Field(3600.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> TemperatureTrendThresholds:
        if self.clear_k > self.sd_k:
            raise ValueError("clear_k must not be above sd_k")
        if 24 % self.bin_hours:
            raise ValueError("bin_hours must divide 24")
        return self


@dataclass
class _Stats:
    """Welford running mean and variance."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def add(self, x: float) -> None:
        self.n += 1
        delta = x - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (x - self.mean)

    @property
    def sd(self) -> float:
        return math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else 0.0


@dataclass(frozen=True, slots=True)
class BaselineView:
    """The baseline in force for one device at one time of day, for the care team."""

    device: str
    mean_c: float
    sd_c: float  # after the floor
    samples: int
    hour_bin: int  # first local hour of the bin
    limit_c: float  # mean + sd_k * sd: the sustained-rise limit

    def as_payload(self) -> dict[str, object]:
        return {
            "device": self.device,
            "mean_c": round(self.mean_c, 2),
            "sd_c": round(self.sd_c, 2),
            "samples": self.samples,
            "hour_bin": self.hour_bin,
            "limit_c": round(self.limit_c, 2),
        }


# Samples per chunk of a _Samples queue: two arrays of 512 bytes, the largest block Python's
# own small-object allocator serves (fixed-size pools, so chunks coming and going never
# fragment the heap), and little slack at a patch's usual one reading a minute.
_CHUNK = 64
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


def _us(at: datetime) -> int:
    """``at`` as whole microseconds since the epoch: exact, so comparisons and differences of
    these integers are those of the datetimes (an aware datetime; a naive one is taken as UTC)."""
    return ((at if at.tzinfo is not None else at.replace(tzinfo=UTC)) - _EPOCH) // _ONE_US


def _span_us(seconds: float) -> int:
    """The microseconds of ``timedelta(seconds=seconds)`` (rounded as timedelta rounds)."""
    return timedelta(seconds=seconds) // _ONE_US


class _Samples:
    """Timestamped values, oldest first: a queue of fixed-size chunks of two arrays, 16 bytes a
    sample, not a deque of (datetime, float) tuples at about 130 bytes each. At a 1 Hz patch the
    6 h learning lag holds 21,600 samples and the windows 18,000 (the tuples cost a hub about
    2 MB per patch once a baseline exists, on the second day). Each chunk is allocated once at
    full size and never resized, rather than large arrays growing and moving (which fragments
    the heap); at most two chunks are partly empty, and one more is kept for reuse.

    ``ts_code`` is the array typecode of the timestamps: ``q`` for microseconds, ``d`` for
    float seconds."""

    __slots__ = ("_chunks", "_code", "_head", "_len", "_spare", "_tail")

    def __init__(self, ts_code: str) -> None:
        self._code = ts_code
        self._chunks: deque[tuple[array[Any], array[float]]] = deque()
        self._head = 0  # the first live sample of _chunks[0]
        self._tail = _CHUNK  # samples in _chunks[-1] (full: the next append takes a new chunk)
        self._len = 0
        self._spare: tuple[array[Any], array[float]] | None = None  # one chunk kept for reuse

    def __len__(self) -> int:
        return self._len

    def append(self, ts: float, value: float) -> None:
        if self._tail == _CHUNK:
            # by repetition: allocated at exactly 8 * _CHUNK bytes (array(code, bytes) adds
            # 10 % for growth, which would take it out of the small-object allocator)
            chunk = self._spare or (array(self._code, [0]) * _CHUNK, array("d", [0.0]) * _CHUNK)
            self._spare = None
            self._chunks.append(chunk)
            self._tail = 0
        stamps, values = self._chunks[-1]
        stamps[self._tail] = ts
        values[self._tail] = value
        self._tail += 1
        self._len += 1

    def first_ts(self) -> Any:
        return self._chunks[0][0][self._head]

    def last_ts(self) -> Any:
        return self._chunks[-1][0][self._tail - 1]

    def popleft(self) -> tuple[Any, float]:
        stamps, values = self._chunks[0]
        i = self._head
        self._head += 1
        self._len -= 1
        if self._len == 0:
            self._spare = self._chunks.popleft()
            self._head, self._tail = 0, _CHUNK
        elif self._head == _CHUNK:
            self._spare = self._chunks.popleft()
            self._head = 0
        return stamps[i], values[i]

    def _spans(self) -> Iterator[tuple[array[Any], array[float]]]:
        last = len(self._chunks) - 1
        for n, (stamps, values) in enumerate(self._chunks):
            start = self._head if n == 0 else 0
            stop = self._tail if n == last else _CHUNK
            yield stamps[start:stop], values[start:stop]

    def items(self) -> Iterator[tuple[Any, float]]:
        for stamps, values in self._spans():
            yield from zip(stamps, values, strict=True)

    def values(self) -> Iterator[float]:
        for _, values in self._spans():
            yield from values


@dataclass
class _Track:
    bins: dict[int, _Stats] = field(default_factory=dict)
    day: _Stats = field(default_factory=_Stats)
    # Not yet learned: (float epoch seconds, value).
    pending: _Samples = field(default_factory=lambda: _Samples("d"))
    # Excess over the baseline of each reading's own time of day, by microseconds since the
    # epoch (see _us):
    recent: _Samples = field(default_factory=lambda: _Samples("q"))  # trend window
    window: _Samples = field(default_factory=lambda: _Samples("q"))  # sustain window
    # the sustain window's excesses, sorted
    ordered: array[float] = field(default_factory=lambda: array("d"))
    latest: _Samples = field(default_factory=lambda: _Samples("q"))  # clear window
    last_at: datetime | None = None
    cool_since: datetime | None = None


class TemperatureBaseline:
    """The care-team-only trend notice for one patient (see the module docstring)."""

    def __init__(
        self,
        thresholds: TemperatureTrendThresholds,
        *,
        zone: tzinfo = UTC,
        new_id: IdFactory = uuid4_id,
    ) -> None:
        self._t = thresholds
        self._zone = zone
        self._book: AlertBook[TrendKey] = AlertBook(
            new_id=new_id, kind_order=(AlertKind.TEMPERATURE_TREND,)
        )
        self._tracks: dict[str, _Track] = {}
        self._hot: set[str] = set()
        self._fever_open = False

    # -- public API ------------------------------------------------------------------------

    def observe(self, reading: Reading) -> list[AlertTransition]:
        """Feed a temperature reading (after the site offset and off-body flagging)."""
        if reading.vital is not Vital.TEMPERATURE or not self._t.enabled:
            return []
        track = self._tracks.setdefault(reading.device, _Track())
        at = reading.observed_at
        if track.last_at is not None and at < track.last_at:
            return []
        if reading.sensor_contact is False:
            track.cool_since = None
            return []
        if track.last_at is not None and (at - track.last_at).total_seconds() > (
            self._t.sustain_window_s
        ):
            track.cool_since = None  # a gap: we cannot vouch for the interval
        track.last_at = at
        self._learn(track, at, reading.value)
        base = self.baseline(reading.device, at)
        if base is None:
            return []
        self._slide(track, at, reading.value - base.mean_c)
        return self._evaluate(reading.device, track, at, reading.value, base)

    def warm(self, readings: Iterable[Reading]) -> int:
        """Learn from stored readings (oldest first) after a restart, without raising: the
        baseline takes days to build and must not start from nothing at every restart. Returns
        how many were used. Call before live readings."""
        used = 0
        for reading in readings:
            if reading.vital is not Vital.TEMPERATURE or reading.sensor_contact is False:
                continue
            track = self._tracks.setdefault(reading.device, _Track())
            if track.last_at is not None and reading.observed_at < track.last_at:
                continue
            track.last_at = reading.observed_at
            self._learn(track, reading.observed_at, reading.value)
            base = self.baseline(reading.device, reading.observed_at)
            if base is not None:
                self._slide(track, reading.observed_at, reading.value - base.mean_c)
            used += 1
        return used

    def note_fever(self, transitions: Iterable[AlertTransition]) -> None:
        """Feed the fever engine's transitions: while a fever alert is open no new notice is
        raised (the patient's own alert already says more) and nothing is learned."""
        for tr in transitions:
            if tr.kind in FEVER_KINDS:
                self._fever_open = tr.state is not AlertState.CLEARED

    def tick(self, now: datetime) -> list[AlertTransition]:
        """Time alone changes nothing (a silent patch is a technical alarm)."""
        del now
        return []

    def open_alerts(self) -> list[AlertTransition]:
        return self._book.open_alerts()

    def restore(self, open_alerts: Iterable[AlertTransition]) -> None:
        """Re-open a notice after a restart (the baseline itself is relearned from readings,
        or the monitor replays stored readings through :meth:`observe` before going live)."""
        for key in self._book.restore(open_alerts, _key_of):
            restored = self._book.get(key)
            if restored is not None and restored.device is not None:
                self._hot.add(restored.device)

    def baseline(self, device: str, at: datetime) -> BaselineView | None:
        """The baseline for ``device`` at the local time of ``at``; None while still learning."""
        track = self._tracks.get(device)
        if track is None or track.day.n < self._t.min_baseline_samples:
            return None
        hour_bin = self._bin(at)
        stats = track.bins.get(hour_bin)
        if stats is None or stats.n < self._t.min_bin_samples:
            return None
        sd = max(stats.sd, self._t.sd_floor_c)
        return BaselineView(
            device, stats.mean, sd, stats.n, hour_bin, stats.mean + self._t.sd_k * sd
        )

    # -- internals -------------------------------------------------------------------------

    def _bin(self, at: datetime) -> int:
        hour = at.astimezone(self._zone).hour
        return hour - hour % self._t.bin_hours

    def _learn(self, track: _Track, at: datetime, value: float) -> None:
        t = self._t
        if value < t.fever_c and TREND not in self._book and not self._fever_open:
            track.pending.append(at.timestamp(), value)
        pending, limit = track.pending, at.timestamp() - t.baseline_lag_s
        while pending and pending.first_ts() <= limit:
            ts, old = pending.popleft()
            track.bins.setdefault(self._bin(datetime.fromtimestamp(ts, UTC)), _Stats()).add(old)
            track.day.add(old)

    def _slide(self, track: _Track, at: datetime, excess: float) -> None:
        t, now = self._t, _us(at)
        for points, width in ((track.recent, t.trend_window_s), (track.latest, t.clear_window_s)):
            points.append(now, excess)
            horizon = now - _span_us(width)
            while points.first_ts() <= horizon:
                points.popleft()
        track.window.append(now, excess)
        bisect.insort(track.ordered, excess)
        horizon = now - _span_us(t.sustain_window_s)
        while track.window.first_ts() <= horizon:
            _, old = track.window.popleft()
            del track.ordered[bisect.bisect_left(track.ordered, old)]

    def _rising(self, track: _Track) -> bool:
        """Slope >= the threshold over the trend window and over each of its halves."""
        t = self._t
        points = list(track.recent.items())
        if len(points) < t.trend_min_samples:
            return False
        if (points[-1][0] - points[0][0]) / 1_000_000 < 0.75 * t.trend_window_s:
            return False
        middle = points[-1][0] - _span_us(t.trend_window_s / 2)
        halves = ([p for p in points if p[0] <= middle], [p for p in points if p[0] > middle])
        return all(
            len(part) >= t.trend_min_samples // 3
            and (slope := _slope_per_h(part)) is not None
            and slope >= t.trend_slope_c_per_h
            for part in (points, *halves)
        )

    def _evaluate(
        self, device: str, track: _Track, at: datetime, value: float, base: BaselineView
    ) -> list[AlertTransition]:
        t = self._t
        now = _us(at)
        low_median = track.ordered[(len(track.ordered) - 1) // 2]  # of the sustain window
        span = (now - track.window.first_ts()) / 1_000_000
        afebrile_now = value < t.fever_c and not self._fever_open
        sustained = (
            afebrile_now
            and len(track.window) >= t.sustain_min_samples
            and span >= t.sustain_min_span_s
            and low_median > t.sd_k * base.sd_c
        )
        half_from = now - _span_us(t.trend_window_s / 2)
        half = [e for when, e in track.recent.items() if when > half_from]
        rising = (
            afebrile_now
            and bool(half)
            and statistics.median(half) > t.trend_min_excess_sd * base.sd_c
            and self._rising(track)
        )
        recent_median = statistics.median(track.latest.values())
        cool = recent_median <= t.clear_k * base.sd_c
        if cool:
            track.cool_since = track.cool_since or at
        else:
            track.cool_since = None
        if TREND not in self._book:
            if sustained or rising:
                self._hot = {device}
                excess_limit = t.sd_k if sustained else t.trend_min_excess_sd
                return [
                    self._book.raise_alert(
                        TREND,
                        kind=AlertKind.TEMPERATURE_TREND,
                        severity=Severity.LOW,
                        value=value,
                        unit="°C",
                        # in °C at this time of day: the patient's own limit
                        threshold=round(base.mean_c + excess_limit * base.sd_c, 2),
                        at=at,
                        device=device,
                    )
                ]
            return []
        if not cool or sustained or rising:
            self._hot.add(device)
            track.cool_since = None  # still raised by either test: no clear, no re-raise loop
        if self._may_clear(device):
            self._hot = set()
            return [
                self._book.clear(
                    TREND,
                    value=value,
                    threshold=round(base.mean_c + t.clear_k * base.sd_c, 2),
                    at=at,
                )
            ]
        return []

    def _may_clear(self, device: str) -> bool:
        for d in self._hot or {device}:
            track = self._tracks.get(d)
            if track is None or track.cool_since is None or track.last_at is None:
                return False
            if (track.last_at - track.cool_since).total_seconds() < self._t.clear_hold_s:
                return False
        return True


def _key_of(transition: AlertTransition) -> TrendKey | None:
    return TREND if transition.kind is AlertKind.TEMPERATURE_TREND else None


def _slope_per_h(points: list[tuple[int, float]]) -> float | None:
    """Least-squares slope in °C per hour of (microseconds, value) points; None when all
    points share one time."""
    t0 = points[0][0]
    # (µs / 10**6) is exactly timedelta.total_seconds() of the same difference
    xs = [(when - t0) / 1_000_000 / 3600.0 for when, _ in points]
    ys = [v for _, v in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
