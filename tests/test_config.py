from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.alerts import Severity
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


# --- settings that each pass alone but could never alarm (issue 9), and `wear` (issue 10) ------

PATCH = '[[devices]]\nid = "temp-patch"\nprofile = "temperature_patch"\naddress = "AA:BB:CC:DD:EE:02"\n'
STRAP = '[[devices]]\nid = "chest-strap"\nprofile = "heart_rate_strap"\naddress = "AA:BB:CC:DD:EE:01"\n'


def check_config_problems(tmp_path: Path, text: str, *, command: str = "check-config") -> list[str]:
    """Run the real CLI on ``text``; assert it refused it cleanly; return its stderr lines."""
    path = tmp_path / "c.toml"
    path.write_text(text)
    args = [command, str(path)] if command == "check-config" else [command, "--config", str(path)]
    result = crs_hub(*args)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    return result.stderr.strip().splitlines()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            MINIMAL + "[escalation]\nrepeat_min = { hgh = 15 }\n",
            "escalation.repeat_min.hgh: unknown key: must be 'low', 'medium', 'high', "
            "'critical' or 'emergency'",
            id="repeat-min-misspelt-severity"),
        pytest.param(
            MINIMAL + "[escalation]\nrepeat_min = { high = -5 }\n",
            "escalation.repeat_min.high: Input should be greater than 0",
            id="repeat-min-negative"),
        pytest.param(
            MINIMAL + "[escalation]\nrepeat_min = { critical = 0 }\n",
            "escalation.repeat_min.critical: Input should be greater than 0",
            id="repeat-min-zero"),
        pytest.param(
            MINIMAL + "[thresholds.fever]\nconfirm_window_s = inf\n",
            "thresholds.fever.confirm_window_s: Input should be a finite number",
            id="infinite-window"),
        pytest.param(
            MINIMAL + "[vitals]\ninterval_s = nan\n",
            "vitals.interval_s: Input should be a finite number",
            id="nan-interval"),
        pytest.param(
            MINIMAL + "[thresholds.fever]\nconfirm_window_s = 300\nconfirm_min_span_s = 400\n",
            "thresholds.fever.confirm_min_span_s: 400 s is longer than confirm_window_s (300 s): "
            "readings in the window never span that long, so no fever could ever be confirmed",
            id="span-longer-than-window"),
        pytest.param(
            MINIMAL + PATCH + STRAP.replace("AA:BB:CC:DD:EE:01", "aa:bb:cc:dd:ee:02"),
            "devices[1].address: the same Bluetooth address as devices[0] ('temp-patch'): one "
            "wearable cannot be two devices",
            id="two-devices-one-address"),
        pytest.param(
            MINIMAL + "[thresholds.tachycardia]\nthreshold_bpm = 20\n",
            "thresholds.tachycardia.threshold_bpm: Input should be greater than or equal to 90",
            id="tachycardia-20-bpm"),
        pytest.param(
            MINIMAL + "[thresholds.tachycardia]\nthreshold_bpm = 180\n",
            "thresholds.tachycardia.threshold_bpm: Input should be less than or equal to 130",
            id="tachycardia-above-news2-urgent"),
        pytest.param(
            MINIMAL + "[thresholds.fever]\nthreshold_c = 36.5\n",
            "thresholds.fever.threshold_c: Input should be greater than or equal to 37",
            id="fever-threshold-normal-temperature"),
        pytest.param(
            MINIMAL + "[thresholds.fever]\nthreshold_c = 39.5\nhigh_threshold_c = 40.0\n",
            "thresholds.fever.threshold_c: Input should be less than or equal to 39",
            id="fever-threshold-too-high"),
        pytest.param(
            MINIMAL + "[thresholds.fever]\nhigh_threshold_c = 42.0\n",
            "thresholds.fever.high_threshold_c: Input should be less than or equal to 41",
            id="high-fever-unreachable"),
        pytest.param(
            MINIMAL + "[thresholds.fever]\nclear_margin_c = 2.0\n",
            "thresholds.fever.clear_margin_c: threshold_c - clear_margin_c = 36.00 °C is not "
            "above 36.1 °C, the bottom of NEWS2's normal band: a patient without fever would "
            "never read below it, so a fever alert would never clear",
            id="fever-clear-band-below-normal"),
        pytest.param(
            MINIMAL + "[thresholds.fever]\nclear_margin_c = 1.0\n"
            "[thresholds.stale]\noff_body_below_c = 37.0\n",
            "thresholds.fever.clear_margin_c: threshold_c - clear_margin_c = 37.00 °C is not "
            "above stale.off_body_below_c (37 °C): every reading cool enough to clear is taken "
            "as a patch off the skin, so a fever alert could never clear",
            id="fever-clear-band-off-body"),
        pytest.param(
            MINIMAL + "[thresholds.tachycardia]\nclear_margin_bpm = 50\n",
            "thresholds.tachycardia.clear_margin_bpm: threshold_bpm - clear_margin_bpm = 50 bpm "
            "is not above 51 bpm, the bottom of NEWS2's normal pulse band: a resting heart rate "
            "would never fall below it, so a tachycardia alert would never clear",
            id="tachycardia-clear-band-bradycardic"),
        pytest.param(
            MINIMAL + "[thresholds.stale]\nbattery_low_percent = 99\n",
            "thresholds.stale.battery_clear_margin_percent: battery_low_percent + "
            "battery_clear_margin_percent = 104 % is above 100 %: a low-battery alarm could "
            "never clear",
            id="battery-never-clears"),
        pytest.param(
            MINIMAL + "[thresholds.stale]\nbattery_low_percent = 100\n",
            "thresholds.stale.battery_low_percent: Input should be less than 100",
            id="battery-always-low"),
        pytest.param(
            MINIMAL + '[home_assistant]\nenabled = true\ndiscovery_prefix = "ha/#"\n',
            "home_assistant.discovery_prefix: must be '/'-separated non-empty levels without "
            "'+' or '#'",
            id="discovery-prefix-wildcard"),
        pytest.param(
            MINIMAL + PATCH.replace('address = "AA:BB:CC:DD:EE:02"\n', 'wear = "sometimes"\n'),
            "devices[0].wear: Input should be 'continuous' or 'part-time'",
            id="wear-unknown-mode"),
        # -- the rules that need the devices' profiles (temperature_patch: one reading a
        #    minute; heart_rate_strap: one a second) --
        pytest.param(
            MINIMAL + '[[devices]]\nid = "d1"\nprofile = "no-such-profile"\n',
            "devices[0].profile: unknown profile 'no-such-profile' (known: blood_pressure_cuff, "
            "health_thermometer, heart_rate_strap, pulse_oximeter, pulse_oximeter_spot_check, "
            "temperature_patch)",
            id="unknown-profile"),
        pytest.param(
            MINIMAL + STRAP + "[thresholds.tachycardia]\nmax_gap_s = 0.5\n",
            "thresholds.tachycardia.max_gap_s: 0.5 s is shorter than the 1 s between readings of "
            "devices[0] ('chest-strap', profile 'heart_rate_strap'): every reading would restart "
            "the window, so tachycardia could never be confirmed",
            id="tachycardia-gap-below-interval"),
        pytest.param(
            MINIMAL + PATCH + "[thresholds.fever]\nconfirm_window_s = 300\nconfirm_min_samples = 7\n",
            "thresholds.fever.confirm_min_samples: 7 readings never fit in the confirmation "
            "window (300 s) at one per 60 s from devices[0] ('temp-patch', profile 'temperature_patch'): "
            "at most 6 do, so no fever could ever be confirmed",
            id="too-many-samples-for-window"),
        pytest.param(
            MINIMAL + STRAP + "temperature_offset_c = 0.5\n",
            "devices[0].temperature_offset_c: profile 'heart_rate_strap' measures no "
            "temperature, so the offset would be ignored",
            id="offset-on-a-strap"),
        pytest.param(
            MINIMAL + STRAP + PATCH + 'wear = "part-time"\n',
            "devices[1].wear: part-time leaves no temperature wearable worn around the clock, "
            "but fever is the primary CRS sign and a temperature source taken off must always "
            "alarm: wear it continuously, or add one that is",
            id="only-temperature-wearable-part-time"),
        pytest.param(
            MINIMAL + PATCH + '[[devices]]\nid = "oral"\nprofile = "health_thermometer"\n',
            "devices[1].address: required: without it 'oral' may connect to devices[0] "
            "('temp-patch'), whose profile advertises the same Bluetooth service",
            id="addressless-thermometer-beside-a-patch"),
    ],
)
def test_check_config_rejects_settings_that_could_never_work(
    tmp_path: Path, text: str, expected: str
) -> None:
    assert check_config_problems(tmp_path, text) == [expected]


