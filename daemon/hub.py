"""The imperative shell: wires Bluetooth -> decoding -> rules -> alerts -> outbox -> MQTT.

This is the one place that reads the clock, touches the disk and the network, and schedules work.
Everything it calls for decisions (decoding, rules, technical alarms, escalation, messages,
payloads) is pure code over typed values.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import sqlite3
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from pydantic import ValidationError

from daemon import __version__
from daemon.alerts import AlertKind, AlertState, AlertTransition, Severity
from daemon.config import Config, DeviceSettings
from daemon.decoding import DecodeError, NoReading, decode, to_readings
from daemon.escalation import TrackedAlert, acknowledge, due_escalations, track
from daemon.homeassistant import discovery_messages, is_ha_online
from daemon.mqtt_link import IncomingMessage, LinkCallbacks, MqttLink
from daemon.outbox import Outbox
from daemon.patient_messages import CareContact, patient_message
from daemon.payloads import (
    AckResponse,
    AlertAck,
    AlertEvent,
    AlertStateSnapshot,
    DeviceStatus,
    HubStatus,
    OpenAlert,
    Tier,
    VitalsSample,
)
from daemon.profiles import DeviceProfile, load_profiles
from daemon.readings import Reading, Vital, flag_off_body
from daemon.rules import ClinicalRules
from daemon.store import JournalEntry, OutboundMessage, Store
from daemon.technical_alarms import TechnicalAlarms
from daemon.topics import Topics

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def _on_loop(job: Callable[[], None]) -> Callable[[], Coroutine[None, None, None]]:
    """APScheduler runs plain functions in a thread pool; the hub is single-threaded by design
    (one SQLite connection, no locks), so every job runs as a coroutine on the event loop."""

    async def run() -> None:
        try:
            job()
        except Exception:
            # A failing job must not stop the others; the scheduler would only log it too.
            log.exception("scheduled job %s failed", job.__name__)

    run.__name__ = job.__name__
    return run


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class ScaledClock:
    """Scenario time running ``scale`` times faster than real time (for the demo and tests)."""

    start: datetime
    scale: float
    _t0: float = field(default_factory=time.monotonic)

    def __call__(self) -> datetime:
        return self.start + timedelta(seconds=(time.monotonic() - self._t0) * self.scale)


@dataclass
class HubCounters:
    payloads: int = 0
    readings: int = 0
    decode_errors: int = 0
    no_readings: int = 0
    acks_accepted: int = 0
    acks_rejected: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)


@dataclass
class DeviceState:
    settings: DeviceSettings
    profile: DeviceProfile
    connected: bool = False
    last_reading_at: datetime | None = None
    battery_percent: int | None = None


class Hub:
    def __init__(
        self,
        config: Config,
        *,
        clock: Clock = system_clock,
        tick_interval_s: float = 1.0,
        heartbeat_interval_s: float = 30.0,
        wall_clock: Callable[[], float] = time.time,
        profiles: dict[str, DeviceProfile] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.tick_interval_s = tick_interval_s
        self.heartbeat_interval_s = heartbeat_interval_s
        self.wall_clock = wall_clock
        self.profiles = profiles if profiles is not None else load_profiles(config.device_profiles_dir)
        self.topics = Topics(config.mqtt.topic_prefix, config.hub.id, config.patient.id)
        self.contact = CareContact(
            team_name=config.patient.care_team_name,
            phone=config.patient.care_team_phone,
            emergency_number=config.patient.emergency_number,
            fahrenheit_first=config.patient.temperature_unit == "F",
        )
        self.devices: dict[str, DeviceState] = {}
        for device in config.devices:
            profile = self.profiles.get(device.profile)
            if profile is None:
                raise ValueError(f"device {device.id}: unknown device profile {device.profile!r}")
            self.devices[device.id] = DeviceState(device, profile)
        self.counters = HubCounters()
        self.store = Store(config.hub.data_dir / "crs-hub.sqlite3")
        self.clinical = ClinicalRules(config.thresholds)
        self.technical = TechnicalAlarms(config.thresholds.stale, config.thresholds.hub)
        self.tracked: dict[str, TrackedAlert] = {}
        self._hr_threshold = config.thresholds.tachycardia.threshold_bpm
        self._latest: dict[Vital, Reading] = {}
        self.started_at: datetime | None = None
        self.last_tick_monotonic = time.monotonic()
        self.store_failures = 0
        self.link = MqttLink(
            config.mqtt,
            client_id=f"crs-hub-{config.hub.id}",
            will=(self.topics.hub_status, self._status_payload("offline")),
            callbacks=LinkCallbacks(
                connected=self._on_mqtt_connected,
                disconnected=self._on_mqtt_disconnected,
                published=self._on_published,
                message=self._on_message,
            ),
            subscriptions=[(self.topics.alert_ack, 1)],
        )
        ha = config.home_assistant
        if ha.enabled:
            self.link.subscriptions.append((f"{ha.discovery_prefix}/status", 1))
        self.outbox = Outbox(self.store, self.link, wall_clock=wall_clock,
                             max_in_flight=100)
        self.scheduler: AsyncIOScheduler | None = None
        self.transition_listeners: list[Callable[[AlertEvent], None]] = []

    # --- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        now = self.clock()
        self.started_at = now
        self._restore_open_alerts()
        for device_id, state in self.devices.items():
            # Spot-check devices (a thermometer used by hand) have no sample interval: their
            # silence between readings is normal, so only continuous wearables are watched.
            if state.profile.expected_sample_interval_s is not None:
                self.technical.expect(device_id, set(state.profile.vitals), now)
        # Until the first CONNACK the broker counts as unreachable (it may never answer).
        self._handle(self.technical.broker_connection(False, now), now)
        self.link.start()
        self.scheduler = AsyncIOScheduler()
        jobs: list[tuple[Callable[[], None], float]] = [
            (self.tick, self.tick_interval_s),
            (self.heartbeat, self.heartbeat_interval_s),
            (self.store.flush, 1.0),
            (self.compact, 3600.0),
        ]
        if self.config.vitals.publish:
            jobs.append((self.publish_vitals, self.config.vitals.interval_s))
        for job, every_s in jobs:
            self.scheduler.add_job(_on_loop(job), "interval", seconds=every_s,
                                   id=job.__name__, max_instances=1, coalesce=True)
        self.scheduler.start()

    async def wait_connected(self, wait_s: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.link.connected_event.wait(), wait_s)
        return self.link.connected

    async def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None
        await self.link.stop(final=(self.topics.hub_status, self._status_payload("offline")))
        self.store.close()

    # --- Bluetooth listener ---------------------------------------------------------------------
    def on_payload(self, device_id: str, characteristic_uuid: str, data: bytes) -> None:
        now = self.clock()
        self.counters.payloads += 1
        state = self.devices.get(device_id)
        if state is None:
            return
        try:
            result = decode(characteristic_uuid, data)
        except DecodeError as exc:
            self.counters.decode_errors += 1
            self.counters.by_reason[exc.reason] += 1
            log.warning("device %s: malformed %s payload skipped: %s", device_id,
                        exc.characteristic, exc.reason)
            log.debug("device %s: malformed payload bytes %s", device_id, data.hex())
            return
        if isinstance(result, NoReading):
            self.counters.no_readings += 1
            log.info("device %s: no reading (%s)", device_id, result.reason)
            if result.contact_lost:
                self._handle(self.technical.contact_lost(device_id, now), now)
            return
        offset = state.settings.temperature_offset_c
        if offset is None:
            offset = state.profile.default_temperature_offset_c
        readings = to_readings(result, device_id, now, offset)
        self.ingest(flag_off_body(readings, self.config.thresholds.stale.off_body_below_c), now)

    def on_connection_change(self, device_id: str, connected: bool) -> None:
        now = self.clock()
        state = self.devices.get(device_id)
        if state is None:
            return
        state.connected = connected
        log.info("device %s %s", device_id, "connected" if connected else "disconnected")
        self._handle(self.technical.connection_changed(device_id, connected, now), now)
        self._publish_device_status(device_id, now)

    def on_adapter_problem(self, reason: str | None) -> None:
        now = self.clock()
        if reason:
            log.error("Bluetooth adapter problem: %s", reason)
        self._handle(self.technical.adapter_problem(reason, now), now)

    # --- the pipeline ---------------------------------------------------------------------------
    def ingest(self, readings: Iterable[Reading], now: datetime | None = None) -> None:
        """Feed validated readings into store and rules (tests and benchmarks call this too)."""
        readings = list(readings)
        if not readings:
            return
        now = now or self.clock()
        self.store.add_readings(readings)
        transitions: list[AlertTransition] = []
        for reading in readings:
            self.counters.readings += 1
            if reading.sensor_contact is not False:
                self._latest[reading.vital] = reading
            log.debug("reading %s %s=%s", reading.device, reading.vital, reading.value)
            state = self.devices.get(reading.device)
            if state is not None:
                state.last_reading_at = reading.observed_at
                if reading.vital is Vital.BATTERY:
                    changed = state.battery_percent != int(reading.value)
                    state.battery_percent = int(reading.value)
                    if changed:
                        self._publish_device_status(reading.device, now)
            transitions += self.clinical.observe(reading)
            transitions += self.technical.observe(reading)
        self._handle(transitions, now)

    def tick(self) -> None:
        self.last_tick_monotonic = time.monotonic()
        now = self.clock()
        transitions = self.clinical.tick(now) + self.technical.tick(now)
        self._handle(transitions, now)
        self._escalate(now)
        # A row the broker refused waits out retry_refused_s; without this, its retry would
        # depend on some unrelated message kicking the outbox.
        self.outbox.kick()

    def heartbeat(self) -> None:
        now = self.clock()
        try:
            free = shutil.disk_usage(self.config.hub.data_dir).free
        except OSError:
            free = 0
        self._handle(self.technical.hub_resources(self.outbox.pending, free, now), now)
        if self.link.connected:
            self.link.publish(self.topics.hub_status, self._status_payload("online", now),
                              qos=1, retain=True)
        for device_id in self.devices:
            self._publish_device_status(device_id, now)

    def compact(self) -> None:
        storage = self.config.storage
        self.store.compact_readings(self.clock(), storage.raw_retention_h * 3600,
                                    storage.minute_retention_days * 86400)

    def publish_vitals(self) -> None:
        if not self._latest or not self.link.connected:
            return
        newest = max(r.observed_at for r in self._latest.values())

        def value(vital: Vital) -> float | None:
            reading = self._latest.get(vital)
            return round(reading.value, 2) if reading else None

        sample = VitalsSample(observed_at=newest, temperature_c=value(Vital.TEMPERATURE),
                              heart_rate_bpm=value(Vital.HEART_RATE),
                              spo2_percent=value(Vital.SPO2))
        # QoS 0 and not retained: vitals are telemetry, not alarms, and leave no PHI behind.
        self.link.publish(self.topics.vitals, sample.to_json(), qos=0, retain=False)

    # --- alerts -----------------------------------------------------------------------------------
    def _handle(self, transitions: Iterable[AlertTransition], now: datetime) -> None:
        for transition in transitions:
            previous = self.tracked.get(transition.alert_id)
            updated = track(previous, transition, now)
            if updated is None:
                self.tracked.pop(transition.alert_id, None)
            else:
                self.tracked[transition.alert_id] = updated
            tier = updated.tier if updated else (previous.tier if previous else Tier.PATIENT)
            log.warning("alert %s %s: kind=%s severity=%s device=%s", transition.alert_id,
                        transition.state, transition.kind, transition.severity,
                        transition.device)
            self._publish_event(transition, transition.state, tier, now, actor="hub",
                                tracked=updated)

    def _escalate(self, now: datetime) -> None:
        if not self.config.escalation.enabled:
            return
        repeat = {Severity(k): timedelta(minutes=v)
                  for k, v in self.config.escalation.repeat_min.items()}
        for alert in due_escalations(self.tracked.values(), repeat, now):
            self.tracked[alert.alert_id] = alert
            log.warning("alert %s not acknowledged: escalated to %s", alert.alert_id, alert.tier)
            self._publish_event(alert.transition, AlertState.ESCALATED, alert.tier, now,
                                actor="hub", tracked=alert)

    def _publish_event(self, transition: AlertTransition, state: AlertState, tier: Tier,
                       now: datetime, *, actor: str, tracked: TrackedAlert | None) -> AlertEvent:
        event = AlertEvent(
            event_id=str(uuid.uuid4()),
            alert_id=transition.alert_id,
            hub_id=self.config.hub.id,
            patient_id=self.config.patient.id,
            kind=transition.kind,
            state=state,
            severity=transition.severity,
            tier=tier,
            value=transition.value,
            unit=transition.unit,
            threshold=transition.threshold,
            observed_at=transition.observed_at,
            raised_at=transition.raised_at,
            event_at=now,
            device=transition.device,
            patient_message=patient_message(transition.kind, state, transition.value,
                                            self.contact,
                                            heart_rate_threshold_bpm=self._hr_threshold),
            acknowledged_by=tracked.acknowledged_by if tracked else None,
            technical=transition.kind.is_technical,
        )
        expires_at = self.wall_clock() + self.config.alerts.event_expiry_s
        entry = JournalEntry(0, event.alert_id, event.event_id, state.value,
                             transition.kind.value, transition.severity.value, now, actor,
                             event.model_dump_json())
        messages = [
            OutboundMessage(self.topics.alert_event, event.to_json(), 1, False, expires_at),
            OutboundMessage(self.topics.alert_state, self._snapshot(now).to_json(), 1, True),
        ]
        try:
            self.store.record_transition(entry, messages)
        except sqlite3.Error as exc:
            # Disk full or the database broken: the alert must still go out. Hand it to paho
            # directly (in memory only, so a restart now would lose it) and say so loudly.
            self.store_failures += 1
            log.critical("cannot write alert %s to the store (%s); publishing it without "
                         "durability", event.alert_id, exc)
            for message in messages:
                self.link.publish(message.topic, message.payload, qos=message.qos,
                                  retain=message.retain,
                                  expiry_s=self.config.alerts.event_expiry_s
                                  if not message.retain else None)
        for listener in self.transition_listeners:
            listener(event)
        self.outbox.kick()
        return event

    def _snapshot(self, now: datetime) -> AlertStateSnapshot:
        alerts = [
            OpenAlert(
                alert_id=a.alert_id, kind=a.transition.kind, severity=a.transition.severity,
                tier=a.tier, value=a.transition.value, unit=a.transition.unit,
                raised_at=a.transition.raised_at, updated_at=a.notified_at,
                device=a.transition.device, acknowledged_by=a.acknowledged_by,
                acknowledged_at=a.acknowledged_at,
                patient_message=patient_message(a.transition.kind, a.transition.state,
                                                a.transition.value, self.contact,
                                                heart_rate_threshold_bpm=self._hr_threshold),
            )
            for a in sorted(self.tracked.values(), key=lambda a: a.transition.raised_at)
        ]
        return AlertStateSnapshot(hub_id=self.config.hub.id, patient_id=self.config.patient.id,
                                  open=alerts, updated_at=now)

    def _restore_open_alerts(self) -> None:
        """After a restart: open alerts come back from the journal, not raised again as new."""
        clinical: list[AlertTransition] = []
        technical: list[AlertTransition] = []
        for entry in self.store.open_alert_records():
            event = AlertEvent.model_validate_json(entry.record)
            transition = AlertTransition(
                alert_id=event.alert_id, kind=event.kind,
                state=AlertState.RAISED if event.state in (AlertState.ESCALATED,
                                                           AlertState.ACKNOWLEDGED)
                else event.state,
                severity=event.severity, value=event.value, unit=event.unit,
                threshold=event.threshold, observed_at=event.observed_at,
                raised_at=event.raised_at, device=event.device,
            )
            self.tracked[event.alert_id] = TrackedAlert(
                transition, event.tier, event.event_at, event.acknowledged_by,
                event.event_at if event.acknowledged_by else None)
            (technical if event.kind.is_technical else clinical).append(transition)
        self.clinical.restore(clinical)
        self.technical.restore(technical)
        if self.tracked:
            log.info("restored %d open alert(s) from the journal", len(self.tracked))

    # --- MQTT -------------------------------------------------------------------------------------
    def _on_mqtt_disconnected(self, reason: str) -> None:
        if self.scheduler is None:
            return  # our own shutdown, not an outage
        now = self.clock()
        self._handle(self.technical.broker_connection(False, now), now)

    def _on_mqtt_connected(self) -> None:
        now = self.clock()
        self._handle(self.technical.broker_connection(True, now), now)
        self.link.publish(self.topics.hub_status, self._status_payload("online", now), qos=1,
                          retain=True)
        # The retained state must be right after any outage, even with nothing open.
        self.store.enqueue(OutboundMessage(self.topics.alert_state,
                                           self._snapshot(now).to_json(), 1, True),
                           now, exclude=self.outbox.seqs_in_flight)
        if self.config.home_assistant.enabled:
            self._publish_discovery()
        self.outbox.on_connected()

    def _on_published(self, mid: int, ok: bool, reason: str) -> None:
        self.outbox.on_published(mid, ok, reason)

    def _on_message(self, message: IncomingMessage) -> None:
        if message.topic == self.topics.alert_ack:
            self._on_ack(message)
        elif self.config.home_assistant.enabled and is_ha_online(
            message.topic, message.payload, self.config.home_assistant.discovery_prefix
        ):
            log.info("Home Assistant came online: re-publishing discovery")
            self._publish_discovery()

    def _publish_discovery(self) -> None:
        """Home Assistant MQTT discovery (optional): retained, through the outbox like state."""
        now = self.clock()
        devices = [(device_id, {v.value for v in state.profile.vitals})
                   for device_id, state in self.devices.items()]
        for topic, payload in discovery_messages(
            self.config.hub.id, self.config.patient.id, devices,
            prefix=self.config.mqtt.topic_prefix,
            discovery_prefix=self.config.home_assistant.discovery_prefix,
            expire_after_s=int(max(self.config.thresholds.stale.temperature_s,
                                   self.config.vitals.interval_s * 3)),
        ):
            self.store.enqueue(OutboundMessage(topic, payload.encode(), 1, True), now,
                               exclude=self.outbox.seqs_in_flight)
        self.outbox.kick()

    def _on_ack(self, message: IncomingMessage) -> None:
        now = self.clock()
        try:
            ack = AlertAck.model_validate_json(message.payload)
        except ValidationError as exc:
            self.counters.acks_rejected += 1
            log.warning("rejected a malformed ack: %s", "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'payload'}: {e['msg']}"
                for e in exc.errors(include_url=False)))
            self._respond(message, AckResponse(alert_id="", accepted=False,
                                               reason="malformed ack"))
            return
        alert = self.tracked.get(ack.alert_id)
        if alert is None:
            self.counters.acks_rejected += 1
            log.warning("rejected an ack for unknown or closed alert %s from %s", ack.alert_id,
                        ack.actor)
            self._respond(message, AckResponse(alert_id=ack.alert_id, accepted=False,
                                               reason="unknown or closed alert"))
            return
        self.counters.acks_accepted += 1
        if not alert.acknowledged:
            acked = acknowledge(alert, ack.actor, now)
            self.tracked[ack.alert_id] = acked
            log.warning("alert %s acknowledged by %s", ack.alert_id, ack.actor)
            self._publish_event(acked.transition, AlertState.ACKNOWLEDGED, acked.tier, now,
                                actor=ack.actor, tracked=acked)
        self._respond(message, AckResponse(alert_id=ack.alert_id, accepted=True))

    def _respond(self, message: IncomingMessage, response: AckResponse) -> None:
        if message.response_topic and self.link.connected:
            self.link.publish(message.response_topic, response.to_json(), qos=1,
                              correlation_data=message.correlation_data)

    def _publish_device_status(self, device_id: str, now: datetime) -> None:
        state = self.devices[device_id]
        status = DeviceStatus(device=device_id, profile=state.profile.name,
                              connected=state.connected, last_reading_at=state.last_reading_at,
                              battery_percent=state.battery_percent, updated_at=now)
        self.store.enqueue(OutboundMessage(self.topics.device_status(device_id),
                                           status.to_json(), 1, True), now,
                           exclude=self.outbox.seqs_in_flight)
        self.outbox.kick()

    def _status_payload(self, state: str, now: datetime | None = None) -> bytes:
        online = state == "online"
        return HubStatus(
            hub_id=self.config.hub.id, state="online" if online else "offline",
            version=__version__, heartbeat_at=now, started_at=self.started_at,
            devices_connected=sum(d.connected for d in self.devices.values()) if online else None,
            devices_configured=len(self.devices),
            outbox_pending=self.outbox.pending if online else None,
        ).to_json()

    def open_alert_kinds(self) -> list[AlertKind]:
        return [a.transition.kind for a in self.tracked.values()]
