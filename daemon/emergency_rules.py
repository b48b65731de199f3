"""The emergency tier: low oxygen (hypoxia) and low blood pressure (hypotension). Pure: time
arrives on the readings; alert ids come from an injected factory. One instance per patient.

Both follow the home-management escalation of Crombie et al., Blood 2024 (Table 3; clinical.md
§2.1 and §6): a *new SpO2 below 90 %*, or a *systolic pressure below 90 mmHg and at least 10 mmHg
below the patient's own baseline*, sends the patient to emergency care. Both alerts have severity
``emergency``: the patient is told to call the emergency number now and the care team is told at
once (the monitor skips the patient-tier wait for this severity).

Hypoxia (per device, patient-level alert): readings come only from valid oximeter values; the
decoder already turns PLX invalid/questionable/low-perfusion/motion (erratic signal, interference)
flags into no reading, so they never reach this engine. A *continuous* oximeter must show every
*majority* of its readings in the last ``spo2_window_s`` below ``spo2_below_percent`` (the upper
median below it), after at least ``spo2_min_span_s`` of unbroken data (no gap >
``spo2_max_gap_s``, no contact lost) and ``spo2_min_samples`` readings. A majority, not every
reading: a patient hovering at 89-90 % reads 90 now and then and must still alarm (the benchmark
found that miss); and a dip shorter than half the window (a finger squeezed, a sensor slipping,
unflagged) never raises. A *spot-check* value (PLX 0x2A5E) is a final,
device-averaged measurement the patient took on purpose: with ``spo2_spot_check_confirms`` one is
enough. Clears when every device that was low has held >= threshold + margin for
``spo2_clear_hold_s``.

Hypotension (patient-level; cuff readings are sparse and deliberate): raised by
``sbp_confirm_readings`` consecutive systolic readings each < ``sbp_below_mmhg`` AND <=
baseline - ``sbp_drop_mmhg``. The baseline is the care team's ``sbp_baseline_mmhg`` or, when that
is unset, the median of the first ``sbp_baseline_readings`` readings at or above
``sbp_below_mmhg`` (a value already low is never learned as "usual"). While no baseline is known
a reading below ``sbp_below_mmhg`` raises on the absolute criterion alone when
``sbp_alert_without_baseline`` (the safe side: the drop cannot be checked, so it is assumed).
:meth:`EmergencyRules.sbp_baseline` exposes the baseline and where it came from, for the care
team. Clears after ``sbp_clear_readings`` consecutive readings >= ``sbp_below_mmhg`` +
``sbp_clear_margin_mmhg``.

Fever (ASTCT 2019: fever plus hypotension or hypoxia, clinical.md §1): the fever alert belongs to
daemon/rules.py. The monitor passes that engine's transitions to :meth:`note_fever`; while a
fever alert is open, HYPOXIA becomes FEVER_HYPOXIA and HYPOTENSION becomes FEVER_HYPOTENSION (a
SEVERITY_CHANGED of the same alert, or raised directly as the combined kind). One condition, one
alarm: there is never a third alert for the combination. Kind and severity latch while open.

Time alone changes nothing: a stopped oximeter is TechnicalAlarms' NO_DATA, never a clear.
"""

from __future__ import annotations

import bisect
import statistics
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from daemon.alert_book import AlertBook, IdFactory, uuid4_id
from daemon.alerts import AlertKind, AlertState, AlertTransition, Severity
from daemon.readings import UNITS, Reading, Vital

EmergencyKey = Literal["hypoxia", "hypotension"]
HYPOXIA: EmergencyKey = "hypoxia"
HYPOTENSION: EmergencyKey = "hypotension"

_KIND_ORDER = (
    AlertKind.HYPOXIA,
    AlertKind.HYPOTENSION,
    AlertKind.FEVER_HYPOXIA,
    AlertKind.FEVER_HYPOTENSION,
)
_PLAIN = {HYPOXIA: AlertKind.HYPOXIA, HYPOTENSION: AlertKind.HYPOTENSION}
_WITH_FEVER = {HYPOXIA: AlertKind.FEVER_HYPOXIA, HYPOTENSION: AlertKind.FEVER_HYPOTENSION}
# The fever alert's kinds in daemon/rules.py.
FEVER_KINDS = frozenset({AlertKind.FEVER, AlertKind.HIGH_FEVER, AlertKind.FEVER_TACHYCARDIA})


