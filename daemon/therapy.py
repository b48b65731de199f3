"""Therapy and monitoring windows: the ``[therapy]`` section, and what follows from the doses.

Labels tie CRS monitoring to the doses (clinical.md §2.3): 48 h after each bispecific step-up
dose (Tecvayli US: each dose of the step-up schedule, days 1, 4 and 7; Talvey: each step-up dose;
Elrexfio: 48 h after step-up 1 and 24 h after step-up 2), and at least two weeks after a CAR-T
infusion (FDA, 26 June 2025: monitor >= 2 weeks, daily for >= 1 week). A real outpatient
protocol (Scott et al. 2025) had patients take their temperature every 8 h from the first
step-up dose until 48 h after the target dose. Defaults below follow those; every number is
configurable, per class and per dose, because labels change (re-check the current PI).

Everything here is pure: the settings and a time in, windows, "day N of M", reminder times and
scheduler job specs out. The shell hands the specs to APScheduler with
daemon/therapy_schedule.py (the core never imports APScheduler: pyproject's import contract).

Surviving a restart: jobs are recomputed from the config at every start (stable ids, only future
runs), not kept in a persistent job store. The config is the single source of truth: a dose
moved by the care team moves its reminders, where a SQLAlchemyJobStore (which would also add
sqlalchemy, not otherwise needed) would keep the stale jobs until reconciled. What fell due while
the hub was down is not lost either: :func:`due_between` lists it for the shell to handle (e.g.
tell the care team a window ended while the hub was off; skip reminders that are hours old).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from enum import StrEnum
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

_DAY = timedelta(days=1)
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ProductClass(StrEnum):
    BISPECIFIC = "bispecific"  # T-cell engagers: teclistamab, talquetamab, elranatamab, ...
    CAR_T = "car_t"


class DoseKind(StrEnum):
    STEP_UP = "step_up"  # a step-up (priming) dose
    TARGET = "target"  # the first full treatment dose after the step-ups
    TREATMENT = "treatment"  # later treatment doses
    INFUSION = "infusion"  # CAR-T cell infusion (day 0)


_KINDS_BY_CLASS = {
    ProductClass.BISPECIFIC: {DoseKind.STEP_UP, DoseKind.TARGET, DoseKind.TREATMENT},
    ProductClass.CAR_T: {DoseKind.INFUSION},
}


class WindowRules(_Strict):
    """Hours of monitoring after a dose of each kind (0: none). A dose's own ``monitor_h``
    overrides these, e.g. 24 for Elrexfio's second step-up dose or Epkinly's first full dose."""

    # Tecvayli (US and EU SmPC), Talvey, Elrexfio step-up 1: 48 h (clinical.md §2.3).
    step_up_h: float = Field(48.0, ge=0, le=24 * 60)
    # Tecvayli US: 48 h after every dose of the step-up schedule, the day-7 treatment dose
    # included; Scott 2025 monitored until 48 h after the target dose.
    target_h: float = Field(48.0, ge=0, le=24 * 60)
    # No label asks for monitoring after later doses (except after grade >= 2 CRS: set per dose).
    treatment_h: float = Field(0.0, ge=0, le=24 * 60)
    # Post-June-2025 CAR-T labels: monitor for at least 2 weeks.
    infusion_h: float = Field(14 * 24.0, ge=0, le=24 * 90)

    def hours(self, kind: DoseKind) -> float:
        return {
            DoseKind.STEP_UP: self.step_up_h,
            DoseKind.TARGET: self.target_h,
            DoseKind.TREATMENT: self.treatment_h,
            DoseKind.INFUSION: self.infusion_h,
        }[kind]


class SpotCheckSettings(_Strict):
    """Reminders to take a temperature (and any vitals the patient can) by hand."""

    enabled: bool = True
    # Scott 2025: temperature every 8 h throughout the window. Local clock times, so they
    # fall at the same hour every day; 06/14/22 keeps the night one before bedtime.
    times: tuple[str, ...] = ("06:00", "14:00", "22:00")

    @field_validator("times")
    @classmethod
    def _times(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            if not _HHMM.match(item):
                raise ValueError(f"{item!r} is not a 24-hour HH:MM time")
        if len(set(value)) != len(value):
            raise ValueError("a time is listed twice")
        return tuple(sorted(value))

    def clock_times(self) -> list[time]:
        return [time(int(t[:2]), int(t[3:])) for t in self.times]


class Dose(_Strict):
    # TOML offset date-time (2026-12-01T09:00:00-05:00) or local date-time (taken in
    # therapy.timezone).
    at: datetime
    label: str = Field(min_length=1, max_length=80)
    kind: DoseKind
    monitor_h: float | None = Field(None, ge=0, le=24 * 90)


class TherapySettings(_Strict):
    """``[therapy]`` with ``[[therapy.doses]]``."""

    product_class: ProductClass
    product: str = Field("", max_length=80)  # e.g. "teclistamab": shown to the care team
    # IANA zone for local dose times and reminder clock times.
    timezone: str = "UTC"
    # "per_dose": a window after each dose (overlapping ones merge). "span": one window from
    # the first dose to the end of the last dose's window (Scott 2025's protocol).
    window_mode: Literal["per_dose", "span"] = "per_dose"
    windows: WindowRules = WindowRules()
    spot_check: SpotCheckSettings = SpotCheckSettings()
    doses: tuple[Dose, ...] = Field(min_length=1)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from None
        return value

    @field_validator("doses")
    @classmethod
    def _aware(cls, value: tuple[Dose, ...], info: ValidationInfo) -> tuple[Dose, ...]:
        zone = info.data.get("timezone")
        if zone is None:  # the zone itself failed validation and is reported
            return value
        tz = ZoneInfo(zone)
        return tuple(
            d if d.at.tzinfo is not None else d.model_copy(update={"at": d.at.replace(tzinfo=tz)})
            for d in value
        )

    @model_validator(mode="after")
    def _kinds_fit_the_class(self) -> TherapySettings:
        allowed = _KINDS_BY_CLASS[self.product_class]
        for i, dose in enumerate(self.doses):
            if dose.kind not in allowed:
                names = ", ".join(sorted(k.value for k in allowed))
                raise ValueError(
                    f"doses[{i}] ({dose.label!r}): kind {dose.kind.value!r} does not fit "
                    f"product_class {self.product_class.value!r} (use {names})"
                )
        return self

    @property
    def zone(self) -> tzinfo:
        return ZoneInfo(self.timezone)


# --------------------------------------------------------------------------- windows


@dataclass(frozen=True, slots=True)
class MonitoringWindow:
    """[start, end) in UTC, after the doses named in ``labels``."""

    start: datetime
    end: datetime
    labels: tuple[str, ...]

    @property
    def days(self) -> int:
        """M in "day N of M": whole or part days the window covers."""
        return max(1, math.ceil((self.end - self.start) / _DAY))

    def contains(self, at: datetime) -> bool:
        return self.start <= at < self.end

    def day(self, at: datetime) -> int:
        """N in "day N of M": the first 24 h after the start are day 1."""
        if not self.contains(at):
            raise ValueError("the time is outside the window")
        return min(self.days, (at - self.start) // _DAY + 1)

    @property
    def key(self) -> str:
        """Stable id part: the start, to the second, in UTC."""
        return self.start.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _dose_hours(settings: TherapySettings, dose: Dose) -> float:
    return dose.monitor_h if dose.monitor_h is not None else settings.windows.hours(dose.kind)


def monitoring_windows(settings: TherapySettings) -> list[MonitoringWindow]:
    """The windows, in time order. Overlapping or touching windows merge into one, so "day N
    of M" counts one continuous stretch of monitoring; doses with 0 h give none."""
    spans = sorted(
        (d.at.astimezone(UTC), d.at.astimezone(UTC) + timedelta(hours=hours), d.label)
        for d in settings.doses
        if (hours := _dose_hours(settings, d)) > 0
    )
    if not spans:
        return []
    if settings.window_mode == "span":
        end = max(e for _, e, _ in spans)
        return [MonitoringWindow(spans[0][0], end, tuple(label for _, _, label in spans))]
    merged: list[MonitoringWindow] = []
    for start, end, label in spans:
        if merged and start <= merged[-1].end:
            last = merged[-1]
            merged[-1] = MonitoringWindow(last.start, max(last.end, end), (*last.labels, label))
        else:
            merged.append(MonitoringWindow(start, end, (label,)))
    return merged


