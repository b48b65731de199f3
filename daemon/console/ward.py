"""What the console knows about each patient right now, and the order that says who needs
action. Pure: messages and the time are passed in; no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from daemon.alerts import AlertKind, AlertState, Severity
from daemon.payloads import (
    AlertEvent,
    AlertStateSnapshot,
    DeviceStatus,
    HubStatus,
    Tier,
    VitalsSample,
)

TIER_RANK = {Tier.PATIENT: 0, Tier.CAREGIVER: 1, Tier.CARE_TEAM: 2}


@dataclass
class AlertView:
    alert_id: str
    kind: AlertKind
    severity: Severity
    tier: Tier
    value: float | None
    unit: str
    raised_at: datetime
    updated_at: datetime
    device: str | None
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    # Sent from this console, not yet confirmed by the hub (an `acknowledged` event).
    ack_sent_by: str | None = None

    @property
    def technical(self) -> bool:
        return self.kind.is_technical

    @property
    def acknowledged(self) -> bool:
        return self.acknowledged_by is not None


@dataclass
class HubView:
    hub_id: str
    state: str = "unknown"  # online / offline / unknown (nothing retained yet)
    heartbeat_at: datetime | None = None
    version: str = ""
    therapy_day: int | None = None

    def health(self, now: datetime, stale_s: float) -> str:
        if self.state == "offline":
            return "offline"
        if self.state == "unknown":
            return "unknown"
        if self.heartbeat_at is None or (now - self.heartbeat_at).total_seconds() > stale_s:
            return "stale"
        return "online"


@dataclass
class PatientView:
    hub_id: str
    patient_id: str
    team: str
    alerts: dict[str, AlertView] = field(default_factory=dict)
    devices: dict[str, DeviceStatus] = field(default_factory=dict)
    vitals: VitalsSample | None = None
    state_at: datetime | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.hub_id, self.patient_id)

    def clinical(self) -> list[AlertView]:
        return sorted((a for a in self.alerts.values() if not a.technical), key=_alert_order)

    def technical(self) -> list[AlertView]:
        return sorted((a for a in self.alerts.values() if a.technical), key=_alert_order)


def _alert_order(alert: AlertView) -> tuple[int, int, datetime]:
    return (-alert.severity.rank, -TIER_RANK[alert.tier], alert.raised_at)


@dataclass(frozen=True)
class Row:
    """One line of the ward page; ``group`` 0 is the most urgent."""

    patient: PatientView
    hub: HubView
    health: str
    group: int
    reason: str


GROUPS = {
    0: "clinical alert, not acknowledged",
    1: "technical problem: the hub cannot see the patient",
    2: "acknowledged, still open",
    3: "all clear",
}
_OFFLINE_RANK = Severity.HIGH.rank  # an offline hub weighs like a high technical alarm


def needs_action_key(patient: PatientView, hub: HubView, now: datetime,
                     stale_s: float) -> tuple[int, int, int, float, str, str]:
    """Unacknowledged clinical alerts first (worst severity, highest tier, oldest first); then
    technical problems (hub offline or stale, unacknowledged technical alarms); then patients
    whose alerts someone acknowledged; then all clear."""
    health = hub.health(now, stale_s)
    open_clinical = [a for a in patient.clinical() if not a.acknowledged]
    open_technical = [a for a in patient.technical() if not a.acknowledged]
    if open_clinical:
        group, worst = 0, open_clinical
    elif open_technical or health in ("offline", "stale"):
        group, worst = 1, open_technical
    elif patient.alerts:
        group, worst = 2, sorted(patient.alerts.values(), key=_alert_order)
    else:
        group, worst = 3, []
    if worst:
        top = worst[0]
        severity = top.severity.rank
        if group == 1 and health in ("offline", "stale"):
            severity = max(severity, _OFFLINE_RANK)
        return (group, -severity, -TIER_RANK[top.tier], top.raised_at.timestamp(),
                patient.hub_id, patient.patient_id)
    rank = _OFFLINE_RANK if group == 1 else 0
    return (group, -rank, 0, 0.0, patient.hub_id, patient.patient_id)


@dataclass
class Counters:
    events: int = 0
    duplicates: int = 0
    malformed: int = 0
    unknown_patient: int = 0


class Ward:
    """Patients (from the config's teams) and their hubs, fed from MQTT messages."""

    def __init__(self, patients: list[tuple[str, str, str]]) -> None:
        self.patients: dict[tuple[str, str], PatientView] = {}
        self.hubs: dict[str, HubView] = {}
        for hub_id, patient_id, team in patients:
            self.patients[(hub_id, patient_id)] = PatientView(hub_id, patient_id, team)
            self.hubs.setdefault(hub_id, HubView(hub_id))
        self.counters = Counters()

    def patient(self, hub_id: str, patient_id: str) -> PatientView | None:
        return self.patients.get((hub_id, patient_id))

    # --- inputs ---------------------------------------------------------------------------------
    def apply_event(self, event: AlertEvent) -> bool:
        """An alert transition (already deduplicated by event_id). False: not our patient."""
        patient = self.patient(event.hub_id, event.patient_id)
        if patient is None:
            self.counters.unknown_patient += 1
            return False
        self.counters.events += 1
        if event.state == AlertState.CLEARED:
            patient.alerts.pop(event.alert_id, None)
            return True
        current = patient.alerts.get(event.alert_id)
        if current is not None and current.updated_at > event.event_at:
            return True  # an older transition arriving late changes nothing now
        patient.alerts[event.alert_id] = AlertView(
            event.alert_id, event.kind, event.severity, event.tier, event.value, event.unit,
            event.raised_at, event.event_at, event.device,
            event.acknowledged_by or (current.acknowledged_by if current else None),
            (event.event_at if event.state == AlertState.ACKNOWLEDGED
             else current.acknowledged_at if current else None),
            None if event.acknowledged_by else (current.ack_sent_by if current else None),
        )
        return True

    def apply_state(self, snapshot: AlertStateSnapshot) -> bool:
        """The retained list of open alerts: the hub's word on what is open now."""
        patient = self.patient(snapshot.hub_id, snapshot.patient_id)
        if patient is None:
            self.counters.unknown_patient += 1
            return False
        if patient.state_at is not None and snapshot.updated_at < patient.state_at:
            return True
        patient.state_at = snapshot.updated_at
        previous = patient.alerts
        patient.alerts = {}
        for item in snapshot.open:
            before = previous.get(item.alert_id)
            newer_event = before is not None and before.updated_at > item.updated_at
            if newer_event:
                assert before is not None
                patient.alerts[item.alert_id] = before
                continue
            patient.alerts[item.alert_id] = AlertView(
                item.alert_id, item.kind, item.severity, item.tier, item.value, item.unit,
                item.raised_at, item.updated_at, item.device, item.acknowledged_by,
                item.acknowledged_at,
                None if item.acknowledged_by else (before.ack_sent_by if before else None),
            )
        # An alert raised by an event newer than this snapshot stays until a snapshot drops it.
        for alert_id, before in previous.items():
            if alert_id not in patient.alerts and before.raised_at > snapshot.updated_at:
                patient.alerts[alert_id] = before
        return True

    def apply_hub_status(self, status: HubStatus, therapy_day: int | None = None) -> bool:
        hub = self.hubs.get(status.hub_id)
        if hub is None:
            self.counters.unknown_patient += 1
            return False
        hub.state = status.state
        if status.heartbeat_at is not None:
            hub.heartbeat_at = status.heartbeat_at
        hub.version = status.version
        if therapy_day is not None:
            hub.therapy_day = therapy_day
        return True

    def apply_device(self, hub_id: str, patient_id: str, device: DeviceStatus) -> bool:
        patient = self.patient(hub_id, patient_id)
        if patient is None:
            self.counters.unknown_patient += 1
            return False
        patient.devices[device.device] = device
        return True

    def apply_vitals(self, hub_id: str, patient_id: str, sample: VitalsSample) -> bool:
        patient = self.patient(hub_id, patient_id)
        if patient is None:
            self.counters.unknown_patient += 1
            return False
        if patient.vitals is None or sample.observed_at >= patient.vitals.observed_at:
            patient.vitals = sample
        return True

    def mark_ack_sent(self, hub_id: str, patient_id: str, alert_id: str, actor: str) -> None:
        patient = self.patient(hub_id, patient_id)
        if patient is not None and alert_id in patient.alerts:
            patient.alerts[alert_id].ack_sent_by = actor

    # --- outputs --------------------------------------------------------------------------------
    def rows(self, now: datetime, stale_s: float, team: str | None = None) -> list[Row]:
        """The ward page, most urgent first; ``team`` limits it to one team's patients."""
        rows = []
        for patient in self.patients.values():
            if team is not None and patient.team != team:
                continue
            hub = self.hubs[patient.hub_id]
            key = needs_action_key(patient, hub, now, stale_s)
            rows.append((key, Row(patient, hub, hub.health(now, stale_s), key[0],
                                  GROUPS[key[0]])))
        rows.sort(key=lambda item: item[0])
        return [row for _, row in rows]
