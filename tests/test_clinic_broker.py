"""The clinic broker: mosquitto 2.0.11 with its dynamic-security plugin, provisioned only by the
scripts in deploy/clinic/, checked by the broker's own answers (CONNACK, SUBACK and PUBACK reason
codes) and by what a subscriber really receives. Then `crs-hub console` on that broker: a nurse's
acknowledgement goes out over the nurse's own login, and only under the nurse's name.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.mosquitto import Mosquitto, free_port
from tests.support.requirements import require_binary
from tests.test_mosquitto_acl import Client, ok

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent
CLINIC = REPO / "deploy" / "clinic"
NOT_AUTHORIZED = 0x87
PW = "correct-horse-battery"  # every test identity; the scripts read it from stdin
ADMIN_PW = "admin-only-in-a-file"


def plugin_path() -> str:
    found = sorted(Path("/usr/lib").glob("*/mosquitto_dynamic_security.so"))
    if not found:
        if os.environ.get("CRS_REQUIRE_INTEGRATION") == "1":
            pytest.fail("mosquitto_dynamic_security.so is not installed")
        pytest.skip("mosquitto_dynamic_security.so is not installed")
    return str(found[0])


@dataclass
class Clinic:
    broker: Mosquitto
    admin_dir: Path
    clients: list[Client]

    @property
    def port(self) -> int:
        return self.broker.port

    def script(self, name: str, *args: str, password: str | None = PW,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(CLINIC / name), *args], input=None if password is None else password + "\n",
            capture_output=True, text=True, timeout=60, check=False,
            env={**os.environ, "CRS_DYNSEC_ADMIN": str(self.admin_dir), **(env or {})})

    def run(self, name: str, *args: str, **kw: object) -> str:
        result = self.script(name, *args, **kw)  # type: ignore[arg-type]
        assert result.returncode == 0, f"{name} {args}: {result.stderr}"
        return result.stdout

    def dynsec(self, commands: list[dict[str, object]]) -> list[dict[str, object]]:
        rr = shutil.which("mosquitto_rr")
        assert rr
        out = subprocess.run([rr, "-V", "5", "-t", "$CONTROL/dynamic-security/v1", "-e",
                              "$CONTROL/dynamic-security/v1/response", "-W", "5", "-m",
                              json.dumps({"commands": commands})], capture_output=True,
                             text=True, timeout=30, check=True,
                             env={**os.environ, "XDG_CONFIG_HOME": str(self.admin_dir)})
        return json.loads(out.stdout)["responses"]  # type: ignore[no-any-return]

    def connected(self, username: str, password: str = PW) -> Client:
        client = Client(self.port, username)
        client.paho.username_pw_set(username, password)
        self.clients.append(client)
        assert client.connect() == 0, f"{username} could not log in"
        return client

    def login_code(self, username: str, password: str = PW) -> int:
        client = Client(self.port, username)
        client.paho.username_pw_set(username, password)
        self.clients.append(client)
        return client.connect()


@pytest.fixture(scope="module")
def clinic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clinic]:
    binary = require_binary("mosquitto")
    ctrl = require_binary("mosquitto_ctrl")
    require_binary("mosquitto_rr")
    require_binary("jq")
    plugin = plugin_path()
    workdir = tmp_path_factory.mktemp("clinic")
    state = workdir / "dynamic-security.json"
    subprocess.run([ctrl, "dynsec", "init", str(state), "admin", ADMIN_PW], check=True,
                   capture_output=True, timeout=30)
    port = free_port()
    conf = (CLINIC / "mosquitto-clinic.conf").read_text()
    for old, new in (("listener 1883 127.0.0.1\n", f"listener {port} 127.0.0.1\n"),
                     ("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so", plugin),
                     ("/var/lib/mosquitto/dynamic-security.json", str(state))):
        assert old in conf, f"mosquitto-clinic.conf no longer contains {old!r}"
        conf = conf.replace(old, new)
    conf = conf.split("# Hubs' bridges")[0]  # the TLS listener needs certificates: not here
    prelude = f"persistence_location {workdir}/\nlog_dest stdout\n"
    if os.geteuid() == 0:
        prelude += "user root\n"
    broker = Mosquitto(binary=binary, workdir=workdir, port=port, extra_config=prelude + conf)
    broker.start()
    admin = workdir / "dynsec-admin"
    admin.mkdir(mode=0o700)
    for tool in ("mosquitto_rr", "mosquitto_pub"):
        (admin / tool).write_text(f"-h 127.0.0.1\n-p {port}\n-u admin\n-P {ADMIN_PW}\n")
    clinic = Clinic(broker, admin, [])
    try:
        clinic.run("setup.sh", password=None)
        clinic.run("setup.sh", password=None)  # again: idempotent
        clinic.run("add-console.sh", "console-1")
        # nurse-ana joins team-a before its first hub, nurse-cleo after it: both get the ack
        # rights for hub-a's patient.
        clinic.run("add-nurse.sh", "nurse-ana", "team-a")
        clinic.run("add-hub.sh", "hub-a", "p-a", "team-a")
        clinic.run("add-nurse.sh", "nurse-cleo", "team-a")
        clinic.run("add-hub.sh", "hub-b", "p-b", "team-b")
        clinic.run("add-nurse.sh", "nurse-ben", "team-b")
        clinic.run("add-patient-app.sh", "hub-a", "p-a")
        yield clinic
    finally:
        for client in clinic.clients:
            client.close()
        broker.stop()


def t(hub: str, patient: str, leaf: str) -> str:
    return f"crs/v1/{hub}/{patient}/{leaf}"


def test_setup_leaves_no_anonymous_access_and_admin_reads_no_health_data(clinic: Clinic) -> None:
    assert Client(clinic.port, None).connect() == NOT_AUTHORIZED
    (role,) = clinic.dynsec([{"command": "getRole", "rolename": "admin"}])
    topics = {(a["acltype"], a["topic"]) for a in role["data"]["role"]["acls"]}  # type: ignore[index]
    assert ("publishClientReceive", "#") not in topics
    assert ("subscribePattern", "#") not in topics
    assert clinic.login_code("hub-a", "wrong password") in (0x86, NOT_AUTHORIZED)


def test_patient_app_publishes_nothing_under_any_hubs_tree(clinic: Clinic) -> None:
    app = clinic.connected("p-a")
    for target in (t("hub-a", "p-a", "alert/event"), t("hub-a", "p-a", "alert/state"),
                   t("hub-a", "p-a", "alert/ack/p-a"), t("hub-a", "p-a", "alert/ack"),
                   t("hub-a", "p-a", "vitals"), "crs/v1/hub-a/status",
                   t("hub-a", "p-a", "alert/receipt"), t("hub-b", "p-b", "alert/event"),
                   "crs/v1/p-a/status", "crs/v1/p-a/x/alert/event"):
        assert app.publish(target) == NOT_AUTHORIZED, target
    # It reads its own alerts, and nothing of another patient's.
    assert ok(app.subscribe(t("hub-a", "p-a", "alert/event")))
    assert app.subscribe(t("hub-b", "p-b", "alert/event")) == NOT_AUTHORIZED
    assert app.subscribe("crs/v1/#") == NOT_AUTHORIZED
    hub = clinic.connected("hub-a")
    assert ok(hub.publish(t("hub-a", "p-a", "alert/event"), b"fever"))
    assert (t("hub-a", "p-a", "alert/event"), b"fever") in app.received(
        until_topic=t("hub-a", "p-a", "alert/event"))


def test_hub_cannot_publish_as_another_hub_nor_acknowledge(clinic: Clinic) -> None:
    hub_a = clinic.connected("hub-a")
    for leaf in ("alert/event", "alert/state", "device/patch/status", "vitals",
                 "alert/ack/response/team-a"):
        assert ok(hub_a.publish(t("hub-a", "p-a", leaf))), leaf
    assert ok(hub_a.publish("crs/v1/hub-a/status", retain=True))
    for target in (t("hub-b", "p-b", "alert/event"), "crs/v1/hub-b/status",
                   t("hub-b", "p-b", "alert/state"), t("hub-a", "p-a", "alert/ack/nurse-ana"),
                   "crs/v1/status", "$CONTROL/dynamic-security/v1"):
        assert hub_a.publish(target) == NOT_AUTHORIZED, target
    assert hub_a.subscribe("crs/v1/hub-b/#") == NOT_AUTHORIZED
    # The hub (or its bridge) reads the acks for its patients.
    assert ok(hub_a.subscribe(t("hub-a", "+", "alert/ack/+")))


def test_nurse_sees_only_their_teams_patients(clinic: Clinic) -> None:
    ana = clinic.connected("nurse-ana")
    for own in ("crs/v1/hub-a/status", t("hub-a", "p-a", "alert/event"),
                t("hub-a", "p-a", "alert/state"), t("hub-a", "p-a", "device/+/status"),
                t("hub-a", "p-a", "#")):
        assert ok(ana.subscribe(own)), own
    for other in ("crs/v1/hub-b/status", t("hub-b", "p-b", "alert/event"), "crs/v1/#",
                  "crs/v1/+/+/alert/event", "#"):
        assert ana.subscribe(other) == NOT_AUTHORIZED, other
    hub_a, hub_b = clinic.connected("hub-a"), clinic.connected("hub-b")
    ben = clinic.connected("nurse-ben")
    assert ok(ben.subscribe(t("hub-b", "p-b", "alert/event")))
    assert ok(hub_b.publish(t("hub-b", "p-b", "alert/event"), b"b-only"))
    assert ok(hub_a.publish(t("hub-a", "p-a", "alert/event"), b"a"))
    seen = ana.received(until_topic=t("hub-a", "p-a", "alert/event"))
    assert all(topic.startswith("crs/v1/hub-a/") for topic, _ in seen), seen
    assert (t("hub-b", "p-b", "alert/event"), b"b-only") in ben.received(
        until_topic=t("hub-b", "p-b", "alert/event"))


def test_forged_actor_is_refused_by_the_broker(clinic: Clinic) -> None:
    ana, cleo = clinic.connected("nurse-ana"), clinic.connected("nurse-cleo")
    hub = clinic.connected("hub-a")
    assert ok(hub.subscribe(t("hub-a", "p-a", "alert/ack/+")))
    assert ok(ana.publish(t("hub-a", "p-a", "alert/ack/nurse-ana"), b'{"actor":"nurse-ana"}'))
    assert ok(cleo.publish(t("hub-a", "p-a", "alert/ack/nurse-cleo"), b'{"actor":"nurse-cleo"}'))
    for forged in (t("hub-a", "p-a", "alert/ack/nurse-cleo"), t("hub-a", "p-a", "alert/ack"),
                   t("hub-a", "p-a", "alert/ack/response"),
                   t("hub-b", "p-b", "alert/ack/nurse-ana")):  # not her team's patient
        assert ana.publish(forged, b"forged") == NOT_AUTHORIZED, forged
    console = clinic.connected("console-1")  # the console itself acknowledges as nobody...
    assert console.publish(t("hub-a", "p-a", "alert/ack/nurse-ana")) == NOT_AUTHORIZED
    for other in (t("hub-a", "p-a", "alert/event"), "crs/v1/hub-a/status"):
        assert console.publish(other) == NOT_AUTHORIZED, other
    # ...and writes only delivery receipts, which the hub reads; a nurse writes none.
    assert ok(hub.subscribe(t("hub-a", "p-a", "alert/receipt")))
    assert ok(console.publish(t("hub-a", "p-a", "alert/receipt"), b'{"event_id":"e1"}'))
    assert ana.publish(t("hub-a", "p-a", "alert/receipt")) == NOT_AUTHORIZED
    sentinel = t("hub-a", "p-a", "alert/ack/nurse-ana")
    assert ok(ana.publish(sentinel, b"last"))
    got = hub.received(until_topic=t("hub-a", "p-a", "alert/ack/nurse-cleo"))
    got += hub.received(until_topic=sentinel)
    assert [p for _, p in got] == [b'{"actor":"nurse-ana"}', b'{"actor":"nurse-cleo"}',
                                   b'{"event_id":"e1"}', b"last"]


def test_dynsec_in_this_mosquitto_matches_percent_u_literally(clinic: Clinic) -> None:
    """Why add-nurse.sh writes one ACL per patient: a role ACL `.../alert/ack/%u` does not bind
    the topic to the login in 2.0.11; it only matches a topic that literally ends in %u."""
    clinic.dynsec([{"command": "createRole", "rolename": "probe-u", "acls": [
        {"acltype": "publishClientSend", "topic": "probe/ack/%u", "allow": True}]}])
    clinic.run("add-console.sh", "probe-user")  # then give it only the probe role
    clinic.dynsec([{"command": "removeClientRole", "username": "probe-user", "rolename": "console"},
                   {"command": "addClientRole", "username": "probe-user", "rolename": "probe-u"}])
    probe = clinic.connected("probe-user")
    assert probe.publish("probe/ack/probe-user") == NOT_AUTHORIZED
    assert ok(probe.publish("probe/ack/%u"))
    clinic.run("retire.sh", "console", "probe-user", password=None)
    clinic.dynsec([{"command": "deleteRole", "rolename": "probe-u"}])


def test_scripts_refuse_bad_ids_duplicates_and_missing_passwords(clinic: Clinic) -> None:
    for args in (("add-hub.sh", "Hub A", "p-x", "team-a"), ("add-nurse.sh", "response", "team-a"),
                 ("add-nurse.sh", "Ana Lopez", "team-a"), ("retire.sh", "wizard", "x")):
        result = clinic.script(*args)
        assert result.returncode == 2, args
        assert result.stderr.strip(), args
    duplicate = clinic.script("add-nurse.sh", "nurse-ana", "team-a")
    assert duplicate.returncode == 2 and "already exists" in duplicate.stderr
    empty = clinic.script("add-patient-app.sh", "hub-b", "p-b", password="")
    assert empty.returncode == 2 and "password on stdin" in empty.stderr
    no_admin = clinic.script("setup.sh", password=None,
                             env={"CRS_DYNSEC_ADMIN": str(clinic.admin_dir / "missing")})
    assert no_admin.returncode == 2 and "no admin option files" in no_admin.stderr


def test_retired_identities_lose_login_and_rights(clinic: Clinic) -> None:
    clinic.run("add-hub.sh", "hub-x", "p-x", "team-a")
    clinic.run("add-nurse.sh", "nurse-dan", "team-a")
    hub_x = clinic.connected("hub-x")
    assert ok(hub_x.publish("crs/v1/hub-x/status", b"last words", retain=True))
    before = clinic.connected("console-1")
    assert ok(before.subscribe("crs/v1/hub-x/status"))
    assert ("crs/v1/hub-x/status", b"last words") in before.received("crs/v1/hub-x/status")
    dan = clinic.connected("nurse-dan")
    assert ok(dan.publish(t("hub-x", "p-x", "alert/ack/nurse-dan")))
    assert ok(dan.subscribe(t("hub-x", "p-x", "alert/event")))
    clinic.run("retire.sh", "hub", "hub-x", password=None)
    assert clinic.login_code("hub-x") in (0x86, NOT_AUTHORIZED)
    # check_retain_source: the retired hub's retained status is no longer handed out.
    after = clinic.connected("console-1")
    assert ok(after.subscribe("crs/v1/hub-x/status"))
    assert ok(after.subscribe("crs/v1/hub-a/status"))
    hub_a = clinic.connected("hub-a")
    assert ok(hub_a.publish("crs/v1/hub-a/status", b"sentinel"))
    seen = after.received(until_topic="crs/v1/hub-a/status")
    assert "crs/v1/hub-x/status" not in [topic for topic, _ in seen], seen
    roles = clinic.dynsec([{"command": "getRole", "rolename": r}
                           for r in ("care-team-team-a", "nurse-nurse-dan", "nurse-nurse-ana")])
    for role in roles:
        assert "data" in role, roles
        topics = [a["topic"] for a in role["data"]["role"]["acls"]]  # type: ignore[index]
        assert topics and not [x for x in topics if x.startswith("crs/v1/hub-x/")], topics
    fresh = clinic.connected("nurse-dan")
    assert fresh.publish(t("hub-x", "p-x", "alert/ack/nurse-dan")) == NOT_AUTHORIZED
    clinic.run("retire.sh", "nurse", "nurse-dan", password=None)
    assert clinic.login_code("nurse-dan") in (0x86, NOT_AUTHORIZED)
    again = clinic.script("retire.sh", "nurse", "nurse-dan", password=None)
    assert again.returncode == 0  # retiring twice is harmless


def test_console_on_the_clinic_broker_acks_over_the_nurses_own_login(
        clinic: Clinic, tmp_path: Path) -> None:
    """add-nurse.sh prints the console's [[nurses]] block; the console logs in as console-1
    and publishes Eve's acknowledgement as nurse-eve, which the broker accepts; with Eve's
    broker password changed, the same ack is refused and the page says so."""
    from daemon.alerts import AlertKind, Severity
    from tests.support.console_hubs import SimHub

    crs_hub = tmp_path / "crs-hub"
    crs_hub.write_text(f"#!/bin/sh\nPYTHONPATH={REPO} exec {sys.executable} -m daemon.cli \"$@\"\n")
    crs_hub.chmod(0o755)
    block = clinic.run("add-nurse.sh", "nurse-eve", "team-a", env={"CRS_HUB": str(crs_hub)})
    nurses = block[block.index("[[nurses]]"):]
    (tmp_path / "console.pw").write_text(PW + "\n")
    (tmp_path / "console.toml").write_text(
        f'[console]\ndata_dir = "{tmp_path / "data"}"\nlisten_port = 0\n'
        f'[mqtt]\nport = {clinic.port}\nusername = "console-1"\n'
        f'password_file = "{tmp_path / "console.pw"}"\nkeepalive_s = 5\nreconnect_max_s = 1\n'
        '[[teams]]\nid = "team-a"\npatients = [{ hub = "hub-a", patient = "p-a" }]\n' + nurses)
    hub = SimHub(clinic.port, "hub-a", "p-a", username="hub-a", password=PW).start()
    listener = clinic.connected("hub-a")
    assert ok(listener.subscribe(t("hub-a", "p-a", "alert/ack/+")))
    from tests.test_console import start_console, until
    console = start_console(tmp_path / "console.toml")
    try:
        hub.status()
        alert = hub.raise_alert(AlertKind.FEVER, Severity.HIGH, value=38.5)
        jar = http.cookiejar.CookieJar()
        web = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))

        def post(path: str, fields: dict[str, str]) -> str:
            with web.open(console.url + path, urllib.parse.urlencode(fields).encode()) as r:
                return str(r.read().decode())

        page = web.open(console.url + "login").read().decode()
        login_csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert login_csrf
        assert "Log out" in post("login", {"csrf": login_csrf.group(1), "username": "nurse-eve",
                                           "password": PW})
        assert until(lambda: alert.alert_id in web.open(console.url).read().decode(), 10)
        ward = web.open(console.url).read().decode()
        assert '<meta http-equiv="refresh" content="30">' in ward  # the default: a screen
        csrf = re.search(r'name="csrf" value="([^"]+)"', ward)
        assert csrf
        form = {"csrf": csrf.group(1), "hub": "hub-a", "patient": "p-a",
                "alert_id": alert.alert_id, "note": "seen", "next": "/"}
        assert "Acknowledgement sent" in post("ack", form)
        ack_topic = t("hub-a", "p-a", "alert/ack/nurse-eve")
        topic, payload = listener.received(until_topic=ack_topic)[-1]
        assert topic == ack_topic
        assert json.loads(payload) == {"alert_id": alert.alert_id, "actor": "nurse-eve",
                                       "note": "seen"}
        # The broker, not the console, has the last word: change Eve's broker password and
        # her (already logged-in) console session can no longer acknowledge.
        clinic.dynsec([{"command": "setClientPassword", "username": "nurse-eve",
                        "password": "changed-by-admin"},
                       {"command": "disableClient", "username": "nurse-eve"}])
        assert "did not accept" in post("ack", form)
    finally:
        console.stop()
        hub.stop()


def test_provisioning_scripts_are_shellcheck_clean() -> None:
    shellcheck = require_binary("shellcheck")
    result = subprocess.run([shellcheck, "-x", "--severity=style",
                             *map(str, sorted(CLINIC.glob("*.sh")))], cwd=REPO,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
