"""Simulated wearables: what a peripheral advertises, its GATT table, and a scripted timeline.

A timeline is a lazily generated, time-ordered stream of :class:`TimelineEvent` in *scenario
seconds*; the runner maps them to wall time with a ``time_scale``. Timelines are pure functions
of their parameters (noise comes from a seeded ``random.Random``), so a scenario replays
byte-for-byte, and tests can inspect the story without starting anything.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from daemon.encoding import (
    encode_blood_pressure,
    encode_heart_rate,
    encode_plx_continuous,
    encode_plx_spot_check,
    encode_temperature,
)
from daemon.sim.bluez import CharacteristicSpec, PeripheralSpec, ServiceSpec, uuid16

HEART_RATE_SERVICE = uuid16(0x180D)
HEART_RATE_MEASUREMENT = uuid16(0x2A37)
BODY_SENSOR_LOCATION = uuid16(0x2A38)
HEALTH_THERMOMETER_SERVICE = uuid16(0x1809)
TEMPERATURE_MEASUREMENT = uuid16(0x2A1C)
TEMPERATURE_TYPE = uuid16(0x2A1D)
INTERMEDIATE_TEMPERATURE = uuid16(0x2A1E)
MEASUREMENT_INTERVAL = uuid16(0x2A21)
BATTERY_SERVICE = uuid16(0x180F)
BATTERY_LEVEL = uuid16(0x2A19)
DEVICE_INFORMATION_SERVICE = uuid16(0x180A)
MANUFACTURER_NAME = uuid16(0x2A29)
MODEL_NUMBER = uuid16(0x2A24)
PULSE_OXIMETER_SERVICE = uuid16(0x1822)
PLX_SPOT_CHECK = uuid16(0x2A5E)
PLX_CONTINUOUS = uuid16(0x2A5F)
PLX_FEATURES = uuid16(0x2A60)
BLOOD_PRESSURE_SERVICE = uuid16(0x1810)
BLOOD_PRESSURE_MEASUREMENT = uuid16(0x2A35)
BLOOD_PRESSURE_FEATURE = uuid16(0x2A49)

# PLX Device and Sensor Status bit 6, "erratic signal detected": how an oximeter reports motion.
PLX_ERRATIC_SIGNAL = 1 << 6
# PLX Features: bit 1 = Device and Sensor Status supported; then the 16-bit Measurement Status
# support (none here) and the 24-bit Device and Sensor Status support (bit 6 erratic signal).
PLX_FEATURES_VALUE = (0x0002).to_bytes(2, "little") + (PLX_ERRATIC_SIGNAL).to_bytes(3, "little")

TEMPERATURE_TYPE_ARMPIT = 1  # Health Thermometer "Temperature Type" 1 = armpit (axillary)
BODY_LOCATION_CHEST = 1


# ---------------------------------------------------------------------------------------------
# Timeline actions


@dataclass(frozen=True, slots=True)
class Emit:
    """Send ``data`` on a characteristic (notify or indicate, per its flags)."""

    char_uuid: str
    data: bytes
    value: float | None = None  # the vital encoded in ``data`` (None for malformed/raw)
    note: str = ""


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Link loss. The peripheral is unreachable for ``reconnect_after_s``, then advertises."""

    reconnect_after_s: float = 0.0


@dataclass(frozen=True, slots=True)
class LeaveRange:
    """Out of radio range: no adverts, link dropped. ``None`` = never comes back."""

    return_after_s: float | None = None


@dataclass(frozen=True, slots=True)
class Silence:
    """Stays connected but sends nothing for ``duration_s`` (a hung sensor)."""

    duration_s: float


@dataclass(frozen=True, slots=True)
class Battery:
    """Battery level changes (notified to subscribers, returned by reads)."""

    percent: int


Action = Emit | Disconnect | LeaveRange | Silence | Battery


@dataclass(frozen=True, slots=True, order=True)
class TimelineEvent:
    at_s: float
    order: int  # stable tie-break between simultaneous events
    action: Action = field(compare=False)


Timeline = Callable[[], Iterator[TimelineEvent]]


def merge(*streams: Iterable[TimelineEvent]) -> Iterator[TimelineEvent]:
    """Merge time-ordered streams into one time-ordered stream (lazily; streams may be endless)."""
    return heapq.merge(*streams, key=lambda ev: (ev.at_s, ev.order))


def at(events: Iterable[tuple[float, Action]], order: int = 0) -> list[TimelineEvent]:
    """Discrete events given as ``(at_s, action)`` pairs, sorted."""
    return sorted(TimelineEvent(t, order, a) for t, a in events)


# ---------------------------------------------------------------------------------------------
# Vital-sign curves


