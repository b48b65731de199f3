"""Alerts: the typed transitions the rules emit, before they become MQTT payloads.

Severity follows IEC 60601-1-8 priorities (low/medium/high) with two higher clinical
tiers: ``critical`` (high fever, or fever with a fast heart rate) and ``emergency``
(reserved for SpO2 and blood-pressure rules: call emergency services).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class AlertKind(StrEnum):
    # Clinical
    FEVER = "fever"
    HIGH_FEVER = "high_fever"
    TACHYCARDIA = "tachycardia"
    FEVER_TACHYCARDIA = "fever_tachycardia"
    SYMPTOM_REPORTED = "symptom_reported"
    # Emergency tier (daemon/emergency_rules.py; Crombie 2024): call emergency services now.
    HYPOXIA = "hypoxia"
    HYPOTENSION = "hypotension"
    # The same alert once a fever is open too (ASTCT: fever plus hypoxia or hypotension).
    FEVER_HYPOXIA = "fever_hypoxia"
    FEVER_HYPOTENSION = "fever_hypotension"
    # Care-team-only early warning (daemon/temperature_baseline.py): never shown to the patient.
    TEMPERATURE_TREND = "temperature_trend"
    # Therapy windows (daemon/therapy_notices.py): a reminder to the patient to take a
    # thermometer reading, and care-team notices that a monitoring window began or ended.
    SPOT_CHECK_REMINDER = "spot_check_reminder"
    MONITORING_WINDOW_STARTED = "monitoring_window_started"
    MONITORING_WINDOW_ENDED = "monitoring_window_ended"
    # Technical: the hub cannot see the patient properly. On by default.
    NO_DATA = "no_data"
    SENSOR_CONTACT_LOST = "sensor_contact_lost"
    DEVICE_DISCONNECTED = "device_disconnected"
    # Temperature fell faster than a fever can break: the patch came loose or got wet.
    IMPLAUSIBLE_FALL = "implausible_fall"
    BATTERY_LOW = "battery_low"
    ADAPTER_UNAVAILABLE = "adapter_unavailable"
    OUTBOX_BACKLOG = "outbox_backlog"
    DISK_LOW = "disk_low"
    BROKER_UNREACHABLE = "broker_unreachable"
    HUB_FAULT = "hub_fault"
    ANNUNCIATOR_UNAVAILABLE = "annunciator_unavailable"
    PUBLISH_REFUSED = "publish_refused"
    CARE_TEAM_NOT_REACHED = "care_team_not_reached"

    @property
    def is_technical(self) -> bool:
        return self not in _CLINICAL

    @property
    def is_care_team_only(self) -> bool:
        """Routed to the care team only: the patient is never told (a trend notice is a hint
        for a nurse to look, not a finding to alarm a patient with)."""
        return self in _CARE_TEAM_ONLY


_CLINICAL = frozenset(
    {
        AlertKind.FEVER,
        AlertKind.HIGH_FEVER,
        AlertKind.TACHYCARDIA,
        AlertKind.FEVER_TACHYCARDIA,
        AlertKind.SYMPTOM_REPORTED,
        AlertKind.HYPOXIA,
        AlertKind.HYPOTENSION,
        AlertKind.FEVER_HYPOXIA,
        AlertKind.FEVER_HYPOTENSION,
        AlertKind.TEMPERATURE_TREND,
        AlertKind.SPOT_CHECK_REMINDER,
        AlertKind.MONITORING_WINDOW_STARTED,
        AlertKind.MONITORING_WINDOW_ENDED,
    }
)
_CARE_TEAM_ONLY = frozenset({AlertKind.TEMPERATURE_TREND, AlertKind.MONITORING_WINDOW_STARTED,
                             AlertKind.MONITORING_WINDOW_ENDED})


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"
    EMERGENCY = "emergency"

    @property
    def rank(self) -> int:
        return _SEVERITY_ORDER.index(self)


_SEVERITY_ORDER = [
    Severity.LOW,
    Severity.MEDIUM,
    Severity.HIGH,
    Severity.CRITICAL,
    Severity.EMERGENCY,
]


class AlertState(StrEnum):
    RAISED = "raised"
    SEVERITY_CHANGED = "severity_changed"
    ESCALATED = "escalated"
    ACKNOWLEDGED = "acknowledged"
    CLEARED = "cleared"


@dataclass(frozen=True, slots=True)
class AlertTransition:
    """One change in the life of one alert, as decided by pure rule code.

    ``alert_id`` stays the same for the whole life of an alert (raised → cleared), so
    subscribers can group and de-duplicate. ``value``/``unit``/``threshold`` describe the
    measurement that caused the transition (for technical alarms, e.g. minutes without data).
    """

    alert_id: str
    kind: AlertKind
    state: AlertState
    severity: Severity
    value: float | None
    unit: str
    threshold: float | None
    observed_at: datetime
    raised_at: datetime
    device: str | None
