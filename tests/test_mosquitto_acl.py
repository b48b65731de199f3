"""deploy/mosquitto against a real mosquitto: who may read and write what, shown by the broker.

The broker runs the shipped crs-hub.conf and crs-hub.acl verbatim except for ports and file
paths. Denials are proven by reason codes where mosquitto gives one (CONNACK, PUBACK 0x87) and,
for reads (mosquitto 2.0 grants every SUBSCRIBE and filters per message), by a message that never
arrives while a later sentinel on the same connection does, and while an authorised subscriber
does get it.
"""

from __future__ import annotations

import itertools
import os
import queue
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from tests.support.mosquitto import Mosquitto, free_port
from tests.support.requirements import require_binary

pytestmark = pytest.mark.integration

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "mosquitto"
PASSWORD = "correct-horse-battery"  # test-only; mosquitto_passwd -b is fine in a tmp dir
NOT_AUTHORIZED = 0x87
HUB_A, HUB_B = "hub-7f3a", "hub-b"
PATIENT_A, PATIENT_B = "p-4821", "p-5555"
TEAM = "team-oncology"  # the example block shipped in crs-hub.acl: hub-7f3a / p-4821
USERS = [HUB_A, HUB_B, PATIENT_A, PATIENT_B, TEAM, "hub#1", "+"]
WAIT = 5.0
_ids = itertools.count()


# --- a small synchronous wrapper over paho 2.x (VERSION2 callbacks, MQTT v5) ------------------

@dataclass
class Client:
    port: int
    username: str | None = None
    client_id: str = ""
    tls_ca: Path | None = None
    tls_cert: tuple[Path, Path] | None = None
    messages: queue.Queue[tuple[str, bytes, bool]] = field(default_factory=queue.Queue)

    def __post_init__(self) -> None:
        self.client_id = self.client_id or f"test-{os.getpid()}-{next(_ids)}"
        self._cond = threading.Condition()
        self._connack: ReasonCode | None = None
        self._acks: dict[int, list[int]] = {}
        self.paho = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                protocol=MQTTProtocolVersion.MQTTv5, reconnect_on_failure=False)
        if self.username is not None:
            self.paho.username_pw_set(self.username, PASSWORD)
        if self.tls_ca is not None:
            cert, key = (str(p) for p in self.tls_cert) if self.tls_cert else (None, None)
            self.paho.tls_set(ca_certs=str(self.tls_ca), certfile=cert, keyfile=key,
                              cert_reqs=ssl.CERT_REQUIRED)
        self.paho.on_connect = self._on_connect
        self.paho.on_publish = self._on_publish
        self.paho.on_subscribe = self._on_subscribe
        self.paho.on_message = lambda c, u, m: self.messages.put((m.topic, bytes(m.payload), m.retain))

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object,
                    reason_code: ReasonCode, properties: object) -> None:
        with self._cond:
            self._connack = reason_code
            self._cond.notify_all()

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int,
                    reason_code: ReasonCode, properties: object) -> None:
        with self._cond:
            self._acks[mid] = [reason_code.value]
            self._cond.notify_all()

    def _on_subscribe(self, client: mqtt.Client, userdata: object, mid: int,
                      reason_codes: list[ReasonCode], properties: object) -> None:
        with self._cond:
            self._acks[mid] = [rc.value for rc in reason_codes]
            self._cond.notify_all()

    def connect(self) -> int:
        """CONNACK reason code (0 = accepted)."""
        self.paho.connect("127.0.0.1", self.port, keepalive=30)
        self.paho.loop_start()
        with self._cond:
            assert self._cond.wait_for(lambda: self._connack is not None, WAIT), "no CONNACK"
            assert self._connack is not None
            return self._connack.value

    def _wait_ack(self, mid: int) -> list[int]:
        with self._cond:
            assert self._cond.wait_for(lambda: mid in self._acks, WAIT), "no ack from broker"
            return self._acks.pop(mid)

    def publish(self, topic: str, payload: bytes = b"{}", retain: bool = False) -> int:
        """QoS 1; the PUBACK reason code (0 success, 0x10 no subscribers, 0x87 not authorised)."""
        info = self.paho.publish(topic, payload, qos=1, retain=retain)
        return self._wait_ack(info.mid)[0]

    def subscribe(self, topic: str) -> int:
        _, mid = self.paho.subscribe(topic, qos=1)
        assert mid is not None
        return self._wait_ack(mid)[0]

    def received(self, until_topic: str) -> list[tuple[str, bytes]]:
        """Everything delivered up to and including a message on ``until_topic``."""
        got: list[tuple[str, bytes]] = []
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                topic, payload, _ = self.messages.get(timeout=0.1)
            except queue.Empty:
                continue
            got.append((topic, payload))
            if topic == until_topic:
                return got
        raise AssertionError(f"{until_topic} never arrived; got {got}")

    def close(self) -> None:
        self.paho.disconnect()
        self.paho.loop_stop()


