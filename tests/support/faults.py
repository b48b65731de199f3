"""Fault-injection support: a care team that acks, alert bursts, journal readers, a hub subprocess.

Used by tests/test_faults.py, test_acks.py, test_restart.py, test_outbox_state_machine.py and by
``python -m bench faults``. The hub subprocess (for kill -9 of the daemon) is

    python -m tests.support.faults hub --config CONFIG.json --scenario fever|burst|drain \
        [--start-s SECONDS]

It prints one JSON line when it has done what its scenario promises, then (fever, burst) keeps
running until it is killed, or (drain) exits once its outbox is empty.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import select
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from daemon.alerts import AlertKind
from daemon.config import Config, parse_config
from daemon.decoding import CHARACTERISTICS
from daemon.encoding import encode_heart_rate, encode_temperature
from daemon.hub import Hub
from tests.support.hubs import T0, FakeClock

REPO = Path(__file__).resolve().parents[2]
HR = CHARACTERISTICS["heart_rate_measurement"]
TEMP = CHARACTERISTICS["temperature_measurement"]
DB_NAME = "crs-hub.sqlite3"
# States the care team answers with an ack (an ACKNOWLEDGED or CLEARED event needs none).
ACKABLE = frozenset({"raised", "escalated", "severity_changed"})


# --- waiting on conditions -----------------------------------------------------------------

def wait_until(predicate: Callable[[], object], timeout: float, every: float = 0.02) -> bool:
    """Poll ``predicate`` until it is truthy or ``timeout`` (real seconds) passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return bool(predicate())


async def until(predicate: Callable[[], object], within: float, every: float = 0.02,
                step: Callable[[], None] | None = None) -> bool:
    """Like wait_until, but yields to the event loop (the hub's MQTT callbacks run on it).

    ``step`` runs before each poll: tests pass a function that moves a FakeClock forward and
    ticks the hub, so escalations (scenario minutes) happen in real milliseconds.
    """
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return True
        if step is not None:
            step()
        await asyncio.sleep(every)
    return bool(predicate())


# --- the care team: a real MQTT v5 client -------------------------------------------------

@dataclass(frozen=True)
class Delivery:
    topic: str
    payload: bytes
    retain: bool
    correlation: bytes | None
    received_at: float  # time.monotonic()

    def json(self) -> Any:
        return json.loads(self.payload)