@dataclass(frozen=True, slots=True)
class Curve:
    """Piecewise-linear value over scenario time; holds the end values outside the points."""

    points: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        if not self.points:
            raise ValueError("a curve needs at least one point")
        times = [t for t, _ in self.points]
        if times != sorted(times):
            raise ValueError("curve points must be in time order")

    def at(self, t: float) -> float:
        pts = self.points
        if t <= pts[0][0]:
            return pts[0][1]
        for (t0, v0), (t1, v1) in itertools.pairwise(pts):
            if t <= t1:
                if t1 == t0:
                    return v1
                return v0 + (v1 - v0) * (t - t0) / (t1 - t0)
        return pts[-1][1]


def constant(value: float) -> Curve:
    return Curve(((0.0, value),))


def _ticks(interval_s: float, start_s: float, until_s: float | None) -> Iterator[float]:
    if interval_s <= 0:
        raise ValueError("interval must be positive")
    for i in itertools.count():
        t = start_s + i * interval_s
        if until_s is not None and t >= until_s:
            return
        yield t


def _in_any(t: float, windows: Sequence[tuple[float, float]]) -> bool:
    return any(start <= t < end for start, end in windows)


def heart_rate_stream(
    curve: Curve,
    *,
    interval_s: float = 5.0,
    seed: int = 0,
    noise_bpm: float = 1.5,
    start_s: float = 0.0,
    until_s: float | None = None,
    no_contact: Sequence[tuple[float, float]] = (),
    order: int = 10,
) -> Iterator[TimelineEvent]:
    """Heart Rate Measurement (0x2A37) notifications with contact and one RR interval."""
    rng = random.Random(seed)
    for t in _ticks(interval_s, start_s, until_s):
        bpm = max(30, min(220, round(curve.at(t) + rng.uniform(-noise_bpm, noise_bpm))))
        contact = not _in_any(t, no_contact)
        rr_ms = round(60_000 / bpm)
        data = encode_heart_rate(bpm, contact=contact, rr_intervals_ms=(rr_ms,))
        yield TimelineEvent(
            t,
            order,
            Emit(HEART_RATE_MEASUREMENT, data, float(bpm), "" if contact else "no contact"),
        )


def temperature_stream(
    curve: Curve,
    *,
    interval_s: float = 30.0,
    seed: int = 0,
    noise_c: float = 0.05,
    start_s: float = 0.0,
    until_s: float | None = None,
    char_uuid: str = TEMPERATURE_MEASUREMENT,
    temperature_type: int | None = TEMPERATURE_TYPE_ARMPIT,
    order: int = 20,
) -> Iterator[TimelineEvent]:
    """Temperature Measurement (0x2A1C, indicated) in °C, two decimals like a patch sends."""
    rng = random.Random(seed)
    for t in _ticks(interval_s, start_s, until_s):
        celsius = round(curve.at(t) + rng.uniform(-noise_c, noise_c), 2)
        data = encode_temperature(celsius, temperature_type=temperature_type)
        yield TimelineEvent(t, order, Emit(char_uuid, data, celsius))


def battery_stream(
    start_percent: int = 100,
    *,
    drain_percent_per_hour: float = 1.0,
    interval_s: float = 600.0,
    floor_percent: int = 0,
    start_s: float = 0.0,
    until_s: float | None = None,
    order: int = 30,
) -> Iterator[TimelineEvent]:
    """Battery level steps down linearly; a change is announced only when the integer changes."""
    last: int | None = None
    for t in _ticks(interval_s, start_s, until_s):
        pct = max(
            floor_percent, math.floor(start_percent - drain_percent_per_hour * (t - start_s) / 3600)
        )
        if pct != last:
            last = pct
            yield TimelineEvent(t, order, Battery(pct))


def periodic(
    make: Callable[[int], Action],
    *,
    every_s: float,
    first_s: float,
    until_s: float | None = None,
    order: int = 0,
) -> Iterator[TimelineEvent]:
    """``make(n)`` at ``first_s``, ``first_s + every_s``, ... (n counts from 0)."""
    for n, t in enumerate(_ticks(every_s, first_s, until_s)):
        yield TimelineEvent(t, order, make(n))