def ok(code: int) -> bool:
    return code < 0x80


# --- broker set-up ----------------------------------------------------------------------------

def make_certs(openssl: str, directory: Path) -> None:
    """A throw-away CA, a server certificate for 127.0.0.1 and a bridge client cert CN=hub."""
    directory.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=directory, check=True, capture_output=True, timeout=60)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "crs-hub-ca.key", "-out", "crs-hub-ca.crt",
        "-days", "2", "-subj", "/CN=crs-hub test CA")
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, cn, ext in (("crs-hub-server", "localhost", ["-extfile", "san.ext"]),
                          (f"{HUB_A}-bridge", HUB_A, [])):
        run("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "crs-hub-ca.crt", "-CAkey",
            "crs-hub-ca.key", "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", *ext)


def render_hub_config(workdir: Path, plain: int, tls: int) -> str:
    text = (DEPLOY / "crs-hub.conf").read_text()
    for old, new in (
        ("listener 1883 127.0.0.1\n", f"listener {plain} 127.0.0.1\n"),
        ("listener 8883\n", f"listener {tls} 127.0.0.1\n"),
        ("/etc/mosquitto/certs/", f"{workdir}/certs/"),
        ("/etc/mosquitto/crs-hub.passwd", f"{workdir}/crs-hub.passwd"),
        ("/etc/mosquitto/crs-hub.acl", str(DEPLOY / "crs-hub.acl")),
    ):
        assert old in text, f"crs-hub.conf no longer contains {old!r}"
        text = text.replace(old, new)
    # What Debian's main mosquitto.conf adds around conf.d, pointed at the test's directory.
    # As root, mosquitto would switch to the 'mosquitto' user, which cannot read pytest's tmp.
    prelude = f"persistence_location {workdir}/\nlog_dest stdout\n"
    if os.geteuid() == 0:
        prelude += "user root\n"
    return prelude + text


@dataclass
class HubBroker:
    broker: Mosquitto
    tls_port: int
    certs: Path
    _clients: list[Client] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.broker.port

    def track(self, client: Client) -> Client:
        """Closed after the test."""
        self._clients.append(client)
        return client

    def client(self, username: str | None, client_id: str = "") -> Client:
        return self.track(Client(self.port, username, client_id))

    def connected(self, username: str | None, client_id: str = "") -> Client:
        client = self.client(username, client_id)
        assert client.connect() == 0, f"{username} could not connect"
        return client

    def close_clients(self) -> None:
        for client in self._clients:
            client.close()
        self._clients.clear()


@pytest.fixture(scope="module")
def hub_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubBroker]:
    binary = require_binary("mosquitto")
    passwd = require_binary("mosquitto_passwd")
    openssl = require_binary("openssl")
    workdir = tmp_path_factory.mktemp("hub-broker")
    make_certs(openssl, workdir / "certs")
    password_file = workdir / "crs-hub.passwd"
    for index, user in enumerate(USERS):
        flags = ["-c", "-b"] if index == 0 else ["-b"]
        subprocess.run([passwd, *flags, str(password_file), user, PASSWORD], check=True,
                       capture_output=True, timeout=30)
    plain, tls = free_port(), free_port()
    broker = Mosquitto(binary=binary, workdir=workdir, port=plain,
                       extra_config=render_hub_config(workdir, plain, tls))
    broker.start()
    hub = HubBroker(broker, tls, workdir / "certs")
    try:
        yield hub
    finally:
        hub.close_clients()
        broker.stop()


