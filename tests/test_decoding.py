"""GATT decoders: golden vectors written by hand from the Bluetooth SIG layouts (ecosystem.md),
malformed payloads, describe(), to_readings(), plausibility and a fuzz test.

Hex vectors are annotated byte by byte; multi-byte fields are little-endian.
"""

from __future__ import annotations

import json
import pickle
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.decoding import (
    CHARACTERISTIC_NAMES,
    CHARACTERISTICS,
    SERVICES,
    BatteryLevel,
    BloodPressureMeasurement,
    DecodeError,
    HeartRateMeasurement,
    NoReading,
    PlxContinuous,
    PlxSpotCheck,
    TemperatureMeasurement,
    characteristic_name,
    decode,
    describe,
    normalize_uuid,
    plausibility,
    to_readings,
)
from daemon.readings import Reading, Vital

MEASUREMENT_TYPES = (
    HeartRateMeasurement,
    TemperatureMeasurement,
    BatteryLevel,
    PlxSpotCheck,
    PlxContinuous,
    BloodPressureMeasurement,
)
AT = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)
TS = datetime(2024, 3, 15, 8, 30, 5)
TS_HEX = "e807 03 0f 08 1e 05"  # 2024 (0x07E8), March, 15th, 08:30:05


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def no_reading(characteristic: str, payload: str) -> NoReading:
    result = decode(characteristic, h(payload))
    assert isinstance(result, NoReading), result
    return result


# --------------------------------------------------------------------------- UUIDs


@pytest.mark.parametrize(
    "text",
    [
        "2a37",
        "2A37",
        "0x2A37",
        "0x2a37",
        " 2a37 ",
        "00002a37",
        "00002A37-0000-1000-8000-00805F9B34FB",
        "00002a37-0000-1000-8000-00805f9b34fb",
    ],
)
def test_normalize_uuid_accepts_short_and_full_forms(text: str) -> None:
    assert normalize_uuid(text) == "00002a37-0000-1000-8000-00805f9b34fb"


def test_normalize_uuid_keeps_vendor_uuids() -> None:
    vendor = "49535343-FE7D-4AE5-8FA9-9FAFD205E455"
    assert normalize_uuid(vendor) == vendor.lower()


@pytest.mark.parametrize(
    "text",
    ["", "xyz", "2a3", "0x", "2a37g", "0x2a3712", "12345", "2a37-0000", "0000-2a37", "{2a37}"],
)
def test_normalize_uuid_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="not a Bluetooth UUID"):
        normalize_uuid(text)


def test_characteristic_and_service_tables() -> None:
    assert CHARACTERISTICS["heart_rate_measurement"] == normalize_uuid("2a37")
    assert CHARACTERISTICS["temperature_measurement"] == normalize_uuid("2a1c")
    assert CHARACTERISTICS["intermediate_temperature"] == normalize_uuid("2a1e")
    assert CHARACTERISTICS["battery_level"] == normalize_uuid("2a19")
    assert CHARACTERISTICS["plx_spot_check"] == normalize_uuid("2a5e")
    assert CHARACTERISTICS["plx_continuous"] == normalize_uuid("2a5f")
    assert CHARACTERISTICS["blood_pressure_measurement"] == normalize_uuid("2a35")
    assert {CHARACTERISTIC_NAMES[u] for u in CHARACTERISTICS.values()} == set(CHARACTERISTICS)
    expected_services = {
        "heart_rate": normalize_uuid("180d"),
        "health_thermometer": normalize_uuid("1809"),
        "battery": normalize_uuid("180f"),
        "pulse_oximeter": normalize_uuid("1822"),
        "blood_pressure": normalize_uuid("1810"),
    }
    assert dict(SERVICES) == expected_services
    assert characteristic_name("0x2A5F") == "plx_continuous"
    assert characteristic_name("battery_level") == "battery_level"


def test_decode_accepts_name_short_and_full_uuid() -> None:
    for characteristic in ("battery_level", "2a19", "0x2A19", CHARACTERISTICS["battery_level"]):
        assert decode(characteristic, h("55")) == BatteryLevel(85)


def test_decode_accepts_bytearray_as_bleak_delivers() -> None:
    assert decode("2a19", bytearray(b"\x55")) == BatteryLevel(85)


