"""Typed values -> GATT characteristic bytes: the inverse of :mod:`daemon.decoding`.

The Bluetooth simulator and the tests use these to build payloads. Encoders take the same units
the decoders produce (°C, mmHg, milliseconds) and convert to the wire unit when asked to
(``fahrenheit=True``, ``kpa=True``). Values that cannot be represented raise ValueError rather
than being clipped, so a test can never send something other than what it meant.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from daemon.decoding import MMHG_PER_KPA, TEMPERATURE_TYPES
from daemon.ieee11073 import SpecialValue, float_to_bytes, sfloat_to_bytes

_TYPE_CODES = {name: code for code, name in TEMPERATURE_TYPES.items()}


def _uint(value: int, size: int, what: str) -> bytes:
    if not 0 <= value < 1 << (8 * size):
        raise ValueError(f"{what} {value} does not fit in {8 * size} bits")
    return value.to_bytes(size, "little")


def encode_timestamp(timestamp: datetime) -> bytes:
    """Bluetooth Date Time (7 bytes). The wall-clock fields are sent as they are: the device clock
    has no time zone, so any tzinfo is ignored."""
    if timestamp.year < 1582:
        raise ValueError(f"year {timestamp.year} is before 1582, not valid in a Date Time")
    return _uint(timestamp.year, 2, "year") + bytes(
        [timestamp.month, timestamp.day, timestamp.hour, timestamp.minute, timestamp.second]
    )


def encode_heart_rate(
    bpm: int,
    *,
    contact: bool | None = True,
    energy_expended_kj: int | None = None,
    rr_intervals_ms: Sequence[float] = (),
    uint16: bool = False,
) -> bytes:
    """Heart Rate Measurement (0x2A37).

    ``contact``: True = detected, False = not detected, None = contact feature unsupported.
    RR intervals are rounded to the wire's 1/1024 s resolution.
    """
    flags = 0x01 if uint16 else 0x00
    if contact is not None:
        flags |= 0x06 if contact else 0x04
    body = _uint(bpm, 2 if uint16 else 1, "heart rate (use uint16=True above 255)")
    if energy_expended_kj is not None:
        flags |= 0x08
        body += _uint(energy_expended_kj, 2, "energy expended")
    if rr_intervals_ms:
        flags |= 0x10
        for ms in rr_intervals_ms:
            body += _uint(round(ms * 1024 / 1000), 2, "RR interval (1/1024 s)")
    return bytes([flags]) + body


def _temperature_type_code(temperature_type: str | int) -> int:
    if isinstance(temperature_type, int):
        return _uint(temperature_type, 1, "temperature type")[0]
    try:
        return _TYPE_CODES[temperature_type]
    except KeyError:
        known = ", ".join(_TYPE_CODES)
        raise ValueError(f"unknown temperature type {temperature_type!r} ({known})") from None


def encode_temperature(
    celsius: float,
    *,
    fahrenheit: bool = False,
    timestamp: datetime | None = None,
    temperature_type: str | int | None = None,
    exponent: int = -2,
    special: SpecialValue | None = None,
) -> bytes:
    """Temperature Measurement (0x2A1C) or Intermediate Temperature (0x2A1E): same layout.

    ``celsius`` is sent in °F when ``fahrenheit`` is set, rounded to ``10**exponent``.
    ``special`` replaces the value with an IEEE-11073 special value. ``temperature_type`` is a
    name from :data:`daemon.decoding.TEMPERATURE_TYPES` or its raw code.
    """
    flags = 0x01 if fahrenheit else 0x00
    value: float | SpecialValue
    if special is not None:
        value = special
    else:
        value = celsius * 9.0 / 5.0 + 32.0 if fahrenheit else celsius
    body = float_to_bytes(value, exponent)
    if timestamp is not None:
        flags |= 0x02
        body += encode_timestamp(timestamp)
    if temperature_type is not None:
        flags |= 0x04
        body += bytes([_temperature_type_code(temperature_type)])
    return bytes([flags]) + body


def encode_battery(percent: int) -> bytes:
    """Battery Level (0x2A19): one byte, 0-100 %."""
    if not 0 <= percent <= 100:
        raise ValueError(f"battery level {percent} % is outside 0-100")
    return bytes([percent])


def encode_plx_spot_check(
    spo2: float | SpecialValue,
    pulse_rate: float | SpecialValue,
    *,
    timestamp: datetime | None = None,
    status_flags: int | None = None,
    device_sensor_status: int | None = None,
    pulse_amplitude_index: float | SpecialValue | None = None,
    clock_not_set: bool = False,
    exponent: int = 0,
) -> bytes:
    """PLX Spot-check Measurement (0x2A5E). ``status_flags`` is the 16-bit Measurement Status,
    ``device_sensor_status`` the 24-bit Device and Sensor Status."""
    flags = 0x10 if clock_not_set else 0x00
    body = sfloat_to_bytes(spo2, exponent) + sfloat_to_bytes(pulse_rate, exponent)
    if timestamp is not None:
        flags |= 0x01
        body += encode_timestamp(timestamp)
    if status_flags is not None:
        flags |= 0x02
        body += _uint(status_flags, 2, "measurement status")
    if device_sensor_status is not None:
        flags |= 0x04
        body += _uint(device_sensor_status, 3, "device and sensor status")
    if pulse_amplitude_index is not None:
        flags |= 0x08
        body += sfloat_to_bytes(pulse_amplitude_index, -1)
    return bytes([flags]) + body


def encode_plx_continuous(
    spo2: float | SpecialValue,
    pulse_rate: float | SpecialValue,
    *,
    status_flags: int | None = None,
    device_sensor_status: int | None = None,
    fast: tuple[float | SpecialValue, float | SpecialValue] | None = None,
    slow: tuple[float | SpecialValue, float | SpecialValue] | None = None,
    pulse_amplitude_index: float | SpecialValue | None = None,
    exponent: int = 0,
) -> bytes:
    """PLX Continuous Measurement (0x2A5F). ``fast``/``slow`` are (SpO2, pulse rate) pairs;
    ``status_flags`` is the 16-bit Measurement Status."""
    flags = 0x00
    body = sfloat_to_bytes(spo2, exponent) + sfloat_to_bytes(pulse_rate, exponent)
    if fast is not None:
        flags |= 0x01
        body += sfloat_to_bytes(fast[0], exponent) + sfloat_to_bytes(fast[1], exponent)
    if slow is not None:
        flags |= 0x02
        body += sfloat_to_bytes(slow[0], exponent) + sfloat_to_bytes(slow[1], exponent)
    if status_flags is not None:
        flags |= 0x04
        body += _uint(status_flags, 2, "measurement status")
    if device_sensor_status is not None:
        flags |= 0x08
        body += _uint(device_sensor_status, 3, "device and sensor status")
    if pulse_amplitude_index is not None:
        flags |= 0x10
        body += sfloat_to_bytes(pulse_amplitude_index, -1)
    return bytes([flags]) + body


def encode_blood_pressure(
    systolic: float | SpecialValue,
    diastolic: float | SpecialValue,
    mean_arterial: float | SpecialValue | None,
    *,
    pulse_rate: float | SpecialValue | None = None,
    timestamp: datetime | None = None,
    kpa: bool = False,
    user_id: int | None = None,
    measurement_status: int | None = None,
    exponent: int | None = None,
) -> bytes:
    """Blood Pressure Measurement (0x2A35). Pressures are given in mmHg; ``kpa=True`` sends them
    in kPa (0.1 kPa resolution unless ``exponent`` says otherwise). A None mean arterial pressure
    is sent as NaN, as the spec asks of cuffs that do not compute it."""
    flags = 0x01 if kpa else 0x00
    if exponent is None:
        exponent = -1 if kpa else 0

    def pressure(v: float | SpecialValue | None) -> bytes:
        if v is None:
            v = SpecialValue.NAN
        elif kpa and not isinstance(v, SpecialValue):
            v = v / MMHG_PER_KPA
        return sfloat_to_bytes(v, exponent)

    body = pressure(systolic) + pressure(diastolic) + pressure(mean_arterial)
    if timestamp is not None:
        flags |= 0x02
        body += encode_timestamp(timestamp)
    if pulse_rate is not None:
        flags |= 0x04
        body += sfloat_to_bytes(pulse_rate, 0)
    if user_id is not None:
        flags |= 0x08
        body += _uint(user_id, 1, "user id")
    if measurement_status is not None:
        flags |= 0x10
        body += _uint(measurement_status, 2, "measurement status")
    return bytes([flags]) + body
