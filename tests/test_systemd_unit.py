"""The systemd units: required directives, `systemd-analyze verify` and the security score."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.support.requirements import require_binary

SYSTEMD_DIR = Path(__file__).resolve().parent.parent / "systemd"
HUB_UNIT = SYSTEMD_DIR / "crs-hub.service"
FAILURE_UNIT = SYSTEMD_DIR / "crs-hub-failure@.service"
MAX_EXPOSURE = 2.5

Unit = dict[str, list[tuple[str, str]]]


def parse_unit(path: Path) -> Unit:
    """Sections -> ordered (key, value) pairs; systemd allows repeated keys, configparser doesn't."""
    unit: Unit = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            unit.setdefault(section, [])
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not a key=value line: {raw!r}"
        unit[section].append((key.strip(), value.strip()))
    return unit


def values(unit: Unit, section: str, key: str) -> list[str]:
    return [v for k, v in unit.get(section, []) if k == key]


def one(unit: Unit, section: str, key: str) -> str:
    found = values(unit, section, key)
    assert len(found) == 1, f"[{section}] {key}= expected once, found {found}"
    return found[0]


def exposure(unit_path: Path) -> float:
    analyze = require_binary("systemd-analyze")
    result = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", str(unit_path)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    assert match, f"no overall exposure in output:\n{result.stdout[-2000:]}"
    return float(match.group(1))


@pytest.fixture(scope="module")
def hub() -> Unit:
    return parse_unit(HUB_UNIT)


def test_service_type_notify_and_watchdog(hub: Unit) -> None:
    assert one(hub, "Service", "Type") == "notify"
    assert one(hub, "Service", "NotifyAccess") == "main"  # 'all' would let any child ping
    assert re.fullmatch(r"\d+s?", one(hub, "Service", "WatchdogSec"))
    assert one(hub, "Service", "ExecStart") == (
        "/opt/crs-hub/venv/bin/crs-hub run --config /etc/crs-hub/config.toml"
    )


def test_restart_policy_and_start_limits_in_unit_section(hub: Unit) -> None:
    assert one(hub, "Service", "Restart") == "on-failure"
    assert values(hub, "Service", "RestartSec")
    assert one(hub, "Service", "RestartPreventExitStatus") == "2"  # config error: fail at once
    # StartLimit* are [Unit] settings; systemd ignores them (with a warning) under [Service].
    assert int(one(hub, "Unit", "StartLimitBurst")) >= 3
    assert int(one(hub, "Unit", "StartLimitIntervalSec")) > 0
    assert not [k for k, _ in hub["Service"] if k.startswith("StartLimit")]


def test_on_failure_unit_exists_and_logs_a_critical_hub_down(hub: Unit) -> None:
    assert one(hub, "Unit", "OnFailure") == "crs-hub-failure@%n.service"
    failure = parse_unit(FAILURE_UNIT)
    assert one(failure, "Service", "Type") == "oneshot"
    assert one(failure, "Service", "SyslogLevel") == "crit"
    assert "HUB DOWN: %i" in one(failure, "Service", "ExecStart")


def test_static_user_in_bluetooth_group_not_dynamic_user(hub: Unit) -> None:
    assert one(hub, "Service", "User") == "crs-hub"
    assert one(hub, "Service", "Group") == "crs-hub"
    assert not values(hub, "Service", "DynamicUser")  # breaks D-Bus policy for org.bluez
    groups = " ".join(values(hub, "Service", "SupplementaryGroups")).split()
    assert "bluetooth" in groups


def test_directories_and_sandbox(hub: Unit) -> None:
    assert one(hub, "Service", "StateDirectory") == "crs-hub"
    assert one(hub, "Service", "ConfigurationDirectory") == "crs-hub"
    assert one(hub, "Service", "ProtectSystem") == "strict"
    assert one(hub, "Service", "CapabilityBoundingSet") == ""
    assert one(hub, "Service", "UMask") == "0077"


def test_network_allows_dbus_and_mqtt_over_tcp(hub: Unit) -> None:
    families = set(one(hub, "Service", "RestrictAddressFamilies").split())
    assert families == {"AF_UNIX", "AF_INET", "AF_INET6"}  # D-Bus + loopback/LAN MQTT
    assert not values(hub, "Service", "PrivateNetwork")
    assert one(hub, "Service", "IPAddressDeny") == "any"
    allowed = one(hub, "Service", "IPAddressAllow").split()
    assert "localhost" in allowed
    assert "192.168.0.0/16" in allowed


@pytest.mark.parametrize("unit_path", [HUB_UNIT, FAILURE_UNIT], ids=lambda p: p.name)
def test_security_exposure_at_most_2_5(unit_path: Path) -> None:
    score = exposure(unit_path)
    assert 0 < score <= MAX_EXPOSURE, f"{unit_path.name}: exposure {score} > {MAX_EXPOSURE}"


def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    """Unknown keys or bad values show up on stderr. The venv binary is not installed here, so
    ExecStart points at /bin/true for the check."""
    analyze = require_binary("systemd-analyze")
    hub_text = HUB_UNIT.read_text().replace("/opt/crs-hub/venv/bin/crs-hub", "/bin/true")
    (tmp_path / HUB_UNIT.name).write_text(hub_text)
    (tmp_path / FAILURE_UNIT.name).write_text(FAILURE_UNIT.read_text())
    result = subprocess.run(
        [analyze, "verify", "--no-pager", HUB_UNIT.name, "crs-hub-failure@crs-hub.service.service"],
        capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""