@dataclass(frozen=True, slots=True)
class TherapyStatus:
    """What the hub's status shows: "day N of M" inside a window."""

    in_window: bool
    day: int | None
    of_days: int | None
    window: MonitoringWindow | None  # the current one
    next_window: MonitoringWindow | None  # the next one to start, if any

    @property
    def text(self) -> str:
        if self.window is not None and self.day is not None:
            after = " and ".join(self.window.labels)
            return f"monitoring day {self.day} of {self.of_days} (after {after})"
        if self.next_window is not None:
            return f"no monitoring window now; next starts {self.next_window.start.isoformat()}"
        return "no monitoring window now or scheduled"

    def as_payload(self) -> dict[str, object]:
        return {
            "in_window": self.in_window,
            "day": self.day,
            "of_days": self.of_days,
            "window_start": None if self.window is None else self.window.start.isoformat(),
            "window_end": None if self.window is None else self.window.end.isoformat(),
            "after": [] if self.window is None else list(self.window.labels),
            "next_window_start": (
                None if self.next_window is None else self.next_window.start.isoformat()
            ),
            "text": self.text,
        }


def status_at(settings: TherapySettings, at: datetime) -> TherapyStatus:
    windows = monitoring_windows(settings)
    current = next((w for w in windows if w.contains(at)), None)
    upcoming = next((w for w in windows if w.start > at), None)
    if current is None:
        return TherapyStatus(False, None, None, None, upcoming)
    return TherapyStatus(True, current.day(at), current.days, current, upcoming)