@pytest.fixture
def broker(hub_broker: HubBroker) -> Iterator[HubBroker]:
    yield hub_broker
    hub_broker.close_clients()


def topic(hub: str, patient: str, leaf: str) -> str:
    return f"crs/v1/{hub}/{patient}/{leaf}"


# --- tests ------------------------------------------------------------------------------------

def test_anonymous_and_wrong_password_are_refused(broker: HubBroker) -> None:
    assert broker.client(None).connect() == NOT_AUTHORIZED
    wrong = broker.client(HUB_A)
    wrong.paho.username_pw_set(HUB_A, "not-the-password")
    # 2.0.11 answers 0x87 here too; 0x86 (bad user name or password) is the other refusal.
    assert wrong.connect() in (0x86, NOT_AUTHORIZED)


def test_hub_publishes_its_own_tree(broker: HubBroker) -> None:
    hub = broker.connected(HUB_A)
    for leaf in ("alert/event", "alert/state", "device/chest-strap/status", "vitals"):
        assert ok(hub.publish(topic(HUB_A, PATIENT_A, leaf))), leaf
    assert ok(hub.publish(f"crs/v1/{HUB_A}/status", retain=True))


def test_hub_cannot_write_another_hubs_topics(broker: HubBroker) -> None:
    hub_a = broker.connected(HUB_A)
    for target in (topic(HUB_B, PATIENT_B, "alert/event"), topic(HUB_B, PATIENT_B, "alert/ack"),
                   f"crs/v1/{HUB_B}/status", "crs/v1/status", "homeassistant/status"):
        assert hub_a.publish(target) == NOT_AUTHORIZED, target


def test_hub_cannot_read_another_hubs_topics(broker: HubBroker) -> None:
    hub_a = broker.connected(HUB_A)
    hub_b = broker.connected(HUB_B)
    assert ok(hub_b.publish(f"crs/v1/{HUB_B}/status", b"retained-b", retain=True))
    assert ok(hub_b.subscribe(f"crs/v1/{HUB_B}/#"))  # the authorised control subscriber
    sub = hub_a.subscribe(f"crs/v1/{HUB_B}/#")
    assert ok(hub_a.subscribe("crs/v1/#"))
    secret = topic(HUB_B, PATIENT_B, "alert/event")
    assert ok(hub_b.publish(secret, b"b-only"))
    sentinel = topic(HUB_A, PATIENT_A, "alert/event")
    assert ok(hub_a.publish(sentinel, b"sentinel"))

    assert (secret, b"b-only") in hub_b.received(until_topic=secret)
    seen = hub_a.received(until_topic=sentinel)
    assert all(t.startswith(f"crs/v1/{HUB_A}/") for t, _ in seen), (sub, seen)


def test_care_team_reads_its_patients_alerts_and_writes_their_acks(broker: HubBroker) -> None:
    hub = broker.connected(HUB_A)
    team = broker.connected(TEAM)
    assert ok(hub.subscribe(topic(HUB_A, PATIENT_A, "alert/ack/+")))
    assert ok(hub.publish(topic(HUB_A, PATIENT_A, "alert/state"), b'{"open":[]}', retain=True))
    assert ok(team.subscribe(topic(HUB_A, PATIENT_A, "alert/#")))
    event = topic(HUB_A, PATIENT_A, "alert/event")
    assert ok(hub.publish(event, b'{"kind":"fever"}'))
    got = team.received(until_topic=event)
    assert (topic(HUB_A, PATIENT_A, "alert/state"), b'{"open":[]}') in got  # retained
    assert (event, b'{"kind":"fever"}') in got

    ack = topic(HUB_A, PATIENT_A, f"alert/ack/{TEAM}")
    assert ok(team.publish(ack, b'{"alert_id":"a1","actor":"nurse-7"}'))
    assert (ack, b'{"alert_id":"a1","actor":"nurse-7"}') in hub.received(until_topic=ack)

    # The hub answers on the team's response topic; the team reads it.
    response = topic(HUB_A, PATIENT_A, f"alert/ack/response/{TEAM}")
    assert ok(team.subscribe(response))
    assert ok(hub.publish(response, b'{"accepted":true}'))
    assert (response, b'{"accepted":true}') in team.received(until_topic=response)


