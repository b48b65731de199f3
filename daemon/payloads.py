"""Pydantic models of every MQTT payload the hub publishes or accepts (`crs-hub schema`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PlainSerializer

from daemon.alerts import AlertKind, AlertState, Severity

SCHEMA_VERSION: Literal[1] = 1


def _iso_utc(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


UtcTime = Annotated[AwareDatetime, PlainSerializer(_iso_utc, return_type=str)]


class Tier(StrEnum):
    """Who an alert is addressed to; escalation moves it up when nobody acknowledges."""

    PATIENT = "patient"
    CAREGIVER = "caregiver"
    CARE_TEAM = "care_team"


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()


class AlertEvent(_Payload):
    """One alert transition, published at QoS 1 (not retained) on ``.../alert/event``.

    ``alert_id`` is the same for the whole life of one alert; ``event_id`` is the same across
    retries and restarts of one transition, so subscribers can drop duplicates by it.
    """

    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: str
    alert_id: str
    hub_id: str
    patient_id: str
    kind: AlertKind
    state: AlertState
    severity: Severity
    tier: Tier = Tier.PATIENT
    value: float | None
    unit: str
    threshold: float | None
    observed_at: UtcTime
    raised_at: UtcTime
    event_at: UtcTime
    device: str | None
    patient_message: str
    acknowledged_by: str | None = None
    technical: bool = Field(description="True for technical alarms (the hub cannot see properly)")


class OpenAlert(_Payload):
    alert_id: str
    kind: AlertKind
    severity: Severity
    tier: Tier
    value: float | None
    unit: str
    raised_at: UtcTime
    updated_at: UtcTime
    device: str | None
    acknowledged_by: str | None = None
    acknowledged_at: UtcTime | None = None
    patient_message: str


class AlertStateSnapshot(_Payload):
    """Retained on ``.../alert/state``: the alerts open right now (empty list = all clear)."""

    schema_version: Literal[1] = SCHEMA_VERSION
    hub_id: str
    patient_id: str
    open: list[OpenAlert]
    updated_at: UtcTime


class AlertAck(_Payload):
    """Published by the care team on ``.../alert/ack/<login>``. The actor is the login in the
    topic (the broker ties it to the authenticated username); ``actor`` in the payload is
    optional and, when given, must equal it, or the ack is refused as forged."""

    alert_id: str = Field(min_length=1, max_length=64)
    actor: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    note: str | None = Field(None, max_length=200)


class DeliveryReceipt(_Payload):
    """``{"event_id", "consumer"}`` on ``.../alert/receipt``: ``consumer`` (a pseudonymous MQTT
    username, e.g. the care-team console's) has shown that alert event (docs/delivery.md)."""

    event_id: str = Field(min_length=1, max_length=64)
    consumer: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")


class AckResponse(_Payload):
    """Sent to an ack's MQTT v5 response topic, with its correlation data."""

    alert_id: str
    accepted: bool
    reason: str | None = None


class HubStatus(_Payload):
    """Retained on ``<prefix>/<hub_id>/status``; the Last Will sets state to offline."""

    schema_version: Literal[1] = SCHEMA_VERSION
    hub_id: str
    state: Literal["online", "offline"]
    version: str
    heartbeat_at: UtcTime | None = None
    started_at: UtcTime | None = None
    devices_connected: int | None = None
    devices_configured: int | None = None
    outbox_pending: int | None = None
    # False: the hub's wall clock is not synchronised (a Pi without a real-time clock before NTP
    # has run), so the times in its events may be off; the rules are not affected.
    clock_synchronized: bool | None = None


class DeviceStatus(_Payload):
    """Retained on ``.../device/<device_id>/status``. Never carries the MAC address."""

    schema_version: Literal[1] = SCHEMA_VERSION
    device: str
    profile: str
    connected: bool
    last_reading_at: UtcTime | None
    battery_percent: int | None
    updated_at: UtcTime


class VitalsSample(_Payload):
    """Low-rate latest vitals on ``.../vitals`` (QoS 0, never retained: no PHI left behind)."""

    schema_version: Literal[1] = SCHEMA_VERSION
    observed_at: UtcTime
    temperature_c: float | None = None
    heart_rate_bpm: float | None = None
    spo2_percent: float | None = None


PAYLOADS: dict[str, type[BaseModel]] = {
    "alert_event": AlertEvent,
    "alert_state": AlertStateSnapshot,
    "alert_ack": AlertAck,
    "ack_response": AckResponse,
    "delivery_receipt": DeliveryReceipt,
    "hub_status": HubStatus,
    "device_status": DeviceStatus,
    "vitals": VitalsSample,
}


def json_schemas() -> dict[str, Any]:
    return {name: model.model_json_schema(mode="serialization") for name, model in PAYLOADS.items()}


def schema_text() -> str:
    return json.dumps(json_schemas(), indent=2, ensure_ascii=False)