class CareTeam:
    """The care team's side: subscribes to the hub's tree, records every delivery, acks.

    ``persistent``: an MQTT v5 session that outlives the connection (session expiry 1 h), so
    the broker queues alerts while the care team is offline or the hub reconnects first; with
    broker persistence it survives a graceful broker restart (not a kill -9: mosquitto saves its
    database only on shutdown or autosave). Clean start is off from the very first connect:
    mosquitto 2.0 writes a session to its database only if the client's latest CONNECT had
    clean start off, so a session opened with clean start (paho's default first connect) is
    silently gone after a broker restart. Use a fresh client id for a fresh session.
    ``auto_ack``: answer every raised/escalated/severity_changed event with an AlertAck, the
    application-level acknowledgement that stops the hub's re-announcements.
    ``receipt_consumer``: confirm every alert event delivery (duplicates included) with a
    delivery receipt ``{"event_id", "consumer"}`` on ``.../alert/receipt``, as the care-team
    console does (docs/delivery.md).
    """

    def __init__(self, port: int, *, client_id: str = "care-team", actor: str = "nurse-7",
                 persistent: bool = False, auto_ack: bool = False,
                 topic: str = "crs/v1/#", receipt_consumer: str | None = None) -> None:
        self.port = port
        self.receipt_consumer = receipt_consumer
        self.receipts_sent = 0
        self.client_id = client_id
        self.actor = actor
        self.persistent = persistent
        self.auto_ack = auto_ack
        self.topic = topic
        self.response_topic = f"care/{client_id}/responses"
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.deliveries: list[Delivery] = []
        self.acks_sent = 0
        self.connects = 0
        self.sessions_present: list[bool] = []  # CONNACK's flag, per connect
        self._properties = Properties(PacketTypes.CONNECT)
        if persistent:
            self._properties.SessionExpiryInterval = 3600
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=MQTTProtocolVersion.MQTTv5)
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    # lifecycle
    def __enter__(self) -> CareTeam:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._subscribed.clear()
        self.client.connect("127.0.0.1", self.port, keepalive=10,
                            clean_start=not self.persistent, properties=self._properties)
        self.client.loop_start()
        assert self._subscribed.wait(10), "care team never got its SUBACK"

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def go_offline(self) -> None:
        """Disconnect cleanly; a persistent session stays at the broker and queues for us."""
        self.stop()

    def go_online(self, *, wait: bool = True) -> None:
        """Reconnect. ``wait=False``: do not wait for the broker (it may be down: paho's loop
        keeps trying until it is back)."""
        self._subscribed.clear()
        if not wait:
            self.client.connect_async("127.0.0.1", self.port, keepalive=10,
                                      clean_start=not self.persistent,
                                      properties=self._properties)
            self.client.loop_start()
            return
        self.client.connect("127.0.0.1", self.port, keepalive=10,
                            clean_start=not self.persistent, properties=self._properties)
        self.client.loop_start()
        assert self._subscribed.wait(10), "care team never got its SUBACK after reconnecting"

    # paho thread
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        self.connects += 1
        self.sessions_present.append(bool(flags.session_present))
        # Subscribe on every connect: after a kill -9 the broker has forgotten the session.
        client.subscribe([(self.topic, 1), (self.response_topic, 1)])

    def _on_subscribe(self, *args: Any) -> None:
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        props = getattr(msg, "properties", None)
        correlation = getattr(props, "CorrelationData", None) if props else None
        delivery = Delivery(msg.topic, bytes(msg.payload), bool(msg.retain), correlation,
                            time.monotonic())
        with self._lock:
            self.deliveries.append(delivery)
        if self.receipt_consumer and msg.topic.endswith("/alert/event") and msg.payload:
            self.send_receipt(delivery.json()["event_id"],
                              topic=msg.topic[: -len("event")] + "receipt")
        if self.auto_ack and msg.topic.endswith("/alert/event") and msg.payload:
            event = delivery.json()
            if event["state"] in ACKABLE:
                self.ack(event["alert_id"], topic=msg.topic[: -len("event")] + "ack",
                         correlation=event["event_id"].encode())

    # acks
    def ack(self, alert_id: str, *, topic: str, actor: str | None = None,
            correlation: bytes | None = None) -> None:
        """Ack as ``actor`` (default: this care team's login) on the ack topic ``topic``/<actor>."""
        actor = actor or self.actor
        payload = json.dumps({"alert_id": alert_id, "actor": actor}).encode()
        self.send_ack_payload(payload, topic=f"{topic}/{actor}", correlation=correlation)

    def send_ack_payload(self, payload: bytes, *, topic: str,
                         correlation: bytes | None = None) -> None:
        """Publish raw ack bytes (tests send malformed ones), asking for a v5 response."""
        properties = None
        if correlation is not None:
            properties = Properties(PacketTypes.PUBLISH)
            properties.ResponseTopic = self.response_topic
            properties.CorrelationData = correlation
        self.client.publish(topic, payload, qos=1, properties=properties)
        with self._lock:
            self.acks_sent += 1

    # delivery receipts
    def send_receipt(self, event_id: str, *, topic: str, consumer: str | None = None) -> None:
        """Confirm ``event_id`` as ``consumer`` (default: ``receipt_consumer``)."""
        consumer = consumer or self.receipt_consumer
        assert consumer is not None, "a receipt needs a consumer"
        self.send_receipt_payload(json.dumps({"event_id": event_id, "consumer": consumer})
                                  .encode(), topic=topic)

    def send_receipt_payload(self, payload: bytes, *, topic: str) -> None:
        """Publish raw receipt bytes (tests send malformed and oversized ones)."""
        self.client.publish(topic, payload, qos=1)
        with self._lock:
            self.receipts_sent += 1

    def deliveries_of(self, event_id: str) -> int:
        """How many times the event ``event_id`` arrived (duplicates included)."""
        return sum(e["event_id"] == event_id for e in self.events())

    # what arrived
    def on(self, suffix: str) -> list[Delivery]:
        with self._lock:
            return [d for d in self.deliveries if d.topic.endswith(suffix)]

    def events(self) -> list[dict[str, Any]]:
        """Every alert event delivery, duplicates included, in arrival order."""
        return [d.json() for d in self.on("/alert/event")]

    def first_events(self) -> list[dict[str, Any]]:
        """Each event once (first arrival), in arrival order: what a de-duplicating app shows."""
        seen: set[str] = set()
        out = []
        for event in self.events():
            if event["event_id"] not in seen:
                seen.add(event["event_id"])
                out.append(event)
        return out

    def event_ids(self) -> set[str]:
        return {e["event_id"] for e in self.events()}

    def alert_ids(self) -> set[str]:
        return {e["alert_id"] for e in self.events()}

    def duplicates(self) -> int:
        events = self.events()
        return len(events) - len({e["event_id"] for e in events})

    def latest_state(self) -> dict[str, Any] | None:
        states = [d for d in self.on("/alert/state") if d.payload]
        return states[-1].json() if states else None

    def responses(self, correlation: bytes) -> list[dict[str, Any]]:
        return [d.json() for d in self.on(self.response_topic) if d.correlation == correlation]

    def wait(self, predicate: Callable[[CareTeam], object], timeout: float = 10.0) -> bool:
        return wait_until(lambda: predicate(self), timeout)


