"""The durable MQTT sink: every alert event is journaled and queued before it is published.

For each alert event the journal entry, the event message and the retained alert-state snapshot
are written to SQLite in one fsync'd transaction (daemon/store.py), then the outbox pump
(daemon/outbox.py) hands them to paho and deletes each row only on a successful PUBACK. Retained
device status, ack responses and Home Assistant discovery take the same road. This sink and the
best-effort telemetry (daemon/telemetry.py) are the only places the hub publishes from.

If the store cannot write an alert (disk full, database broken) the alert must still go out: it is
handed to paho directly, without durability, logged CRITICAL and counted in ``store_failures``.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime

from daemon.monitor import MonitorOutput
from daemon.mqtt_link import MqttLink
from daemon.outbox import Outbox
from daemon.payloads import AckResponse, AlertEvent, AlertStateSnapshot, DeviceStatus
from daemon.receipts import ReceiptTracker
from daemon.store import JournalEntry, OutboundMessage, Store
from daemon.topics import Topics

log = logging.getLogger(__name__)


class OutboxSink:
    def __init__(self, store: Store, outbox: Outbox, link: MqttLink, topics: Topics, *,
                 event_expiry_s: int, wall_clock: Callable[[], float],
                 receipts: ReceiptTracker | None = None) -> None:
        self.store = store
        self.outbox = outbox
        self._link = link
        self._topics = topics
        self._expiry_s = event_expiry_s
        self._wall_clock = wall_clock
        self.store_failures = 0
        self.receipts = receipts if receipts is not None and receipts.enabled else None

    def on_output(self, out: MonitorOutput, snapshot: AlertStateSnapshot) -> None:
        if out.readings:
            self.store.add_readings(out.readings)
        for event in out.events:
            self._journal(event, snapshot)
        for status in out.devices:
            self.device_status(status)
        if out.events or out.devices:
            self.outbox.kick()

    # --- alert events ------------------------------------------------------------------------

    def _journal(self, event: AlertEvent, snapshot: AlertStateSnapshot) -> None:
        actor = event.acknowledged_by if event.state == "acknowledged" and \
            event.acknowledged_by else "hub"
        payload = event.to_json()  # serialised once: the journal record and the message
        entry = JournalEntry(0, event.alert_id, event.event_id, event.state.value,
                             event.kind.value, event.severity.value, event.event_at, actor,
                             payload.decode())
        messages = [
            OutboundMessage(self._topics.alert_event, payload, 1, False,
                            self._wall_clock() + self._expiry_s),
            OutboundMessage(self._topics.alert_state, snapshot.to_json(), 1, True),
        ]
        try:
            self.store.record_transition(
                entry, messages, await_receipt=messages[0] if self.receipts else None)
            if self.receipts is not None:
                self.receipts.track(event.event_id, event.severity, messages[0])
        except sqlite3.Error as exc:
            self.store_failures += 1
            log.critical("cannot write alert %s to the store (%s); publishing it without "
                         "durability", event.alert_id, exc)
            for message in messages:
                self._link.publish(message.topic, message.payload, qos=message.qos,
                                   retain=message.retain,
                                   expiry_s=None if message.retain else self._expiry_s)

    # --- retained state and replies ----------------------------------------------------------

    def retained(self, topic: str, payload: bytes) -> None:
        """Queue a retained message (replacing any older pending one for the topic)."""
        self.store.enqueue(OutboundMessage(topic, payload, 1, True),
                           _now(self._wall_clock), exclude=self.outbox.seqs_in_flight)
        self.outbox.kick()

    def device_status(self, status: DeviceStatus) -> None:
        self.store.enqueue(OutboundMessage(self._topics.device_status(status.device),
                                           status.to_json(), 1, True), status.updated_at,
                           exclude=self.outbox.seqs_in_flight)

    def device_statuses(self, statuses: list[DeviceStatus]) -> None:
        """Several retained device statuses in one durable commit (the heartbeat's): one fsync
        instead of one per wearable, which is most of what the hub writes to its SD card."""
        if statuses:
            self.store.enqueue_many(
                [OutboundMessage(self._topics.device_status(s.device), s.to_json(), 1, True)
                 for s in statuses], statuses[0].updated_at, exclude=self.outbox.seqs_in_flight)

    def snapshot(self, snapshot: AlertStateSnapshot) -> None:
        """Re-queue the retained alert state (after an outage it must be right, even empty)."""
        self.retained(self._topics.alert_state, snapshot.to_json())

    def resend(self, message: OutboundMessage) -> None:
        """An alert event again (same event_id): no receipt has confirmed it yet."""
        self.store.enqueue(message, _now(self._wall_clock))

    def respond(self, topic: str, correlation: bytes | None, response: AckResponse) -> None:
        """An ack's MQTT v5 response, through the outbox like everything that matters."""
        self.store.enqueue(OutboundMessage(topic, response.to_json(), 1, False,
                                           self._wall_clock() + 300, correlation),
                           _now(self._wall_clock))
        self.outbox.kick()


def _now(wall_clock: Callable[[], float]) -> datetime:
    return datetime.fromtimestamp(wall_clock(), UTC)
