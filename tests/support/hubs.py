"""Building a hub config for tests, and a real MQTT subscriber that records what arrives."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from daemon.config import Config, parse_config

T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def hub_config(data_dir: Path, port: int, **sections: dict[str, Any]) -> Config:
    data: dict[str, Any] = {
        "hub": {"id": "hub-test", "data_dir": str(data_dir)},
        "patient": {"id": "p-0001", "care_team_name": "the CAR-T team",
                    "care_team_phone": "+1 555 0100", "emergency_number": "911"},
        "devices": [
            {"id": "chest-strap", "profile": "heart_rate_strap", "address": "AA:BB:CC:DD:EE:01"},
            {"id": "temp-patch", "profile": "temperature_patch", "address": "AA:BB:CC:DD:EE:02"},
        ],
        "mqtt": {"host": "127.0.0.1", "port": port, "reconnect_max_s": 1},
        "escalation": {"enabled": False},
        "vitals": {"publish": False},
        "status_page": {"enabled": False},
        "annunciator": {"enabled": False},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return parse_config(data)


class FakeClock:
    """Scenario time that tests move by hand."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def at(self, seconds: float) -> datetime:
        self.now = T0 + timedelta(seconds=seconds)
        return self.now


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool
    expiry: int | None

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass
class Subscriber:
    """A care team's view: a real paho client subscribed to the hub's topic tree."""

    port: int
    topic: str = "crs/v1/#"
    messages: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-care-team",
                                  protocol=MQTTProtocolVersion.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(self.topic, qos=1)

    def __enter__(self) -> Subscriber:
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        assert self._subscribed.wait(10), "subscriber never got its SUBACK"
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        props = getattr(msg, "properties", None)
        expiry = getattr(props, "MessageExpiryInterval", None) if props else None
        with self._lock:
            self.messages.append(Received(msg.topic, bytes(msg.payload), bool(msg.retain), expiry))

    def on(self, suffix: str) -> list[Received]:
        with self._lock:
            return [m for m in self.messages if m.topic.endswith(suffix)]

    def events(self) -> list[dict[str, Any]]:
        return [m.json() for m in self.on("/alert/event")]

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            time.sleep(0.02)
        return bool(predicate(self))