# --- the hub's store, read from outside (another process may be writing it) ----------------

@dataclass(frozen=True)
class JournalRow:
    seq: int
    alert_id: str
    event_id: str
    state: str
    kind: str
    at: float
    actor: str
    record: dict[str, Any]


def _connect_ro(data_dir: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{data_dir / DB_NAME}?mode=ro", uri=True, timeout=5)


def read_journal(data_dir: Path) -> list[JournalRow]:
    db = _connect_ro(data_dir)
    try:
        rows = db.execute("SELECT seq, alert_id, event_id, state, kind, at, actor, record"
                          " FROM journal ORDER BY seq").fetchall()
    finally:
        db.close()
    return [JournalRow(s, a, e, st, k, at, actor, json.loads(rec))
            for s, a, e, st, k, at, actor, rec in rows]


def read_outbox(data_dir: Path) -> list[tuple[int, str, bytes]]:
    """(seq, topic, payload) of every pending outbox row, oldest first."""
    db = _connect_ro(data_dir)
    try:
        rows = db.execute("SELECT seq, topic, payload FROM outbox ORDER BY seq").fetchall()
    finally:
        db.close()
    return [(int(s), str(t), bytes(p)) for s, t, p in rows]


def outbox_event_ids(rows: Iterable[tuple[int, str, bytes]]) -> list[str]:
    return [json.loads(p)["event_id"] for _, t, p in rows if t.endswith("/alert/event")]


def raised_alert_ids(journal: Iterable[JournalRow], *, hub_alarms: bool = False) -> list[str]:
    """Raised alert ids; without ``hub_alarms``, leave out the hub's own broker_unreachable
    alarm, which a broker outage raises on top of whatever a test generated."""
    return [j.alert_id for j in journal if j.state == "raised"
            and (hub_alarms or j.kind != "broker_unreachable")]


# --- configs --------------------------------------------------------------------------------

def base_config(data_dir: Path, port: int, *, devices: list[dict[str, Any]] | None = None,
                **sections: dict[str, Any]) -> Config:
    """Like tests.support.hubs.hub_config, with the devices list replaceable."""
    data: dict[str, Any] = {
        "hub": {"id": "hub-test", "data_dir": str(data_dir)},
        "patient": {"id": "p-0001", "care_team_name": "the CAR-T team",
                    "care_team_phone": "+1 555 0100", "emergency_number": "911"},
        "devices": devices if devices is not None else [
            {"id": "chest-strap", "profile": "heart_rate_strap", "address": "AA:BB:CC:DD:EE:01"},
            {"id": "temp-patch", "profile": "temperature_patch", "address": "AA:BB:CC:DD:EE:02"},
        ],
        "mqtt": {"host": "127.0.0.1", "port": port, "reconnect_max_s": 1},
        "escalation": {"enabled": False},
        "vitals": {"publish": False},
    }
    for key, value in sections.items():
        data[key] = {**data[key], **value} if isinstance(data.get(key), dict) else value
    return parse_config(data)


def patch_ids(n: int) -> list[str]:
    return [f"patch-{i:03d}" for i in range(n)]


def burst_config(data_dir: Path, port: int, n_devices: int, **sections: dict[str, Any]) -> Config:
    """``n_devices`` temperature patches going stale after 60 s: each silent patch is one real
    NO_DATA technical alarm through the hub's normal path (rules -> journal -> outbox -> MQTT)."""
    thresholds = {"stale": {"temperature_s": 60.0}}
    thresholds.update(sections.pop("thresholds", {}))
    return base_config(data_dir, port,
                       devices=[{"id": d, "profile": "temperature_patch"}
                                for d in patch_ids(n_devices)],
                       thresholds=thresholds, **sections)


def write_config(config: Config, path: Path) -> Path:
    path.write_text(json.dumps(config.model_dump(mode="json")))
    return path


# --- driving a hub ---------------------------------------------------------------------------

def feed_temperature(hub: Hub, device: str, core_c: float) -> None:
    """A temperature patch notification; the profile adds its +0.5 °C axillary offset."""
    hub.on_payload(device, TEMP, encode_temperature(round(core_c - 0.5, 2)))


def feed_heart_rate(hub: Hub, device: str, bpm: int) -> None:
    hub.on_payload(device, HR, encode_heart_rate(bpm, contact=True))


def advance(hub: Hub, clock: FakeClock, seconds: float) -> None:
    clock.now += timedelta(seconds=seconds)
    hub.tick()


# A temperature after a fever that clears it: below the 37.7 °C band, and within 1.0 °C of the
# 38.6 °C fevers these tests raise. A jump straight down to 36.8 °C is faster than any fever
# breaks: the rules treat it as a patch coming off (IMPLAUSIBLE_FALL), never a clear.
AFEBRILE_C = 37.65


def feed_fever(hub: Hub, clock: FakeClock, *, minutes: int, core_c: float = 38.6,
               bpm: int = 72) -> None:
    """``minutes`` of readings from the default config's two wearables: temperature every 60 s
    and heart rate every 15 s, ticking the hub every 15 s."""
    for _ in range(minutes):
        feed_temperature(hub, "temp-patch", core_c)
        for _ in range(4):
            feed_heart_rate(hub, "chest-strap", bpm)
            advance(hub, clock, 15)


@dataclass
class NoDataBurst:
    """Alert bursts from real technical alarms: patches in ``fed`` get a reading every step;
    a silenced patch raises NO_DATA 60 s (scenario) later. With ``cycle``, a patch whose alarm
    is open gets one reading (CLEARED) and falls silent again, so alarms keep coming."""

    hub: Hub
    clock: FakeClock
    step_s: float = 5.0
    cycle: bool = False
    fed: set[str] = field(default_factory=set)

    def feed_all(self) -> None:
        self.fed = set(self.hub.devices)

    def silence(self, devices: Iterable[str]) -> None:
        self.fed -= set(devices)

    def open_no_data(self) -> dict[str, str]:
        """device -> alert_id of each open NO_DATA alarm."""
        return {a.transition.device: a.alert_id for a in self.hub.tracked.values()
                if a.transition.kind is AlertKind.NO_DATA and a.transition.device is not None}

    def step(self) -> None:
        self.clock.now += timedelta(seconds=self.step_s)
        for device in sorted(self.fed):
            feed_temperature(self.hub, device, 36.9)
        if self.cycle:
            for device in sorted(self.open_no_data()):
                feed_temperature(self.hub, device, 36.9)
        self.hub.tick()


# --- the hub as a separate process (so the test can kill -9 it) ----------------------------

def _emit(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


async def _forever() -> None:
    await asyncio.Event().wait()


async def run_hub(config: Config, scenario: str, start_s: float, pause_s: float) -> int:
    clock = FakeClock(T0 + timedelta(seconds=start_s))
    hub = Hub(config, clock=clock, tick_interval_s=3600, heartbeat_interval_s=3600)
    await hub.start()
    if scenario == "fever":
        # The broker is unreachable: fever, tachycardia, then their combination, all journaled
        # and waiting in the outbox. Report them, then wait for kill -9.
        feed_fever(hub, clock, minutes=12, bpm=124)
        journal = hub.store.journal()
        _emit({"scenario": "fever", "now": clock.now.isoformat(),
               "journal": [[j.alert_id, j.event_id, j.state, j.kind] for j in journal],
               "outbox": hub.outbox.pending, "connected": hub.link.connected})
        await _forever()
    elif scenario == "burst":
        burst = NoDataBurst(hub, clock, step_s=5.0, cycle=True)
        _emit({"scenario": "burst", "started": clock.now.isoformat(),
               "restored": sorted(hub.tracked)})
        while True:
            burst.step()
            await asyncio.sleep(pause_s)
    elif scenario == "drain":
        connected = await hub.wait_connected(20)
        drained = await until(lambda: hub.outbox.pending == 0, 30)
        _emit({"scenario": "drain", "connected": connected, "drained": drained,
               "restored": sorted(hub.tracked), "pending": hub.outbox.pending})
        await hub.stop()
        return 0 if drained else 1
    raise SystemExit(f"unknown scenario {scenario}")


@dataclass
class HubProcess:
    """``python -m tests.support.faults hub ...`` as a child process, for kill -9."""

    config_path: Path
    scenario: str
    start_s: float = 0.0
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> HubProcess:
        log = (self.log_path or self.config_path.with_suffix(".log")).open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.faults", "hub", "--config",
             str(self.config_path), "--scenario", self.scenario, "--start-s", str(self.start_s)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=log, start_new_session=True,
        )
        return self

    def report(self, timeout: float = 30.0) -> dict[str, Any]:
        """The JSON line the scenario prints once it has done its part."""
        assert self.process is not None and self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            self.kill()
            raise AssertionError(f"hub process printed nothing in {timeout} s; see its log")
        line = self.process.stdout.readline()
        if not line:
            raise AssertionError(f"hub process exited ({self.process.wait(5)}) without a report")
        report: dict[str, Any] = json.loads(line)
        return report

    def kill(self) -> None:
        """kill -9: no shutdown code runs, paho's in-memory queue is gone."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.faults")
    sub = parser.add_subparsers(dest="command", required=True)
    hub = sub.add_parser("hub", help="run a hub for kill -9 tests")
    hub.add_argument("--config", type=Path, required=True, help="JSON dump of a Config")
    hub.add_argument("--scenario", choices=["fever", "burst", "drain"], required=True)
    hub.add_argument("--start-s", type=float, default=0.0,
                     help="scenario clock start, seconds after tests.support.hubs.T0")
    hub.add_argument("--pause-s", type=float, default=0.005,
                     help="real seconds between burst steps")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = parse_config(json.loads(args.config.read_text()))
    return asyncio.run(run_hub(config, args.scenario, args.start_s, args.pause_s))


def scenario_seconds(at: datetime) -> float:
    return (at - T0).total_seconds()


if __name__ == "__main__":
    raise SystemExit(main())
