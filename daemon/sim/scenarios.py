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
    blood_pressure_cuff,
    blood_pressure_readings,
    constant,
    heart_rate_strap,
    heart_rate_stream,
    merge,
    periodic,
    pulse_oximeter,
    spo2_stream,
    temperature_stream,
    thermometer_patch,
)

HR_STRAP_ADDRESS = "F0:0D:C0:DE:18:0D"
TEMP_PATCH_ADDRESS = "F0:0D:C0:DE:18:09"
HR_STRAP_NAME = "Polar H10 SIM"
TEMP_PATCH_NAME = "TempPatch SIM"
OXIMETER_ADDRESS = "F0:0D:C0:DE:18:22"
OXIMETER_NAME = "PulseOx SIM"
BP_CUFF_ADDRESS = "F0:0D:C0:DE:18:10"
BP_CUFF_NAME = "BPCuff SIM"

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


# Fever for the emergency scenarios: above 38.0 °C from ~2130 s (raw; ~1800 s after a +0.5 °C
# site offset), so the fever alert is open when the emergency sign appears (the combined kind).
# It falls 1.7 °C in 30 min, within what the implausible-fall guard accepts of a fever breaking
# (1.0 °C + 1.6 °C/h, daemon/temperature_fall.py), so it clears at the end.
EMERGENCY_FEVER = Curve(
    (
        (0.0, 36.6),
        (1200.0, 36.7),
        (2400.0, 38.6),
        (5000.0, 38.7),
        (6800.0, 37.0),
        (7500.0, 36.8),
    )
)
# SpO2: normal, two motion episodes (the oximeter flags them; the values read ~12 % low), then a
# fall below 90 % for ~20 min and recovery. Defaults: 60 s below 90 % raises; 300 s at >= 92 %
# clears (daemon/emergency_rules.py).
HYPOXIA_SPO2 = Curve(
    (
        (0.0, 97.0),
        (2600.0, 96.0),
        (3000.0, 87.0),  # below 90 from ~2870 s
        (4200.0, 87.0),
        (4800.0, 96.0),  # back above 92 at ~4530 s
        (7500.0, 97.0),
    )
)
HYPOXIA_MOTION = ((1000.0, 1060.0), (1500.0, 1530.0))


def hypoxia(
    *,
    seed: int = 4,
    spo2_interval_s: float = 1.0,
    temp_interval_s: float = 30.0,
    duration_s: float = 9000.0,
) -> Scenario:
    """Fever, then SpO2 below 90 % held: the emergency tier's FEVER_HYPOXIA path."""

    def oximeter_timeline() -> Iterator[TimelineEvent]:
        return merge(
            spo2_stream(
                HYPOXIA_SPO2,
                interval_s=spo2_interval_s,
                seed=seed,
                motion=HYPOXIA_MOTION,
                pulse=Curve(((0.0, 76.0), (2400.0, 104.0), (4800.0, 108.0), (7500.0, 80.0))),
            ),
            battery_stream(90, drain_percent_per_hour=1.0),
        )

    def patch_timeline() -> Iterator[TimelineEvent]:
        return merge(
            temperature_stream(EMERGENCY_FEVER, interval_s=temp_interval_s, seed=seed + 1000),
            battery_stream(85, drain_percent_per_hour=1.0),
        )

    return Scenario(
        name="hypoxia",
        description="Fever above 38 °C, then SpO2 below 90 % for ~20 min (after two "
        "motion-flagged false dips that must not alarm), then recovery.",
        wearables=(
            pulse_oximeter(OXIMETER_ADDRESS, oximeter_timeline, name=OXIMETER_NAME,
                           battery_percent=90),
            thermometer_patch(TEMP_PATCH_ADDRESS, patch_timeline, name=TEMP_PATCH_NAME,
                              battery_percent=85),
        ),
        duration_s=duration_s,
        milestones=(
            (0.0, "baseline: 36.6 °C, SpO2 97 %"),
            (1000.0, "motion: the oximeter reads ~85 % with the erratic-signal flag (ignored)"),
            (2130.0, "temperature above 38.0 °C"),
            (2870.0, "SpO2 below 90 %"),
            (2930.0, "emergency: fever with hypoxia (SpO2 < 90 % for 60 s)"),
            (4530.0, "SpO2 back above 92 %"),
            (6800.0, "patch back at 37.0 °C; the fever alert clears about 7560 s"),
            (duration_s, "end of story"),
        ),
    )


# Systolic pressure: ~122 mmHg for the first readings (the learned baseline), then a fall to
# 84 mmHg during the fever (< 90 and 38 below baseline), then recovery.
HYPOTENSION_SBP = Curve(
    (
        (0.0, 122.0),
        (2700.0, 121.0),
        (4500.0, 84.0),
        (5400.0, 84.0),
        (6300.0, 101.0),
        (7200.0, 118.0),
    )
)


def hypotension(
    *,
    seed: int = 5,
    bp_every_s: float = 900.0,
    temp_interval_s: float = 30.0,
    duration_s: float = 9000.0,
) -> Scenario:
    """Fever, then a cuff reading < 90 mmHg and >= 10 below the learned baseline."""

    def cuff_timeline() -> Iterator[TimelineEvent]:
        return merge(
            blood_pressure_readings(
                HYPOTENSION_SBP,
                every_s=bp_every_s,
                seed=seed,
                noise_mmhg=1.0,
                pulse=Curve(((0.0, 76.0), (2400.0, 106.0), (5400.0, 112.0), (7500.0, 82.0))),
            ),
            battery_stream(80, drain_percent_per_hour=0.5),
        )

    def patch_timeline() -> Iterator[TimelineEvent]:
        return merge(
            temperature_stream(EMERGENCY_FEVER, interval_s=temp_interval_s, seed=seed + 1000),
            battery_stream(85, drain_percent_per_hour=1.0),
        )

    return Scenario(
        name="hypotension",
        description="Cuff readings every 15 min: ~122 mmHg (the learned baseline), then fever "
        "and a fall to 84 mmHg, then recovery.",
        wearables=(
            blood_pressure_cuff(BP_CUFF_ADDRESS, cuff_timeline, name=BP_CUFF_NAME,
                                battery_percent=80),
            thermometer_patch(TEMP_PATCH_ADDRESS, patch_timeline, name=TEMP_PATCH_NAME,
                              battery_percent=85),
        ),
        duration_s=duration_s,
        milestones=(
            (0.0, "cuff readings ~122 mmHg: the baseline is learned from the first three"),
            (2130.0, "temperature above 38.0 °C"),
            (4500.0, "cuff reads 84 mmHg: emergency, fever with hypotension"),
            (6300.0, "recovery: 101 mmHg, then 118 mmHg clears the alert"),
            (duration_s, "end of story"),
        ),
    )


SCENARIOS: dict[str, Callable[..., Scenario]] = {
    "crs-onset": crs_onset,
    "steady": steady,
    "flaky": flaky,
    "hypoxia": hypoxia,
    "hypotension": hypotension,
}


def build_scenario(name: str, **params: Any) -> Scenario:
    try:
        factory = SCENARIOS[name]
    except KeyError:
        raise KeyError(
            f"unknown scenario {name!r}; known: {', '.join(sorted(SCENARIOS))}"
        ) from None
    return factory(**params)
