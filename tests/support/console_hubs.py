"""Simulated hubs for the console's tests and bench: plain paho clients publishing the documented
payloads (daemon/payloads.py) on the documented topics (daemon/topics.py), with a retained
``online`` status and a Last Will that sets it ``offline``.

``python -m tests.support.console_hubs PORT HUB PATIENT KEEPALIVE`` runs one hub in its own
process, so a test can kill it (-9: no DISCONNECT, the broker fires the will).
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from daemon.alerts import AlertKind, AlertState, Severity
from daemon.payloads import (
    AlertEvent,
    AlertStateSnapshot,
    DeviceStatus,
    HubStatus,
    OpenAlert,
    Tier,
    VitalsSample,
)
from daemon.topics import Topics

PREFIX = "crs/v1"


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class SimAlert:
    alert_id: str
    kind: AlertKind
    severity: Severity
    tier: Tier
    value: float | None
    unit: str
    raised_at: datetime
    updated_at: datetime
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None


@dataclass
class SimHub:
    port: int
    hub_id: str
    patient_id: str
    keepalive: int = 30
    username: str | None = None
    password: str | None = None
    alerts: dict[str, SimAlert] = field(default_factory=dict)
    published: list[tuple[str, bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.topics = Topics(PREFIX, self.hub_id, self.patient_id)
        self._connected = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sim-{self.hub_id}",
                                  protocol=MQTTProtocolVersion.MQTTv5)
        if self.username:
            self.client.username_pw_set(self.username, self.password)
        offline = HubStatus(hub_id=self.hub_id, state="offline", version="sim")
        self.client.will_set(self.topics.hub_status, offline.to_json(), qos=1, retain=True)
        self.client.on_connect = lambda *a: self._connected.set()

    def start(self) -> SimHub:
        self.client.connect("127.0.0.1", self.port, keepalive=self.keepalive)
        self.client.loop_start()
        assert self._connected.wait(10), f"{self.hub_id} could not connect"
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _publish(self, topic: str, payload: bytes, *, retain: bool = False, qos: int = 1) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(10)
        self.published.append((topic, payload))

    def status(self, *, heartbeat_at: datetime | None = None,
               therapy_day: int | None = None) -> None:
        status = HubStatus(hub_id=self.hub_id, state="online", version="sim",
                           heartbeat_at=heartbeat_at or now(), started_at=now())
        payload = status.to_json()
        if therapy_day is not None:  # optional field a hub may send (docs/care-team.md)
            payload = payload[:-1] + b', "therapy_day": %d}' % therapy_day
        self._publish(self.topics.hub_status, payload, retain=True)

    def device(self, device: str, *, connected: bool = True, battery: int | None = 80) -> None:
        status = DeviceStatus(device=device, profile="temperature_patch", connected=connected,
                              last_reading_at=now(), battery_percent=battery, updated_at=now())
        self._publish(self.topics.device_status(device), status.to_json(), retain=True)

    def vitals(self, at: datetime, temperature_c: float | None,
               heart_rate_bpm: float | None) -> None:
        sample = VitalsSample(observed_at=at, temperature_c=temperature_c,
                              heart_rate_bpm=heart_rate_bpm)
        self._publish(self.topics.vitals, sample.to_json(), qos=0)

    def event(self, alert: SimAlert, state: AlertState, *, event_id: str | None = None,
              at: datetime | None = None) -> AlertEvent:
        at = at or now()
        event = AlertEvent(
            event_id=event_id or uuid.uuid4().hex, alert_id=alert.alert_id, hub_id=self.hub_id,
            patient_id=self.patient_id, kind=alert.kind, state=state, severity=alert.severity,
            tier=alert.tier, value=alert.value, unit=alert.unit, threshold=None,
            observed_at=at, raised_at=alert.raised_at, event_at=at, device="temp-patch",
            patient_message="Call your care team.", acknowledged_by=alert.acknowledged_by,
            technical=alert.kind.is_technical)
        self._publish(self.topics.alert_event, event.to_json())
        return event

    def snapshot(self) -> None:
        snap = AlertStateSnapshot(
            hub_id=self.hub_id, patient_id=self.patient_id, updated_at=now(),
            open=[OpenAlert(alert_id=a.alert_id, kind=a.kind, severity=a.severity, tier=a.tier,
                            value=a.value, unit=a.unit, raised_at=a.raised_at,
                            updated_at=a.updated_at, device="temp-patch",
                            acknowledged_by=a.acknowledged_by, acknowledged_at=a.acknowledged_at,
                            patient_message="Call your care team.")
                  for a in self.alerts.values()])
        self._publish(self.topics.alert_state, snap.to_json(), retain=True)

    def raise_alert(self, kind: AlertKind, severity: Severity, *, age_s: float = 0,
                    tier: Tier = Tier.PATIENT, value: float | None = None,
                    unit: str = "°C") -> SimAlert:
        raised = now() - timedelta(seconds=age_s)
        alert = SimAlert(uuid.uuid4().hex[:12], kind, severity, tier, value, unit, raised, raised)
        self.alerts[alert.alert_id] = alert
        self.event(alert, AlertState.RAISED, at=raised)
        self.snapshot()
        return alert

    def acknowledge(self, alert: SimAlert, actor: str) -> None:
        """What a real hub does on an accepted ack: an `acknowledged` event and a new state."""
        alert.acknowledged_by, alert.acknowledged_at = actor, now()
        alert.updated_at = now()
        self.event(alert, AlertState.ACKNOWLEDGED)
        self.snapshot()


def main(argv: list[str]) -> int:
    port, hub_id, patient_id, keepalive = int(argv[0]), argv[1], argv[2], int(argv[3])
    hub = SimHub(port, hub_id, patient_id, keepalive=keepalive).start()
    hub.status()
    hub.device("temp-patch")
    print("ready", flush=True)
    while True:  # paho's thread answers PINGs; the test kills this process
        time.sleep(1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