def spo2_stream(
    curve: Curve,
    *,
    interval_s: float = 1.0,
    seed: int = 0,
    noise_percent: float = 0.6,
    pulse: Curve | None = None,
    start_s: float = 0.0,
    until_s: float | None = None,
    motion: Sequence[tuple[float, float]] = (),
    motion_drop_percent: float = 12.0,
    order: int = 40,
) -> Iterator[TimelineEvent]:
    """PLX Continuous Measurement (0x2A5F) notifications with the Device and Sensor Status
    field. Inside a ``motion`` window the value reads falsely low by ``motion_drop_percent``
    and carries the erratic-signal bit, as a real oximeter reports movement."""
    rng = random.Random(seed)
    pulse = pulse or constant(76.0)
    for t in _ticks(interval_s, start_s, until_s):
        moving = _in_any(t, motion)
        value = curve.at(t) + rng.uniform(-noise_percent, noise_percent)
        if moving:
            value -= motion_drop_percent
        percent = max(50, min(100, round(value)))
        bpm = max(30, min(220, round(pulse.at(t) + rng.uniform(-1.5, 1.5))))
        status = PLX_ERRATIC_SIGNAL if moving else 0
        data = encode_plx_continuous(percent, bpm, device_sensor_status=status)
        note = "motion" if moving else ""
        yield TimelineEvent(t, order, Emit(PLX_CONTINUOUS, data, float(percent), note))


def spo2_spot_checks(
    readings: Sequence[tuple[float, float]], *, pulse_bpm: float = 80.0, order: int = 41
) -> list[TimelineEvent]:
    """PLX Spot-check Measurements (0x2A5E) at the given ``(at_s, spo2)`` times."""
    return at(
        [
            (t, Emit(PLX_SPOT_CHECK, encode_plx_spot_check(round(v), round(pulse_bpm)), float(v)))
            for t, v in readings
        ],
        order,
    )


def blood_pressure_readings(
    systolic: Curve,
    *,
    every_s: float = 900.0,
    start_s: float = 0.0,
    until_s: float | None = None,
    seed: int = 0,
    noise_mmhg: float = 2.0,
    pulse: Curve | None = None,
    order: int = 50,
) -> Iterator[TimelineEvent]:
    """Blood Pressure Measurements (0x2A35, indicated) as a cuff sends them: one per reading the
    patient takes, every ``every_s``. Diastolic follows at about 0.62 of systolic."""
    rng = random.Random(seed)
    pulse = pulse or constant(78.0)
    for t in _ticks(every_s, start_s, until_s):
        sbp = round(systolic.at(t) + rng.uniform(-noise_mmhg, noise_mmhg))
        dbp = round(sbp * 0.62)
        mean = round(dbp + (sbp - dbp) / 3)
        bpm = round(pulse.at(t))
        data = encode_blood_pressure(sbp, dbp, mean, pulse_rate=bpm)
        yield TimelineEvent(t, order, Emit(BLOOD_PRESSURE_MEASUREMENT, data, float(sbp)))


# ---------------------------------------------------------------------------------------------
# Wearables


@dataclass(frozen=True)
class SimWearable:
    """A scripted peripheral. ``timeline`` returns a fresh, deterministic event iterator."""

    address: str
    name: str
    # "heart_rate_strap" | "thermometer_patch" | "pulse_oximeter" | "blood_pressure_cuff"; the
    # last two are also the device-profile names to configure them with.
    kind: str
    services: tuple[ServiceSpec, ...]
    advertised_uuids: tuple[str, ...]
    timeline: Timeline
    appearance: int | None = None
    manufacturer_data: tuple[tuple[int, bytes], ...] = ()
    rssi: int = -62
    paired: bool = False
    battery_percent: int = 100

    def events(self) -> Iterator[TimelineEvent]:
        return self.timeline()

    def peripheral_spec(self) -> PeripheralSpec:
        return PeripheralSpec(
            address=self.address,
            name=self.name,
            services=self.services,
            advertised_uuids=self.advertised_uuids,
            appearance=self.appearance,
            manufacturer_data=self.manufacturer_data,
            rssi=self.rssi,
            paired=self.paired,
        )


def _battery_service(percent: int) -> ServiceSpec:
    return ServiceSpec(
        BATTERY_SERVICE, (CharacteristicSpec(BATTERY_LEVEL, ("read", "notify"), bytes([percent])),)
    )


def _device_info(manufacturer: str, model: str) -> ServiceSpec:
    return ServiceSpec(
        DEVICE_INFORMATION_SERVICE,
        (
            CharacteristicSpec(MANUFACTURER_NAME, ("read",), manufacturer.encode()),
            CharacteristicSpec(MODEL_NUMBER, ("read",), model.encode()),
        ),
    )


