"""A partial NEWS2 score for the care team: the four parameters the hub measures.

NEWS2 (Royal College of Physicians 2017; the bands are in clinical.md §4) scores seven parameters.
The hub measures four: pulse, SpO2 (Scale 1), systolic pressure and temperature. Respiration rate,
consciousness and air-or-oxygen are not measured, so the aggregate here is a LOWER BOUND of the
full score and is always labelled partial. Scale 2 is left out: it is only for patients with
confirmed hypercapnic respiratory failure, which the hub cannot know. Oxygen is not scored
(taken as room air, 0) and listed as missing.

For care-team payloads only: a number like "NEWS2 3" means nothing useful to a patient and must
never be shown to them (issue 13). NEWS2 was validated in hospital, not at home, and scores
38.0 °C as 0, so it complements the fever rules and never replaces them (clinical.md §4).

Values are rounded as a chart records them before banding: SpO2, pulse and systolic pressure to
whole numbers, temperature to 0.1 °C (so 38.04 °C is 38.0, band 0; 38.05 is 38.1, band 1).
Pure: the caller picks the values (see :func:`latest_values`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from types import MappingProxyType

from daemon.readings import Reading, Vital


class News2Parameter(StrEnum):
    PULSE = "pulse"
    SPO2_SCALE_1 = "spo2_scale_1"
    SYSTOLIC = "systolic"
    TEMPERATURE = "temperature"
    # Not measured by the hub: always missing.
    RESPIRATION_RATE = "respiration_rate"
    CONSCIOUSNESS = "consciousness"
    AIR_OR_OXYGEN = "air_or_oxygen"


MEASURED = (
    News2Parameter.PULSE,
    News2Parameter.SPO2_SCALE_1,
    News2Parameter.SYSTOLIC,
    News2Parameter.TEMPERATURE,
)
NOT_MEASURED = (
    News2Parameter.RESPIRATION_RATE,
    News2Parameter.CONSCIOUSNESS,
    News2Parameter.AIR_OR_OXYGEN,
)


class News2Response(StrEnum):
    """RCP 2017 clinical-response triggers, applied to the partial aggregate."""

    LOW = "low"  # aggregate 0-4
    URGENT = "urgent"  # a 3 in any single parameter, or aggregate 5-6
    EMERGENCY = "emergency"  # aggregate >= 7


def _half_up(value: float, decimals: int = 0) -> float:
    # round() is banker's rounding (92.5 -> 92) and binary floats put 38.05 just below the half;
    # a chart rounds the written decimal half up.
    step = Decimal(1).scaleb(-decimals)
    return float(Decimal(repr(value)).quantize(step, rounding=ROUND_HALF_UP))


def score_pulse(bpm: float) -> int:
    v = _half_up(bpm)
    if v <= 40:
        return 3
    if v <= 50:
        return 1
    if v <= 90:
        return 0
    if v <= 110:
        return 1
    if v <= 130:
        return 2
    return 3


def score_spo2_scale_1(percent: float) -> int:
    v = _half_up(percent)
    if v <= 91:
        return 3
    if v <= 93:
        return 2
    if v <= 95:
        return 1
    return 0


def score_systolic(mmhg: float) -> int:
    v = _half_up(mmhg)
    if v <= 90:
        return 3
    if v <= 100:
        return 2
    if v <= 110:
        return 1
    if v <= 219:
        return 0
    return 3


def score_temperature(celsius: float) -> int:
    v = _half_up(celsius, 1)
    if v <= 35.0:
        return 3
    if v <= 36.0:
        return 1
    if v <= 38.0:
        return 0
    if v <= 39.0:
        return 1
    return 2


_SCORERS = MappingProxyType(
    {
        News2Parameter.PULSE: score_pulse,
        News2Parameter.SPO2_SCALE_1: score_spo2_scale_1,
        News2Parameter.SYSTOLIC: score_systolic,
        News2Parameter.TEMPERATURE: score_temperature,
    }
)


@dataclass(frozen=True, slots=True)
class News2Partial:
    """The partial score. ``scores`` holds only parameters that had a value."""

    scores: Mapping[News2Parameter, int]
    values: Mapping[News2Parameter, float]
    missing: tuple[News2Parameter, ...]

    @property
    def aggregate(self) -> int:
        """Sum of the scored parameters: a lower bound of the full NEWS2."""
        return sum(self.scores.values())

    @property
    def single_parameter_3(self) -> bool:
        return any(score == 3 for score in self.scores.values())

    @property
    def response(self) -> News2Response:
        if self.aggregate >= 7:
            return News2Response.EMERGENCY
        if self.aggregate >= 5 or self.single_parameter_3:
            return News2Response.URGENT
        return News2Response.LOW

    def as_payload(self) -> dict[str, object]:
        """JSON-ready, for care-team payloads only."""
        return {
            "partial": True,
            "aggregate": self.aggregate,
            "aggregate_is_lower_bound": True,
            "response": self.response.value,
            "single_parameter_3": self.single_parameter_3,
            "scores": {p.value: s for p, s in self.scores.items()},
            "values": {p.value: v for p, v in self.values.items()},
            "missing": [p.value for p in self.missing],
            "spo2_scale": 1,
        }


def score_partial(
    *,
    pulse_bpm: float | None = None,
    spo2_percent: float | None = None,
    systolic_mmhg: float | None = None,
    temperature_c: float | None = None,
) -> News2Partial:
    """Score whichever of the four measured parameters have a value (NaN counts as missing)."""
    given = {
        News2Parameter.PULSE: pulse_bpm,
        News2Parameter.SPO2_SCALE_1: spo2_percent,
        News2Parameter.SYSTOLIC: systolic_mmhg,
        News2Parameter.TEMPERATURE: temperature_c,
    }
    values = {p: float(v) for p, v in given.items() if v is not None and not math.isnan(v)}
    scores = {p: _SCORERS[p](v) for p, v in values.items()}
    missing = tuple(p for p in MEASURED if p not in values) + NOT_MEASURED
    return News2Partial(MappingProxyType(scores), MappingProxyType(values), missing)


def latest_values(
    readings: Iterable[Reading], now: datetime, *, max_age_s: float = 3600.0
) -> dict[Vital, float]:
    """The newest value of each vital among readings no older than ``max_age_s`` at ``now``
    (and not in the future), skipping readings without sensor contact. Pulse is the heart rate
    when one is known, else an oximeter's or cuff's pulse rate."""
    oldest = now - timedelta(seconds=max_age_s)
    newest: dict[Vital, Reading] = {}
    for r in readings:
        if r.sensor_contact is False or not oldest <= r.observed_at <= now:
            continue
        held = newest.get(r.vital)
        if held is None or r.observed_at >= held.observed_at:
            newest[r.vital] = r
    return {vital: r.value for vital, r in newest.items()}


def score_latest(
    readings: Iterable[Reading], now: datetime, *, max_age_s: float = 3600.0
) -> News2Partial:
    """:func:`score_partial` of :func:`latest_values`: what the monitor attaches to care-team
    payloads. A vital with no fresh reading is missing, never carried forward from hours ago."""
    latest = latest_values(readings, now, max_age_s=max_age_s)
    pulse = latest.get(Vital.HEART_RATE, latest.get(Vital.PULSE_RATE))
    return score_partial(
        pulse_bpm=pulse,
        spo2_percent=latest.get(Vital.SPO2),
        systolic_mmhg=latest.get(Vital.SYSTOLIC),
        temperature_c=latest.get(Vital.TEMPERATURE),
    )