class EmergencyThresholds(BaseModel):
    """``[thresholds.emergency]``. Every number is the care team's; defaults cited inline."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    # Crombie 2024 Table 3: "new SpO2 < 90 %" -> urgent contact or ED (clinical.md §2.1, §6).
    spo2_below_percent: float = Field(90.0, ge=50.0, le=100.0)
    # Confirmation for continuous oximeters (inference, no source gives one): most of the last
    # two minutes below the threshold, so unflagged dips under a minute never raise, at a cost
    # of about a minute against "call emergency services now".
    spo2_window_s: float = Field(120.0, gt=0)
    spo2_min_span_s: float = Field(60.0, ge=0)
    spo2_min_samples: int = Field(2, ge=1)
    # A longer silence breaks the run: we cannot vouch for the interval.
    spo2_max_gap_s: float = Field(120.0, gt=0)
    # A PLX spot-check (0x2A5E) is a final, device-averaged measurement: one is enough.
    spo2_spot_check_confirms: bool = True
    # Hysteresis: clears once every low device held >= threshold + margin for the hold.
    spo2_clear_margin_percent: float = Field(2.0, ge=0)
    spo2_clear_hold_s: float = Field(300.0, gt=0)
    # Crombie 2024: SBP "10 mmHg below baseline AND < 90 mmHg" (clinical.md §2.1 reads the
    # source's "<10 mm Hg below baseline" as a drop of at least 10 mmHg).
    sbp_below_mmhg: float = Field(90.0, ge=40.0, le=200.0)
    sbp_drop_mmhg: float = Field(10.0, ge=0, le=100.0)
    # The patient's usual systolic pressure, from the care team (preferred). None: learn it.
    sbp_baseline_mmhg: float | None = Field(None, ge=50.0, le=250.0)
    # Learned baseline: median of the first N readings at or above sbp_below_mmhg (inference:
    # a median of three resists one bad cuff reading; home BP guidance averages several).
    sbp_baseline_readings: int = Field(3, ge=1, le=50)
    # No baseline yet: raise on SBP < sbp_below_mmhg alone (the drop cannot be checked).
    sbp_alert_without_baseline: bool = True
    # Cuff readings are deliberate ~1 min measurements taken hours apart: waiting for a second
    # would delay an emergency by as long, so one qualifying reading raises by default.
    sbp_confirm_readings: int = Field(1, ge=1, le=10)
    sbp_clear_margin_mmhg: float = Field(5.0, ge=0)
    sbp_clear_readings: int = Field(2, ge=1, le=10)

    @model_validator(mode="after")
    def _consistent(self) -> EmergencyThresholds:
        if self.spo2_below_percent + self.spo2_clear_margin_percent > 100.0:
            raise ValueError("spo2_below_percent + spo2_clear_margin_percent must be <= 100")
        if self.spo2_min_span_s > self.spo2_window_s:
            raise ValueError("spo2_min_span_s must not be above spo2_window_s")
        return self


@dataclass(frozen=True, slots=True)
class SbpBaseline:
    """The systolic baseline the hypotension rule uses, for the care team's view."""

    mmhg: float | None  # None: not known yet
    source: Literal["config", "learned", "learning", "restored"]
    readings_used: int  # readings that went into a learned baseline (so far)
    readings_needed: int  # 0 when the baseline comes from the config

    def as_payload(self) -> dict[str, object]:
        return {
            "sbp_baseline_mmhg": self.mmhg,
            "source": self.source,
            "readings_used": self.readings_used,
            "readings_needed": self.readings_needed,
        }


@dataclass
class _OxygenTrack:
    last_at: datetime | None = None
    since: datetime | None = None  # first reading of the current unbroken run of data
    window: deque[tuple[datetime, float]] = field(default_factory=deque)
    ordered: list[float] = field(default_factory=list)  # the window's values, sorted
    cool_since: datetime | None = None  # first reading of the current run above the clear band


@dataclass
class _PressureTrack:
    last_at: datetime | None = None
    learning: list[float] = field(default_factory=list)
    learned: float | None = None
    restored: bool = False
    low_run: int = 0  # consecutive qualifying readings
    cool_run: int = 0  # consecutive readings above the clear band