def test_care_team_writes_receipts_for_its_own_patients_only(broker: HubBroker) -> None:
    hub = broker.connected(HUB_A)
    team = broker.connected(TEAM)
    receipt = topic(HUB_A, PATIENT_A, "alert/receipt")
    assert ok(hub.subscribe(receipt))
    assert ok(team.publish(receipt, b'{"event_id":"e1","consumer":"team-oncology"}'))
    assert (receipt, b'{"event_id":"e1","consumer":"team-oncology"}') in hub.received(
        until_topic=receipt)
    for target in (topic(HUB_A, PATIENT_B, "alert/receipt"), topic(HUB_B, PATIENT_B,
                                                                   "alert/receipt")):
        assert team.publish(target) == NOT_AUTHORIZED, target


def test_care_team_writes_nothing_but_acks(broker: HubBroker) -> None:
    team = broker.connected(TEAM)
    for target in (topic(HUB_A, PATIENT_A, "alert/event"), topic(HUB_A, PATIENT_A, "alert/state"),
                   topic(HUB_A, PATIENT_A, "vitals"), f"crs/v1/{HUB_A}/status",
                   topic(HUB_A, PATIENT_A, "device/chest-strap/status"),
                   topic(HUB_B, PATIENT_B, f"alert/ack/{TEAM}"),
                   topic(HUB_A, PATIENT_B, f"alert/ack/{TEAM}"),
                   # acking as another login (a forged actor), or with no login at all
                   topic(HUB_A, PATIENT_A, "alert/ack/team-other"),
                   topic(HUB_A, PATIENT_A, "alert/ack")):
        assert team.publish(target) == NOT_AUTHORIZED, target


def test_care_team_cannot_read_other_patients_or_vitals(broker: HubBroker) -> None:
    hub_a = broker.connected(HUB_A)
    hub_b = broker.connected(HUB_B)
    team = broker.connected(TEAM)
    assert ok(team.subscribe("crs/v1/#"))
    other = topic(HUB_B, PATIENT_B, "alert/event")
    vitals = topic(HUB_A, PATIENT_A, "vitals")
    other_ack = topic(HUB_A, PATIENT_A, "alert/ack/response/team-other")
    assert ok(hub_b.publish(other, b"other patient"))
    assert ok(hub_a.publish(vitals, b'{"temperature_c":38.2}'))
    assert ok(hub_a.publish(other_ack, b"other team"))
    sentinel = topic(HUB_A, PATIENT_A, "alert/event")
    assert ok(hub_a.publish(sentinel, b"sentinel"))
    seen = [t for t, _ in team.received(until_topic=sentinel)]
    assert other not in seen
    assert vitals not in seen
    assert other_ack not in seen


