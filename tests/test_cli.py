"""`crs-hub decode`, `schema` and `--version` as a person runs them (real subprocesses)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from daemon import __version__

REPO = Path(__file__).resolve().parent.parent


def crs_hub(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "daemon.cli", *args], capture_output=True,
                          text=True, cwd=REPO, timeout=60)


def test_decode_16_bit_heart_rate_with_energy_and_rr_intervals() -> None:
    # flags 0x1F: uint16 value, contact supported+detected, energy expended, RR present;
    # HR 0x0096 = 150 bpm; energy 0x0010 = 16 kJ; RR 0x0400 = 1024/1024 s, 0x0200 = 512/1024 s.
    result = crs_hub("decode", "2a37", "1F9600100000040002")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "characteristic": "heart_rate_measurement", "heart_rate_bpm": 150,
        "sensor_contact": True, "energy_expended_kj": 16, "rr_intervals_ms": [1000.0, 500.0],
    }


def test_decode_fahrenheit_temperature_with_timestamp_and_full_uuid() -> None:
    # flags 0x03: °F + timestamp; FLOAT 0xFF0003F3 = 1011 x 10^-1 = 101.1 °F;
    # timestamp 2026-11-24 08:00:00 (year 0x07EA little-endian).
    result = crs_hub("decode", "00002a1c-0000-1000-8000-00805f9b34fb", "03F30300FFEA070B18080000")
    assert result.returncode == 0, result.stderr
    decoded = json.loads(result.stdout)
    assert decoded["temperature_c"] == pytest.approx((101.1 - 32) * 5 / 9, abs=1e-3)
    assert decoded["timestamp"] == "2026-11-24T08:00:00"


@pytest.mark.parametrize(
    ("hex_payload", "name"),
    [("00FFFF7F00", "NaN"), ("0000008000", "NRes"), ("00FEFF7F00", "+INF"),
     ("0002008000", "-INF"), ("0001008000", "Reserved")],
)
def test_decode_float_special_values_give_no_reading(hex_payload: str, name: str) -> None:
    result = crs_hub("decode", "2a1c", hex_payload)
    assert result.returncode == 0, result.stderr
    decoded = json.loads(result.stdout)
    assert decoded["no_reading"] is True
    assert name in decoded["reason"]
    assert "temperature_c" not in decoded


def test_decode_prints_one_line_per_payload() -> None:
    result = crs_hub("decode", "2a37", "0648", "0448")
    assert result.returncode == 0, result.stderr
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert first["heart_rate_bpm"] == 72 and first["sensor_contact"] is True
    assert second["no_reading"] is True and "contact" in second["reason"]


@pytest.mark.parametrize(
    ("characteristic", "payload", "fragment"),
    [("2a37", "11", "too short"), ("2a1c", "03F30300FFEA070B1808000000", "trailing"),
     ("2a37", "zz", "not a hex string")],
)
def test_malformed_payload_exits_2_with_one_line(characteristic: str, payload: str,
                                                 fragment: str) -> None:
    result = crs_hub("decode", characteristic, payload)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in result.stderr


def test_unknown_characteristic_exits_2() -> None:
    result = crs_hub("decode", "not-a-uuid", "00")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1


def test_schema_lists_every_payload_with_the_alert_fields() -> None:
    result = crs_hub("schema")
    assert result.returncode == 0
    schemas = json.loads(result.stdout)
    assert set(schemas) >= {"alert_event", "alert_state", "alert_ack", "hub_status",
                            "device_status", "vitals"}
    required = set(schemas["alert_event"]["required"])
    assert required >= {"alert_id", "hub_id", "patient_id", "kind", "state", "severity",
                        "value", "unit", "threshold", "observed_at", "raised_at", "device",
                        "patient_message"}


def test_version_and_help() -> None:
    assert crs_hub("--version").stdout.strip() == f"crs-hub {__version__}"
    help_text = crs_hub("--help").stdout
    for command in ("run", "check-config", "decode", "schema", "scan", "demo"):
        assert command in help_text
    assert "Not a certified medical device" in help_text
