"""The imperative shell, wired in one place: store, outbox, MQTT link, scheduler and sinks around
the pure monitor (daemon/monitor.py).

Every decision is the monitor's. This module only turns the world into monitor inputs (Bluetooth
callbacks, MQTT messages, the clock, the disk) and hands each output to the sinks: the durable
outbox (daemon/outbox_sink.py) first, then any other sink (annunciator, status page). It is the one
place that reads the clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from pydantic import ValidationError

from daemon import __version__
from daemon.alerts import AlertKind
from daemon.clock_sync import clock_synchronized
from daemon.config import Config
from daemon.escalation import TrackedAlert
from daemon.homeassistant import discovery_messages, is_ha_online
from daemon.libc import trim_heap
from daemon.monitor import (
    Acknowledgement,
    AdapterProblem,
    BrokerLink,
    ConnectionChange,
    DeliveryHealth,
    DeviceState,
    GattPayload,
    HubFault,
    HubResources,
    Monitor,
    MonitorCounters,
    MonitorInput,
    MonitorOutput,
    Start,
    TherapyEvent,
    Tick,
)
from daemon.mqtt_link import IncomingMessage, LinkCallbacks, MqttLink
from daemon.outbox import Outbox
from daemon.outbox_sink import OutboxSink
from daemon.payloads import (
    AckResponse,
    AlertAck,
    AlertEvent,
    DeliveryReceipt,
    HubStatus,
    TherapyDay,
    VitalsSample,
)
from daemon.profiles import DeviceProfile, load_profiles
from daemon.readings import Reading, Vital
from daemon.receipts import ReceiptTracker
from daemon.sinks import Sink
from daemon.store import Store
from daemon.telemetry import BestEffortTelemetry
from daemon.therapy import Purpose, due_between, status_at
from daemon.therapy_schedule import schedule_therapy
from daemon.topics import Topics
from daemon.untrusted import UntrustedInputError, parse_bounded_json, validate_bounded

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

# A scheduled job failing this many times in a row is a hub fault: the technical alarm goes out
# and the systemd watchdog pings stop, so a hub that only looks alive gets restarted.
JOB_FAILURES_FOR_FAULT = 3
# A therapy reminder that fell due while the hub was down is still given this late.
REMINDER_CATCH_UP = timedelta(hours=1)


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


class Hub:
    def __init__(
        self,
        config: Config,
        *,
        clock: Clock = system_clock,
        monotonic: Callable[[], float] | None = None,
        tick_interval_s: float = 1.0,
        heartbeat_interval_s: float = 30.0,
        wall_clock: Callable[[], float] = time.time,
        profiles: dict[str, DeviceProfile] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        # The monotonic clock gives the monitor true elapsed time across wall-clock steps. Only
        # with the real system clock: a test or demo clock is its own true time.
        self.monotonic = monotonic if monotonic is not None else (
            time.monotonic if clock is system_clock else None)
        self.tick_interval_s = tick_interval_s
        self.heartbeat_interval_s = heartbeat_interval_s
        self.topics = Topics(config.mqtt.topic_prefix, config.hub.id, config.patient.id)
        profiles = profiles if profiles is not None else load_profiles(config.device_profiles_dir)
        self.monitor = Monitor(config, profiles)
        self.store = Store(config.hub.data_dir / "crs-hub.sqlite3")
        self.started_at: datetime | None = None
        self.last_tick_monotonic = time.monotonic()
        self.job_failures: dict[str, int] = {}
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
            subscriptions=[(self.topics.alert_ack_filter, 1)],
        )
        if config.home_assistant.enabled:
            self.link.subscriptions.append((f"{config.home_assistant.discovery_prefix}/status", 1))
        self.outbox = Outbox(self.store, self.link, wall_clock=wall_clock, max_in_flight=100)
        self.receipts = ReceiptTracker(
            self.store, config.alerts, wall_clock=wall_clock,
            monotonic=self.monotonic or (lambda: self.clock().timestamp()))
        if self.receipts.enabled:
            self.link.subscriptions.append((self.topics.alert_receipt, 1))
        self.delivery = OutboxSink(self.store, self.outbox, self.link, self.topics,
                                   event_expiry_s=config.alerts.event_expiry_s,
                                   wall_clock=wall_clock, receipts=self.receipts)
        self._delivery_health: tuple[int, int] = (0, 0)
        self.telemetry = BestEffortTelemetry(self.link)
        self.sinks: list[Sink] = [self.delivery]
        # Told when the broker link comes and goes (the status page shows it).
        self.link_listeners: list[Callable[[bool], None]] = []
        self.sound_problem: str | None = None  # set by the annunciator (service.py)
        self.scheduler: AsyncIOScheduler | None = None

    # --- read-only views (tests, systemd status, the status page) ----------------------------
    @property
    def devices(self) -> dict[str, DeviceState]:
        return self.monitor.devices

    @property
    def counters(self) -> MonitorCounters:
        return self.monitor.counters

    @property
    def tracked(self) -> dict[str, TrackedAlert]:
        return {a.alert_id: a for a in self.monitor.open_alerts()}

    @property
    def store_failures(self) -> int:
        return self.delivery.store_failures

    def open_alert_kinds(self) -> list[AlertKind]:
        return self.monitor.open_alert_kinds()

    def add_sink(self, sink: Sink) -> None:
        self.sinks.append(sink)

    # --- the one path into the monitor --------------------------------------------------------
    def _mono(self) -> float | None:
        return self.monotonic() if self.monotonic is not None else None

    def submit(self, inp: MonitorInput) -> MonitorOutput:
        """Run one input through the monitor and hand the output to every sink."""
        out = self.monitor.handle(inp)
        if out:
            self._fan_out(out)
        return out

    def _fan_out(self, out: MonitorOutput) -> None:
        snapshot = self.monitor.snapshot()
        for sink in self.sinks:
            try:
                sink.on_output(out, snapshot)
            except Exception:
                # The durable sink must never be stopped by another one failing.
                log.exception("sink %s failed", type(sink).__name__)

    # --- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        now = self.clock()
        self.started_at = now
        restored = self.monitor.restore([AlertEvent.model_validate_json(e.record)
                                         for e in self.store.open_alert_records()])
        if restored:
            log.info("restored %d open alert(s) from the journal", restored)
        if self.receipts.enabled and (awaiting := self.receipts.load()):
            log.info("%d alert event(s) still await a delivery receipt", awaiting)
        last_seen = self._warm_baselines(now)
        self.submit(Start(now, self._mono()))
        self.link.start()
        self.scheduler = AsyncIOScheduler()
        jobs: list[tuple[Callable[[], None], float]] = [
            (self.tick, self.tick_interval_s),
            (self.heartbeat, self.heartbeat_interval_s),
            (self.store.flush_due, 1.0),
            (self.compact, 3600.0),
        ]
        if self.config.vitals.publish:
            jobs.append((self.publish_vitals, self.config.vitals.interval_s))
        for job, every_s in jobs:
            self.scheduler.add_job(self._on_loop(job), "interval", seconds=every_s,
                                   id=job.__name__, max_instances=1, coalesce=True)
        self._schedule_therapy(now, last_seen)
        self.scheduler.start()

    # --- issue 13: baselines and therapy windows (own methods: the rest of start() is shared) --
    def _warm_baselines(self, now: datetime) -> datetime | None:
        """Relearn the systolic and personal temperature baselines from the store (the monitor's
        one documented call for it, Monitor.warm); returns when the hub last stored a reading."""
        since = now - timedelta(days=self.config.storage.minute_retention_days)
        readings = self.store.stored_readings((Vital.SYSTOLIC.value, Vital.TEMPERATURE.value),
                                              since)
        if readings:
            systolic, temperatures = self.monitor.warm(readings)
            log.info("baselines relearned from %d systolic and %d temperature readings",
                     systolic, temperatures)
        return self.store.last_reading_at()

    def _schedule_therapy(self, now: datetime, last_seen: datetime | None) -> None:
        """Therapy jobs on the scheduler, recomputed from the config at every start (stable ids:
        daemon/therapy.py says why not a persistent job store); what fell due while the hub was
        down is told now: window starts and ends, and only the latest missed reminder."""
        therapy = self.config.therapy
        if therapy is None or self.scheduler is None:
            return
        if last_seen is not None:
            missed = due_between(therapy, last_seen, now)
            # An hours-old reminder is noise (the job's own misfire grace is 1 h); starts and
            # ends are always told.
            fresh = [i for i in missed if i.purpose is Purpose.SPOT_CHECK
                     and now - i.at <= REMINDER_CATCH_UP][-1:]
            for item in missed:
                if item.purpose is not Purpose.SPOT_CHECK or item in fresh:
                    self.submit(TherapyEvent(item.purpose.value, item.window.start, now,
                                             self._mono()))
        ids = schedule_therapy(self.scheduler, self._on_therapy_job, therapy, now)
        log.info("therapy: %d job(s) scheduled; %s", len(ids), status_at(therapy, now).text)

    async def _on_therapy_job(self, purpose: str, window_start: datetime) -> None:
        try:
            self.submit(TherapyEvent(purpose, window_start, self.clock(), self._mono()))
        except Exception:
            log.exception("therapy job %s failed", purpose)
            self._hub_fault(f"therapy job {purpose} failed")

    def _on_loop(self, job: Callable[[], None]) -> Callable[[], Coroutine[None, None, None]]:
        """APScheduler runs plain functions in a thread pool; the hub is single-threaded by design
        (one SQLite connection, no locks), so every job runs as a coroutine on the event loop."""
        name = getattr(job, "__name__", repr(job))

        async def run() -> None:
            try:
                job()
            except Exception:
                failures = self.job_failures.get(name, 0) + 1
                self.job_failures[name] = failures
                log.exception("scheduled job %s failed (%d in a row)", name, failures)
                if failures == JOB_FAILURES_FOR_FAULT:
                    self._hub_fault(f"job {name} keeps failing")
            else:
                if self.job_failures.pop(name, 0) >= JOB_FAILURES_FOR_FAULT \
                        and not self.failing_jobs:
                    self._hub_fault(None)

        run.__name__ = name
        return run

    @property
    def failing_jobs(self) -> list[str]:
        return sorted(n for n, c in self.job_failures.items() if c >= JOB_FAILURES_FOR_FAULT)

    def _hub_fault(self, reason: str | None) -> None:
        self.submit(HubFault(reason, self.clock(), self._mono()))

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
        self.submit(GattPayload(device_id, characteristic_uuid, bytes(data), self.clock(),
                                self._mono()))

    def on_connection_change(self, device_id: str, connected: bool) -> None:
        self.submit(ConnectionChange(device_id, connected, self.clock(), self._mono()))

    def on_adapter_problem(self, reason: str | None) -> None:
        self.submit(AdapterProblem(reason, self.clock(), self._mono()))

    def ingest(self, readings: Iterable[Reading], now: datetime | None = None) -> None:
        """Feed readings already through the reading policy (benchmarks and tests)."""
        out = self.monitor.ingest(readings, now or self.clock())
        if out:
            self._fan_out(out)

    # --- scheduled jobs ---------------------------------------------------------------------------
    def tick(self) -> None:
        now = self.clock()
        self.submit(Tick(now, self._mono()))
        self._check_delivery(now)
        # A row the broker refused waits out retry_refused_s; without this, its retry would
        # depend on some unrelated message kicking the outbox.
        self.outbox.kick()
        # Stamped only once the tick has done its work: a tick that raises keeps the watchdog
        # from being fed.
        self.last_tick_monotonic = time.monotonic()

    def _check_delivery(self, now: datetime) -> None:
        """Re-publish unconfirmed events that are due, and tell the monitor how delivery stands
        (only when it changes: this runs every tick)."""
        # While the link is down the outbox holds what was sent; copies would only pile up.
        if self.receipts.enabled and self.link.connected:
            for message in self.receipts.due():
                self.delivery.resend(message)
        health = (len(self.outbox.refused),
                  self.receipts.unreached() if self.receipts.enabled else 0)
        if health != self._delivery_health:
            self._delivery_health = health
            self.submit(DeliveryHealth(health[0], health[1], now, self._mono()))

    def heartbeat(self) -> None:
        # Heap that connections, page loads and compaction freed goes back to the system
        # (daemon/libc.py); a fraction of a millisecond every 30 s.
        trim_heap()
        now = self.clock()
        try:
            free = shutil.disk_usage(self.config.hub.data_dir).free
        except OSError:
            free = 0
        self.submit(HubResources(self.outbox.pending, free, now, self._mono()))
        self.telemetry.publish(self.topics.hub_status, self._status_payload("online", now),
                               qos=1, retain=True)
        self.delivery.device_statuses(
            [self.monitor.device_status(device_id, now) for device_id in self.devices])
        self.outbox.kick()

    def compact(self) -> None:
        storage = self.config.storage
        self.store.compact_readings(self.clock(), storage.raw_retention_h * 3600,
                                    storage.minute_retention_days * 86400)

    def publish_vitals(self) -> None:
        sample = vitals_sample(self.monitor.latest, self.clock(), self._stale_after_s())
        if sample is not None:
            # QoS 0 and not retained: vitals are telemetry, not alarms, and leave no PHI behind.
            self.telemetry.publish(self.topics.vitals, sample.to_json(), qos=0, retain=False)

    def _stale_after_s(self) -> dict[Vital, float]:
        stale = self.config.thresholds.stale
        return {Vital.TEMPERATURE: stale.temperature_s, Vital.HEART_RATE: stale.heart_rate_s,
                Vital.SPO2: stale.heart_rate_s}

    # --- MQTT -------------------------------------------------------------------------------------
    def _on_mqtt_disconnected(self, reason: str) -> None:
        if self.scheduler is None:
            return  # our own shutdown, not an outage
        self.submit(BrokerLink(False, self.clock(), self._mono()))
        for listener in self.link_listeners:
            listener(False)

    def _on_mqtt_connected(self) -> None:
        now = self.clock()
        self.submit(BrokerLink(True, now, self._mono()))
        for listener in self.link_listeners:
            listener(True)
        self.telemetry.publish(self.topics.hub_status, self._status_payload("online", now),
                               qos=1, retain=True)
        # The retained state must be right after any outage, even with nothing open.
        self.delivery.snapshot(self.monitor.snapshot(now))
        if self.config.home_assistant.enabled:
            self._publish_discovery()
        self.outbox.on_connected()

    def _on_published(self, mid: int, ok: bool, reason: str) -> None:
        self.outbox.on_published(mid, ok, reason)

    def _on_message(self, message: IncomingMessage) -> None:
        login = self.topics.ack_login(message.topic)
        if login is not None:
            self._on_ack(message, login)
        elif message.topic == self.topics.alert_receipt and self.receipts.enabled:
            self._on_receipt(message)
        elif self.config.home_assistant.enabled and is_ha_online(
            message.topic, message.payload, self.config.home_assistant.discovery_prefix
        ):
            log.info("Home Assistant came online: re-publishing discovery")
            self._publish_discovery()

    def _publish_discovery(self) -> None:
        """Home Assistant MQTT discovery (optional): retained, through the outbox like state.
        The hub's own config comes first in the list, so Home Assistant can nest the patient's
        and wearables' devices under it."""
        devices = [(device_id, {v.value for v in state.profile.vitals})
                   for device_id, state in self.devices.items()]
        for topic, payload in discovery_messages(
            self.config.hub.id, self.config.patient.id, devices,
            prefix=self.config.mqtt.topic_prefix,
            discovery_prefix=self.config.home_assistant.discovery_prefix,
            expire_after_s=int(max(self.config.thresholds.stale.temperature_s,
                                   self.config.vitals.interval_s * 3)),
        ):
            self.delivery.retained(topic, payload.encode())

    def _on_receipt(self, message: IncomingMessage) -> None:
        try:
            receipt = validate_bounded(message.payload, DeliveryReceipt)
        except UntrustedInputError as exc:
            self.counters.by_reason[f"receipt {exc.reason}"] += 1
            log.warning("rejected a malformed delivery receipt (%s)", exc.reason)
            return
        self.receipts.confirm(receipt.event_id, receipt.consumer)

    def _on_ack(self, message: IncomingMessage, login: str) -> None:
        try:
            # Bounded first (size, nesting depth), then the schema, whose errors name fields.
            ack = AlertAck.model_validate(parse_bounded_json(message.payload))
        except (UntrustedInputError, ValidationError) as exc:
            self.counters.acks_rejected += 1
            detail = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'payload'}: {e['msg']}"
                for e in exc.errors(include_url=False)) if isinstance(
                    exc, ValidationError) else f"payload: {exc}"
            log.warning("rejected a malformed ack: %s", detail)
            self._respond(message, AckResponse(alert_id="", accepted=False,
                                               reason="malformed ack"))
            return
        if ack.actor is not None and ack.actor != login:
            self.counters.acks_rejected += 1
            log.warning("rejected an ack for %s: its actor does not match the login %s",
                        ack.alert_id, login)
            self._respond(message, AckResponse(alert_id=ack.alert_id, accepted=False,
                                               reason="actor does not match the login"))
            return
        out = self.submit(Acknowledgement(ack.alert_id, login, self.clock(), ack.note,
                                          self._mono()))
        if out.ack is not None:
            self._respond(message, out.ack)

    def _respond(self, message: IncomingMessage, response: AckResponse) -> None:
        if message.response_topic:
            self.delivery.respond(message.response_topic, message.correlation_data, response)

    def _status_payload(self, state: str, now: datetime | None = None) -> bytes:
        online = state == "online"
        return HubStatus(
            hub_id=self.config.hub.id, state="online" if online else "offline",
            version=__version__, heartbeat_at=now, started_at=self.started_at,
            devices_connected=sum(d.connected for d in self.devices.values()) if online else None,
            devices_configured=len(self.devices),
            outbox_pending=self.outbox.pending if online else None,
            clock_synchronized=clock_synchronized() if online else None,
            **self._protocol_status(now) if online and now is not None else {},
        ).to_json()

    def _protocol_status(self, now: datetime) -> dict[str, Any]:
        """Issue 13 in the heartbeat: "day N of M" and the systolic baseline in use."""
        therapy = self.config.therapy
        return {
            "therapy": TherapyDay.model_validate(status_at(therapy, now).as_payload())
            if therapy is not None else None,
            "sbp_baseline": self.monitor.emergency.sbp_baseline().as_payload()
            if any(Vital.SYSTOLIC in d.profile.vitals for d in self.devices.values()) else None,
        }


def vitals_sample(latest: dict[Vital, Reading], now: datetime,
                  stale_after_s: dict[Vital, float]) -> VitalsSample | None:
    """The latest vitals, each only while it is fresh: a value older than its stale window is
    sent as null, so a dashboard never shows an hours-old temperature as current."""
    fresh = {vital: r for vital, r in latest.items()
             if (now - r.observed_at).total_seconds() <= stale_after_s.get(vital, 300.0)}
    if not fresh:
        return None

    def value(vital: Vital) -> float | None:
        reading = fresh.get(vital)
        return round(reading.value, 2) if reading else None

    return VitalsSample(observed_at=max(r.observed_at for r in fresh.values()),
                        temperature_c=value(Vital.TEMPERATURE),
                        heart_rate_bpm=value(Vital.HEART_RATE), spo2_percent=value(Vital.SPO2))