# --------------------------------------------------------------------------- what falls due


class Purpose(StrEnum):
    WINDOW_START = "window_start"  # tell the patient and care team monitoring has begun
    SPOT_CHECK = "spot_check"  # "please take your temperature now"
    WINDOW_END = "window_end"  # tell the care team; alerts keep running


@dataclass(frozen=True, slots=True)
class DueItem:
    at: datetime  # UTC
    purpose: Purpose
    window: MonitoringWindow


def spot_check_times(settings: TherapySettings, window: MonitoringWindow) -> list[datetime]:
    """Reminder times (UTC) inside ``window``: each configured local clock time of each day,
    from the window start (inclusive) to its end (exclusive)."""
    if not settings.spot_check.enabled:
        return []
    zone = settings.zone
    first: date = window.start.astimezone(zone).date()
    last: date = window.end.astimezone(zone).date()
    out = []
    day = first
    while day <= last:
        for clock in settings.spot_check.clock_times():
            when = datetime.combine(day, clock, zone).astimezone(UTC)
            if window.start <= when < window.end:
                out.append(when)
        day += _DAY
    return out


def due_items(settings: TherapySettings) -> list[DueItem]:
    """Every start, reminder and end of every window, in time order (ends before a start or
    reminder at the same instant)."""
    order = {Purpose.WINDOW_END: 0, Purpose.WINDOW_START: 1, Purpose.SPOT_CHECK: 2}
    items: list[DueItem] = []
    for window in monitoring_windows(settings):
        items.append(DueItem(window.start, Purpose.WINDOW_START, window))
        reminders = spot_check_times(settings, window)
        items.extend(DueItem(t, Purpose.SPOT_CHECK, window) for t in reminders)
        items.append(DueItem(window.end, Purpose.WINDOW_END, window))
    return sorted(items, key=lambda item: (item.at, order[item.purpose]))


def due_between(settings: TherapySettings, after: datetime, until: datetime) -> list[DueItem]:
    """Items with ``after < at <= until``: what fell due while the hub was down, or between two
    ticks when the monitor is driven without a scheduler (replay)."""
    return [item for item in due_items(settings) if after < item.at <= until]


# --------------------------------------------------------------------------- scheduler jobs


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One APScheduler job, as data. ``trigger`` is ``"date"`` (``run_date``) or ``"cron"``
    (``cron`` fields, bounded by ``start_date``/``end_date``, in ``timezone``)."""

    id: str  # stable across restarts: add with replace_existing=True
    purpose: Purpose
    trigger: Literal["date", "cron"]
    window: MonitoringWindow
    run_date: datetime | None = None
    cron: tuple[tuple[str, str], ...] = ()
    start_date: datetime | None = None
    end_date: datetime | None = None
    timezone: str = "UTC"
    # APScheduler options: a reminder that is an hour late is noise, a window end still matters.
    misfire_grace_time_s: int | None = 3600
    coalesce: bool = True

    @property
    def name(self) -> str:
        return f"{self.purpose.value} ({' and '.join(self.window.labels)})"


def scheduler_jobs(settings: TherapySettings, now: datetime) -> list[JobSpec]:
    """The jobs still to come at ``now``: window starts and ends (date triggers) and one cron
    job per reminder clock time per window still open. Deterministic: the same config and a
    later ``now`` give the same ids (a subset), which is how they survive a restart."""
    jobs: list[JobSpec] = []
    for window in monitoring_windows(settings):
        if window.end <= now:
            continue
        if window.start > now:
            jobs.append(
                JobSpec(f"therapy:{window.key}:start", Purpose.WINDOW_START, "date", window,
                        run_date=window.start)
            )
        if settings.spot_check.enabled:
            for clock in settings.spot_check.clock_times():
                jobs.append(
                    JobSpec(
                        f"therapy:{window.key}:spot-check:{clock:%H%M}",
                        Purpose.SPOT_CHECK,
                        "cron",
                        window,
                        cron=(("hour", str(clock.hour)), ("minute", str(clock.minute))),
                        start_date=window.start,
                        # APScheduler's end_date is inclusive; the window's end is not.
                        end_date=window.end - timedelta(seconds=1),
                        timezone=settings.timezone,
                    )
                )
        jobs.append(
            JobSpec(f"therapy:{window.key}:end", Purpose.WINDOW_END, "date", window,
                    run_date=window.end, misfire_grace_time_s=None)
        )
    return jobs