def test_confirm_span_impossible_at_a_slow_profiles_interval(tmp_path: Path) -> None:
    # A patch sending every 120 s: readings in a 300 s window span at most 240 s.
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    for source in (REPO / "device_profiles").glob("*.toml"):
        (profiles / source.name).write_text(source.read_text().replace(
            "expected_sample_interval_s = 60.0", "expected_sample_interval_s = 120.0"))
    text = (f'device_profiles_dir = "{profiles}"\n' + MINIMAL + PATCH
            + "[thresholds.fever]\nconfirm_window_s = 300\nconfirm_min_span_s = 250\n")
    assert check_config_problems(tmp_path, text) == [
        "thresholds.fever.confirm_min_span_s: 250 s is longer than the 240 s that readings one "
        "per 120 s from devices[0] ('temp-patch', profile 'temperature_patch') can span within "
        "the confirmation window (300 s), so no fever could ever be confirmed"
    ]


def test_every_problem_of_one_kind_is_listed_together(tmp_path: Path) -> None:
    lines = check_config_problems(
        tmp_path, MINIMAL + PATCH + STRAP + "[thresholds.fever]\nconfirm_min_samples = 7\n"
        "[thresholds.tachycardia]\nmax_gap_s = 0.5\n")
    assert [line.split(":")[0] for line in lines] == [
        "thresholds.fever.confirm_min_samples", "thresholds.tachycardia.max_gap_s"]


