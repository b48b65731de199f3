"""The monitor: one patient's whole decision logic, from a device payload to an alert event.

Pure (functional core): it takes one typed input at a time and returns typed outputs. It does no
I/O and never reads a clock: every input carries the hub's wall time (``at``) and, when known, its
monotonic time (``mono_s``). The daemon (daemon/hub.py), ``crs-hub replay``, the simulator and the
benchmarks all run this very code, so what a replay shows is what the hub would have done.

What it owns:
- the reading policy (daemon/reading_policy.py: site offset, plausibility, off-body);
- the clinical rules (daemon/rules.py) and technical alarms (daemon/technical_alarms.py);
- the emergency tier (daemon/emergency_rules.py: SpO2, systolic pressure, with fever combined),
  the care-team-only temperature-trend notice (daemon/temperature_baseline.py) and the therapy
  notices (daemon/therapy_notices.py); a partial NEWS2 (daemon/news2.py) and the baseline a
  rule used go with care-team payloads, never into the patient's text (docs/protocols.md);
- escalation and acknowledgement of open alerts (daemon/escalation.py);
- device state (connected, last reading, battery) and counters of what it refused.

Open alerts live in the rule engines' alert books, the one record of which alerts are open; the
monitor keeps only what escalation adds to each (tier, when last announced, who acknowledged).

Time: windows and holds run on *rule time*. With ``mono_s`` given, rule time advances with the
monotonic clock from the first input, so a step of the wall clock (an NTP correction on a Pi with
no real-time clock) neither silences the rules nor fakes a gap; the outputs are stamped with the
wall clock as corrected by the latest input. Without ``mono_s``, wall time is taken as true time.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from daemon.alert_book import IdFactory, uuid4_id
from daemon.alerts import AlertKind, AlertState, AlertTransition, Severity
from daemon.config import Config, DeviceSettings
from daemon.decoding import DecodeError, NoReading, characteristic_name, decode
from daemon.emergency_rules import EmergencyRules, spo2_spot_check
from daemon.escalation import TrackedAlert, acknowledge, due_escalations, track
from daemon.news2 import score_latest
from daemon.patient_messages import CareContact, patient_message
from daemon.patient_reports import SYMPTOM_BY_NAME
from daemon.payloads import (
    AckResponse,
    AlertEvent,
    AlertStateSnapshot,
    DeviceStatus,
    News2Score,
    OpenAlert,
    Tier,
)
from daemon.profiles import DeviceProfile
from daemon.reading_policy import (
    MANUAL_DEVICE,
    device_value_readings,
    is_spot_check,
    manual_reading,
    measurement_readings,
    site_offset_c,
)
from daemon.readings import Reading, Vital
from daemon.rules import ClinicalRules
from daemon.symptoms import SymptomReports, UnknownSymptom
from daemon.technical_alarms import TechnicalAlarms
from daemon.temperature_baseline import TemperatureBaseline
from daemon.therapy import Purpose, monitoring_windows
from daemon.therapy_notices import TherapyNotices

log = logging.getLogger(__name__)

PATIENT_ACTOR = "patient"


# --- inputs ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Start:
    """Monitoring begins: every configured continuous wearable is expected from now on."""

    at: datetime
    mono_s: float | None = None


@dataclass(frozen=True, slots=True)
class GattPayload:
    """Bytes one configured device sent on one characteristic."""

    device: str
    characteristic: str
    data: bytes
    at: datetime
    mono_s: float | None = None


@dataclass(frozen=True, slots=True)
class DeviceReading:
    """A value in the device's own unit, before the site offset (a recorded vital)."""

    device: str
    vital: Vital
    value: float
    sensor_contact: bool | None
    at: datetime
    mono_s: float | None = None


@dataclass(frozen=True, slots=True)
class ConnectionChange:
    device: str
    connected: bool
    at: datetime
    mono_s: float | None = None


@dataclass(frozen=True, slots=True)
class AdapterProblem:
    """The Bluetooth adapter is unusable (``reason``), or usable again (None)."""

    reason: str | None
    at: datetime
    mono_s: float | None = None


@dataclass(frozen=True, slots=True)
class BrokerLink:
    connected: bool
    at: datetime
    mono_s: float | None = None