@pytest.mark.parametrize("characteristic", ["2a38", "0x2A1D", "body_sensor_location", "zz", ""])
def test_unknown_characteristic_is_a_decode_error(characteristic: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode(characteristic, h("01"))
    assert info.value.characteristic == characteristic
    assert "characteristic" in info.value.reason


# --------------------------------------------------------------------------- DecodeError


def test_decode_error_is_one_line_with_name_and_reason() -> None:
    with pytest.raises(DecodeError) as info:
        decode("heart_rate_measurement", h("00"))  # flags only, no heart-rate byte
    error = info.value
    assert isinstance(error, ValueError)
    assert error.characteristic == "heart_rate_measurement"
    assert error.reason == "payload too short: 1 byte, need at least 2"
    assert str(error) == "heart_rate_measurement: payload too short: 1 byte, need at least 2"


def test_decode_error_survives_pickling() -> None:
    error = DecodeError("battery_level", "multi\nline reason")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.characteristic, copy.reason) == ("battery_level", "multi line reason")
    assert "\n" not in str(copy)


# --------------------------------------------------------------------------- heart rate


def test_hr_8bit_with_contact_detected() -> None:
    # 06: flags = u8 value, contact bits 1-2 = 0b11 (supported, detected); 48: 72 bpm
    assert decode("2a37", h("06 48")) == HeartRateMeasurement(72, True, None, ())


def test_hr_16bit_with_energy_expended_and_rr_intervals() -> None:
    payload = h(
        "1f"  # flags: b0 u16 value, b1-2 contact detected, b3 energy expended, b4 RR present
        "8c00"  # heart rate 0x008C = 140 bpm
        "2301"  # energy expended 0x0123 = 291 kJ
        "0004"  # RR 0x0400 = 1024/1024 s = 1000 ms
        "0002"  # RR 0x0200 = 512/1024 s = 500 ms
    )
    assert decode("heart_rate_measurement", payload) == HeartRateMeasurement(
        heart_rate_bpm=140,
        sensor_contact=True,
        energy_expended_kj=291,
        rr_intervals_ms=(1000.0, 500.0),
    )


def test_hr_rr_intervals_convert_from_1024ths() -> None:
    # 10: RR present, contact unsupported; 3c: 60 bpm; 0103: 0x0301 = 769/1024 s
    result = decode("2a37", h("10 3c 0103"))
    assert isinstance(result, HeartRateMeasurement)
    assert result.rr_intervals_ms == (769 * 1000 / 1024,)
    assert result.sensor_contact is None


@pytest.mark.parametrize("flags", ["00", "02"])  # contact bits 0 and 1: feature unsupported
def test_hr_contact_unsupported_is_none(flags: str) -> None:
    assert decode("2a37", h(flags + "48")) == HeartRateMeasurement(72, None, None, ())


def test_hr_contact_not_detected_is_no_reading_not_a_number() -> None:
    # 04: contact bits = 0b10 (supported, not detected); 48: 72 bpm (garbage without contact)
    result = no_reading("2a37", "04 48")
    assert result.reason == "sensor contact not detected"
    assert result.contact_lost is True
    assert result.characteristic == "heart_rate_measurement"
    assert result.fields == {"heart_rate_bpm": 72, "sensor_contact": False}


def test_hr_zero_is_no_reading() -> None:
    result = no_reading("2a37", "06 00")  # contact detected, 0 bpm
    assert result.reason == "no heart rate: sensor reports 0"
    assert result.contact_lost is False