def test_stale_limits_shorter_than_an_interval_are_stretched_by_the_rules(tmp_path: Path) -> None:
    """Issue 10: the missing-data and fever windows follow the device's interval (at least
    missed_intervals / confirm_window_intervals of it), so these now work and are accepted."""
    text = (MINIMAL + PATCH + STRAP + "[thresholds.stale]\ntemperature_s = 30\n"
            "heart_rate_s = 0.5\n[thresholds.fever]\nconfirm_window_s = 30\n"
            "confirm_min_samples = 1\nconfirm_min_span_s = 0\n")
    path = tmp_path / "c.toml"
    path.write_text(text)
    result = crs_hub("check-config", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: hub ")


def test_run_refuses_the_same_configs_without_a_traceback(tmp_path: Path) -> None:
    # Before: `run` accepted it and the Hub raised ValueError (a traceback) at start-up.
    text = MINIMAL.replace('id = "hub-1"', f'id = "hub-1"\ndata_dir = "{tmp_path}"') + (
        '[[devices]]\nid = "d1"\nprofile = "no-such-profile"\n'
        "[escalation]\nrepeat_min = { hgh = 15 }\n")
    assert check_config_problems(tmp_path, text, command="run") == [
        "escalation.repeat_min.hgh: unknown key: must be 'low', 'medium', 'high', 'critical' "
        "or 'emergency'"]
    text = text.replace("[escalation]\nrepeat_min = { hgh = 15 }\n", "")
    assert check_config_problems(tmp_path, text, command="run") == [
        "devices[0].profile: unknown profile 'no-such-profile' (known: blood_pressure_cuff, "
        "health_thermometer, heart_rate_strap, pulse_oximeter, pulse_oximeter_spot_check, "
        "temperature_patch)"]


def test_repeat_min_is_keyed_by_severity_and_keeps_defaults_not_given() -> None:
    import tomllib

    config = parse_config(tomllib.loads(MINIMAL + "[escalation]\nrepeat_min = { high = 10 }\n"))
    repeat = config.escalation.repeat_min
    assert repeat == {Severity.LOW: 60.0, Severity.MEDIUM: 30.0, Severity.HIGH: 10.0,
                      Severity.CRITICAL: 5.0, Severity.EMERGENCY: 2.0}
    assert all(type(key) is Severity for key in repeat)
    assert parse_config(tomllib.loads(MINIMAL)).escalation.repeat_min[Severity.HIGH] == 15.0


def test_wear_defaults_to_continuous_and_part_time_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(MINIMAL + STRAP + 'wear = "part-time"\n' + PATCH)
    config = load_config(path)
    assert [d.wear for d in config.devices] == ["part-time", "continuous"]


def test_interchangeable_devices_without_addresses_are_accepted(tmp_path: Path) -> None:
    # Two identical patches may swap wearables harmlessly; a strap shares no service with them.
    path = tmp_path / "c.toml"
    path.write_text(MINIMAL + '[[devices]]\nid = "patch-a"\nprofile = "temperature_patch"\n'
                    '[[devices]]\nid = "patch-b"\nprofile = "temperature_patch"\n'
                    '[[devices]]\nid = "strap"\nprofile = "heart_rate_strap"\n')
    assert [d.id for d in load_config(path).devices] == ["patch-a", "patch-b", "strap"]


def test_no_temperature_device_is_a_warning_not_an_error(tmp_path: Path) -> None:
    # Temperatures may be entered by hand, so a strap alone can be a real setup; say so.
    path = tmp_path / "c.toml"
    path.write_text(MINIMAL + STRAP)
    os.chmod(path, 0o600)
    result = crs_hub("check-config", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "warning: devices: no configured device measures temperature; fever, the primary CRS "
        "sign, is seen only in readings entered by hand"]


# --- issue 13: [thresholds.emergency], [thresholds.temperature_trend], [therapy] ----------------

OXIMETER = ('[[devices]]\nid = "oximeter"\nprofile = "pulse_oximeter"\n'
            'address = "AA:BB:CC:DD:EE:03"\n')
THERAPY = """[therapy]
product_class = "bispecific"
product = "teclistamab"
timezone = "America/New_York"
[[therapy.doses]]
at = 2026-12-01T09:00:00
label = "step-up 1"
kind = "step_up"
"""


def test_protocol_sections_default_and_parse(tmp_path: Path) -> None:
    config = parse_config({"hub": {"id": "h"}, "patient": {
        "id": "p", "care_team_name": "T", "care_team_phone": "+1 555 0100"}})
    assert config.thresholds.emergency.spo2_below_percent == 90  # Crombie 2024
    assert config.thresholds.emergency.sbp_below_mmhg == 90
    assert config.thresholds.emergency.sbp_drop_mmhg == 10
    assert config.thresholds.temperature_trend.sd_k == 2  # Rajeeve 2023: baseline + 2 SD
    assert config.therapy is None
    path = tmp_path / "c.toml"
    path.write_text(MINIMAL + OXIMETER + "[thresholds.emergency]\nsbp_baseline_mmhg = 118\n"
                    + THERAPY)
    result = crs_hub("check-config", str(path))
    assert result.returncode == 0, result.stderr
    loaded = load_config(path)
    assert loaded.thresholds.emergency.sbp_baseline_mmhg == 118
    assert loaded.therapy is not None
    assert loaded.therapy.doses[0].at.utcoffset().total_seconds() == -5 * 3600  # local, EST


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(MINIMAL + "[thresholds.emergency]\nspo2_below = 88\n",
                     "thresholds.emergency.spo2_below: unknown key (check the spelling)",
                     id="emergency-misspelt"),
        pytest.param(MINIMAL + "[thresholds.emergency]\nsbp_below_mmhg = 20\n",
                     "thresholds.emergency.sbp_below_mmhg: Input should be greater than or "
                     "equal to 40", id="sbp-out-of-range"),
        pytest.param(MINIMAL + "[thresholds.emergency]\nspo2_window_s = inf\n",
                     "thresholds.emergency.spo2_window_s: Input should be a finite number",
                     id="spo2-window-infinite"),
        pytest.param(MINIMAL + "[thresholds.emergency]\nspo2_window_s = 30\n",
                     "thresholds.emergency: spo2_min_span_s must not be above spo2_window_s",
                     id="spo2-span-over-window"),
        pytest.param(MINIMAL + "[thresholds.temperature_trend]\nsd_k = -1\n",
                     "thresholds.temperature_trend.sd_k: Input should be greater than 0",
                     id="trend-negative-sd"),
        pytest.param(MINIMAL + "[thresholds.temperature_trend]\nfever_c = 38.5\n",
                     "thresholds.temperature_trend.fever_c: 38.5 °C is above fever.threshold_c "
                     "(38 °C): the care-team notice would learn fevers as baseline",
                     id="trend-above-the-fever-rule"),
        pytest.param(MINIMAL + THERAPY.replace("America/New_York", "Mars/Olympus"),
                     "therapy.timezone: unknown time zone 'Mars/Olympus' (use an IANA name)",
                     id="therapy-zone"),
        pytest.param(MINIMAL + THERAPY.replace('"bispecific"', '"car_t"'),
                     "therapy: doses[0] ('step-up 1'): kind 'step_up' does not fit "
                     "product_class 'car_t' (use infusion)", id="therapy-kind-vs-class"),
        pytest.param(MINIMAL + THERAPY.replace("[[therapy.doses]]",
                                               'spot_check = { times = ["25:00"] }\n'
                                               "[[therapy.doses]]"),
                     "therapy.spot_check.times: '25:00' is not a 24-hour HH:MM time",
                     id="therapy-bad-clock-time"),
        pytest.param(MINIMAL + OXIMETER + "[thresholds.emergency]\nspo2_max_gap_s = 0.5\n",
                     "thresholds.emergency.spo2_max_gap_s: 0.5 s is shorter than the 1 s between "
                     "readings of devices[0] ('oximeter', profile 'pulse_oximeter'): every "
                     "reading would break the run, so low oxygen could never be confirmed",
                     id="spo2-gap-below-the-oximeter-interval"),
    ],
)
def test_check_config_names_protocol_problems(tmp_path: Path, text: str, expected: str) -> None:
    assert check_config_problems(tmp_path, text) == [expected]


def test_a_slow_patch_warns_that_the_trend_notice_cannot_work(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    for source in (REPO / "device_profiles").glob("*.toml"):
        (profiles / source.name).write_text(source.read_text().replace(
            "expected_sample_interval_s = 60.0", "expected_sample_interval_s = 900.0"))
    path = tmp_path / "c.toml"
    path.write_text(f'device_profiles_dir = "{profiles}"\n' + MINIMAL + PATCH
                    + "[thresholds.fever]\nconfirm_window_s = 2400\n"
                    + "[thresholds.stale]\ntemperature_s = 2700\n")
    result = crs_hub("check-config", str(path))
    assert result.returncode == 0, result.stderr
    assert ("thresholds.temperature_trend.sustain_min_samples: 60 readings never fit in 10800 s "
            "at one per 900 s from 'temp-patch'") in result.stdout + result.stderr
