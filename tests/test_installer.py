"""deploy/install.sh and uninstall.sh: shellcheck, and dry runs into a scratch root.

Every privileged command is shadowed on PATH by a stub that records the call and fails, so a
dry run that executed one instead of printing it cannot pass.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import subprocess
import threading
import tomllib
from pathlib import Path

import pytest

from tests.support.mosquitto import Mosquitto, free_port
from tests.support.requirements import require_binary

REPO = Path(__file__).resolve().parent.parent
INSTALL = REPO / "deploy" / "install.sh"
UNINSTALL = REPO / "deploy" / "uninstall.sh"
HUB_ID = "hub-test01"
PRIVILEGED = ["apt-get", "systemctl", "useradd", "groupadd", "usermod", "userdel", "groupdel",
              "chown", "chgrp", "pip"]

# path -> (mode, owner:group the real install sets). Everything else belongs to root.
EXPECTED = {
    "etc/crs-hub": (0o750, "root:crs-hub"),
    "etc/crs-hub/config.toml": (0o640, "root:crs-hub"),
    "etc/crs-hub/mqtt-password": (0o640, "root:crs-hub"),
    "etc/systemd/system/crs-hub.service": (0o644, None),
    "etc/systemd/system/crs-hub-failure@.service": (0o644, None),
    "etc/mosquitto/conf.d/crs-hub.conf": (0o644, None),
    "etc/mosquitto/crs-hub.acl": (0o640, "root:mosquitto"),
    "etc/mosquitto/crs-hub.passwd": (0o640, "root:mosquitto"),
    "etc/mosquitto/certs/crs-hub-ca.crt": (0o644, None),
    "etc/mosquitto/certs/crs-hub-ca.key": (0o600, None),
    "etc/mosquitto/certs/crs-hub-server.crt": (0o644, None),
    "etc/mosquitto/certs/crs-hub-server.key": (0o640, "root:mosquitto"),
    "opt/crs-hub/share/doc/raspberry-pi.md": (0o644, None),
    "opt/crs-hub/share/mosquitto/bridge-clinic.conf.template": (0o644, None),
}
KEPT_WITHOUT_PURGE = {
    "etc/crs-hub/config.toml", "etc/crs-hub/mqtt-password", "etc/mosquitto/crs-hub.acl",
    "etc/mosquitto/crs-hub.passwd", "etc/mosquitto/certs/crs-hub-ca.crt",
    "etc/mosquitto/certs/crs-hub-ca.key", "etc/mosquitto/certs/crs-hub-server.crt",
    "etc/mosquitto/certs/crs-hub-server.key",
}


@pytest.fixture
def stubs(tmp_path: Path) -> tuple[dict[str, str], Path]:
    bin_dir = tmp_path / "stub-bin"
    bin_dir.mkdir()
    calls = tmp_path / "privileged-calls.log"
    for name in PRIVILEGED:
        stub = bin_dir / name
        stub.write_text(f'#!/bin/sh\necho "{name} $*" >> "{calls}"\nexit 97\n')
        stub.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("DESTDIR", "CRS_HUB_ID")}
    env["PATH"] = f"{bin_dir}:{env.get('PATH', '/usr/bin:/bin')}"
    env["CRS_HUB_ID"] = HUB_ID
    return env, calls


def run(script: Path, env: dict[str, str], *args: str, root: Path | None = None) -> str:
    full_env = dict(env)
    if root is not None:
        full_env["DESTDIR"] = str(root)
    result = subprocess.run(["bash", str(script), *args], env=full_env, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, f"{script.name} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def tree(root: Path) -> dict[str, tuple[int, str]]:
    """Every file and directory below root: (mode, sha256 of the content or 'dir')."""
    out: dict[str, tuple[int, str]] = {}
    for path in sorted(root.rglob("*")):
        mode = stat.S_IMODE(path.lstat().st_mode)
        digest = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
        out[str(path.relative_to(root))] = (mode, digest)
    return out


def files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_shellcheck_passes() -> None:
    shellcheck = require_binary("shellcheck")
    scripts = [INSTALL, UNINSTALL, REPO / "deploy" / "common.sh", REPO / "deploy" / "dev-setup.sh",
               REPO / ".ci" / "run"]
    result = subprocess.run([shellcheck, "-x", "--severity=style", *map(str, scripts)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dry_run_needs_a_scratch_root_and_real_runs_refuse_one(
    stubs: tuple[dict[str, str], Path], tmp_path: Path
) -> None:
    env, calls = stubs
    for script in (INSTALL, UNINSTALL):
        no_root = subprocess.run(["bash", str(script), "--dry-run"], env=env, capture_output=True,
                                 text=True, timeout=60, check=False)
        assert no_root.returncode == 2
        assert "--dry-run needs" in no_root.stderr
        real = subprocess.run(["bash", str(script), "--root", str(tmp_path)], env=env,
                              capture_output=True, text=True, timeout=60, check=False)
        assert real.returncode == 2
        assert "only with --dry-run" in real.stderr
    assert not calls.exists()


def test_dry_run_creates_the_expected_files_and_only_prints_privileged_commands(
    stubs: tuple[dict[str, str], Path], tmp_path: Path
) -> None:
    require_binary("mosquitto_passwd")
    require_binary("openssl")
    env, calls = stubs
    root = tmp_path / "root"
    out = run(INSTALL, env, "--dry-run", root=root)
    assert not calls.exists(), calls.read_text()

    assert files(root) == {p for p in EXPECTED if p != "etc/crs-hub"}
    for path, (mode, owner) in EXPECTED.items():
        assert stat.S_IMODE((root / path).stat().st_mode) == mode, path
        if owner is not None:
            assert f"+ chown {owner} /{path}\n" in out, path

    printed = [line[2:] for line in out.splitlines() if line.startswith("+ ")]
    assert "apt-get update" in printed
    assert any(re.search(r"apt-get install -y .*python3-venv bluez mosquitto mosquitto-clients", p)
               for p in printed)
    assert any("useradd --system --gid crs-hub --groups bluetooth" in p for p in printed)
    assert "python3 -m venv /opt/crs-hub/venv" in printed
    assert f"/opt/crs-hub/venv/bin/pip install --quiet --upgrade {REPO}" in printed
    assert "systemctl enable crs-hub.service" in printed
    assert "systemctl restart mosquitto.service" in printed
    # The status page's access code is made at install, as the service user, never replaced.
    assert stat.S_IMODE((root / "var/lib/crs-hub").stat().st_mode) == 0o700
    assert "chown crs-hub:crs-hub /var/lib/crs-hub" in printed
    assert ("runuser -u crs-hub -- /opt/crs-hub/venv/bin/crs-hub access-code --config "
            "/etc/crs-hub/config.toml --if-missing") in printed

    # Content: copies of the repository's files, and a config for this hub.
    for src, dest in (("systemd/crs-hub.service", "etc/systemd/system/crs-hub.service"),
                      ("deploy/mosquitto/crs-hub.conf", "etc/mosquitto/conf.d/crs-hub.conf"),
                      ("deploy/mosquitto/crs-hub.acl", "etc/mosquitto/crs-hub.acl")):
        assert (root / dest).read_bytes() == (REPO / src).read_bytes(), dest
    config = tomllib.loads((root / "etc/crs-hub/config.toml").read_text())
    example = tomllib.loads((REPO / "config.example.toml").read_text())
    assert config["hub"]["id"] == HUB_ID
    assert config["mqtt"]["username"] == HUB_ID
    assert config["patient"] == example["patient"]
    assert config["mqtt"]["password_file"] == "/etc/crs-hub/mqtt-password"
    password = (root / "etc/crs-hub/mqtt-password").read_text().strip()
    assert re.fullmatch(r"[0-9a-f]{48}", password)
    passwd = (root / "etc/mosquitto/crs-hub.passwd").read_text()
    assert re.fullmatch(rf"{HUB_ID}:\$7\$101\$\S+\n", passwd)  # PBKDF2-SHA512, not plain text
    assert password not in passwd


def test_installed_broker_accepts_the_hub_over_tls_with_the_generated_password(
    stubs: tuple[dict[str, str], Path], tmp_path: Path
) -> None:
    """The generated certificate, CA and password file work together in a real mosquitto."""
    mosquitto = require_binary("mosquitto")
    require_binary("mosquitto_passwd")
    require_binary("openssl")
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
    from paho.mqtt.reasoncodes import ReasonCode

    env, _ = stubs
    root = tmp_path / "root"
    run(INSTALL, env, "--dry-run", root=root)
    plain, tls = free_port(), free_port()
    conf = (root / "etc/mosquitto/conf.d/crs-hub.conf").read_text()
    conf = (conf.replace("listener 1883 127.0.0.1", f"listener {plain} 127.0.0.1")
            .replace("listener 8883", f"listener {tls} 127.0.0.1")
            .replace("/etc/mosquitto/", f"{root}/etc/mosquitto/"))
    prelude = f"persistence_location {tmp_path}/\n" + ("user root\n" if os.geteuid() == 0 else "")
    broker = Mosquitto(binary=mosquitto, workdir=tmp_path / "broker", port=plain,
                       extra_config=prelude + conf)
    broker.start()
    try:
        results: list[int] = []
        connected = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"crs-hub-{HUB_ID}",
                             protocol=MQTTProtocolVersion.MQTTv5, reconnect_on_failure=False)
        client.username_pw_set(HUB_ID, (root / "etc/crs-hub/mqtt-password").read_text().strip())
        client.tls_set(ca_certs=str(root / "etc/mosquitto/certs/crs-hub-ca.crt"))

        def on_connect(client: mqtt.Client, userdata: object, flags: object,
                       reason_code: ReasonCode, properties: object) -> None:
            results.append(reason_code.value)
            connected.set()

        client.on_connect = on_connect
        client.connect("127.0.0.1", tls)  # the certificate names IP 127.0.0.1 and localhost
        client.loop_start()
        connected.wait(10)
        client.disconnect()
        client.loop_stop()
        assert results == [0]
    finally:
        broker.stop()


def test_second_run_is_idempotent(stubs: tuple[dict[str, str], Path], tmp_path: Path) -> None:
    require_binary("mosquitto_passwd")
    require_binary("openssl")
    env, calls = stubs
    root = tmp_path / "root"
    run(INSTALL, env, "--dry-run", root=root)
    first = tree(root)
    env2 = dict(env, CRS_HUB_ID="hub-other")  # an existing config keeps its hub id
    out = run(INSTALL, env2, "--dry-run", root=root)
    assert tree(root) == first
    assert "keeping existing /etc/crs-hub/config.toml" in out
    assert "keeping existing /etc/mosquitto/crs-hub.acl" in out
    assert "broker user" not in out  # no second password entry for the hub
    assert not calls.exists()


def test_local_edits_to_config_and_acl_survive_a_reinstall(
    stubs: tuple[dict[str, str], Path], tmp_path: Path
) -> None:
    require_binary("mosquitto_passwd")
    require_binary("openssl")
    env, _ = stubs
    root = tmp_path / "root"
    run(INSTALL, env, "--dry-run", root=root)
    acl = root / "etc/mosquitto/crs-hub.acl"
    acl.write_text(acl.read_text() + "user team-cardio\ntopic write crs/v1/hub-x/p-1/alert/ack\n")
    config = root / "etc/crs-hub/config.toml"
    config.write_text(config.read_text().replace('"p-4821"', '"p-7777"'))
    config.chmod(0o644)  # a careless edit; the installer restores the mode
    run(INSTALL, env, "--dry-run", root=root)
    assert "team-cardio" in acl.read_text()
    assert '"p-7777"' in config.read_text()
    assert stat.S_IMODE(config.stat().st_mode) == 0o640


def test_uninstall_dry_run_removes_the_install(
    stubs: tuple[dict[str, str], Path], tmp_path: Path
) -> None:
    require_binary("mosquitto_passwd")
    require_binary("openssl")
    env, calls = stubs
    root = tmp_path / "root"
    run(INSTALL, env, "--dry-run", root=root)
    (root / "var/lib/crs-hub").mkdir(parents=True, exist_ok=True)
    (root / "var/lib/crs-hub/hub.sqlite3").write_bytes(b"readings")

    out = run(UNINSTALL, env, "--dry-run", root=root)
    assert files(root) == KEPT_WITHOUT_PURGE | {"var/lib/crs-hub/hub.sqlite3"}
    assert not (root / "opt/crs-hub").exists()
    assert "+ systemctl disable --now crs-hub.service" in out
    assert "--purge" in out

    out = run(UNINSTALL, env, "--dry-run", "--purge", root=root)
    assert files(root) == set()
    assert not (root / "etc/crs-hub").exists()
    assert not (root / "var/lib/crs-hub").exists()
    assert "userdel crs-hub" in out
    assert not calls.exists(), calls.read_text()