def test_patient_app_reads_only_its_own_alerts(broker: HubBroker) -> None:
    hub_a = broker.connected(HUB_A)
    hub_b = broker.connected(HUB_B)
    app = broker.connected(PATIENT_A)
    assert ok(app.subscribe("crs/v1/#"))
    hidden = [topic(HUB_A, PATIENT_A, "alert/ack"), topic(HUB_A, PATIENT_A, "vitals"),
              topic(HUB_B, PATIENT_B, "alert/event"), f"crs/v1/{HUB_A}/status"]
    for leaf in hidden:
        assert ok((hub_b if HUB_B in leaf else hub_a).publish(leaf, b"hidden"))
    state, event = topic(HUB_A, PATIENT_A, "alert/state"), topic(HUB_A, PATIENT_A, "alert/event")
    assert ok(hub_a.publish(state, b"state"))
    assert ok(hub_a.publish(event, b"event"))
    seen = [t for t, _ in app.received(until_topic=event)]
    assert state in seen
    assert not set(hidden) & set(seen)
    assert app.publish(topic(HUB_A, PATIENT_A, f"alert/ack/{PATIENT_A}")) == NOT_AUTHORIZED
    assert app.publish(event) == NOT_AUTHORIZED


@pytest.mark.parametrize("username", ["hub#1", "+"])
def test_username_with_wildcards_gets_no_pattern_rights(broker: HubBroker, username: str) -> None:
    """Username '+' would turn `pattern readwrite crs/v1/%u/#` into crs/v1/+/#: everything."""
    hub = broker.connected(HUB_A)
    rogue = broker.connected(username)  # authentication passes; every ACL check fails
    assert rogue.publish(topic(HUB_A, PATIENT_A, "alert/event")) == NOT_AUTHORIZED
    assert rogue.publish(topic(HUB_A, PATIENT_A, "alert/ack/rogue")) == NOT_AUTHORIZED
    assert ok(rogue.subscribe("crs/v1/#"))
    assert ok(rogue.subscribe("$SYS/#"))
    secret = topic(HUB_A, PATIENT_A, "alert/event")
    assert ok(hub.publish(secret, b"secret"))
    time.sleep(0.5)
    assert rogue.messages.empty()


def test_client_id_with_wildcards_gets_no_pattern_rights(broker: HubBroker) -> None:
    hub = broker.connected(HUB_A, client_id="crs-hub+x")
    assert hub.publish(topic(HUB_A, PATIENT_A, "alert/event")) == NOT_AUTHORIZED
    clean = broker.connected(HUB_A, client_id="crs-hub-x")
    assert ok(clean.publish(topic(HUB_A, PATIENT_A, "alert/event")))


def test_tls_listener_needs_the_ca_and_a_password(broker: HubBroker) -> None:
    ca = broker.certs / "crs-hub-ca.crt"
    hub = broker.track(Client(broker.tls_port, HUB_A, tls_ca=ca))
    assert hub.connect() == 0
    assert ok(hub.publish(topic(HUB_A, PATIENT_A, "alert/event")))
    anonymous = broker.track(Client(broker.tls_port, None, tls_ca=ca))
    assert anonymous.connect() == NOT_AUTHORIZED
    plain = Client(broker.tls_port, HUB_A)  # plain MQTT on the TLS port: no CONNACK at all
    with pytest.raises((ConnectionError, OSError, AssertionError)):
        plain.connect()
    plain.close()


