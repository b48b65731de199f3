"""Encoders: hand-written golden bytes, then encode -> decode round-trips for every encoder."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.decoding import (
    TEMPERATURE_TYPES,
    BatteryLevel,
    BloodPressureMeasurement,
    DecodeError,
    HeartRateMeasurement,
    NoReading,
    PlxContinuous,
    PlxSpotCheck,
    TemperatureMeasurement,
    decode,
)
from daemon.encoding import (
    encode_battery,
    encode_blood_pressure,
    encode_heart_rate,
    encode_plx_continuous,
    encode_plx_spot_check,
    encode_temperature,
)
from daemon.ieee11073 import SpecialValue

TS = datetime(2024, 3, 15, 8, 30, 5)

# PLX status bits that turn a value into NoReading (see decoding.py).
MEASUREMENT_STATUS_VOID = 0xFE00  # bits 9-15
# Device faults (1, 11-15) and signal quality (2-8, 10); bits 0 and 9 are informational.
SENSOR_STATUS_VOID = sum(1 << b for b in (1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15))

timestamps = st.datetimes(min_value=datetime(1582, 1, 1), max_value=datetime(9999, 12, 31)).map(
    lambda t: t.replace(microsecond=0)
)


# --------------------------------------------------------------------------- golden bytes


def test_heart_rate_golden_bytes() -> None:
    assert encode_heart_rate(72) == bytes.fromhex("0648")  # contact detected, 72 bpm
    assert encode_heart_rate(72, contact=False) == bytes.fromhex("0448")
    assert encode_heart_rate(72, contact=None) == bytes.fromhex("0048")
    assert encode_heart_rate(
        140, uint16=True, energy_expended_kj=291, rr_intervals_ms=(1000, 500)
    ) == bytes.fromhex("1f 8c00 2301 0004 0002".replace(" ", ""))


def test_temperature_golden_bytes() -> None:
    # °F + timestamp + type; 37.0 °C = 98.6 °F = 986 × 10^-1; 2024-03-15 08:30:05; armpit
    assert encode_temperature(
        37.0, fahrenheit=True, timestamp=TS, temperature_type="armpit", exponent=-1
    ) == bytes.fromhex("07 da0300ff e807030f081e05 01".replace(" ", ""))
    assert encode_temperature(37.25) == bytes.fromhex("008d0e00fe")
    assert encode_temperature(0, special=SpecialValue.NAN) == bytes.fromhex("00ffff7f00")


def test_temperature_type_accepts_raw_code() -> None:
    # The simulator passes the spec's numeric code.
    assert encode_temperature(36.6, temperature_type=1) == encode_temperature(
        36.6, temperature_type="armpit"
    )


def test_battery_golden_bytes() -> None:
    assert encode_battery(85) == b"\x55"


def test_plx_golden_bytes() -> None:
    assert encode_plx_continuous(97, 72) == bytes.fromhex("0061004800")
    assert encode_plx_continuous(97, 72, status_flags=0x8000) == bytes.fromhex("04610048000080")
    assert encode_plx_spot_check(98, 65, timestamp=TS) == bytes.fromhex(
        "01 6200 4100 e807030f081e05".replace(" ", "")
    )


def test_blood_pressure_golden_bytes() -> None:
    assert encode_blood_pressure(120, 80, 93, pulse_rate=72) == bytes.fromhex(
        "04 7800 5000 5d00 4800".replace(" ", "")
    )
    # kPa: 120 mmHg = 16.0 kPa (a0f0), 80 mmHg = 10.7 kPa (6bf0), 93 mmHg = 12.4 kPa (7cf0)
    assert encode_blood_pressure(120, 80, 93, kpa=True) == bytes.fromhex("01a0f06bf07cf0")
    # No MAP: NaN, as the spec asks
    assert encode_blood_pressure(120, 80, None) == bytes.fromhex("0078005000ff07")


@pytest.mark.parametrize(
    "call",
    [
        lambda: encode_battery(101),
        lambda: encode_battery(-1),
        lambda: encode_heart_rate(256),
        lambda: encode_heart_rate(70, energy_expended_kj=70_000),
        lambda: encode_heart_rate(70, rr_intervals_ms=(70_000,)),
        lambda: encode_temperature(37, temperature_type="elbow"),
        lambda: encode_temperature(37, timestamp=datetime(1500, 1, 1)),
        lambda: encode_plx_continuous(97, 72, status_flags=0x10000),
        lambda: encode_blood_pressure(3000, 80, 90),
    ],
)
def test_unencodable_values_raise_value_error(call: object) -> None:
    assert callable(call)
    with pytest.raises(ValueError):
        call()


# --------------------------------------------------------------------------- round trips


@settings(max_examples=300)
@given(
    st.booleans(),
    st.data(),
    st.sampled_from([True, False, None]),
    st.none() | st.integers(0, 0xFFFF),
    st.lists(st.integers(0, 0xFFFF), max_size=8),
)
def test_heart_rate_round_trip(
    uint16: bool,
    data: st.DataObject,
    contact: bool | None,
    energy: int | None,
    rr_units: list[int],
) -> None:
    bpm = data.draw(st.integers(0, 0xFFFF if uint16 else 0xFF))
    rr_ms = tuple(u * 1000 / 1024 for u in rr_units)
    payload = encode_heart_rate(
        bpm, contact=contact, energy_expended_kj=energy, rr_intervals_ms=rr_ms, uint16=uint16
    )
    result = decode("heart_rate_measurement", payload)
    if contact is False:
        assert isinstance(result, NoReading) and result.contact_lost
    elif bpm == 0:
        assert isinstance(result, NoReading) and not result.contact_lost
    else:
        assert result == HeartRateMeasurement(bpm, contact, energy, rr_ms)


@settings(max_examples=300)
@given(
    st.integers(-5000, 5000),
    st.none() | timestamps,
    st.none() | st.sampled_from(sorted(TEMPERATURE_TYPES.values())),
    st.sampled_from(["temperature_measurement", "intermediate_temperature"]),
)
def test_temperature_celsius_round_trip(
    centi: int, timestamp: datetime | None, kind: str | None, characteristic: str
) -> None:
    celsius = centi / 100
    payload = encode_temperature(celsius, timestamp=timestamp, temperature_type=kind)
    assert decode(characteristic, payload) == TemperatureMeasurement(
        celsius, kind, timestamp, intermediate=characteristic == "intermediate_temperature"
    )


@settings(max_examples=300)
@given(st.integers(2000, 4500))
def test_temperature_fahrenheit_round_trip(centi: int) -> None:
    celsius = centi / 100
    result = decode("2a1c", encode_temperature(celsius, fahrenheit=True))
    assert isinstance(result, TemperatureMeasurement)
    # 0.01 °F on the wire is 0.0056 °C; half of it is the worst rounding, plus 0.0001 display.
    assert result.temperature_c == pytest.approx(celsius, abs=0.01 * 5 / 9 / 2 + 1e-4)


@settings(max_examples=100)
@given(st.sampled_from(list(SpecialValue)), st.booleans())
def test_temperature_special_round_trip(special: SpecialValue, fahrenheit: bool) -> None:
    result = decode("2a1c", encode_temperature(37.0, fahrenheit=fahrenheit, special=special))
    assert isinstance(result, NoReading)
    assert result.fields["temperature"] == special.value


@given(st.integers(0, 100))
def test_battery_round_trip(percent: int) -> None:
    assert decode("2a19", encode_battery(percent)) == BatteryLevel(percent)


pairs = st.tuples(st.integers(0, 100), st.integers(0, 300))


@settings(max_examples=300)
@given(
    pairs,
    st.none() | pairs,
    st.none() | pairs,
    st.none() | st.integers(0, 0xFFFF),
    st.none() | st.integers(0, 0xFFFFFF),
    st.none() | st.integers(0, 1000),
)
def test_plx_continuous_round_trip(
    normal: tuple[int, int],
    fast: tuple[int, int] | None,
    slow: tuple[int, int] | None,
    status: int | None,
    sensor: int | None,
    pai_tenths: int | None,
) -> None:
    pai = None if pai_tenths is None else pai_tenths / 10
    payload = encode_plx_continuous(
        *normal,
        status_flags=status,
        device_sensor_status=sensor,
        fast=fast,
        slow=slow,
        pulse_amplitude_index=pai,
    )
    result = decode("plx_continuous", payload)
    if (status or 0) & MEASUREMENT_STATUS_VOID or (sensor or 0) & SENSOR_STATUS_VOID:
        assert isinstance(result, NoReading)
        assert result.fields["spo2_percent"] == normal[0]
        return
    assert result == PlxContinuous(
        float(normal[0]),
        float(normal[1]),
        None if fast is None else fast[0],
        None if fast is None else fast[1],
        None if slow is None else slow[0],
        None if slow is None else slow[1],
        status,
        sensor,
        pai,
    )


@settings(max_examples=300)
@given(
    pairs,
    st.none() | timestamps,
    st.none() | st.integers(0, 0xFFFF),
    st.none() | st.integers(0, 0xFFFFFF),
    st.none() | st.integers(0, 1000),
    st.booleans(),
)
def test_plx_spot_check_round_trip(
    values: tuple[int, int],
    timestamp: datetime | None,
    status: int | None,
    sensor: int | None,
    pai_tenths: int | None,
    clock_not_set: bool,
) -> None:
    pai = None if pai_tenths is None else pai_tenths / 10
    payload = encode_plx_spot_check(
        *values,
        timestamp=timestamp,
        status_flags=status,
        device_sensor_status=sensor,
        pulse_amplitude_index=pai,
        clock_not_set=clock_not_set,
    )
    result = decode("plx_spot_check", payload)
    if (status or 0) & MEASUREMENT_STATUS_VOID or (sensor or 0) & SENSOR_STATUS_VOID:
        assert isinstance(result, NoReading)
        return
    assert result == PlxSpotCheck(
        float(values[0]),
        float(values[1]),
        None if clock_not_set else timestamp,
        status,
        sensor,
        pai,
    )


@settings(max_examples=300)
@given(st.sampled_from([SpecialValue.NAN, SpecialValue.NRES, SpecialValue.POSITIVE_INFINITY]))
def test_plx_special_round_trip(special: SpecialValue) -> None:
    result = decode("2a5f", encode_plx_continuous(special, 72))
    assert isinstance(result, NoReading)
    assert result.reason == f"SpO2 is {special.value} (IEEE-11073 special value), not a number"


@settings(max_examples=300)
@given(
    st.integers(0, 300),
    st.integers(0, 300),
    st.none() | st.integers(0, 300),
    st.none() | st.integers(0, 300),
    st.none() | timestamps,
    st.none() | st.integers(0, 254),
    st.none() | st.integers(0, 0xFFFF),
)
def test_blood_pressure_mmhg_round_trip(
    systolic: int,
    diastolic: int,
    mean_arterial: int | None,
    pulse: int | None,
    timestamp: datetime | None,
    user: int | None,
    status: int | None,
) -> None:
    payload = encode_blood_pressure(
        systolic,
        diastolic,
        mean_arterial,
        pulse_rate=pulse,
        timestamp=timestamp,
        user_id=user,
        measurement_status=status,
    )
    assert decode("blood_pressure_measurement", payload) == BloodPressureMeasurement(
        systolic, diastolic, mean_arterial, pulse, timestamp, user, status
    )


@settings(max_examples=300)
@given(st.integers(40, 300), st.integers(20, 200), st.integers(30, 250))
def test_blood_pressure_kpa_round_trip(systolic: int, diastolic: int, mean_arterial: int) -> None:
    result = decode("2a35", encode_blood_pressure(systolic, diastolic, mean_arterial, kpa=True))
    assert isinstance(result, BloodPressureMeasurement)
    # 0.1 kPa on the wire = 0.75 mmHg; worst case is half of it, plus the 0.01 display rounding.
    tolerance = 0.1 * 7.50062 / 2 + 0.01
    assert result.systolic_mmhg == pytest.approx(systolic, abs=tolerance)
    assert result.diastolic_mmhg == pytest.approx(diastolic, abs=tolerance)
    assert result.mean_arterial_mmhg == pytest.approx(mean_arterial, abs=tolerance)


# --------------------------------------------------------------------------- truncation


@settings(max_examples=300)
@given(
    st.sampled_from(
        [
            ("2a37", encode_heart_rate(140, uint16=True, energy_expended_kj=291)),
            ("2a1c", encode_temperature(37.0, fahrenheit=True, timestamp=TS, temperature_type=1)),
            ("2a19", encode_battery(50)),
            ("2a5e", encode_plx_spot_check(98, 65, timestamp=TS, status_flags=0x80)),
            ("2a5f", encode_plx_continuous(97, 72, fast=(96, 74), device_sensor_status=0x20)),
            ("2a35", encode_blood_pressure(120, 80, 93, pulse_rate=72, timestamp=TS, user_id=1)),
        ]
    ),
    st.data(),
)
def test_truncated_or_extended_valid_payloads_are_decode_errors(
    case: tuple[str, bytes], data: st.DataObject
) -> None:
    characteristic, payload = case
    decode(characteristic, payload)  # the untouched payload decodes
    cut = data.draw(st.integers(0, len(payload) - 1))
    with pytest.raises(DecodeError, match="too short"):
        decode(characteristic, payload[:cut])
    extra = data.draw(st.binary(min_size=1, max_size=3))
    with pytest.raises(DecodeError, match="trailing"):
        decode(characteristic, payload + extra)
