"""Clinical rules: fever and tachycardia, with confirmation and hysteresis. Pure: time arrives on
the readings (and as ``tick(now)``'s argument); alert ids come from an injected factory.

One ``ClinicalRules`` instance watches ONE patient. Its two alerts are patient-level:

- the *fever* alert (kinds FEVER → HIGH_FEVER → FEVER_TACHYCARDIA, one ``alert_id``);
- the *tachycardia* alert (kind TACHYCARDIA), open and cleared on its own.

Readings are evaluated per device and the alert is per patient. Why per device: sites and biases
differ between wearables (clinical.md §2.2), and pooling a detached patch reading 36 °C with a
febrile one would pull the median down and hide the fever. Why per patient: two patches seeing one
fever must not page the care team twice. So a fever is confirmed when ANY device confirms it, and
it clears only when EVERY device that was above the clear band during the alert has shown
``clear_hold_s`` below it (a device that went silent while febrile keeps the alert open: data
stopping is TechnicalAlarms' NO_DATA, never a clear).

Fever, continuous wearable (per device): the window is the readings within max(
``confirm_window_s``, ``confirm_window_intervals`` x the device's expected sample interval) up to
the newest one (``expect(device, interval_s=...)``; the window follows the device, so a patch
reporting every 10 min confirms too). Confirmed when it holds >= ``confirm_min_samples``
readings spanning >= ``confirm_min_span_s`` and its LOW median is >= ``threshold_c``
(>= ``high_threshold_c``: HIGH_FEVER). A lone artifact never alarms: it is outvoted by its
neighbours, or alone it is too few samples.

Fever, spot check: a reading marked ``spot_check`` (reading_policy: a thermometer used by hand,
or a value typed in) or from a device declared ``expect(device, spot_check=True)`` decides on its
own: >= threshold raises at once; below the clear band it clears, unless a continuous wearable
heard recently (and not after an implausible fall) still has its window median at or above the
band.

No silent clear: each continuous device has a ``FallWatch`` (daemon.temperature_fall). After a
fall faster than physiology allows, the device's readings never count towards a clear until the
readings come back or a spot check arrives (TechnicalAlarms raises IMPLAUSIBLE_FALL meanwhile).

Tachycardia (per device): over the window (``window_s`` while a fever alert is open and the fever
is current, ``window_alone_s`` otherwise; not current: only a spot check older than the cool spell
of every wearable that ran hot holds the alert open), >= ``min_fraction`` of the readings are >
``threshold_bpm`` and so are most of the window's first and last minute, on a run of readings
with sensor contact (False breaks the run; None means the strap cannot tell, accepted) without a
gap > ``max_gap_s`` that covers the whole window. Dips do not reset it; a walk shorter than the
window cannot fill it.

Clearing (hysteresis): the device's fever window low median stays below threshold − margin for
``clear_hold_s`` measured on reading times; for heart rate, >= ``min_fraction`` of the readings
over ``clear_hold_s`` are below threshold − margin. A gap (> the fever window for temperature,
> max_gap_s for heart rate) or a reading without contact restarts that hold: we cannot vouch for
the interval. So a value oscillating within threshold ± margin never clears and raises at most
once. ``tick``: a tachycardia alert whose straps have sent nothing with contact for
``unobserved_close_s`` is closed with value None (the patient is told it is no longer measured);
a fever alert never closes for want of data.

Severity only rises while open (IEC 60601-1-8 latching): FEVER/HIGH, HIGH_FEVER/CRITICAL and
FEVER_TACHYCARDIA/CRITICAL (fever alert open while the tachycardia alert is open). If tachycardia
is already open when the fever is confirmed, the fever alert is RAISED directly as
FEVER_TACHYCARDIA rather than raised and upgraded in the same instant.

Readings older than the device's previous reading of that vital are ignored (the windows only
move forward); other vitals are ignored entirely.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from daemon.alert_book import AlertBook, IdFactory, uuid4_id
from daemon.alerts import AlertKind, AlertTransition, Severity
from daemon.readings import UNITS, Reading, Vital
from daemon.temperature_fall import FallWatch, fall_watch_for
from daemon.thresholds import FeverThresholds, TachycardiaThresholds, Thresholds

RuleKey = Literal["fever", "tachycardia"]
_EDGE_S = 60.0  # the start and end of a tachycardia window, which must be fast
FEVER: RuleKey = "fever"
TACHYCARDIA: RuleKey = "tachycardia"

_FEVER_KINDS = (AlertKind.FEVER, AlertKind.HIGH_FEVER, AlertKind.FEVER_TACHYCARDIA)
_SEVERITY = {
    AlertKind.FEVER: Severity.HIGH,
    AlertKind.HIGH_FEVER: Severity.CRITICAL,
    AlertKind.FEVER_TACHYCARDIA: Severity.CRITICAL,
    AlertKind.TACHYCARDIA: Severity.MEDIUM,
}


def rule_key(transition: AlertTransition) -> RuleKey | None:
    """Which clinical alert a journal transition belongs to (None: not a clinical alert)."""
    if transition.kind in _FEVER_KINDS:
        return FEVER
    if transition.kind is AlertKind.TACHYCARDIA:
        return TACHYCARDIA
    return None


@dataclass
class _TemperatureTrack:
    window_s: float  # confirmation window: confirm_window_s, or more for a slow device
    fall: FallWatch
    window: deque[tuple[datetime, float]] = field(default_factory=deque)
    # The window's values kept in ascending order beside it, so the low median is one index
    # instead of a sort of the whole window on every reading (at 1 Hz that is 300 values).
    ordered: list[float] = field(default_factory=list)
    last_at: datetime | None = None
    median: float | None = None  # the latest window low median
    cool_since: datetime | None = None  # first reading of the current run below the clear band


class _Count:
    """Readings within the last ``length_s`` and how many of them are flagged, O(1) a reading."""

    __slots__ = ("flagged", "items", "length", "length_s", "total")

    def __init__(self, length_s: float) -> None:
        self.length_s = length_s
        self.length = timedelta(seconds=length_s)
        self.items: deque[tuple[datetime, bool, float]] = deque()
        self.flagged = 0
        self.total = 0.0

    def push(self, at: datetime, flag: bool, value: float) -> None:
        self.items.append((at, flag, value))
        self.flagged += flag
        self.total += value
        horizon = at - self.length
        while self.items[0][0] <= horizon:
            _, old_flag, old_value = self.items.popleft()
            self.flagged -= old_flag
            self.total -= old_value

    def reset(self) -> None:
        self.items.clear()
        self.flagged = 0
        self.total = 0.0

    def fraction(self) -> float:
        return self.flagged / len(self.items) if self.items else 0.0

    def mean(self) -> float:
        return self.total / len(self.items) if self.items else 0.0

    def edge_fraction(self, edge_s: float, *, head: bool) -> float:
        """The flagged share of the readings in the window's first (``head``) or last
        ``edge_s``."""
        if not self.items:
            return 0.0
        n = flagged = 0
        if head:
            end = self.items[-1][0] - timedelta(seconds=self.length_s - edge_s)
            for at, flag, _ in self.items:
                if at > end:
                    break
                n += 1
                flagged += flag
        else:
            start = self.items[-1][0] - timedelta(seconds=edge_s)
            for at, flag, _ in reversed(self.items):
                if at <= start:
                    break
                n += 1
                flagged += flag
        return flagged / n if n else 0.0


@dataclass
class _HeartTrack:
    fast: _Count  # above threshold, over window_s (a fever alert is open)
    alone: _Count  # above threshold, over window_alone_s
    cool: _Count  # below threshold - margin, over clear_hold_s
    last_at: datetime | None = None
    last_contact_at: datetime | None = None  # latest reading with sensor contact
    run_since: datetime | None = None  # first reading of the current run without gap or loss
    last_value: float | None = None


@dataclass(frozen=True)
class _Evaluation:
    """What one reading tells about its device: confirmed tier, and where it sits vs the band."""

    confirmed: AlertKind | None
    cool: bool  # below threshold − margin (counts towards a clear)
    value: float


class ClinicalRules:
    """Fever and tachycardia rules for one patient (see the module docstring)."""

    def __init__(self, thresholds: Thresholds, *, new_id: IdFactory = uuid4_id) -> None:
        self._fever_t: FeverThresholds = thresholds.fever
        self._tachy_t: TachycardiaThresholds = thresholds.tachycardia
        self._book: AlertBook[RuleKey] = AlertBook(new_id=new_id, kind_order=_FEVER_KINDS)
        self._temperature: dict[str, _TemperatureTrack] = {}
        self._heart: dict[str, _HeartTrack] = {}
        self._intervals: dict[str, float | None] = {}
        self._spot_devices: set[str] = set()
        self._last_spot: tuple[datetime, float] | None = None  # latest spot-check temperature
        # Devices that were above the clear band while the alert was open: each must cool.
        self._hot: dict[RuleKey, set[str]] = {FEVER: set(), TACHYCARDIA: set()}
        self._started = False
        self._first_seen: datetime | None = None  # first input: "unobserved since" after restore

    # -- public API ------------------------------------------------------------------------

    def expect(self, device: str, *, interval_s: float | None = None,
               spot_check: bool = False) -> None:
        """Declare a configured device: a continuous wearable's expected sample interval (its
        profile's ``expected_sample_interval_s``; None = unknown, the defaults apply), or a
        spot-check device (a thermometer used by hand: every reading is a spot check)."""
        if spot_check:
            self._spot_devices.add(device)
        else:
            self._intervals[device] = interval_s

    def observe(self, reading: Reading) -> list[AlertTransition]:
        """Feed one reading; returns the transitions it causes (possibly none)."""
        if self._first_seen is None:
            self._first_seen = reading.observed_at
        if reading.vital is Vital.TEMPERATURE:
            self._started = True
            if reading.spot_check or reading.device in self._spot_devices:
                return self._observe_spot_check(reading)
            return self._observe_temperature(reading)
        if reading.vital is Vital.HEART_RATE:
            self._started = True
            return self._observe_heart_rate(reading)
        return []

    def tick(self, now: datetime) -> list[AlertTransition]:
        """Time passing alone never raises a clinical alert nor clears a fever (stale data is a
        technical alarm). One thing it does: a tachycardia alert whose straps have sent nothing
        with contact for ``unobserved_close_s`` is closed as no longer measured (CLEARED with
        value None), rather than left repeating all night about a heart rate nobody sees."""
        open_alert = self._book.get(TACHYCARDIA)
        if open_alert is None:
            return []
        if self._first_seen is None:
            self._first_seen = now
        limit = self._tachy_t.unobserved_close_s
        devices = set(self._hot[TACHYCARDIA])
        if not devices and open_alert.device is not None:
            devices = {open_alert.device}
        if not devices:
            return []
        for device in devices:
            track = self._heart.get(device)
            seen = track.last_contact_at if track is not None else None
            if (now - (seen or self._first_seen)).total_seconds() < limit:
                return []
        self._hot[TACHYCARDIA] = set()
        return [self._book.clear(TACHYCARDIA, value=None, threshold=limit, at=now)]

    def open_alerts(self) -> list[AlertTransition]:
        """The latest transition of each open clinical alert."""
        return self._book.open_alerts()

    def restore(self, open_alerts: Iterable[AlertTransition]) -> None:
        """Re-open alerts after a restart without raising them again.

        Technical and CLEARED transitions are ignored. A restored alert stays open while its
        condition still holds (no new RAISED) and clears through the normal hysteresis on new
        readings; the device that confirmed it must itself show the clear hold. Must be called
        before the first reading.
        """
        if self._started:
            raise RuntimeError("restore() must be called before the first reading")
        for key in self._book.restore(open_alerts, rule_key):
            restored = self._book.get(key)
            if restored is not None and restored.device is not None:
                self._hot[key].add(restored.device)

    # -- fever -----------------------------------------------------------------------------

    def _temperature_track(self, device: str) -> _TemperatureTrack:
        track = self._temperature.get(device)
        if track is None:
            t = self._fever_t
            window = t.confirm_window_s
            interval = self._intervals.get(device)
            if interval is not None:
                window = max(window, t.confirm_window_intervals * interval)
            track = self._temperature[device] = _TemperatureTrack(
                window_s=window, fall=fall_watch_for(t, interval)
            )
        return track

    def _observe_temperature(self, reading: Reading) -> list[AlertTransition]:
        t = self._fever_t
        track = self._temperature_track(reading.device)
        at = reading.observed_at
        if track.last_at is not None and at < track.last_at:
            return []
        if reading.sensor_contact is False:
            # A patch off the skin reads the room or the blanket: use it neither way.
            track.cool_since = None
            return []
        window = timedelta(seconds=track.window_s)
        if track.last_at is not None and at - track.last_at > window:
            track.cool_since = None
        track.window.append((at, reading.value))
        ordered = track.ordered
        bisect.insort(ordered, reading.value)
        while track.window[0][0] < at - window:
            _, old = track.window.popleft()
            del ordered[bisect.bisect_left(ordered, old)]
        track.last_at = at
        track.fall.observe(at, reading.value)
        median = ordered[(len(ordered) - 1) // 2]  # = statistics.median_low of the window
        track.median = median
        span = (at - track.window[0][0]).total_seconds()
        confirmed: AlertKind | None = None
        if (
            len(track.window) >= t.confirm_min_samples
            and span >= t.confirm_min_span_s
            and median >= t.threshold_c
        ):
            confirmed = AlertKind.HIGH_FEVER if median >= t.high_threshold_c else AlertKind.FEVER
        # Readings after an implausible fall never count towards a clear (no silent clear).
        cool = median < t.threshold_c - t.clear_margin_c and not track.fall.falling
        if cool:
            track.cool_since = track.cool_since or at
        else:
            track.cool_since = None
        return self._apply(FEVER, reading, _Evaluation(confirmed, cool, median))

    def _observe_spot_check(self, reading: Reading) -> list[AlertTransition]:
        """One deliberate measurement decides on its own: at or above the threshold raises at
        once (IDSA: a single oral >= 38.3 °C is a fever; after CAR-T any >= 38.0 °C prompts a
        call, clinical.md §5); below the clear band it clears, unless a continuous wearable
        still reads hot. It also ends any implausible fall: the oral reading speaks now."""
        t = self._fever_t
        at, value = reading.observed_at, reading.value
        if reading.sensor_contact is False:
            return []
        if self._last_spot is not None and at < self._last_spot[0]:
            return []
        self._last_spot = (at, value)
        for track in self._temperature.values():
            track.fall.spot_check()
        confirmed: AlertKind | None = None
        if value >= t.threshold_c:
            confirmed = AlertKind.HIGH_FEVER if value >= t.high_threshold_c else AlertKind.FEVER
        cool = value < t.threshold_c - t.clear_margin_c
        return self._apply(FEVER, reading, _Evaluation(confirmed, cool, value))

    def _spot_check_may_clear(self, at: datetime) -> bool:
        """A spot check below the band clears unless a continuous device, recently heard and
        not after an implausible fall, still has its window median at or above the band."""
        band = self._fever_t.threshold_c - self._fever_t.clear_margin_c
        for track in self._temperature.values():
            if track.last_at is None or track.median is None or track.fall.falling:
                continue
            recent = abs((at - track.last_at).total_seconds()) <= track.window_s
            if recent and track.median >= band:
                return False
        return True

    # -- tachycardia -----------------------------------------------------------------------

    def _observe_heart_rate(self, reading: Reading) -> list[AlertTransition]:
        t = self._tachy_t
        track = self._heart.get(reading.device)
        if track is None:
            track = self._heart[reading.device] = _HeartTrack(
                _Count(t.window_s), _Count(t.window_alone_s), _Count(t.clear_hold_s)
            )
        at = reading.observed_at
        if track.last_at is not None and at < track.last_at:
            return []
        gap = track.last_at is not None and (at - track.last_at).total_seconds() > t.max_gap_s
        track.last_at = at
        if reading.sensor_contact is False or gap:
            track.fast.reset()
            track.alone.reset()
            track.cool.reset()
            track.run_since = None
        if reading.sensor_contact is False:
            return []
        track.last_contact_at = at
        track.run_since = track.run_since or at
        value = reading.value
        track.last_value = value
        high = value > t.threshold_bpm
        track.fast.push(at, high, value)
        track.alone.push(at, high, value)
        track.cool.push(at, value < t.threshold_bpm - t.clear_margin_bpm, value)
        run = (at - track.run_since).total_seconds()
        # Fever with a fast heart rate is the CRS picture: the short window. Alone, the long one.
        window = track.fast if self._fever_current(at) else track.alone
        # Sustained: min_fraction of the window above the threshold, and above it at both ends
        # (the majority of its first and of its last minute), so that the tolerated dips
        # cannot all sit at one end and shorten "30 min" to 24.
        confirmed = (
            AlertKind.TACHYCARDIA
            if run >= window.length_s
            and window.fraction() >= t.min_fraction
            and window.edge_fraction(_EDGE_S, head=True) > 0.5
            and window.edge_fraction(_EDGE_S, head=False) > 0.5
            else None
        )
        cool = self._heart_held_cool(track)
        shown = track.cool if cool else window  # the mean over the window that decided
        return self._apply(TACHYCARDIA, reading, _Evaluation(confirmed, cool, round(shown.mean())))

    def _fever_current(self, at: datetime) -> bool:
        """Whether the open fever alert is a fever now, for the tachycardia window. Not when only
        an old spot check holds it open: every continuous device that ran hot during the alert
        is still reporting (within its window of ``at``) and has held below the clear band for
        ``clear_hold_s`` (after a plausible fall: the fall guard keeps ``cool_since`` unset),
        and the latest spot check is cool or older than those devices' cool spell. The alert
        itself stays open (its clear needs a new spot check); only a walk hours after the fever
        broke no longer counts as fever with a fast heart rate. Evidence stopping never ends a
        fever: a device gone silent, or a fever seen only by spot checks, keeps it current."""
        if FEVER not in self._book:
            return False
        wearables = [self._temperature[d] for d in self._hot[FEVER] if d in self._temperature]
        if not wearables:
            return True
        cool_from: datetime | None = None
        for track in wearables:
            # Cool held on the device's own reading times, as for the clear (_held_cool).
            if track.cool_since is None or track.last_at is None or (
                track.last_at - track.cool_since
            ).total_seconds() < self._fever_t.clear_hold_s:
                return True
            if abs((at - track.last_at).total_seconds()) > track.window_s:
                return True  # silent since: it no longer vouches for now
            cool_from = track.cool_since if cool_from is None else min(cool_from, track.cool_since)
        if self._last_spot is not None and cool_from is not None:
            spot_at, value = self._last_spot
            band = self._fever_t.threshold_c - self._fever_t.clear_margin_c
            if value >= band and spot_at >= cool_from:
                return True
        return False

    def _heart_held_cool(self, track: _HeartTrack) -> bool:
        t = self._tachy_t
        if track.run_since is None or track.last_at is None:
            return False
        run = (track.last_at - track.run_since).total_seconds()
        return run >= t.clear_hold_s and track.cool.fraction() >= t.min_fraction

    # -- shared lifecycle ------------------------------------------------------------------

    def _apply(self, key: RuleKey, reading: Reading, ev: _Evaluation) -> list[AlertTransition]:
        out: list[AlertTransition] = []
        at = reading.observed_at
        open_alert = self._book.get(key)
        if open_alert is None:
            if ev.confirmed is not None:
                kind = ev.confirmed
                if key == FEVER and TACHYCARDIA in self._book:
                    kind = AlertKind.FEVER_TACHYCARDIA
                out.append(
                    self._book.raise_alert(
                        key,
                        kind=kind,
                        severity=_SEVERITY[kind],
                        value=ev.value,
                        unit=UNITS[reading.vital],
                        threshold=self._raise_threshold(kind),
                        at=at,
                        device=reading.device,
                    )
                )
                self._hot[key] = {reading.device} | self._devices_above_band(key, at)
        else:
            if not ev.cool:
                self._hot[key].add(reading.device)
            if ev.confirmed is not None:
                changed = self._book.worsen(
                    key,
                    kind=ev.confirmed,
                    severity=_SEVERITY[ev.confirmed],
                    value=ev.value,
                    threshold=self._raise_threshold(ev.confirmed),
                    at=at,
                )
                if changed is not None:
                    out.append(changed)
            elif (
                (ev.cool and self._spot_check_may_clear(at))
                if key == FEVER and reading.spot_check
                else self._may_clear(key, reading.device)
            ):
                out.append(
                    self._book.clear(
                        key, value=ev.value, threshold=self._clear_threshold(key), at=at
                    )
                )
                self._hot[key] = set()
        out.extend(self._combine(at))
        return out

    def _combine(self, at: datetime) -> list[AlertTransition]:
        """Fever alert open while tachycardia is open → FEVER_TACHYCARDIA / CRITICAL."""
        fever = self._book.get(FEVER)
        if fever is None or TACHYCARDIA not in self._book:
            return []
        kind = AlertKind.FEVER_TACHYCARDIA
        changed = self._book.worsen(
            FEVER,
            kind=kind,
            severity=_SEVERITY[kind],
            value=fever.value,  # the fever alert keeps describing temperature
            threshold=self._raise_threshold(kind),
            at=at,
        )
        return [] if changed is None else [changed]

    def _may_clear(self, key: RuleKey, device: str) -> bool:
        hot = self._hot[key]
        # With no device on record (a restored alert without one), the reporting device must
        # itself have held below the band; otherwise every device that was above it must have.
        required = hot or {device}
        return all(self._held_cool(key, d) for d in required)

    def _held_cool(self, key: RuleKey, device: str) -> bool:
        if key == TACHYCARDIA:
            heart = self._heart.get(device)
            return heart is not None and self._heart_held_cool(heart)
        track = self._temperature.get(device)
        if track is None:
            # A spot-check device that ran hot: the latest spot check must be below the band.
            band = self._fever_t.threshold_c - self._fever_t.clear_margin_c
            return self._last_spot is not None and self._last_spot[1] < band
        if track.cool_since is None or track.last_at is None:
            return False
        return (track.last_at - track.cool_since).total_seconds() >= self._fever_t.clear_hold_s

    def _devices_above_band(self, key: RuleKey, at: datetime) -> set[str]:
        """Devices currently above the clear band, counting only recent ones: a spare patch last
        seen days ago must not hold the alert open forever."""
        if key == FEVER:
            return {
                d
                for d, tr in self._temperature.items()
                if tr.last_at is not None
                and tr.cool_since is None
                and abs((at - tr.last_at).total_seconds()) <= tr.window_s
            }
        band = self._tachy_t.threshold_bpm - self._tachy_t.clear_margin_bpm
        return {
            d
            for d, hr in self._heart.items()
            if hr.last_at is not None
            and hr.last_value is not None
            and hr.last_value >= band
            and abs((at - hr.last_at).total_seconds()) <= self._tachy_t.max_gap_s
        }

    def _raise_threshold(self, kind: AlertKind) -> float:
        if kind is AlertKind.TACHYCARDIA:
            return self._tachy_t.threshold_bpm
        if kind is AlertKind.HIGH_FEVER:
            return self._fever_t.high_threshold_c
        return self._fever_t.threshold_c

    def _clear_threshold(self, key: RuleKey) -> float:
        if key == FEVER:
            return self._fever_t.threshold_c - self._fever_t.clear_margin_c
        return self._tachy_t.threshold_bpm - self._tachy_t.clear_margin_bpm