@dataclass(frozen=True, slots=True)
class HubResources:
    outbox_pending: int
    disk_free_bytes: int
    at: datetime
    mono_s: float | None = None


@dataclass(frozen=True, slots=True)
class HubFault:
    """The hub's own machinery is failing (``reason``, e.g. a scheduled job that keeps
    raising), or working again (None)."""

    reason: str | None
    at: datetime
    mono_s: float | None = None


@dataclass(frozen=True, slots=True)
class DeliveryHealth:
    """How alert delivery stands: messages the broker refuses (v5 PUBACK failure codes), and
    high-or-worse events no configured consumer has confirmed in time (delivery receipts)."""

    refused: int
    unreached: int
    at: datetime
    mono_s: float | None = None


@dataclass(frozen=True, slots=True)
class AnnunciatorProblem:
    """The hub cannot sound its own alarm (``reason``: no sound card, aplay failing), or can
    again (None)."""

    reason: str | None
    at: datetime
    mono_s: float | None = None


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passing: delayed alarms and escalations fall due."""

    at: datetime
    mono_s: float | None = None


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    """Someone has seen an alert. ``actor`` is a pseudonymous id (``patient`` from the hub's
    own page; a care-team login from the ack topic)."""

    alert_id: str
    actor: str
    at: datetime
    note: str | None = None
    mono_s: float | None = None


@dataclass(frozen=True, slots=True)
class ManualReading:
    """A thermometer reading typed in by hand (°C, as read)."""

    temperature_c: float
    at: datetime
    mono_s: float | None = None


@dataclass(frozen=True, slots=True)
class SymptomReport:
    """A symptom the patient reports (a documented symptom name)."""

    symptom: str
    at: datetime
    mono_s: float | None = None


@dataclass(frozen=True, slots=True)
class TherapyEvent:
    """A scheduled moment of a therapy monitoring window (daemon/therapy.py): ``purpose`` is
    ``window_start``, ``spot_check`` (remind the patient) or ``window_end``; ``window_start``
    names the window."""

    purpose: str
    window_start: datetime
    at: datetime
    mono_s: float | None = None


MonitorInput = (
    Start
    | GattPayload
    | DeviceReading
    | ConnectionChange
    | AdapterProblem
    | BrokerLink
    | HubResources
    | HubFault
    | AnnunciatorProblem
    | DeliveryHealth
    | Tick
    | Acknowledgement
    | ManualReading
    | SymptomReport
    | TherapyEvent
)


# --- outputs --------------------------------------------------------------------------------


@dataclass(slots=True)
class MonitorOutput:
    readings: list[Reading] = field(default_factory=list)
    events: list[AlertEvent] = field(default_factory=list)
    devices: list[DeviceStatus] = field(default_factory=list)
    ack: AckResponse | None = None

    def __bool__(self) -> bool:
        return bool(self.readings or self.events or self.devices or self.ack)


# Distinct refusal reasons counted by name; later new ones count under OTHER_REASONS.
MAX_REASONS = 64
OTHER_REASONS = "other reasons"


class ReasonCounts(Counter[str]):
    """Refusals by reason. A reason can carry values from the input (a decode error names the
    trailing byte count or the bad timestamp), so a wearable sending garbage would add a key per
    payload for as long as the hub runs: past ``MAX_REASONS`` distinct reasons, a new one is
    counted under ``OTHER_REASONS`` (the log still names it)."""

    def __setitem__(self, key: str, value: int) -> None:
        if key not in self and key != OTHER_REASONS and len(self) >= MAX_REASONS:
            key, value = OTHER_REASONS, self.get(OTHER_REASONS, 0) + value
        super().__setitem__(key, value)


@dataclass
class MonitorCounters:
    payloads: int = 0
    readings: int = 0
    decode_errors: int = 0
    no_readings: int = 0
    acks_accepted: int = 0
    acks_rejected: int = 0
    by_reason: Counter[str] = field(default_factory=ReasonCounts)


@dataclass
class DeviceState:
    settings: DeviceSettings
    profile: DeviceProfile
    offset_c: float
    spot_check: bool = False
    connected: bool = False
    last_reading_at: datetime | None = None
    battery_percent: int | None = None


class _Timeline:
    """Rule time from the monotonic clock, and the wall-clock correction for stamps."""

    __slots__ = ("_anchor", "_offset")

    def __init__(self) -> None:
        self._anchor: tuple[datetime, float] | None = None
        self._offset = timedelta(0)  # corrected wall time - rule time

    def rule_time(self, at: datetime, mono_s: float | None) -> datetime:
        if mono_s is None:
            return at if self._anchor is None else at - self._offset
        if self._anchor is None:
            self._anchor = (at, mono_s)
        t = self._anchor[0] + timedelta(seconds=mono_s - self._anchor[1])
        self._offset = at - t
        return t

    def stamp(self, t: datetime) -> datetime:
        return t + self._offset if self._offset else t

    @property
    def corrected(self) -> bool:
        return bool(self._offset)


def _contact(config: Config) -> CareContact:
    return CareContact(
        team_name=config.patient.care_team_name,
        phone=config.patient.care_team_phone,
        emergency_number=config.patient.emergency_number,
        fahrenheit_first=config.patient.temperature_unit == "F",
    )


class Monitor:
    """One patient's monitor (see the module docstring)."""

    def __init__(
        self,
        config: Config,
        profiles: dict[str, DeviceProfile],
        *,
        new_id: IdFactory = uuid4_id,
    ) -> None:
        self.config = config
        self.contact = _contact(config)
        self._new_id = new_id
        self.devices: dict[str, DeviceState] = {}
        for device in config.devices:
            profile = profiles.get(device.profile)
            if profile is None:
                raise ValueError(f"device {device.id}: unknown device profile {device.profile!r}")
            self.devices[device.id] = DeviceState(device, profile, site_offset_c(device, profile),
                                                  is_spot_check(profile))
        self.clinical = ClinicalRules(config.thresholds, new_id=new_id)
        self.technical = TechnicalAlarms(config.thresholds.stale, config.thresholds.hub,
                                         new_id=new_id, fever=config.thresholds.fever)
        self.symptoms = SymptomReports(new_id=new_id)
        self.emergency = EmergencyRules(config.thresholds.emergency, new_id=new_id)
        zone = ZoneInfo(config.therapy.timezone) if config.therapy else UTC
        self.trend = TemperatureBaseline(config.thresholds.temperature_trend, zone=zone,
                                         new_id=new_id)
        self.notices = TherapyNotices(new_id=new_id)
        # Escalation state of each open alert, keyed by alert_id; the alert itself is in the
        # engines' books (pruned on CLEARED).
        self._tracked: dict[str, TrackedAlert] = {}
        self._repeat = {
            Severity(k): timedelta(minutes=float(v))
            for k, v in config.escalation.repeat_min.items()
        }
        self._off_body_c = config.thresholds.stale.off_body_below_c
        self._hr_threshold = config.thresholds.tachycardia.threshold_bpm
        self._time = _Timeline()
        self._now: datetime | None = None  # latest rule time
        self._snapshot: AlertStateSnapshot | None = None
        self.counters = MonitorCounters()
        self.latest: dict[Vital, Reading] = {}
        self.started_at: datetime | None = None

    # --- the one entry point -----------------------------------------------------------------

    def handle(self, inp: MonitorInput) -> MonitorOutput:
        t = self._time.rule_time(inp.at, inp.mono_s)
        if self._now is None or t > self._now:
            self._now = t
        out = MonitorOutput()
        match inp:
            case GattPayload():
                self._payload(inp, t, out)
            case DeviceReading():
                self._device_reading(inp, t, out)
            case Tick():
                fever = self.clinical.tick(t)
                self._transitions(fever + self.emergency.note_fever(fever)
                                  + self.emergency.tick(t) + self.trend.tick(t)
                                  + self.technical.tick(t) + self.symptoms.tick(t), t, out)
                self.trend.note_fever(fever)
                self._escalate(t, out)
            case TherapyEvent():
                self._therapy(inp, t, out)
            case ConnectionChange():
                self._connection(inp, t, out)
            case AdapterProblem():
                if inp.reason:
                    log.error("Bluetooth adapter problem: %s", inp.reason)
                self._transitions(self.technical.adapter_problem(inp.reason, t), t, out)
            case BrokerLink():
                self._transitions(self.technical.broker_connection(inp.connected, t), t, out)
            case HubResources():
                self._transitions(
                    self.technical.hub_resources(inp.outbox_pending, inp.disk_free_bytes, t),
                    t, out)
            case HubFault():
                if inp.reason:
                    log.error("hub fault: %s", inp.reason)
                self._transitions(self.technical.hub_fault(inp.reason, t), t, out)
            case DeliveryHealth():
                self._transitions(
                    self.technical.delivery_health(inp.refused, inp.unreached, t), t, out)
            case AnnunciatorProblem():
                if inp.reason:
                    log.error("the hub cannot sound alarms: %s", inp.reason)
                self._transitions(self.technical.annunciator_problem(inp.reason, t), t, out)
            case Acknowledgement():
                self._acknowledge(inp, t, out)
            case Start():
                self._start(t, out)
            case SymptomReport():
                try:
                    self._transitions(self.symptoms.report(inp.symptom, t), t, out)
                except UnknownSymptom:
                    self.counters.by_reason["unknown symptom"] += 1
                    log.warning("refused a report of an unknown symptom")
            case ManualReading():
                reading = manual_reading(inp.temperature_c, t)
                if reading is None:
                    self.counters.by_reason["implausible manual reading"] += 1
                    log.warning("refused a thermometer reading that cannot be a body "
                                "temperature")
                else:
                    self._ingest([reading], t, out)
        if out.events:
            self._snapshot = None
        return out

    # --- views -------------------------------------------------------------------------------

    def open_alerts(self) -> list[TrackedAlert]:
        """Every open alert with its escalation state, oldest first."""
        current = (self.clinical.open_alerts() + self.emergency.open_alerts()
                   + self.trend.open_alerts() + self.notices.open_alerts()
                   + self.symptoms.open_alerts() + self.technical.open_alerts())
        alerts = []
        for transition in current:
            tracked = self._tracked.get(transition.alert_id)
            if tracked is None:  # cannot happen: every raise is tracked (kept for safety)
                tracked = TrackedAlert(transition, Tier.PATIENT, transition.raised_at)
            alerts.append(replace(tracked, transition=transition))
        return sorted(alerts, key=lambda a: a.transition.raised_at)

    def open_alert_kinds(self) -> list[AlertKind]:
        return [a.transition.kind for a in self.open_alerts()]

    def snapshot(self, at: datetime | None = None) -> AlertStateSnapshot:
        """The retained alert-state payload: the alerts open right now."""
        if self._snapshot is not None and at is None:
            return self._snapshot
        stamp = at if at is not None else (self._time.stamp(self._now) if self._now else None)
        alerts = [
            OpenAlert(
                alert_id=a.alert_id, kind=a.transition.kind, severity=a.transition.severity,
                tier=a.tier, value=a.transition.value, unit=a.transition.unit,
                raised_at=self._time.stamp(a.transition.raised_at),
                updated_at=self._time.stamp(a.notified_at),
                device=a.transition.device, acknowledged_by=a.acknowledged_by,
                acknowledged_at=self._time.stamp(a.acknowledged_at)
                if a.acknowledged_at else None,
                patient_message=self._message(a.transition.kind, a.transition.state,
                                              a.transition.value, a.transition.device),
            )
            for a in self.open_alerts()
        ]
        assert stamp is not None, "snapshot() before any input needs an explicit time"
        snap = AlertStateSnapshot(hub_id=self.config.hub.id, patient_id=self.config.patient.id,
                                  open=alerts, updated_at=stamp)
        if at is None:
            self._snapshot = snap
        return snap

    def device_status(self, device_id: str, at: datetime) -> DeviceStatus:
        state = self.devices[device_id]
        return DeviceStatus(
            device=device_id, profile=state.profile.name, connected=state.connected,
            last_reading_at=self._time.stamp(state.last_reading_at)
            if state.last_reading_at else None,
            battery_percent=state.battery_percent, updated_at=at)

    # --- restart -----------------------------------------------------------------------------

    def restore(self, events: Sequence[AlertEvent]) -> int:
        """After a restart: open alerts come back from the journal, not raised again as new.

        ``events`` is the latest journaled event of every alert not cleared. Must be called
        before the first input. Returns how many alerts were restored.
        """
        clinical: list[AlertTransition] = []
        technical: list[AlertTransition] = []
        for event in events:
            state = (AlertState.RAISED
                     if event.state in (AlertState.ESCALATED, AlertState.ACKNOWLEDGED)
                     else event.state)
            transition = AlertTransition(
                alert_id=event.alert_id, kind=event.kind, state=state, severity=event.severity,
                value=event.value, unit=event.unit, threshold=event.threshold,
                observed_at=event.observed_at, raised_at=event.raised_at, device=event.device,
            )
            self._tracked[event.alert_id] = TrackedAlert(
                transition, event.tier, event.event_at, event.acknowledged_by,
                event.event_at if event.acknowledged_by else None)
            (technical if event.kind.is_technical else clinical).append(transition)
        self.clinical.restore(clinical)
        self.emergency.restore(clinical)  # each engine takes its own kinds (and the fever)
        self.trend.restore(clinical)
        self.trend.note_fever(clinical)
        self.notices.restore(clinical)
        self.symptoms.restore(clinical)
        self.technical.restore(technical)
        return len(self._tracked)

    def warm(self, readings: Iterable[Reading]) -> tuple[int, int]:
        """After a restart, before the first input: relearn the baselines (the systolic one and
        the personal temperature one) from the store's readings, oldest first, without raising
        anything. Readings of devices not configured, and temperatures a patch reported off the
        skin (below ``stale.off_body_below_c`` before the site offset), are skipped. Returns
        (systolic, temperature) readings used."""
        systolic: list[float] = []
        temperatures: list[Reading] = []
        for reading in readings:
            state = self.devices.get(reading.device)
            if state is None:
                continue
            if reading.vital is Vital.SYSTOLIC:
                systolic.append(reading.value)
            elif reading.vital is Vital.TEMPERATURE \
                    and reading.value - state.offset_c >= self._off_body_c:
                temperatures.append(reading)
        self.emergency.warm_sbp_baseline(systolic)
        return len(systolic), self.trend.warm(temperatures)

    # --- inputs ------------------------------------------------------------------------------

    def _start(self, t: datetime, out: MonitorOutput) -> None:
        self.started_at = t
        for device_id, state in self.devices.items():
            # Spot-check devices (a thermometer used by hand) have no sample interval: their
            # silence between readings is normal and each reading is a deliberate measurement.
            # Continuous wearables are watched at their own interval; a part-time one (a strap
            # worn by day) does not alarm on being taken off.
            interval = state.profile.expected_sample_interval_s
            self.clinical.expect(device_id, interval_s=interval, spot_check=state.spot_check)
            self.technical.expect(device_id, set(state.profile.vitals), t, interval_s=interval,
                                  part_time=state.settings.wear == "part-time",
                                  spot_check=state.spot_check)
        # Until the first CONNACK the broker counts as unreachable (it may never answer).
        self._transitions(self.technical.broker_connection(False, t), t, out)

    def _payload(self, inp: GattPayload, t: datetime, out: MonitorOutput) -> None:
        self.counters.payloads += 1
        state = self.devices.get(inp.device)
        if state is None:
            self.counters.by_reason["unknown device"] += 1
            return
        try:
            result = decode(inp.characteristic, inp.data)
        except DecodeError as exc:
            self.counters.decode_errors += 1
            self.counters.by_reason[exc.reason] += 1
            log.warning("device %s: malformed %s payload skipped: %s", inp.device,
                        exc.characteristic, exc.reason)
            log.debug("device %s: malformed payload bytes %s", inp.device, inp.data.hex())
            return
        if isinstance(result, NoReading):
            self.counters.no_readings += 1
            log.info("device %s: no reading (%s)", inp.device, result.reason)
            if result.contact_lost:
                self._transitions(self.technical.contact_lost(inp.device, t), t, out)
            return
        readings = measurement_readings(result, inp.device, t, state.offset_c, self._off_body_c,
                                        spot_check=state.spot_check)
        self._ingest(readings, t, out, characteristic_name(inp.characteristic))

    def _device_reading(self, inp: DeviceReading, t: datetime, out: MonitorOutput) -> None:
        state = self.devices.get(inp.device)
        if state is None:
            self.counters.by_reason["unknown device"] += 1
            return
        readings = device_value_readings(inp.device, inp.vital, inp.value, inp.sensor_contact,
                                         t, state.offset_c, self._off_body_c,
                                         spot_check=state.spot_check)
        self._ingest(readings, t, out)

    def ingest(self, readings: Iterable[Reading], at: datetime) -> MonitorOutput:
        """Readings already through the policy (benchmarks feed readings straight in)."""
        t = self._time.rule_time(at, None)
        if self._now is None or t > self._now:
            self._now = t
        out = MonitorOutput()
        self._ingest(list(readings), t, out)
        if out.events:
            self._snapshot = None
        return out

    def _ingest(self, readings: list[Reading], t: datetime, out: MonitorOutput,
                characteristic: str | None = None) -> None:
        """``characteristic``: the decoder name of the payload the readings came from (a
        continuous oximeter's PLX Spot-check payloads are spot checks), None otherwise."""
        if not readings:
            return
        transitions: list[AlertTransition] = []
        clinical, technical = self.clinical, self.technical
        stamped = self._time.corrected
        for reading in readings:
            self.counters.readings += 1
            if reading.sensor_contact is not False:
                self.latest[reading.vital] = reading
            log.debug("reading %s %s=%s", reading.device, reading.vital, reading.value)
            state = self.devices.get(reading.device)
            if state is not None:
                state.last_reading_at = reading.observed_at
                if reading.vital is Vital.BATTERY:
                    changed = state.battery_percent != int(reading.value)
                    state.battery_percent = int(reading.value)
                    if changed:
                        out.devices.append(self.device_status(reading.device,
                                                              self._time.stamp(t)))
            fever = clinical.observe(reading)
            if fever:
                transitions += fever
                transitions += self.emergency.note_fever(fever)  # the combined kinds
                self.trend.note_fever(fever)  # no notice while a fever is open
            # Dispatched by vital: each engine ignores the others', but the ingest path is hot.
            vital = reading.vital
            if vital is Vital.SPO2 or vital is Vital.SYSTOLIC:
                transitions += self.emergency.observe(
                    reading, spot_check=spo2_spot_check(characteristic, reading.spot_check))
            elif vital is Vital.TEMPERATURE:
                transitions += self.trend.observe(reading)
                transitions += self.notices.observe(reading)
            transitions += technical.observe(reading)
            out.readings.append(
                replace(reading, observed_at=self._time.stamp(reading.observed_at))
                if stamped else reading)
        self._transitions(transitions, t, out)

    def _therapy(self, inp: TherapyEvent, t: datetime, out: MonitorOutput) -> None:
        try:
            purpose = Purpose(inp.purpose)
        except ValueError:
            self.counters.by_reason["unknown therapy event"] += 1
            log.warning("ignored a therapy event of unknown purpose %r", inp.purpose)
            return
        windows = monitoring_windows(self.config.therapy) if self.config.therapy else []
        window = next((w for w in windows if w.start == inp.window_start), None)
        self._transitions(self.notices.due(purpose, window.days if window else None, t), t,
                          out)

    def _connection(self, inp: ConnectionChange, t: datetime, out: MonitorOutput) -> None:
        state = self.devices.get(inp.device)
        if state is None:
            return
        state.connected = inp.connected
        log.info("device %s %s", inp.device, "connected" if inp.connected else "disconnected")
        self._transitions(self.technical.connection_changed(inp.device, inp.connected, t), t,
                          out)
        out.devices.append(self.device_status(inp.device, self._time.stamp(t)))

    def _acknowledge(self, inp: Acknowledgement, t: datetime, out: MonitorOutput) -> None:
        alert = next((a for a in self.open_alerts() if a.alert_id == inp.alert_id), None)
        if alert is None:
            self.counters.acks_rejected += 1
            log.warning("rejected an ack for unknown or closed alert %s from %s", inp.alert_id,
                        inp.actor)
            out.ack = AckResponse(alert_id=inp.alert_id, accepted=False,
                                  reason="unknown or closed alert")
            return
        self.counters.acks_accepted += 1
        if not alert.acknowledged:
            acked = acknowledge(alert, inp.actor, t)
            self._tracked[inp.alert_id] = acked
            log.warning("alert %s acknowledged by %s", inp.alert_id, inp.actor)
            out.events.append(self._event(acked.transition, AlertState.ACKNOWLEDGED, t,
                                          acked.tier, acked.acknowledged_by))
        out.ack = AckResponse(alert_id=inp.alert_id, accepted=True)

    # --- alerts ------------------------------------------------------------------------------

    def _transitions(self, transitions: Iterable[AlertTransition], t: datetime,
                     out: MonitorOutput) -> None:
        for transition in transitions:
            previous = self._tracked.get(transition.alert_id)
            updated = track(previous, transition, t)
            if updated is not None and previous is None and _care_team_at_once(transition):
                updated = replace(updated, tier=Tier.CARE_TEAM)
            if updated is None:
                self._tracked.pop(transition.alert_id, None)
            else:
                self._tracked[transition.alert_id] = updated
            log.warning("alert %s %s: kind=%s severity=%s device=%s", transition.alert_id,
                        transition.state, transition.kind, transition.severity,
                        transition.device)
            holder = updated or previous
            out.events.append(self._event(
                transition, transition.state, t, holder.tier if holder else Tier.PATIENT,
                updated.acknowledged_by if updated else None))

    def _escalate(self, t: datetime, out: MonitorOutput) -> None:
        if not self._tracked or not self.config.escalation.enabled:
            return
        for alert in due_escalations(self.open_alerts(), self._repeat, t):
            self._tracked[alert.alert_id] = alert
            log.warning("alert %s not acknowledged: escalated to %s", alert.alert_id, alert.tier)
            out.events.append(self._event(alert.transition, AlertState.ESCALATED, t, alert.tier,
                                          alert.acknowledged_by))

    def _event(self, transition: AlertTransition, state: AlertState, t: datetime, tier: Tier,
               acknowledged_by: str | None) -> AlertEvent:
        stamp = self._time.stamp
        return AlertEvent(
            event_id=self._new_id(),
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
            observed_at=stamp(transition.observed_at),
            raised_at=stamp(transition.raised_at),
            event_at=stamp(t),
            device=transition.device,
            patient_message=self._message(transition.kind, state, transition.value,
                                          transition.device),
            acknowledged_by=acknowledged_by,
            technical=transition.kind.is_technical,
            news2=self._news2(transition, t),
            baseline=self._baseline(transition, t),
            care_team_only=transition.kind.is_care_team_only,
        )

    def _news2(self, transition: AlertTransition, t: datetime) -> News2Score | None:
        """The partial NEWS2 of the latest fresh vitals, with each clinical event (care team
        only: the patient's text never mentions a score)."""
        if transition.kind.is_technical or transition.kind is AlertKind.SPOT_CHECK_REMINDER:
            return None
        score = score_latest(self.latest.values(), t)
        if not score.scores:
            return None
        return News2Score.model_validate(score.as_payload())

    def _baseline(self, transition: AlertTransition,
                  t: datetime) -> dict[str, float | int | str | None] | None:
        if transition.kind in (AlertKind.HYPOTENSION, AlertKind.FEVER_HYPOTENSION):
            return self.emergency.sbp_baseline().as_payload()  # type: ignore[return-value]
        if transition.kind is AlertKind.TEMPERATURE_TREND and transition.device is not None:
            view = self.trend.baseline(transition.device, t)
            return view.as_payload() if view else None  # type: ignore[return-value]
        return None

    def _message(self, kind: AlertKind, state: AlertState, value: float | None,
                 device: str | None = None) -> str:
        symptoms = [(SYMPTOM_BY_NAME[n].words, SYMPTOM_BY_NAME[n].emergency)
                    for n in self.symptoms.reported()] if kind is AlertKind.SYMPTOM_REPORTED \
            else []
        spot = device == MANUAL_DEVICE or (device in self.devices
                                           and self.devices[device].spot_check)
        return patient_message(kind, state, value, self.contact,
                               heart_rate_threshold_bpm=self._hr_threshold, symptoms=symptoms,
                               spot_check=spot)


def _care_team_at_once(transition: AlertTransition) -> bool:
    """Emergency signs and what the patient reports go to the care team with no patient-tier
    wait: the patient is already told to call, and the team must know now."""
    return (transition.severity is Severity.EMERGENCY
            or transition.kind is AlertKind.SYMPTOM_REPORTED
            # Care-team-only notices (temperature_trend) have no patient tier at all.
            or transition.kind.is_care_team_only)

