from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.config import ConfigError, load_config, parse_config, permission_warnings

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config.example.toml"

MINIMAL = """
[hub]
id = "hub-1"
[patient]
id = "p-1"
care_team_name = "Team A"
care_team_phone = "+1 555 0100"
"""


def crs_hub(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "daemon.cli", *args], capture_output=True,
                          text=True, cwd=REPO, timeout=60)


def test_example_config_is_valid_and_uses_sourced_defaults() -> None:
    config = load_config(EXAMPLE)
    assert config.thresholds.fever.threshold_c == 38.0
    assert config.thresholds.fever.high_threshold_c == 39.0
    assert config.thresholds.tachycardia.threshold_bpm == 100
    assert config.thresholds.tachycardia.window_s == 600
    assert [d.id for d in config.devices] == ["chest-strap", "temp-patch"]
    assert config.mqtt.reconnect_max_s <= 10


def test_defaults_fill_everything_but_identity(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(MINIMAL)
    config = load_config(path)
    assert config.mqtt.topic_prefix == "crs/v1"
    assert config.mqtt.protocol == "5"
    assert config.patient.temperature_unit == "C"
    assert config.devices == []


def test_bad_config_names_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(MINIMAL.replace('id = "hub-1"', 'id = "hub#1"')
                    + '\n[thresholds.fever]\nthreshold_c = -38.0\nthreshold_cc = 1\n'
                    + '[mqtt]\nhots = "x"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    problems = info.value.problems
    assert any(p.startswith("hub.id: ") and "'#'" in p for p in problems), problems
    assert any(p.startswith("thresholds.fever.threshold_c: ") and "greater than" in p
               for p in problems), problems
    assert "thresholds.fever.threshold_cc: unknown key (check the spelling)" in problems
    assert "mqtt.hots: unknown key (check the spelling)" in problems
    assert len(problems) == 4


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ('[patient]\nid = "p-1"\ncare_team_name = "T"\ncare_team_phone = "x"\n',
         "patient.care_team_phone: "),
        (MINIMAL + '[[devices]]\nid = "d1"\nprofile = "x"\naddress = "nope"\n',
         "devices[0]: address must look like"),
        (MINIMAL + '[[devices]]\nid = "d1"\nprofile = "x"\n[[devices]]\nid = "d1"\nprofile = "y"\n',
         "(top level): device id 'd1' is used twice"),
        (MINIMAL + '[mqtt]\ntopic_prefix = "crs/+/v1"\n', "mqtt.topic_prefix: "),
        (MINIMAL + '[thresholds.fever]\nhigh_threshold_c = 37.5\n',
         "thresholds.fever: high_threshold_c must be above threshold_c"),
    ],
)
def test_each_problem_is_one_line_with_its_path(patch: str, expected: str) -> None:
    import tomllib

    data = tomllib.loads(patch)
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert any(p.startswith(expected) for p in info.value.problems), info.value.problems


def test_password_comes_from_file_or_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    config = parse_config({"hub": {"id": "h"}, "patient": {"id": "p", "care_team_name": "T",
                           "care_team_phone": "123"}, "mqtt": {"password_file": str(secret)}})
    password = config.mqtt.password()
    assert password is not None and password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(config.mqtt.password())
    monkeypatch.setenv("HUB_PW", "from-env")
    config = parse_config({"hub": {"id": "h"}, "patient": {"id": "p", "care_team_name": "T",
                           "care_team_phone": "123"}, "mqtt": {"password_env": "HUB_PW"}})
    assert config.mqtt.password().get_secret_value() == "from-env"  # type: ignore[union-attr]


def test_world_readable_secrets_are_warned_about(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("x")
    os.chmod(secret, 0o644)
    path = tmp_path / "c.toml"
    path.write_text(MINIMAL + f'[mqtt]\npassword_file = "{secret}"\n')
    os.chmod(path, 0o600)
    warnings = permission_warnings(path, load_config(path))
    assert warnings == [f"mqtt.password_file: {secret} is readable by every user; chmod o-r it"]


def test_check_config_cli_reports_all_problems_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(MINIMAL.replace('id = "hub-1"', 'id = "hub#1"').replace(
        "care_team_phone", "care_tem_phone = \"1\"\ncare_team_phone")
        + "\n[thresholds.tachycardia]\nthreshold_bpm = -5\n")
    result = crs_hub("check-config", str(path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert any(line.startswith("hub.id: ") for line in lines)
    assert "patient.care_tem_phone: unknown key (check the spelling)" in lines
    assert any(line.startswith("thresholds.tachycardia.threshold_bpm: ") for line in lines)
    assert len(lines) == 3


def test_check_config_cli_summarises_a_good_config(tmp_path: Path) -> None:
    path = tmp_path / "ok.toml"
    path.write_text(EXAMPLE.read_text().replace('password_file = "/etc/crs-hub/mqtt-password"',
                                                'password_env = "X"'))
    os.chmod(path, 0o600)
    result = crs_hub("check-config", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: hub hub-7f3a, patient p-4821, 2 device(s)")
    assert result.stdout.count("\n") == 1


def test_check_config_cli_rejects_unknown_profile_and_broken_toml(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(MINIMAL + '[[devices]]\nid = "d1"\nprofile = "no-such-profile"\n')
    result = crs_hub("check-config", str(path))
    assert result.returncode == 2
    assert result.stderr.startswith("devices[0].profile: unknown profile 'no-such-profile'")
    path.write_text("[hub\nid=")
    result = crs_hub("check-config", str(path))
    assert result.returncode == 2
    assert "not valid TOML" in result.stderr and "Traceback" not in result.stderr
    result = crs_hub("check-config", str(tmp_path / "missing.toml"))
    assert result.returncode == 2 and "cannot read" in result.stderr
