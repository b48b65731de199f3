"""Ready-made scenarios: the wearables a demo or test talks to and what they will do.

Times are scenario seconds. The clinical story of ``crs-onset`` is shaped around the rules'
defaults (daemon/thresholds.py): fever confirms on a 300 s window median >= 38.0 °C and
clears after 900 s below 37.7 °C; tachycardia needs > 100 bpm for 600 s (contact, no gap
> 60 s) and clears after 300 s below 95 bpm. Each phase overshoots those numbers with margin.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from daemon.sim.wearables import (
    HEART_RATE_MEASUREMENT,
    Curve,
    Disconnect,
    Emit,
    LeaveRange,
    Silence,
    SimWearable,
    TimelineEvent,
    at,
    battery_stream,
    constant,
    heart_rate_strap,
    heart_rate_stream,
    merge,
    periodic,
    temperature_stream,
    thermometer_patch,
)

HR_STRAP_ADDRESS = "F0:0D:C0:DE:18:0D"
TEMP_PATCH_ADDRESS = "F0:0D:C0:DE:18:09"
HR_STRAP_NAME = "Polar H10 SIM"
TEMP_PATCH_NAME = "TempPatch SIM"

NORMAL_TEMP_C = 36.8
NORMAL_HR_BPM = 74.0

# A heart-rate payload whose flags announce a 16-bit value but carry only one byte.
MALFORMED_HR = b"\x01\x48"


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    wearables: tuple[SimWearable, ...]
    duration_s: float | None  # length of the scripted story; None = it never ends
    milestones: tuple[tuple[float, str], ...] = ()  # approximate, for people watching a demo

    def wearable(self, address_or_name: str) -> SimWearable:
        for w in self.wearables:
            if address_or_name in (w.address, w.name, w.kind):
                return w
        raise KeyError(address_or_name)


# CRS onset: baseline, fever with tachycardia, a high-fever tier, then recovery long enough
# for both alerts to clear.
ONSET_TEMPERATURE = Curve(
    (
        (0.0, 36.5),
        (1200.0, 36.6),  # 20 min baseline
        (2400.0, 38.4),  # passes 38.0 at ~2130 s
        (3300.0, 39.4),  # passes 39.0 at ~2940 s
        (4200.0, 39.3),
        # Recovery at ~2.2 °C/h, within what physiology allows (the implausible-fall guard,
        # daemon/temperature_fall.py); with the +0.5 °C axillary site offset the core estimate
        # is back below 37.7 °C at ~7600 s.
        (8100.0, 36.9),
        (8700.0, 36.7),
    )
)
ONSET_HEART_RATE = Curve(
    (
        (0.0, 74.0),
        (1200.0, 76.0),
        (2100.0, 104.0),  # above 100 from ~1970 s
        (3300.0, 118.0),
        (4200.0, 114.0),
        (5400.0, 80.0),  # below 100 at ~4690 s (>2700 s tachycardic), below 95 at ~4870 s
        (6000.0, 76.0),
    )
)


def crs_onset(
    *,
    seed: int = 1,
    hr_interval_s: float = 5.0,
    temp_interval_s: float = 30.0,
    battery_drain_percent_per_hour: float = 2.0,
    duration_s: float = 9000.0,
) -> Scenario:
    def strap_timeline() -> Iterator[TimelineEvent]:
        return merge(
            heart_rate_stream(ONSET_HEART_RATE, interval_s=hr_interval_s, seed=seed),
            battery_stream(95, drain_percent_per_hour=battery_drain_percent_per_hour),
        )

    def patch_timeline() -> Iterator[TimelineEvent]:
        return merge(
            temperature_stream(ONSET_TEMPERATURE, interval_s=temp_interval_s, seed=seed + 1000),
            battery_stream(88, drain_percent_per_hour=battery_drain_percent_per_hour),
        )

    return Scenario(
        name="crs-onset",
        description="Baseline vitals, then fever (>38 °C, later >39 °C) with heart rate >100 bpm "
        "for ~45 min, then recovery below the clearing thresholds for >30 min.",
        wearables=(
            heart_rate_strap(
                HR_STRAP_ADDRESS, strap_timeline, name=HR_STRAP_NAME, battery_percent=95
            ),
            thermometer_patch(
                TEMP_PATCH_ADDRESS, patch_timeline, name=TEMP_PATCH_NAME, battery_percent=88
            ),
        ),
        duration_s=duration_s,
        milestones=(
            (0.0, "baseline: 36.5 °C, 74 bpm"),
            (1200.0, "temperature and heart rate start rising"),
            (1970.0, "heart rate above 100 bpm"),
            (2130.0, "temperature above 38.0 °C"),
            (2940.0, "temperature above 39.0 °C"),
            (4200.0, "recovery starts"),
            (4870.0, "heart rate below 95 bpm"),
            (7600.0, "temperature below 37.7 °C (core estimate)"),
            (duration_s, "end of story (vitals stay normal)"),
        ),
    )


def steady(
    *,
    seed: int = 2,
    temp_c: float = NORMAL_TEMP_C,
    hr_bpm: float = NORMAL_HR_BPM,
    hr_interval_s: float = 5.0,
    temp_interval_s: float = 30.0,
    battery_drain_percent_per_hour: float = 1.0,
) -> Scenario:
    def strap_timeline() -> Iterator[TimelineEvent]:
        return merge(
            heart_rate_stream(constant(hr_bpm), interval_s=hr_interval_s, seed=seed),
            battery_stream(100, drain_percent_per_hour=battery_drain_percent_per_hour),
        )

    def patch_timeline() -> Iterator[TimelineEvent]:
        return merge(
            temperature_stream(constant(temp_c), interval_s=temp_interval_s, seed=seed + 1000),
            battery_stream(100, drain_percent_per_hour=battery_drain_percent_per_hour),
        )

    return Scenario(
        name="steady",
        description="Normal vitals forever; batteries drain slowly.",
        wearables=(
            heart_rate_strap(HR_STRAP_ADDRESS, strap_timeline, name=HR_STRAP_NAME),
            thermometer_patch(TEMP_PATCH_ADDRESS, patch_timeline, name=TEMP_PATCH_NAME),
        ),
        duration_s=None,
    )


def flaky(
    *,
    seed: int = 3,
    hr_interval_s: float = 5.0,
    temp_interval_s: float = 30.0,
    disconnect_every_s: float = 120.0,
    reconnect_after_s: float = 10.0,
    leave_every_s: float = 1800.0,
    away_for_s: float = 300.0,
    malformed_every_s: float = 600.0,
    silent_at_s: float = 900.0,
    silent_for_s: float = 120.0,
    battery_start_percent: int = 40,
    battery_drain_percent_per_hour: float = 10.0,
) -> Scenario:
    """Normal vitals over a bad link: the strap drops every ``disconnect_every_s``, the patch
    wanders out of range, a malformed payload now and then, a hung sensor, a dying battery."""

    def strap_timeline() -> Iterator[TimelineEvent]:
        return merge(
            heart_rate_stream(constant(NORMAL_HR_BPM), interval_s=hr_interval_s, seed=seed),
            periodic(
                lambda n: Disconnect(reconnect_after_s),
                every_s=disconnect_every_s,
                first_s=disconnect_every_s,
                order=1,
            ),
            periodic(
                lambda n: Emit(HEART_RATE_MEASUREMENT, MALFORMED_HR, None, "malformed"),
                every_s=malformed_every_s,
                first_s=malformed_every_s / 2,
                order=2,
            ),
            at([(silent_at_s, Silence(silent_for_s))], order=3),
            battery_stream(
                battery_start_percent,
                drain_percent_per_hour=battery_drain_percent_per_hour,
                floor_percent=1,
            ),
        )

    def patch_timeline() -> Iterator[TimelineEvent]:
        return merge(
            temperature_stream(
                constant(NORMAL_TEMP_C), interval_s=temp_interval_s, seed=seed + 1000
            ),
            periodic(
                lambda n: LeaveRange(away_for_s),
                every_s=leave_every_s,
                first_s=leave_every_s,
                order=1,
            ),
            battery_stream(100, drain_percent_per_hour=1.0),
        )

    return Scenario(
        name="flaky",
        description="Normal vitals, but the strap disconnects every "
        f"{disconnect_every_s:g} s, the patch leaves range every {leave_every_s:g} s, "
        "malformed payloads, a silent spell and a low battery.",
        wearables=(
            heart_rate_strap(
                HR_STRAP_ADDRESS,
                strap_timeline,
                name=HR_STRAP_NAME,
                battery_percent=battery_start_percent,
            ),
            thermometer_patch(TEMP_PATCH_ADDRESS, patch_timeline, name=TEMP_PATCH_NAME),
        ),
        duration_s=None,
    )


SCENARIOS: dict[str, Callable[..., Scenario]] = {
    "crs-onset": crs_onset,
    "steady": steady,
    "flaky": flaky,
}


def build_scenario(name: str, **params: Any) -> Scenario:
    try:
        factory = SCENARIOS[name]
    except KeyError:
        raise KeyError(
            f"unknown scenario {name!r}; known: {', '.join(sorted(SCENARIOS))}"
        ) from None
    return factory(**params)