def test_bridge_template_carries_alerts_out_and_acks_in(
    broker: HubBroker, tmp_path: Path
) -> None:
    """A clinic broker (TLS, client certificates, the same ACL) and the rendered template."""
    binary = require_binary("mosquitto")
    clinic_plain, clinic_tls = free_port(), free_port()
    certs = broker.certs
    # Care teams log in with passwords on the plain listener; the bridge with its certificate.
    clinic_conf = (
        f"{'user root' if os.geteuid() == 0 else ''}\nper_listener_settings false\n"
        f"allow_anonymous false\npassword_file {broker.broker.workdir}/crs-hub.passwd\n"
        f"acl_file {DEPLOY / 'crs-hub.acl'}\n"
        f"listener {clinic_plain} 127.0.0.1\n"
        f"listener {clinic_tls} 127.0.0.1\ncafile {certs}/crs-hub-ca.crt\n"
        f"certfile {certs}/crs-hub-server.crt\nkeyfile {certs}/crs-hub-server.key\n"
        "require_certificate true\nuse_identity_as_username true\n"
    )
    clinic = Mosquitto(binary=binary, workdir=tmp_path / "clinic", port=clinic_plain,
                       extra_config=clinic_conf)
    clinic.start()

    template = (DEPLOY / "bridge-clinic.conf.template").read_text()
    bridge = (template.replace("@HUB_ID@", HUB_A).replace("@CLINIC_HOST@", "127.0.0.1")
              .replace("@CLINIC_PORT@", str(clinic_tls))
              .replace("/etc/mosquitto/certs/clinic-ca.crt", f"{certs}/crs-hub-ca.crt")
              .replace("/etc/mosquitto/certs/", f"{certs}/"))
    assert "@" not in "".join(line for line in bridge.splitlines() if not line.startswith("#"))
    home_dir = tmp_path / "home"
    home_dir.mkdir()
    home_conf = render_hub_config(home_dir, free_port(), free_port()).replace(
        f"{home_dir}/crs-hub.passwd", f"{broker.broker.workdir}/crs-hub.passwd"
    ).replace(f"{home_dir}/certs/", f"{certs}/")
    home = Mosquitto(binary=binary, workdir=home_dir,
                     port=int(home_conf.split("listener ")[1].split()[0]),
                     extra_config=home_conf + "\n" + bridge)
    home.start()
    clients: list[Client] = []
    try:
        team = Client(clinic_plain, TEAM)
        clinic_hub = Client(clinic_tls, None, tls_ca=certs / "crs-hub-ca.crt",
                            tls_cert=(certs / f"{HUB_A}-bridge.crt", certs / f"{HUB_A}-bridge.key"))
        hub = Client(home.port, HUB_A)
        clients += [team, clinic_hub, hub]
        for client in clients:
            assert client.connect() == 0
        assert ok(team.subscribe(f"crs/v1/{HUB_A}/#"))
        assert ok(clinic_hub.subscribe(f"crs/v1/{HUB_A}/#"))
        assert ok(hub.subscribe(topic(HUB_A, PATIENT_A, "alert/ack/+")))

        # The bridge announces itself on the clinic side (retained "1").
        state = f"crs/v1/{HUB_A}/bridge/state"
        assert (state, b"1") in team.received(until_topic=state)

        vitals, event = topic(HUB_A, PATIENT_A, "vitals"), topic(HUB_A, PATIENT_A, "alert/event")
        assert ok(hub.publish(vitals, b"stays home"))
        assert ok(hub.publish(event, b'{"kind":"fever"}'))
        assert (event, b'{"kind":"fever"}') in team.received(until_topic=event)
        # The hub's own identity on the clinic may read vitals there, yet none arrive.
        assert vitals not in [t for t, _ in clinic_hub.received(until_topic=event)]

        ack = topic(HUB_A, PATIENT_A, f"alert/ack/{TEAM}")
        deadline = time.monotonic() + WAIT
        while True:  # the bridge's own subscription on the clinic may still be on its way
            assert ok(team.publish(ack, b'{"alert_id":"a1","actor":"nurse-7"}'))
            try:
                topic_, payload, _ = hub.messages.get(timeout=0.5)
                break
            except queue.Empty:
                assert time.monotonic() < deadline, "ack never crossed the bridge"
        assert (topic_, payload) == (ack, b'{"alert_id":"a1","actor":"nurse-7"}')

        # Delivery receipts cross the bridge inward too, at QoS 1.
        for leaf, body in (("alert/receipt", b'{"event_id":"e1","consumer":"team-oncology"}'),):
            inbound = topic(HUB_A, PATIENT_A, leaf)
            assert ok(hub.subscribe(inbound))
            deadline = time.monotonic() + WAIT
            while True:
                assert ok(team.publish(inbound, body))
                try:
                    topic_, payload, _ = hub.messages.get(timeout=0.5)
                    break
                except queue.Empty:
                    assert time.monotonic() < deadline, f"{leaf} never crossed the bridge"
            assert (topic_, payload) == (inbound, body)
    finally:
        for client in clients:
            client.close()
        home.stop()
        clinic.stop()