def test_hr_reserved_flag_bits_are_ignored() -> None:
    # e6: RFU bits 5-7 set, contact detected; 48: 72 bpm
    assert decode("2a37", h("e6 48")) == HeartRateMeasurement(72, True, None, ())


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("", "payload too short: 0 bytes, need at least 1"),
        ("01 48", "payload too short: 2 bytes, need at least 3"),  # u16 flag, 1 value byte
        ("0e 48 01", "payload too short: 3 bytes, need at least 4"),  # energy flag, 1 byte
        ("16 48", "payload too short: 2 bytes, need at least 4"),  # RR flag, no RR
        ("06 48 00", "1 trailing byte: payload is 3 bytes, flags describe 2"),
        ("16 48 0004 01", "RR intervals are 16-bit, but 3 bytes remain (odd)"),
    ],
)
def test_hr_malformed(payload: str, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode("2a37", h(payload))
    assert info.value.reason == reason
    assert info.value.characteristic == "heart_rate_measurement"


# --------------------------------------------------------------------------- temperature


def test_temperature_celsius_minimal() -> None:
    # 00: °C, no timestamp, no type; 6c0100ff: FLOAT mantissa 364, exponent -1 = 36.4
    assert decode("2a1c", h("00 6c0100ff")) == TemperatureMeasurement(36.4, None, None, False)


def test_temperature_fahrenheit_with_timestamp_and_type() -> None:
    payload = h(
        "07"  # flags: b0 °F, b1 timestamp, b2 temperature type
        "da0300ff"  # FLOAT mantissa 0x0003DA = 986, exponent -1: 98.6 °F
        + TS_HEX
        + "01"  # temperature type 1 = armpit
    )
    assert decode("temperature_measurement", payload) == TemperatureMeasurement(
        temperature_c=37.0, temperature_type="armpit", timestamp=TS, intermediate=False
    )


def test_temperature_fahrenheit_fever_threshold() -> None:
    # 01: °F; ec0300ff: 1004 × 10^-1 = 100.4 °F, the fever line, = 38.0 °C
    result = decode("2a1c", h("01 ec0300ff"))
    assert isinstance(result, TemperatureMeasurement)
    assert result.temperature_c == 38.0


def test_intermediate_temperature() -> None:
    # 00: °C; 8d0e00fe: 3725 × 10^-2 = 37.25 °C
    result = decode("2a1e", h("00 8d0e00fe"))
    assert result == TemperatureMeasurement(37.25, None, None, intermediate=True)
    assert isinstance(result, TemperatureMeasurement)
    assert result.characteristic == "intermediate_temperature"


@pytest.mark.parametrize(
    ("code", "name"),
    [
        (1, "armpit"),
        (2, "body"),
        (3, "ear"),
        (4, "finger"),
        (5, "gastrointestinal"),
        (6, "mouth"),
        (7, "rectum"),
        (8, "toe"),
        (9, "tympanum"),
        (0, None),  # reserved codes: the temperature stands, the type is unknown
        (10, None),
    ],
)
def test_temperature_types(code: int, name: str | None) -> None:
    # 04: type present; 6c0100ff: 36.4 °C; then the type byte (0 and 10+ are reserved)
    result = decode("2a1c", h("04 6c0100ff") + bytes([code]))
    assert result == TemperatureMeasurement(36.4, name, None, False)


@pytest.mark.parametrize(
    ("value_hex", "name"),
    [
        ("ffff7f00", "NaN"),  # 0x007FFFFF
        ("00008000", "NRes"),  # 0x00800000
        ("feff7f00", "+INF"),  # 0x007FFFFE
        ("02008000", "-INF"),  # 0x00800002
        ("01008000", "Reserved"),  # 0x00800001
    ],
)
@pytest.mark.parametrize("characteristic", ["2a1c", "2a1e"])
def test_temperature_special_values_are_no_reading(
    characteristic: str, value_hex: str, name: str
) -> None:
    result = no_reading(characteristic, "00" + value_hex)
    assert result.reason == f"temperature is {name} (IEEE-11073 special value), not a number"
    assert result.contact_lost is False
    assert result.fields["temperature"] == name


@pytest.mark.parametrize(
    "date_hex",
    [
        "0000 03 0f 08 1e 05",  # year 0: unknown
        "e807 00 0f 08 1e 05",  # month 0: unknown
        "e807 03 00 08 1e 05",  # day 0: unknown
    ],
)
def test_temperature_unknown_date_gives_no_timestamp(date_hex: str) -> None:
    assert decode("2a1c", h("02 6c0100ff " + date_hex)) == TemperatureMeasurement(36.4)


@pytest.mark.parametrize(
    ("date_hex", "shown"),
    [
        ("e807 0d 0f 08 1e 05", "2024-13-15 08:30:05"),  # month 13
        ("e807 02 1e 08 1e 05", "2024-02-30 08:30:05"),  # 30 February
        ("e807 03 20 08 1e 05", "2024-03-32 08:30:05"),  # day 32
        ("e807 03 0f 18 1e 05", "2024-03-15 24:30:05"),  # hour 24
        ("e807 03 0f 08 3c 05", "2024-03-15 08:60:05"),  # minute 60
        ("e807 03 0f 08 1e 3c", "2024-03-15 08:30:60"),  # second 60
        ("0100 03 0f 08 1e 05", "0001-03-15 08:30:05"),  # year 1: before 1582, reserved
        ("1027 03 0f 08 1e 05", "10000-03-15 08:30:05"),  # year 10000
    ],
)
def test_temperature_invalid_timestamp_is_decode_error(date_hex: str, shown: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode("2a1c", h("02 6c0100ff " + date_hex))
    assert info.value.reason == f"invalid timestamp {shown}"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("00 6c0100", "payload too short: 4 bytes, need at least 5"),
        ("02 6c0100ff e807 03", "payload too short: 8 bytes, need at least 12"),  # no room for ts
        ("04 6c0100ff", "payload too short: 5 bytes, need at least 6"),  # type flag, no type
        ("00 6c0100ff 00", "1 trailing byte: payload is 6 bytes, flags describe 5"),
    ],
)
def test_temperature_malformed(payload: str, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode("2a1c", h(payload))
    assert info.value.reason == reason


# --------------------------------------------------------------------------- battery


@pytest.mark.parametrize(("payload", "percent"), [("00", 0), ("55", 85), ("64", 100)])
def test_battery(payload: str, percent: int) -> None:
    assert decode("2a19", h(payload)) == BatteryLevel(percent)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("", "payload too short: 0 bytes, need at least 1"),
        ("65", "battery level 101 % is above 100 (reserved)"),
        ("ff", "battery level 255 % is above 100 (reserved)"),
        ("5500", "1 trailing byte: payload is 2 bytes, flags describe 1"),
    ],
)
def test_battery_malformed(payload: str, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode("battery_level", h(payload))
    assert info.value.reason == reason


# --------------------------------------------------------------------------- PLX continuous


def test_plx_continuous_minimal() -> None:
    # 00: no optional fields; 6100: SpO2 97; 4800: PR 72
    assert decode("2a5f", h("00 6100 4800")) == PlxContinuous(97.0, 72.0)


def test_plx_continuous_all_fields() -> None:
    payload = h(
        "1f"  # flags: fast, slow, measurement status, device/sensor status, PAI
        "6100 4800"  # normal: SpO2 97, PR 72
        "6000 4a00"  # fast: SpO2 96, PR 74
        "6200 4600"  # slow: SpO2 98, PR 70
        "8000"  # measurement status 0x0080: bit 7 validated data
        "010200"  # device/sensor status 0x000201: bits 0 display update, 9 analysis ongoing
        "19f0"  # PAI: SFLOAT mantissa 25, exponent -1 = 2.5 %
    )
    assert decode("plx_continuous", payload) == PlxContinuous(
        spo2_percent=97.0,
        pulse_rate_bpm=72.0,
        spo2_fast_percent=96.0,
        pulse_rate_fast_bpm=74.0,
        spo2_slow_percent=98.0,
        pulse_rate_slow_bpm=70.0,
        measurement_status=0x0080,
        device_sensor_status=0x000201,
        pulse_amplitude_index=2.5,
    )


def test_plx_continuous_special_fast_value_drops_only_the_fast_pair_value() -> None:
    # 01: fast present; normal 97/72; fast SpO2 NaN (ff07), fast PR 74
    result = decode("2a5f", h("01 6100 4800 ff07 4a00"))
    assert result == PlxContinuous(97.0, 72.0, spo2_fast_percent=None, pulse_rate_fast_bpm=74.0)


@pytest.mark.parametrize(
    ("status_hex", "reason"),
    [
        ("0080", "invalid measurement detected"),  # bit 15
        ("0040", "questionable measurement detected"),  # bit 14
        ("0020", "measurement unavailable"),  # bit 13
        ("0010", "calibration ongoing"),  # bit 12
        ("0008", "data for testing"),  # bit 11
        ("0004", "data for demonstration"),  # bit 10
        ("0002", "data replayed from measurement storage"),  # bit 9
    ],
)
def test_plx_continuous_measurement_status_no_reading(status_hex: str, reason: str) -> None:
    # 04: measurement status present; SpO2 97, PR 72; status (little-endian)
    result = no_reading("2a5f", "04 6100 4800 " + status_hex)
    assert result.reason == reason
    assert result.contact_lost is False
    assert result.fields["spo2_percent"] == 97.0


@pytest.mark.parametrize(
    ("sensor_hex", "reason", "contact_lost"),
    [
        ("000800", "sensor unconnected to user", True),  # bit 11
        ("002000", "sensor displaced", True),  # bit 13
        ("008000", "sensor disconnected", False),  # bit 15: probe off the device
        ("004000", "sensor malfunctioning", False),  # bit 14
        ("020000", "equipment malfunction detected", False),  # bit 1
        # Signal quality: motion shows as these; low perfusion reads falsely low (issue 13).
        ("040000", "signal processing irregularity detected", False),  # bit 2
        ("080000", "inadequate signal detected", False),  # bit 3
        ("100000", "poor signal detected", False),  # bit 4
        ("200000", "low perfusion detected", False),  # bit 5
        ("400000", "erratic signal detected", False),  # bit 6
        ("800000", "nonpulsatile signal detected", False),  # bit 7
        ("000100", "questionable pulse detected", False),  # bit 8
        ("000400", "sensor interference detected", False),  # bit 10
    ],
)
def test_plx_continuous_sensor_status_no_reading(
    sensor_hex: str, reason: str, contact_lost: bool
) -> None:
    # 08: device/sensor status present; SpO2 97, PR 72; 24-bit status
    result = no_reading("2a5f", "08 6100 4800 " + sensor_hex)
    assert result.reason == reason
    assert result.contact_lost is contact_lost


def test_plx_reasons_combine_and_contact_comes_first() -> None:
    # 0c: both statuses; SpO2 NaN; PR 72; status bit 15 invalid; sensor bit 11 unconnected
    result = no_reading("2a5f", "0c ff07 4800 0080 000800")
    assert result.reason == (
        "sensor unconnected to user; invalid measurement detected; "
        "SpO2 is NaN (IEEE-11073 special value), not a number"
    )
    assert result.contact_lost is True
    assert result.fields["spo2_percent"] == "NaN"


@pytest.mark.parametrize(("value_hex", "name"), [("ff07", "NaN"), ("0008", "NRes")])
def test_plx_special_values_are_no_reading(value_hex: str, name: str) -> None:
    result = no_reading("2a5f", "00 6100 " + value_hex)  # PR is special
    assert result.reason == f"pulse rate is {name} (IEEE-11073 special value), not a number"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("00 6100 48", "payload too short: 4 bytes, need at least 5"),
        ("01 6100 4800 6000", "payload too short: 7 bytes, need at least 9"),  # fast, half
        ("08 6100 4800 0008", "payload too short: 7 bytes, need at least 8"),  # 24-bit status
        ("00 6100 4800 00", "1 trailing byte: payload is 6 bytes, flags describe 5"),
    ],
)
def test_plx_continuous_malformed(payload: str, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode("2a5f", h(payload))
    assert info.value.reason == reason


# --------------------------------------------------------------------------- PLX spot-check


def test_plx_spot_check_with_timestamp_and_status() -> None:
    payload = h(
        "03"  # flags: b0 timestamp, b1 measurement status
        "6200 4100" + TS_HEX + "8000"  # SpO2 98, PR 65  # status 0x0080: validated data
    )
    assert decode("plx_spot_check", payload) == PlxSpotCheck(
        spo2_percent=98.0, pulse_rate_bpm=65.0, timestamp=TS, measurement_status=0x0080
    )


def test_plx_spot_check_clock_not_set_discards_timestamp() -> None:
    # 11: b0 timestamp, b4 device clock not set; SpO2 98, PR 65; timestamp present but void
    assert decode("2a5e", h("11 6200 4100 " + TS_HEX)) == PlxSpotCheck(98.0, 65.0)


def test_plx_spot_check_pai_and_sensor_status() -> None:
    # 0c: sensor status + PAI; SpO2 98, PR 65; sensor 0x000000; PAI 2.5
    assert decode("2a5e", h("0c 6200 4100 000000 19f0")) == PlxSpotCheck(
        98.0, 65.0, device_sensor_status=0, pulse_amplitude_index=2.5
    )


def test_plx_spot_check_low_spo2_with_motion_flag_is_no_reading() -> None:
    # 06: status + sensor status; SpO2 85, PR 110; status 0; 0x000040 bit 6 erratic signal
    result = no_reading("2a5e", "06 5500 6e00 0000 400000")
    assert (result.reason, result.contact_lost) == ("erratic signal detected", False)
    assert result.fields["spo2_percent"] == 85.0


def test_plx_spot_check_displaced_is_contact_lost() -> None:
    # 04: sensor status; SpO2 98, PR 65; 0x002000 bit 13 sensor displaced
    result = no_reading("2a5e", "04 6200 4100 002000")
    assert (result.reason, result.contact_lost) == ("sensor displaced", True)


def test_plx_spot_check_timestamp_flag_without_room() -> None:
    with pytest.raises(DecodeError) as info:
        decode("2a5e", h("01 6200 4100 e807"))
    assert info.value.reason == "payload too short: 7 bytes, need at least 12"


# --------------------------------------------------------------------------- blood pressure


def test_blood_pressure_mmhg_all_fields() -> None:
    payload = h(
        "1e"  # flags: mmHg, b1 timestamp, b2 pulse rate, b3 user id, b4 measurement status
        "7800 5000 5d00"  # systolic 120, diastolic 80, MAP 93 (SFLOAT exponent 0)
        + TS_HEX
        + "4800"  # pulse rate 72
        "01"  # user 1
        "0100"  # status 0x0001: body movement detected (kept as information)
    )
    assert decode("blood_pressure_measurement", payload) == BloodPressureMeasurement(
        systolic_mmhg=120.0,
        diastolic_mmhg=80.0,
        mean_arterial_mmhg=93.0,
        pulse_rate_bpm=72.0,
        timestamp=TS,
        user_id=1,
        measurement_status=1,
    )


def test_blood_pressure_kpa_converted_to_mmhg() -> None:
    # 01: kPa; a0f0: 160 × 10^-1 = 16.0 kPa; 6bf0: 10.7 kPa; 7df0: 12.5 kPa
    result = decode("2a35", h("01 a0f0 6bf0 7df0"))
    assert result == BloodPressureMeasurement(
        systolic_mmhg=120.01,  # 16.0 × 7.50062 = 120.00992
        diastolic_mmhg=80.26,  # 10.7 × 7.50062 = 80.256634
        mean_arterial_mmhg=93.76,  # 12.5 × 7.50062 = 93.75775
    )


def test_blood_pressure_map_nan_means_not_computed() -> None:
    # 00: mmHg; systolic 120, diastolic 80, MAP NaN (ff07)
    assert decode("2a35", h("00 7800 5000 ff07")) == BloodPressureMeasurement(120.0, 80.0, None)


def test_blood_pressure_unknown_user_and_special_pulse() -> None:
    # 0c: pulse + user; 120/80/93; pulse NaN; user 0xFF = unknown
    assert decode("2a35", h("0c 7800 5000 5d00 ff07 ff")) == BloodPressureMeasurement(
        120.0, 80.0, 93.0
    )


def test_blood_pressure_special_systolic_is_no_reading() -> None:
    result = no_reading("2a35", "00 ff07 5000 5d00")  # systolic NaN
    assert result.reason == "systolic is NaN (IEEE-11073 special value), not a number"
    assert result.fields == {
        "systolic": "NaN",
        "diastolic": 80.0,
        "mean_arterial": 93.0,
        "unit": "mmHg",  # raw wire values, so the unit is shown with them
    }


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("00 7800 5000", "payload too short: 5 bytes, need at least 7"),
        ("02 7800 5000 5d00 e807", "payload too short: 9 bytes, need at least 14"),
        ("08 7800 5000 5d00", "payload too short: 7 bytes, need at least 8"),  # user flag
        ("00 7800 5000 5d00 00", "1 trailing byte: payload is 8 bytes, flags describe 7"),
    ],
)
def test_blood_pressure_malformed(payload: str, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode("2a35", h(payload))
    assert info.value.reason == reason


# --------------------------------------------------------------------------- describe


def test_describe_heart_rate() -> None:
    result = decode("2a37", h("1f 8c00 2301 0004 0002"))
    assert describe(result) == {
        "characteristic": "heart_rate_measurement",
        "heart_rate_bpm": 140,
        "sensor_contact": True,
        "energy_expended_kj": 291,
        "rr_intervals_ms": [1000.0, 500.0],
    }


def test_describe_omits_absent_fields() -> None:
    assert describe(decode("2a37", h("00 48"))) == {
        "characteristic": "heart_rate_measurement",
        "heart_rate_bpm": 72,
    }


def test_describe_temperature_has_iso_timestamp() -> None:
    result = decode("2a1c", h("07 da0300ff " + TS_HEX + " 01"))
    assert describe(result) == {
        "characteristic": "temperature_measurement",
        "temperature_c": 37.0,
        "temperature_type": "armpit",
        "timestamp": "2024-03-15T08:30:05",
        "intermediate": False,
    }


def test_describe_no_reading() -> None:
    assert describe(decode("2a37", h("04 48"))) == {
        "characteristic": "heart_rate_measurement",
        "no_reading": True,
        "reason": "sensor contact not detected",
        "contact_lost": True,
        "fields": {"heart_rate_bpm": 72, "sensor_contact": False},
    }


@pytest.mark.parametrize(
    ("characteristic", "payload", "key", "value"),
    [
        ("2a19", "55", "battery_percent", 85),
        ("2a5f", "00 6100 4800", "spo2_percent", 97.0),
        ("2a5e", "00 6200 4100", "pulse_rate_bpm", 65.0),
        ("2a35", "00 7800 5000 5d00", "systolic_mmhg", 120.0),
        ("2a35", "00 7800 5000 5d00", "diastolic_mmhg", 80.0),
        ("2a35", "00 7800 5000 5d00", "mean_arterial_mmhg", 93.0),
    ],
)
def test_describe_names_fields_with_units(
    characteristic: str, payload: str, key: str, value: object
) -> None:
    described = describe(decode(characteristic, h(payload)))
    assert described[key] == value
    assert described["characteristic"] == characteristic_name(characteristic)
    assert json.loads(json.dumps(described)) == described


# --------------------------------------------------------------------------- to_readings


def test_heart_rate_reading_carries_contact() -> None:
    result = decode("2a37", h("06 48"))
    assert isinstance(result, HeartRateMeasurement)
    assert to_readings(result, "strap", AT) == [
        Reading("strap", Vital.HEART_RATE, 72.0, AT, sensor_contact=True)
    ]


def test_temperature_reading_adds_offset_and_uses_receive_time() -> None:
    # The device says 2024-03-15; the reading is stamped with the hub's receive time.
    result = decode("2a1c", h("07 da0300ff " + TS_HEX + " 01"))
    assert isinstance(result, TemperatureMeasurement)
    readings = to_readings(result, "patch", AT, temperature_offset_c=0.5)
    assert readings == [Reading("patch", Vital.TEMPERATURE, 37.5, AT)]


def test_receive_time_is_converted_to_utc() -> None:
    local = AT.astimezone(timezone(timedelta(hours=2)))
    (reading,) = to_readings(BatteryLevel(40), "strap", local)
    assert reading.observed_at == AT
    assert reading.observed_at.tzinfo is UTC


def test_naive_receive_time_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        to_readings(BatteryLevel(40), "strap", datetime(2025, 5, 1, 12, 0))


@pytest.mark.parametrize(
    ("celsius", "offset", "kept"),
    [
        (24.9, 0.0, False),
        (25.0, 0.0, True),
        (24.6, 0.5, True),  # 25.1 after the offset
        (45.0, 0.0, True),
        (44.8, 0.5, False),  # 45.3 after the offset
        (85.0, 0.0, False),  # a patch lying on a radiator
    ],
)
def test_implausible_temperatures_are_not_readings(
    celsius: float, offset: float, kept: bool
) -> None:
    readings = to_readings(TemperatureMeasurement(celsius), "patch", AT, offset)
    assert [r.value for r in readings] == ([pytest.approx(celsius + offset)] if kept else [])


def test_battery_reading() -> None:
    assert to_readings(BatteryLevel(15), "strap", AT) == [Reading("strap", Vital.BATTERY, 15.0, AT)]


@pytest.mark.parametrize(
    "payload", ["00 6100 4800", "0f 6100 4800 6000 4a00 6200 4600 8000 000000"]
)
def test_plx_readings(payload: str) -> None:
    result = decode("2a5f", h(payload))
    assert isinstance(result, PlxContinuous)
    assert to_readings(result, "oxi", AT) == [
        Reading("oxi", Vital.SPO2, 97.0, AT),
        Reading("oxi", Vital.PULSE_RATE, 72.0, AT),
    ]


def test_plx_implausible_value_is_dropped_alone() -> None:
    # SpO2 97, pulse 400 (0x0190): only SpO2 survives.
    result = decode("2a5e", h("00 6100 9001"))
    assert isinstance(result, PlxSpotCheck)
    assert to_readings(result, "oxi", AT) == [Reading("oxi", Vital.SPO2, 97.0, AT)]


def test_blood_pressure_readings() -> None:
    result = decode("2a35", h("04 7800 5000 5d00 4800"))
    assert isinstance(result, BloodPressureMeasurement)
    assert to_readings(result, "cuff", AT) == [
        Reading("cuff", Vital.SYSTOLIC, 120.0, AT),
        Reading("cuff", Vital.DIASTOLIC, 80.0, AT),
        Reading("cuff", Vital.MEAN_ARTERIAL, 93.0, AT),
        Reading("cuff", Vital.PULSE_RATE, 72.0, AT),
    ]


def test_blood_pressure_without_map_or_pulse() -> None:
    result = decode("2a35", h("00 7800 5000 ff07"))
    assert isinstance(result, BloodPressureMeasurement)
    assert [r.vital for r in to_readings(result, "cuff", AT)] == [Vital.SYSTOLIC, Vital.DIASTOLIC]


def test_temperature_offset_does_not_touch_other_vitals() -> None:
    result = decode("2a37", h("06 48"))
    assert isinstance(result, HeartRateMeasurement)
    assert to_readings(result, "strap", AT, temperature_offset_c=2.0)[0].value == 72.0


@pytest.mark.parametrize(
    ("vital", "value", "plausible"),
    [
        (Vital.TEMPERATURE, 37.0, True),
        (Vital.TEMPERATURE, 45.01, False),
        (Vital.TEMPERATURE, float("nan"), False),
        (Vital.HEART_RATE, 180.0, True),
        (Vital.HEART_RATE, 301.0, False),
        (Vital.HEART_RATE, 19.0, False),
        (Vital.SPO2, 100.0, True),
        (Vital.SPO2, 100.5, False),
        (Vital.SYSTOLIC, 70.0, True),
        (Vital.BATTERY, 0.0, True),
    ],
)
def test_plausibility(vital: Vital, value: float, plausible: bool) -> None:
    reason = plausibility(vital, value)
    if plausible:
        assert reason is None
    else:
        assert reason is not None and vital.value in reason and "outside" in reason


def test_plausibility_message() -> None:
    assert plausibility(Vital.TEMPERATURE, 85.0) == (
        "temperature 85 °C is outside the plausible 25-45 °C"
    )


# --------------------------------------------------------------------------- fuzz


@settings(max_examples=1000)
@given(
    st.sampled_from(sorted(CHARACTERISTICS)),
    st.one_of(st.binary(max_size=32), st.binary(min_size=1, max_size=4).map(lambda b: b * 5)),
)
def test_any_bytes_decode_or_raise_decode_error_only(characteristic: str, data: bytes) -> None:
    try:
        result = decode(characteristic, data)
    except DecodeError as exc:
        assert exc.characteristic == characteristic
        assert exc.reason and "\n" not in str(exc)
        return
    assert isinstance(result, (*MEASUREMENT_TYPES, NoReading))
    json.dumps(describe(result))  # always JSON-ready
    if not isinstance(result, NoReading):
        for reading in to_readings(result, "dev", AT, temperature_offset_c=0.5):
            assert plausibility(reading.vital, reading.value) is None


@settings(max_examples=300)
@given(st.sampled_from(sorted(CHARACTERISTICS)), st.integers(0, 255), st.binary(max_size=40))
def test_every_flag_combination_decodes_or_raises_decode_error(
    characteristic: str, flags: int, rest: bytes
) -> None:
    try:
        result = decode(CHARACTERISTICS[characteristic], bytes([flags]) + rest)
    except DecodeError:
        return
    assert isinstance(result, (*MEASUREMENT_TYPES, NoReading))
