"""GATT characteristic bytes -> typed measurement, :class:`NoReading` or :class:`DecodeError`.

Layouts are the Bluetooth SIG ones summarised in ecosystem.md ("Standard GATT layouts"); all
multi-byte fields are little-endian. Three outcomes, never a guess:

* a measurement dataclass, when the payload holds a usable number;
* :class:`NoReading`, when the payload is well formed but says there is no valid value (an
  IEEE-11073 special value, "sensor contact not detected", a PLX invalid/questionable/unconnected
  bit or a PLX signal-quality bit such as low perfusion or an erratic signal, a heart rate of
  0). The reason is kept so the hub can raise a technical alarm;
* :class:`DecodeError`, when the payload is malformed (too short, trailing bytes, impossible date,
  out-of-range battery) or the characteristic is unknown.

Reserved-for-future-use flag bits are ignored, as the Bluetooth specs require of receivers. A
future flag that adds a field still fails loudly, as trailing bytes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TypeAlias, assert_never

from daemon.ieee11073 import SpecialValue, float_from_bytes, sfloat_from_bytes
from daemon.readings import UNITS, Reading, Vital

# --------------------------------------------------------------------------- UUIDs

_BASE_UUID_TAIL = "-0000-1000-8000-00805f9b34fb"
_SHORT_UUID = re.compile(r"(?:0x)?([0-9a-f]{4}|[0-9a-f]{8})")
_FULL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def normalize_uuid(s: str) -> str:
    """Return the lowercase 128-bit form of a 16/32-bit SIG short UUID or a full UUID.

    '2a37', '0x2A37' and '00002A37-0000-1000-8000-00805F9B34FB' all give
    '00002a37-0000-1000-8000-00805f9b34fb'. Raises ValueError for anything else.
    """
    text = s.strip().lower()
    if short := _SHORT_UUID.fullmatch(text):
        return f"{int(short.group(1), 16):08x}{_BASE_UUID_TAIL}"
    if _FULL_UUID.fullmatch(text):
        return text
    raise ValueError(f"not a Bluetooth UUID: {s!r}")


def _sig(short: int) -> str:
    return f"{short:08x}{_BASE_UUID_TAIL}"


CHARACTERISTICS: Mapping[str, str] = MappingProxyType(
    {
        "heart_rate_measurement": _sig(0x2A37),
        "temperature_measurement": _sig(0x2A1C),
        "intermediate_temperature": _sig(0x2A1E),
        "battery_level": _sig(0x2A19),
        "plx_spot_check": _sig(0x2A5E),
        "plx_continuous": _sig(0x2A5F),
        "blood_pressure_measurement": _sig(0x2A35),
    }
)
"""Short decoder name -> full characteristic UUID. Device profiles name decoders by these keys."""

CHARACTERISTIC_NAMES: Mapping[str, str] = MappingProxyType(
    {uuid: name for name, uuid in CHARACTERISTICS.items()}
)
"""Full characteristic UUID -> short decoder name."""

SERVICES: Mapping[str, str] = MappingProxyType(
    {
        "heart_rate": _sig(0x180D),
        "health_thermometer": _sig(0x1809),
        "battery": _sig(0x180F),
        "pulse_oximeter": _sig(0x1822),
        "blood_pressure": _sig(0x1810),
    }
)

VITALS_BY_CHARACTERISTIC: Mapping[str, frozenset[Vital]] = MappingProxyType(
    {
        "heart_rate_measurement": frozenset({Vital.HEART_RATE}),
        "temperature_measurement": frozenset({Vital.TEMPERATURE}),
        "intermediate_temperature": frozenset({Vital.TEMPERATURE}),
        "battery_level": frozenset({Vital.BATTERY}),
        "plx_spot_check": frozenset({Vital.SPO2, Vital.PULSE_RATE}),
        "plx_continuous": frozenset({Vital.SPO2, Vital.PULSE_RATE}),
        "blood_pressure_measurement": frozenset(
            {Vital.SYSTOLIC, Vital.DIASTOLIC, Vital.MEAN_ARTERIAL, Vital.PULSE_RATE}
        ),
    }
)
"""Which vitals :func:`to_readings` can produce from each characteristic."""


def characteristic_name(characteristic: str) -> str:
    """Resolve a short decoder name or any UUID form to the short name; ValueError if unknown."""
    if characteristic in CHARACTERISTICS:
        return characteristic
    # bleak hands over the lower-case 128-bit form: one dict lookup instead of two regexes.
    name = CHARACTERISTIC_NAMES.get(characteristic)
    if name is not None:
        return name
    try:
        uuid = normalize_uuid(characteristic)
    except ValueError:
        raise ValueError(f"unknown characteristic {characteristic!r}") from None
    try:
        return CHARACTERISTIC_NAMES[uuid]
    except KeyError:
        raise ValueError(f"unsupported characteristic {uuid}") from None


# --------------------------------------------------------------------------- results


class DecodeError(ValueError):
    """A malformed payload. ``str()`` is one line: ``"<characteristic>: <reason>"``."""

    def __init__(self, characteristic: str, reason: str) -> None:
        self.characteristic = characteristic
        self.reason = " ".join(reason.split())  # one line, whatever the caller passed
        super().__init__(f"{characteristic}: {self.reason}")

    def __reduce__(self) -> tuple[type[DecodeError], tuple[str, str]]:
        return (type(self), (self.characteristic, self.reason))


@dataclass(frozen=True, slots=True)
class HeartRateMeasurement:
    heart_rate_bpm: int
    sensor_contact: bool | None  # None: the sensor does not support contact detection
    energy_expended_kj: int | None = None
    rr_intervals_ms: tuple[float, ...] = ()

    @property
    def characteristic(self) -> str:
        return "heart_rate_measurement"


@dataclass(frozen=True, slots=True)
class TemperatureMeasurement:
    temperature_c: float
    temperature_type: str | None = None
    # The device's own wall clock, naive: it has no time zone and may drift.
    timestamp: datetime | None = None
    intermediate: bool = False  # True for 0x2A1E Intermediate Temperature

    @property
    def characteristic(self) -> str:
        return "intermediate_temperature" if self.intermediate else "temperature_measurement"


@dataclass(frozen=True, slots=True)
class BatteryLevel:
    battery_percent: int

    @property
    def characteristic(self) -> str:
        return "battery_level"


@dataclass(frozen=True, slots=True)
class PlxSpotCheck:
    spo2_percent: float
    pulse_rate_bpm: float
    timestamp: datetime | None = None  # None also when the device says its clock is not set
    measurement_status: int | None = None
    device_sensor_status: int | None = None
    pulse_amplitude_index: float | None = None

    @property
    def characteristic(self) -> str:
        return "plx_spot_check"


@dataclass(frozen=True, slots=True)
class PlxContinuous:
    spo2_percent: float
    pulse_rate_bpm: float
    spo2_fast_percent: float | None = None
    pulse_rate_fast_bpm: float | None = None
    spo2_slow_percent: float | None = None
    pulse_rate_slow_bpm: float | None = None
    measurement_status: int | None = None
    device_sensor_status: int | None = None
    pulse_amplitude_index: float | None = None

    @property
    def characteristic(self) -> str:
        return "plx_continuous"


@dataclass(frozen=True, slots=True)
class BloodPressureMeasurement:
    systolic_mmhg: float
    diastolic_mmhg: float
    mean_arterial_mmhg: float | None  # cuffs that do not compute MAP send NaN
    pulse_rate_bpm: float | None = None
    timestamp: datetime | None = None
    user_id: int | None = None
    measurement_status: int | None = None

    @property
    def characteristic(self) -> str:
        return "blood_pressure_measurement"


Measurement: TypeAlias = (
    HeartRateMeasurement
    | TemperatureMeasurement
    | BatteryLevel
    | PlxSpotCheck
    | PlxContinuous
    | BloodPressureMeasurement
)


@dataclass(frozen=True, slots=True)
class NoReading:
    """A well-formed payload that carries no usable value.

    ``contact_lost`` is True when the device says the sensor is off the patient (heart-rate
    contact not detected, PLX sensor unconnected to user or displaced): the patient can fix that.
    ``fields`` holds whatever was decoded, already JSON-ready, for display only.
    """

    characteristic: str
    reason: str
    contact_lost: bool = False
    fields: dict[str, object] = field(default_factory=dict)


# --------------------------------------------------------------------------- byte reader


class _Reader:
    """Sequential little-endian reader. Callers check the length first; the guard here keeps
    any slip a DecodeError rather than an IndexError."""

    def __init__(self, characteristic: str, data: bytes) -> None:
        self.characteristic = characteristic
        self.data = data
        self.pos = 0

    def _take(self, size: int) -> bytes:
        if self.pos + size > len(self.data):
            raise _too_short(self.characteristic, len(self.data), self.pos + size)
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def uint(self, size: int) -> int:
        return int.from_bytes(self._take(size), "little")

    def sfloat(self) -> float | SpecialValue:
        return sfloat_from_bytes(self._take(2))

    def float32(self) -> float | SpecialValue:
        return float_from_bytes(self._take(4))

    def timestamp(self) -> datetime | None:
        """Bluetooth Date Time (7 bytes). Year, month or day 0 mean "not known" -> None."""
        year, month, day = self.uint(2), self.uint(1), self.uint(1)
        hour, minute, second = self.uint(1), self.uint(1), self.uint(1)
        text = f"{year:04d}-{month:02d}-{day:02d} {hour:02d}:{minute:02d}:{second:02d}"
        if (
            (year != 0 and not 1582 <= year <= 9999)
            or month > 12
            or day > 31
            or hour > 23
            or minute > 59
            or second > 59
        ):
            raise DecodeError(self.characteristic, f"invalid timestamp {text}")
        if year == 0 or month == 0 or day == 0:
            return None
        try:
            return datetime(year, month, day, hour, minute, second)
        except ValueError:  # e.g. 30 February
            raise DecodeError(self.characteristic, f"invalid timestamp {text}") from None

    def finish(self) -> None:
        extra = len(self.data) - self.pos
        if extra:
            raise DecodeError(
                self.characteristic,
                f"{extra} trailing byte{_s(extra)}: payload is {len(self.data)} bytes, "
                f"flags describe {self.pos}",
            )


def _s(n: int) -> str:
    return "" if n == 1 else "s"


def _too_short(characteristic: str, have: int, need: int) -> DecodeError:
    return DecodeError(
        characteristic, f"payload too short: {have} byte{_s(have)}, need at least {need}"
    )


def _require(characteristic: str, data: bytes, need: int) -> None:
    if len(data) < need:
        raise _too_short(characteristic, len(data), need)


def _json(value: object) -> object:
    if isinstance(value, SpecialValue):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple):
        return [_json(v) for v in value]
    return value


def _fields(**values: object) -> dict[str, object]:
    return {k: _json(v) for k, v in values.items() if v is not None and v != ()}


def _number(value: float | SpecialValue) -> float | None:
    return None if isinstance(value, SpecialValue) else value


def _special_reason(label: str, value: float | SpecialValue) -> str | None:
    if isinstance(value, SpecialValue):
        return f"{label} is {value.value} (IEEE-11073 special value), not a number"
    return None


# --------------------------------------------------------------------------- heart rate

_HR = "heart_rate_measurement"


def _decode_heart_rate(data: bytes) -> HeartRateMeasurement | NoReading:
    _require(_HR, data, 1)
    flags = data[0]
    uint16 = bool(flags & 0x01)
    contact_bits = (flags >> 1) & 0x03
    has_energy = bool(flags & 0x08)
    has_rr = bool(flags & 0x10)
    _require(_HR, data, 1 + (2 if uint16 else 1) + 2 * has_energy + 2 * has_rr)

    r = _Reader(_HR, data)
    r.pos = 1
    bpm = r.uint(2 if uint16 else 1)
    energy = r.uint(2) if has_energy else None
    rr: tuple[float, ...] = ()
    if has_rr:
        rest = len(data) - r.pos
        if rest % 2:
            raise DecodeError(_HR, f"RR intervals are 16-bit, but {rest} bytes remain (odd)")
        # RR is in 1/1024 s.
        rr = tuple(r.uint(2) * 1000 / 1024 for _ in range(rest // 2))
    r.finish()

    # Contact bits: 0 and 1 = feature unsupported, 2 = not detected, 3 = detected.
    contact = None if contact_bits < 2 else contact_bits == 3
    if contact is False or bpm == 0:
        shown = _fields(
            heart_rate_bpm=bpm, sensor_contact=contact, energy_expended_kj=energy,
            rr_intervals_ms=rr,
        )
        if contact is False:
            return NoReading(_HR, "sensor contact not detected", contact_lost=True, fields=shown)
        return NoReading(_HR, "no heart rate: sensor reports 0", fields=shown)
    return HeartRateMeasurement(bpm, contact, energy, rr)


# --------------------------------------------------------------------------- temperature

TEMPERATURE_TYPES: Mapping[int, str] = MappingProxyType(
    {
        1: "armpit",
        2: "body",
        3: "ear",
        4: "finger",
        5: "gastrointestinal",
        6: "mouth",
        7: "rectum",
        8: "toe",
        9: "tympanum",
    }
)


def fahrenheit_to_celsius(fahrenheit: float) -> float:
    # °F -> °C gives repeating decimals; 0.0001 °C is far below any thermometer's resolution.
    return round((fahrenheit - 32.0) * 5.0 / 9.0, 4)


def _decode_temperature(data: bytes, intermediate: bool) -> TemperatureMeasurement | NoReading:
    name = "intermediate_temperature" if intermediate else "temperature_measurement"
    _require(name, data, 5)
    flags = data[0]
    fahrenheit = bool(flags & 0x01)
    has_time = bool(flags & 0x02)
    has_type = bool(flags & 0x04)
    _require(name, data, 5 + 7 * has_time + has_type)

    r = _Reader(name, data)
    r.pos = 1
    value = r.float32()
    timestamp = r.timestamp() if has_time else None
    # Reserved type codes (0, 10-255) do not invalidate the temperature; the site offset comes
    # from the device profile, not from this field.
    temperature_type = TEMPERATURE_TYPES.get(r.uint(1)) if has_type else None
    r.finish()

    if isinstance(value, SpecialValue):
        shown = _fields(
            temperature=value,
            unit="°F" if fahrenheit else "°C",
            temperature_type=temperature_type,
            timestamp=timestamp,
            intermediate=intermediate,
        )
        reason = f"temperature is {value.value} (IEEE-11073 special value), not a number"
        return NoReading(name, reason, fields=shown)
    celsius = fahrenheit_to_celsius(value) if fahrenheit else value
    return TemperatureMeasurement(celsius, temperature_type, timestamp, intermediate)


# --------------------------------------------------------------------------- battery

_BATTERY = "battery_level"


def _decode_battery(data: bytes) -> BatteryLevel:
    _require(_BATTERY, data, 1)
    r = _Reader(_BATTERY, data)
    percent = r.uint(1)
    r.finish()
    if percent > 100:
        raise DecodeError(_BATTERY, f"battery level {percent} % is above 100 (reserved)")
    return BatteryLevel(percent)


# --------------------------------------------------------------------------- pulse oximeter

# PLX Measurement Status bits that mean "this is not a current, valid patient value".
_MEASUREMENT_STATUS_NO_READING: Mapping[int, str] = MappingProxyType(
    {
        15: "invalid measurement detected",
        14: "questionable measurement detected",
        13: "measurement unavailable",
        12: "calibration ongoing",
        11: "data for testing",
        10: "data for demonstration",
        # Stored records are replayed later; received time would misdate them.
        9: "data replayed from measurement storage",
    }
)
# PLX Device and Sensor Status bits: sensor off the patient (the patient can fix it) ...
_SENSOR_CONTACT_LOST: Mapping[int, str] = MappingProxyType(
    {11: "sensor unconnected to user", 13: "sensor displaced"}
)
# ... device faults that void the value ...
_SENSOR_NO_READING: Mapping[int, str] = MappingProxyType(
    {
        15: "sensor disconnected",
        14: "sensor malfunctioning",
        12: "unknown sensor connected",
        1: "equipment malfunction detected",
    }
)
# ... and signal-quality flags. Motion and low perfusion are the classic causes of a falsely low
# SpO2; PLX has no "motion" bit, the oximeter reports motion as an erratic, poor or irregular
# signal or as interference. An emergency rule on SpO2 < 90 % must not fire on these (issue 13),
# so they void the value too. Bits 0 (display update) and 9 (analysis ongoing) are informational.
_SIGNAL_NO_READING: Mapping[int, str] = MappingProxyType(
    {
        10: "sensor interference detected",
        8: "questionable pulse detected",
        7: "nonpulsatile signal detected",
        6: "erratic signal detected",
        5: "low perfusion detected",
        4: "poor signal detected",
        3: "inadequate signal detected",
        2: "signal processing irregularity detected",
    }
)


def _bit_reasons(status: int | None, table: Mapping[int, str]) -> list[str]:
    if status is None:
        return []
    return [reason for bit, reason in table.items() if status >> bit & 1]


def _plx_verdict(
    name: str,
    values: dict[str, float | SpecialValue],
    measurement_status: int | None,
    device_sensor_status: int | None,
    shown: dict[str, object],
) -> NoReading | None:
    contact = _bit_reasons(device_sensor_status, _SENSOR_CONTACT_LOST)
    reasons = [
        *contact,
        *_bit_reasons(device_sensor_status, _SENSOR_NO_READING),
        *_bit_reasons(device_sensor_status, _SIGNAL_NO_READING),
        *_bit_reasons(measurement_status, _MEASUREMENT_STATUS_NO_READING),
        *(why for label, v in values.items() if (why := _special_reason(label, v))),
    ]
    if not reasons:
        return None
    return NoReading(name, "; ".join(reasons), contact_lost=bool(contact), fields=shown)


_SPOT = "plx_spot_check"
_CONT = "plx_continuous"


def _decode_plx_spot_check(data: bytes) -> PlxSpotCheck | NoReading:
    _require(_SPOT, data, 5)
    flags = data[0]
    has_time = bool(flags & 0x01)
    has_status = bool(flags & 0x02)
    has_sensor = bool(flags & 0x04)
    has_pai = bool(flags & 0x08)
    clock_not_set = bool(flags & 0x10)
    _require(_SPOT, data, 5 + 7 * has_time + 2 * has_status + 3 * has_sensor + 2 * has_pai)

    r = _Reader(_SPOT, data)
    r.pos = 1
    spo2, pulse = r.sfloat(), r.sfloat()
    timestamp = r.timestamp() if has_time else None
    if clock_not_set:
        timestamp = None  # the device says its clock is not set: the time means nothing
    status = r.uint(2) if has_status else None
    sensor = r.uint(3) if has_sensor else None
    pai = r.sfloat() if has_pai else None
    r.finish()

    shown = _fields(
        spo2_percent=spo2,
        pulse_rate_bpm=pulse,
        timestamp=timestamp,
        measurement_status=status,
        device_sensor_status=sensor,
        pulse_amplitude_index=pai,
    )
    verdict = _plx_verdict(_SPOT, {"SpO2": spo2, "pulse rate": pulse}, status, sensor, shown)
    if verdict is not None:
        return verdict
    assert not isinstance(spo2, SpecialValue) and not isinstance(pulse, SpecialValue)
    return PlxSpotCheck(
        spo2, pulse, timestamp, status, sensor, None if pai is None else _number(pai)
    )


def _decode_plx_continuous(data: bytes) -> PlxContinuous | NoReading:
    _require(_CONT, data, 5)
    flags = data[0]
    has_fast = bool(flags & 0x01)
    has_slow = bool(flags & 0x02)
    has_status = bool(flags & 0x04)
    has_sensor = bool(flags & 0x08)
    has_pai = bool(flags & 0x10)
    _require(
        _CONT,
        data,
        5 + 4 * has_fast + 4 * has_slow + 2 * has_status + 3 * has_sensor + 2 * has_pai,
    )

    r = _Reader(_CONT, data)
    r.pos = 1
    spo2, pulse = r.sfloat(), r.sfloat()
    fast = (r.sfloat(), r.sfloat()) if has_fast else (None, None)
    slow = (r.sfloat(), r.sfloat()) if has_slow else (None, None)
    status = r.uint(2) if has_status else None
    sensor = r.uint(3) if has_sensor else None
    pai = r.sfloat() if has_pai else None
    r.finish()

    shown = _fields(
        spo2_percent=spo2,
        pulse_rate_bpm=pulse,
        spo2_fast_percent=fast[0],
        pulse_rate_fast_bpm=fast[1],
        spo2_slow_percent=slow[0],
        pulse_rate_slow_bpm=slow[1],
        measurement_status=status,
        device_sensor_status=sensor,
        pulse_amplitude_index=pai,
    )
    verdict = _plx_verdict(_CONT, {"SpO2": spo2, "pulse rate": pulse}, status, sensor, shown)
    if verdict is not None:
        return verdict
    assert not isinstance(spo2, SpecialValue) and not isinstance(pulse, SpecialValue)

    def optional(v: float | SpecialValue | None) -> float | None:
        # The fast/slow averages and PAI are secondary: a special value there drops only them.
        return None if v is None else _number(v)

    return PlxContinuous(
        spo2,
        pulse,
        optional(fast[0]),
        optional(fast[1]),
        optional(slow[0]),
        optional(slow[1]),
        status,
        sensor,
        optional(pai),
    )


# --------------------------------------------------------------------------- blood pressure

_BP = "blood_pressure_measurement"
MMHG_PER_KPA = 7.50062


def _decode_blood_pressure(data: bytes) -> BloodPressureMeasurement | NoReading:
    _require(_BP, data, 7)
    flags = data[0]
    kpa = bool(flags & 0x01)
    has_time = bool(flags & 0x02)
    has_pulse = bool(flags & 0x04)
    has_user = bool(flags & 0x08)
    has_status = bool(flags & 0x10)
    _require(_BP, data, 7 + 7 * has_time + 2 * has_pulse + has_user + 2 * has_status)

    r = _Reader(_BP, data)
    r.pos = 1
    systolic, diastolic, mean_arterial = r.sfloat(), r.sfloat(), r.sfloat()
    timestamp = r.timestamp() if has_time else None
    pulse = r.sfloat() if has_pulse else None
    user = r.uint(1) if has_user else None
    status = r.uint(2) if has_status else None
    r.finish()

    def mmhg(v: float | SpecialValue | None) -> float | None:
        if v is None or isinstance(v, SpecialValue):
            return None
        return round(v * MMHG_PER_KPA, 2) if kpa else v

    reasons = [
        why
        for label, v in (("systolic", systolic), ("diastolic", diastolic))
        if (why := _special_reason(label, v))
    ]
    if reasons:
        shown = _fields(
            systolic=systolic,
            diastolic=diastolic,
            mean_arterial=mean_arterial,
            unit="kPa" if kpa else "mmHg",
            pulse_rate_bpm=pulse,
            timestamp=timestamp,
            user_id=user,
            measurement_status=status,
        )
        return NoReading(_BP, "; ".join(reasons), fields=shown)
    sys_mmhg, dia_mmhg = mmhg(systolic), mmhg(diastolic)
    assert sys_mmhg is not None and dia_mmhg is not None
    return BloodPressureMeasurement(
        sys_mmhg,
        dia_mmhg,
        mmhg(mean_arterial),  # MAP may legitimately be NaN: the cuff did not compute it
        None if pulse is None else _number(pulse),
        timestamp,
        None if user == 0xFF else user,  # 0xFF = unknown user
        status,
    )


# --------------------------------------------------------------------------- public API

_DECODERS: Mapping[str, Callable[[bytes], Measurement | NoReading]] = MappingProxyType(
    {
        "heart_rate_measurement": _decode_heart_rate,
        "temperature_measurement": lambda d: _decode_temperature(d, intermediate=False),
        "intermediate_temperature": lambda d: _decode_temperature(d, intermediate=True),
        "battery_level": _decode_battery,
        "plx_spot_check": _decode_plx_spot_check,
        "plx_continuous": _decode_plx_continuous,
        "blood_pressure_measurement": _decode_blood_pressure,
    }
)


def decode(characteristic: str, data: bytes | bytearray | memoryview) -> Measurement | NoReading:
    """Decode one notification/indication/read value.

    ``characteristic`` is a short decoder name (see :data:`CHARACTERISTICS`) or the UUID in any
    form :func:`normalize_uuid` accepts. Raises :class:`DecodeError` for malformed payloads and
    unknown characteristics, and nothing else.
    """
    try:
        name = characteristic_name(characteristic)
    except ValueError as exc:
        raise DecodeError(characteristic, str(exc)) from None
    return _DECODERS[name](bytes(data))


def describe(result: Measurement | NoReading) -> dict[str, object]:
    """JSON-ready dict for ``crs-hub decode``: field names carry their units; None is omitted."""
    if isinstance(result, NoReading):
        return {
            "characteristic": result.characteristic,
            "no_reading": True,
            "reason": result.reason,
            "contact_lost": result.contact_lost,
            "fields": dict(result.fields),
        }
    values = {f.name: getattr(result, f.name) for f in fields(result)}
    return {"characteristic": result.characteristic, **_fields(**values)}


# Values outside these closed ranges are sensor artefacts, not physiology, and are dropped.
# Temperature is after the site offset. The other ranges are deliberately wide: a real extreme
# value must not be discarded, only impossible ones.
PLAUSIBLE_RANGES: Mapping[Vital, tuple[float, float]] = MappingProxyType(
    {
        Vital.TEMPERATURE: (25.0, 45.0),
        Vital.HEART_RATE: (20.0, 300.0),
        Vital.PULSE_RATE: (20.0, 300.0),
        Vital.SPO2: (1.0, 100.0),
        Vital.SYSTOLIC: (30.0, 300.0),
        Vital.DIASTOLIC: (10.0, 250.0),
        Vital.MEAN_ARTERIAL: (20.0, 300.0),
        Vital.BATTERY: (0.0, 100.0),
    }
)


def plausibility(vital: Vital, value: float) -> str | None:
    """Why ``value`` cannot be a real ``vital``, or None if it is plausible."""
    low, high = PLAUSIBLE_RANGES[vital]
    if low <= value <= high:  # also False for NaN
        return None
    unit = UNITS[vital]
    return f"{vital.value} {value:g} {unit} is outside the plausible {low:g}-{high:g} {unit}"


def to_readings(
    result: Measurement,
    device: str,
    received_at: datetime,
    temperature_offset_c: float = 0.0,
) -> list[Reading]:
    """Turn a decoded measurement into :class:`Reading` values for the rules.

    ``received_at`` (timezone-aware) is the hub's receive time and becomes ``observed_at``:
    device clocks are set by hand or not at all and drift, so their timestamps cannot be
    compared with the hub's clock or with other devices. ``temperature_offset_c`` (the site
    offset to core temperature) is added to temperatures. Values that fail
    :func:`plausibility` are left out, so the list may be shorter than usual or empty.
    """
    if received_at.tzinfo is None or received_at.utcoffset() is None:
        raise ValueError("received_at must be timezone-aware")
    at = received_at.astimezone(UTC)
    contact: bool | None = None
    values: list[tuple[Vital, float | None]]
    match result:
        case HeartRateMeasurement():
            values = [(Vital.HEART_RATE, result.heart_rate_bpm)]
            contact = result.sensor_contact
        case TemperatureMeasurement():
            values = [(Vital.TEMPERATURE, result.temperature_c + temperature_offset_c)]
        case BatteryLevel():
            values = [(Vital.BATTERY, result.battery_percent)]
        case PlxSpotCheck() | PlxContinuous():
            values = [(Vital.SPO2, result.spo2_percent), (Vital.PULSE_RATE, result.pulse_rate_bpm)]
        case BloodPressureMeasurement():
            values = [
                (Vital.SYSTOLIC, result.systolic_mmhg),
                (Vital.DIASTOLIC, result.diastolic_mmhg),
                (Vital.MEAN_ARTERIAL, result.mean_arterial_mmhg),
                (Vital.PULSE_RATE, result.pulse_rate_bpm),
            ]
        case _:
            assert_never(result)
    return [
        Reading(device, vital, float(value), at, contact)
        for vital, value in values
        if value is not None and plausibility(vital, value) is None
    ]
