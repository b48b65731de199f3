"""`crs-hub replay`: the recording contract, run through the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.patient_week import write as write_week
from daemon.encoding import encode_temperature

REPO = Path(__file__).resolve().parents[1]

CONFIG = """
[hub]
id = "hub-replay"
data_dir = "{data}"
[patient]
id = "p-0001"
care_team_name = "the CAR-T team"
care_team_phone = "+1 555 0100"
[escalation]
enabled = false
[[devices]]
id = "chest-strap"
profile = "heart_rate_strap"
[[devices]]
id = "temp-patch"
profile = "temperature_patch"
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG.format(data=tmp_path / "data"))
    return path


def replay(config: Path, recording: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "daemon.cli", "replay", "--config", str(config),
                           str(recording), *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


def fever_rows(start: int = 1_700_000_000, minutes: int = 30) -> list[str]:
    """A patch at 38.6 °C core (38.1 skin + 0.5 offset), one hex payload a minute."""
    payload = encode_temperature(38.1).hex()
    return [f"{start + 60 * i},temp-patch,2a1c,{payload}" for i in range(minutes)]


def test_a_fever_recording_prints_the_alert_events_and_a_summary(config: Path,
                                                                 tmp_path: Path) -> None:
    recording = tmp_path / "fever.csv"
    recording.write_text("time,device,kind,value\n" + "\n".join(fever_rows()) + "\n")
    summary = tmp_path / "summary.json"
    result = replay(config, recording, "--summary-json", str(summary))
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    clinical = [(e["kind"], e["state"]) for e in events if not e["technical"]]
    assert clinical == [("fever", "raised")]
    fever = next(e for e in events if e["kind"] == "fever")
    assert fever["raised_at"] == "2023-11-14T22:14:20Z"  # the second reading, 60 s in
    assert "you have a fever" in fever["patient_message"]
    data = json.loads(summary.read_text())
    assert data["alerts_raised"] == {"fever": 1}
    assert data["readings"] == 30
    # the strap never sent anything: as in the daemon, that is a missing-data alarm
    assert data["technical_alarms_raised"] == {"no_data": 1}
    assert "broker_unreachable" not in result.stdout  # no broker alarms in a replay
    assert "replay summary:" in result.stderr


def test_a_malformed_row_exits_2_naming_its_line_before_any_event(config: Path,
                                                                  tmp_path: Path) -> None:
    rows = fever_rows()
    rows[20] = rows[20].replace("temp-patch", "patch-that-is-not-configured")
    recording = tmp_path / "bad.csv"
    recording.write_text("time,device,kind,value\n" + "\n".join(rows) + "\n")
    result = replay(config, recording)
    assert result.returncode == 2
    assert result.stdout == ""  # checked before any event is printed
    assert result.stderr.strip() == (
        f"{recording}: line 22: unknown device 'patch-that-is-not-configured' (not in the config)")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("row", "reason"), [
    ("yesterday,temp-patch,temperature,36.9", "time 'yesterday' is neither ISO 8601 nor Unix"),
    ("2026-11-02T10:00:00,temp-patch,temperature,36.9",
     "time '2026-11-02T10:00:00' has no UTC offset"),
    ("1700000000,temp-patch,glucose,5", "unknown kind 'glucose'"),
    ("1700000000,temp-patch,temperature,warm", "value 'warm' is not a number"),
    ("1700000000,temp-patch,2a1c,zz", "value 'zz' is not hex bytes"),
])
def test_each_kind_of_bad_row_is_named(config: Path, tmp_path: Path, row: str,
                                       reason: str) -> None:
    recording = tmp_path / "bad.csv"
    recording.write_text(f"time,device,kind,value\n1700000000,temp-patch,temperature,36.9\n{row}\n")
    result = replay(config, recording)
    assert result.returncode == 2
    assert f"line 3: {reason}" in result.stderr


def test_skip_bad_counts_malformed_rows_and_a_bad_payload_is_skipped_like_the_daemon(
        config: Path, tmp_path: Path) -> None:
    rows = fever_rows()
    rows.insert(5, "1700000290,temp-patch,2a1c,00")  # hex, but a truncated payload
    rows.insert(8, "1700000420,temp-patch,temperature,hot")
    recording = tmp_path / "mixed.csv"
    recording.write_text("time,device,kind,value\n" + "\n".join(rows) + "\n")
    summary = tmp_path / "summary.json"
    result = replay(config, recording, "--skip-bad", "--summary-json", str(summary))
    assert result.returncode == 0, result.stderr
    data = json.loads(summary.read_text())
    assert data["bad_rows"] == 1 and data["malformed_payloads"] == 1
    assert "skipped line 10: value 'hot' is not a number" in result.stderr
    assert data["alerts_raised"] == {"fever": 1}


def test_monotonic_time_carries_the_rules_across_a_clock_step(config: Path,
                                                              tmp_path: Path) -> None:
    """The wall clock steps back two hours after the first row (NTP on a Pi without an RTC);
    monotonic_s says one minute passed each row. The fever confirms on the second reading and is
    stamped with the corrected time."""
    payload = encode_temperature(38.1).hex()
    start = 1_700_000_000
    lines = ["time,device,kind,value,sensor_contact,monotonic_s",
             f"{start},temp-patch,2a1c,{payload},,5000"]
    for i in range(1, 10):
        lines.append(f"{start - 7200 + 60 * i},temp-patch,2a1c,{payload},,{5000 + 60 * i}")
    recording = tmp_path / "step.csv"
    recording.write_text("\n".join(lines) + "\n")
    result = replay(config, recording)
    assert result.returncode == 0, result.stderr
    fever = [json.loads(x) for x in result.stdout.splitlines()
             if json.loads(x)["kind"] == "fever"]
    assert [e["state"] for e in fever] == ["raised"]
    assert fever[0]["event_at"] == "2023-11-14T20:14:20Z"  # start + 60 s - 2 h


def test_the_same_seed_gives_identical_output_on_a_generated_patient_week(
        config: Path, tmp_path: Path) -> None:
    recording = tmp_path / "days.csv"
    write_week(recording, days=5)  # the fever episode is on day 5
    first = replay(config, recording, "--seed", "7")
    second = replay(config, recording, "--seed", "7")
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout and first.stdout
    kinds = [(e["kind"], e["state"]) for e in map(json.loads, first.stdout.splitlines())]
    assert ("fever", "raised") in kinds and ("tachycardia", "raised") in kinds
    assert ("fever_tachycardia", "severity_changed") in kinds