def heart_rate_strap(
    address: str,
    timeline: Timeline,
    *,
    name: str = "Polar H10 SIM",
    battery_percent: int = 100,
    paired: bool = False,
) -> SimWearable:
    """A chest strap shaped like a Polar H10: Heart Rate + Battery + Device Information."""
    services = (
        ServiceSpec(
            HEART_RATE_SERVICE,
            (
                CharacteristicSpec(HEART_RATE_MEASUREMENT, ("notify",)),
                CharacteristicSpec(BODY_SENSOR_LOCATION, ("read",), bytes([BODY_LOCATION_CHEST])),
            ),
        ),
        _battery_service(battery_percent),
        _device_info("Polar Electro Oy (simulated)", "H10"),
    )
    return SimWearable(
        address=address,
        name=name,
        kind="heart_rate_strap",
        services=services,
        advertised_uuids=(HEART_RATE_SERVICE,),
        timeline=timeline,
        appearance=0x0341,  # Heart Rate Sensor: Heart Rate Belt
        manufacturer_data=((0x006B, b"\x33\x1e\x33\x4a"),),  # Polar's company id; bytes arbitrary
        paired=paired,
        battery_percent=battery_percent,
    )


def thermometer_patch(
    address: str,
    timeline: Timeline,
    *,
    name: str = "TempPatch SIM",
    battery_percent: int = 100,
    measurement_interval_s: int = 30,
    paired: bool = False,
) -> SimWearable:
    """An axillary patch with the standard Health Thermometer service (0x2A1C indicated)."""
    services = (
        ServiceSpec(
            HEALTH_THERMOMETER_SERVICE,
            (
                CharacteristicSpec(TEMPERATURE_MEASUREMENT, ("indicate",)),
                CharacteristicSpec(TEMPERATURE_TYPE, ("read",), bytes([TEMPERATURE_TYPE_ARMPIT])),
                CharacteristicSpec(INTERMEDIATE_TEMPERATURE, ("notify",)),
                CharacteristicSpec(
                    MEASUREMENT_INTERVAL, ("read",), measurement_interval_s.to_bytes(2, "little")
                ),
            ),
        ),
        _battery_service(battery_percent),
        _device_info("CRS Hub simulator", "TempPatch"),
    )
    return SimWearable(
        address=address,
        name=name,
        kind="thermometer_patch",
        services=services,
        advertised_uuids=(HEALTH_THERMOMETER_SERVICE,),
        timeline=timeline,
        appearance=0x0303,  # Thermometer: Body
        paired=paired,
        battery_percent=battery_percent,
    )


def pulse_oximeter(
    address: str,
    timeline: Timeline,
    *,
    name: str = "PulseOx SIM",
    battery_percent: int = 100,
    paired: bool = False,
) -> SimWearable:
    """A finger oximeter on the standard PLX service: Continuous (notify), Spot-check
    (indicate) and PLX Features, plus Battery and Device Information."""
    services = (
        ServiceSpec(
            PULSE_OXIMETER_SERVICE,
            (
                CharacteristicSpec(PLX_CONTINUOUS, ("notify",)),
                CharacteristicSpec(PLX_SPOT_CHECK, ("indicate",)),
                CharacteristicSpec(PLX_FEATURES, ("read",), PLX_FEATURES_VALUE),
            ),
        ),
        _battery_service(battery_percent),
        _device_info("CRS Hub simulator", "PulseOx"),
    )
    return SimWearable(
        address=address,
        name=name,
        kind="pulse_oximeter",
        services=services,
        advertised_uuids=(PULSE_OXIMETER_SERVICE,),
        timeline=timeline,
        appearance=0x0C41,  # Pulse Oximeter: Fingertip
        paired=paired,
        battery_percent=battery_percent,
    )


def blood_pressure_cuff(
    address: str,
    timeline: Timeline,
    *,
    name: str = "BPCuff SIM",
    battery_percent: int = 100,
    paired: bool = True,
) -> SimWearable:
    """An upper-arm cuff on the standard Blood Pressure service (0x2A35 indicated). Paired by
    default: real cuffs must be bonded before they indicate (docs/protocols.md)."""
    services = (
        ServiceSpec(
            BLOOD_PRESSURE_SERVICE,
            (
                CharacteristicSpec(BLOOD_PRESSURE_MEASUREMENT, ("indicate",)),
                # Blood Pressure Feature: none of the optional detections supported.
                CharacteristicSpec(BLOOD_PRESSURE_FEATURE, ("read",), bytes(2)),
            ),
        ),
        _battery_service(battery_percent),
        _device_info("CRS Hub simulator", "BPCuff"),
    )
    return SimWearable(
        address=address,
        name=name,
        kind="blood_pressure_cuff",
        services=services,
        advertised_uuids=(BLOOD_PRESSURE_SERVICE,),
        timeline=timeline,
        appearance=0x0381,  # Blood Pressure: Arm
        paired=paired,
        battery_percent=battery_percent,
    )