class EmergencyRules:
    """Hypoxia and hypotension for one patient (see the module docstring)."""

    def __init__(self, thresholds: EmergencyThresholds, *, new_id: IdFactory = uuid4_id) -> None:
        self._t = thresholds
        self._book: AlertBook[EmergencyKey] = AlertBook(new_id=new_id, kind_order=_KIND_ORDER)
        self._oxygen: dict[str, _OxygenTrack] = {}
        self._pressure = _PressureTrack()
        self._hot: set[str] = set()  # oximeters that were low while the hypoxia alert was open
        self._fever_open = False
        self._started = False

    # -- public API ------------------------------------------------------------------------

    def observe(self, reading: Reading, *, spot_check: bool = False) -> list[AlertTransition]:
        """Feed one reading (after the decoder's validity checks and the plausibility filter).

        ``spot_check``: the SpO2 came from a PLX Spot-check Measurement (0x2A5E), a final
        measurement the patient took, rather than a continuous stream. Other vitals: ignored.
        """
        if reading.vital is Vital.SPO2:
            self._started = True
            return self._observe_spo2(reading, spot_check)
        if reading.vital is Vital.SYSTOLIC:
            self._started = True
            return self._observe_systolic(reading)
        return []

    def note_fever(self, transitions: Iterable[AlertTransition]) -> list[AlertTransition]:
        """Feed the fever/tachycardia engine's transitions (others are ignored). A fever alert
        opening turns open emergency alerts into their fever kinds; returns those changes."""
        out: list[AlertTransition] = []
        for tr in transitions:
            if tr.kind not in FEVER_KINDS:
                continue
            self._fever_open = tr.state is not AlertState.CLEARED
            if self._fever_open:
                out.extend(self._combine(tr.observed_at))
        return out

    @property
    def fever_open(self) -> bool:
        return self._fever_open

    def tick(self, now: datetime) -> list[AlertTransition]:
        """Time alone never raises or clears an emergency (see the module docstring)."""
        del now
        return []

    def open_alerts(self) -> list[AlertTransition]:
        return self._book.open_alerts()

    def sbp_baseline(self) -> SbpBaseline:
        """The baseline in use: show it to the care team with every hypotension alert and in
        the hub status, so they can correct it in the config."""
        t, p = self._t, self._pressure
        if t.sbp_baseline_mmhg is not None:
            return SbpBaseline(t.sbp_baseline_mmhg, "config", 0, 0)
        if p.learned is not None:
            source: Literal["learned", "restored"] = "restored" if p.restored else "learned"
            return SbpBaseline(p.learned, source, len(p.learning), t.sbp_baseline_readings)
        return SbpBaseline(None, "learning", len(p.learning), t.sbp_baseline_readings)

    def restore(
        self,
        open_alerts: Iterable[AlertTransition],
        *,
        learned_sbp_baseline: float | None = None,
    ) -> None:
        """After a restart: re-open emergency alerts (others in the list, e.g. an open fever,
        set the fever state) and re-use a baseline learned before (the monitor keeps it with
        its state; without it the baseline is learned again). Before the first reading only."""
        if self._started:
            raise RuntimeError("restore() must be called before the first reading")
        alerts = list(open_alerts)
        self._fever_open = any(
            a.kind in FEVER_KINDS and a.state is not AlertState.CLEARED for a in alerts
        )
        for key in self._book.restore(alerts, _key_of):
            restored = self._book.get(key)
            if key == HYPOXIA and restored is not None and restored.device is not None:
                self._hot.add(restored.device)
        if learned_sbp_baseline is not None and self._t.sbp_baseline_mmhg is None:
            self._pressure.learned = learned_sbp_baseline
            self._pressure.restored = True

    def warm_sbp_baseline(self, systolic_mmhg: Iterable[float]) -> SbpBaseline:
        """Learn the baseline from stored systolic readings (oldest first) after a restart,
        without evaluating them: history must not raise an alert twice. No effect once a
        baseline is known. Before the first reading only."""
        if self._started:
            raise RuntimeError("warm_sbp_baseline() must be called before the first reading")
        for value in systolic_mmhg:
            self._learn(value)
        return self.sbp_baseline()

    # -- hypoxia ---------------------------------------------------------------------------

    def _observe_spo2(self, reading: Reading, spot_check: bool) -> list[AlertTransition]:
        t = self._t
        track = self._oxygen.setdefault(reading.device, _OxygenTrack())
        at = reading.observed_at
        if track.last_at is not None and at < track.last_at:
            return []  # windows only move forward
        gap = track.last_at is not None and (at - track.last_at).total_seconds() > t.spo2_max_gap_s
        track.last_at = at
        if reading.sensor_contact is False or gap:
            track.since, track.cool_since = None, None
            track.window.clear()
            track.ordered.clear()
        if reading.sensor_contact is False:
            return []
        value = reading.value
        track.since = track.since or at
        track.window.append((at, value))
        bisect.insort(track.ordered, value)
        horizon = at - timedelta(seconds=t.spo2_window_s)
        while track.window[0][0] <= horizon:
            _, old = track.window.popleft()
            del track.ordered[bisect.bisect_left(track.ordered, old)]
        if value >= t.spo2_below_percent + t.spo2_clear_margin_percent:
            track.cool_since = track.cool_since or at
        else:
            track.cool_since = None
        upper_median = track.ordered[len(track.ordered) // 2]
        confirmed = value < t.spo2_below_percent and (
            (spot_check and t.spo2_spot_check_confirms)
            or (
                len(track.window) >= t.spo2_min_samples
                and (at - track.since).total_seconds() >= t.spo2_min_span_s
                and upper_median < t.spo2_below_percent
            )
        )
        out: list[AlertTransition] = []
        if HYPOXIA not in self._book:
            if confirmed:
                out.append(self._raise(HYPOXIA, reading, t.spo2_below_percent))
                self._hot = {reading.device}
        else:
            if track.cool_since is None:
                self._hot.add(reading.device)
            if self._hypoxia_may_clear(reading.device):
                out.append(
                    self._book.clear(
                        HYPOXIA,
                        value=value,
                        threshold=t.spo2_below_percent + t.spo2_clear_margin_percent,
                        at=at,
                    )
                )
                self._hot = set()
        return out

    def _hypoxia_may_clear(self, device: str) -> bool:
        hold = self._t.spo2_clear_hold_s
        for d in self._hot or {device}:
            track = self._oxygen.get(d)
            if track is None or track.cool_since is None or track.last_at is None:
                return False
            if (track.last_at - track.cool_since).total_seconds() < hold:
                return False
        return True

    # -- hypotension -----------------------------------------------------------------------

    def _observe_systolic(self, reading: Reading) -> list[AlertTransition]:
        t, p = self._t, self._pressure
        at = reading.observed_at
        if p.last_at is not None and at < p.last_at:
            return []
        p.last_at = at
        value = reading.value
        baseline = self.sbp_baseline().mmhg
        low = value < t.sbp_below_mmhg and (
            value <= baseline - t.sbp_drop_mmhg
            if baseline is not None
            else t.sbp_alert_without_baseline
        )
        self._learn(value)
        p.low_run = p.low_run + 1 if low else 0
        p.cool_run = p.cool_run + 1 if value >= t.sbp_below_mmhg + t.sbp_clear_margin_mmhg else 0
        out: list[AlertTransition] = []
        if HYPOTENSION not in self._book:
            if p.low_run >= t.sbp_confirm_readings:
                limit = t.sbp_below_mmhg if baseline is None else min(
                    t.sbp_below_mmhg, baseline - t.sbp_drop_mmhg
                )
                out.append(self._raise(HYPOTENSION, reading, limit))
        elif p.cool_run >= t.sbp_clear_readings:
            out.append(
                self._book.clear(
                    HYPOTENSION,
                    value=value,
                    threshold=t.sbp_below_mmhg + t.sbp_clear_margin_mmhg,
                    at=at,
                )
            )
        return out

    def _learn(self, value: float) -> None:
        t, p = self._t, self._pressure
        if t.sbp_baseline_mmhg is not None or p.learned is not None:
            return
        if value < t.sbp_below_mmhg:
            return  # a low value is never learned as the patient's usual pressure
        p.learning.append(value)
        if len(p.learning) >= t.sbp_baseline_readings:
            p.learned = float(statistics.median(p.learning))

    # -- shared ----------------------------------------------------------------------------

    def _raise(self, key: EmergencyKey, reading: Reading, threshold: float) -> AlertTransition:
        kind = _WITH_FEVER[key] if self._fever_open else _PLAIN[key]
        return self._book.raise_alert(
            key,
            kind=kind,
            severity=Severity.EMERGENCY,
            value=reading.value,
            unit=UNITS[reading.vital],
            threshold=threshold,
            at=reading.observed_at,
            device=reading.device,
        )

    def _combine(self, at: datetime) -> list[AlertTransition]:
        out = []
        for key in (HYPOXIA, HYPOTENSION):
            current = self._book.get(key)
            if current is None:
                continue
            changed = self._book.worsen(
                key,
                kind=_WITH_FEVER[key],
                severity=Severity.EMERGENCY,
                value=current.value,  # the alert keeps describing its own vital
                threshold=current.threshold,
                at=max(at, current.observed_at),
            )
            if changed is not None:
                out.append(changed)
        return out


def _key_of(transition: AlertTransition) -> EmergencyKey | None:
    if transition.kind in (AlertKind.HYPOXIA, AlertKind.FEVER_HYPOXIA):
        return HYPOXIA
    if transition.kind in (AlertKind.HYPOTENSION, AlertKind.FEVER_HYPOTENSION):
        return HYPOTENSION
    return None


def rule_key(transition: AlertTransition) -> EmergencyKey | None:
    """Which emergency alert a journal transition belongs to (None: not one of these)."""
    return _key_of(transition)


def spo2_spot_check(characteristic: str | None, device_spot_check: bool) -> bool:
    """The ``spot_check`` argument of :meth:`EmergencyRules.observe` for an SpO2 reading.

    ``device_spot_check``: the monitor's own per-device flag (``DeviceState.spot_check``, from
    ``reading_policy.is_spot_check``: a profile without a sample interval, such as
    ``pulse_oximeter_spot_check``). ``characteristic``: the payload's decoder name when the
    monitor has it (GattPayload), None for a DeviceReading: a continuous oximeter's optional PLX
    Spot-check payloads (0x2A5E) are spot checks too."""
    return device_spot_check or characteristic == "plx_spot_check"
