"""Scenes for the status page (all clear, a fever alert) built from real payload models, and a
recorder of what the page submits: a plain function standing in for the hub's ``submit``."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from daemon.access_code import AccessCode
from daemon.alerts import AlertKind, AlertState, Severity
from daemon.config import Config
from daemon.monitor import Acknowledgement, ManualReading, MonitorOutput, SymptomReport
from daemon.patient_messages import CareContact, patient_message
from daemon.payloads import AckResponse, AlertEvent, AlertStateSnapshot, DeviceStatus, OpenAlert
from daemon.readings import Reading, Vital
from daemon.status_page import StatusPage, StatusPageSettings
from tests.support.hubs import T0, FakeClock, hub_config

CODE = "1234-5678-9012"


@dataclass
class Recorder:
    """What the page handed to the monitor, in order. It answers the way the monitor does: an
    accepted ack, the manual reading as a Reading (device ``manual``), a ``symptom_reported``
    alert event for a symptom; ``silent=True`` answers nothing (an input the monitor ignores)."""

    inputs: list[Any] = field(default_factory=list)
    silent: bool = False

    def __call__(self, inp: Any) -> MonitorOutput:
        self.inputs.append(inp)
        if self.silent:
            return MonitorOutput()
        if isinstance(inp, Acknowledgement):
            return MonitorOutput(ack=AckResponse(alert_id=inp.alert_id, accepted=True))
        if isinstance(inp, ManualReading):
            return MonitorOutput(readings=[Reading("manual", Vital.TEMPERATURE,
                                                   inp.temperature_c, inp.at)])
        if isinstance(inp, SymptomReport):
            # model_construct: AlertKind has no symptom_reported member yet (it comes with the
            # monitor's symptom rule); the page reads the kind as text.
            event = AlertEvent.model_construct(
                event_id=str(uuid.uuid4()), alert_id=str(uuid.uuid4()), kind="symptom_reported",
                state=AlertState.RAISED, severity=Severity.EMERGENCY, technical=False,
                event_at=inp.at, patient_message="")
            return MonitorOutput(events=[event])
        return MonitorOutput()


def make_page(tmp: Path, *, clock: FakeClock, submit: Any, code: str | None = CODE,
              refresh_s: int = 0, tls: tuple[Path, Path] | None = None,
              **patient: Any) -> tuple[StatusPage, Config]:
    config = hub_config(tmp / "data", 1883, patient=patient)
    if code is not None:
        AccessCode.from_code(code).save(config.hub.data_dir)
    cert, key = tls if tls is not None else (None, None)
    settings = StatusPageSettings(host="127.0.0.1", port=0, refresh_s=refresh_s,
                                  tls_cert_file=cert, tls_key_file=key)
    return StatusPage(config, settings, submit, clock=clock, tz=UTC), config


def contact(config: Config) -> CareContact:
    p = config.patient
    return CareContact(p.care_team_name, p.care_team_phone, p.emergency_number,
                       p.temperature_unit == "F")


def fever_event(config: Config, at: datetime, value: float = 38.6,
                kind: AlertKind = AlertKind.FEVER, severity: Severity = Severity.HIGH
                ) -> tuple[AlertEvent, AlertStateSnapshot]:
    alert_id = str(uuid.uuid4())
    message = patient_message(kind, AlertState.RAISED, value, contact(config))
    event = AlertEvent(
        event_id=str(uuid.uuid4()), alert_id=alert_id, hub_id=config.hub.id,
        patient_id=config.patient.id, kind=kind, state=AlertState.RAISED, severity=severity,
        value=value, unit="°C", threshold=38.0, observed_at=at, raised_at=at, event_at=at,
        device="temp-patch", patient_message=message, technical=False)
    snapshot = AlertStateSnapshot(
        hub_id=config.hub.id, patient_id=config.patient.id, updated_at=at,
        open=[OpenAlert(alert_id=alert_id, kind=kind, severity=severity, tier=event.tier,
                        value=value, unit="°C", raised_at=at, updated_at=at,
                        device="temp-patch", patient_message=message)])
    return event, snapshot


def empty_snapshot(config: Config, at: datetime) -> AlertStateSnapshot:
    return AlertStateSnapshot(hub_id=config.hub.id, patient_id=config.patient.id, open=[],
                              updated_at=at)


def day_of_readings(end: datetime, *, fever_from_h: float | None = None) -> list[Reading]:
    """24 h of per-minute readings ending at ``end``: a calm day, or a fever starting
    ``fever_from_h`` hours before the end, with a 40-minute gap (the patch was off)."""
    readings = []
    for minute in range(24 * 60, -1, -1):
        at = end - timedelta(minutes=minute)
        if 600 < minute < 640:
            continue
        hours_left = minute / 60
        temp = 36.8 + 0.2 * math.sin(minute / 180)
        rate = 72 + 6 * math.sin(minute / 47)
        if fever_from_h is not None and hours_left <= fever_from_h:
            rise = min(1.0, (fever_from_h - hours_left) / 1.5)
            temp += 1.8 * rise
            rate += 40 * rise
        readings.append(Reading("temp-patch", Vital.TEMPERATURE, round(temp, 2), at))
        readings.append(Reading("chest-strap", Vital.HEART_RATE, round(rate), at, True))
    return readings


def connected(config: Config, at: datetime, battery: dict[str, int]) -> list[DeviceStatus]:
    profiles = {d.id: d.profile for d in config.devices}
    return [DeviceStatus(device=d, profile=profiles[d], connected=True, last_reading_at=at,
                         battery_percent=battery.get(d), updated_at=at) for d in profiles]


def all_clear(page: StatusPage, config: Config, now: datetime) -> None:
    page.on_output(MonitorOutput(readings=day_of_readings(now),
                                 devices=connected(config, now, {"temp-patch": 82,
                                                                 "chest-strap": 64})),
                   empty_snapshot(config, now))
    page.set_link(True)


def fever(page: StatusPage, config: Config, now: datetime) -> AlertEvent:
    readings = day_of_readings(now, fever_from_h=2.0)
    event, snapshot = fever_event(config, now - timedelta(minutes=50), value=38.6)
    page.on_output(MonitorOutput(readings=readings, events=[event],
                                 devices=connected(config, now, {"temp-patch": 81,
                                                                 "chest-strap": 63})),
                   snapshot)
    page.set_link(True)
    return event


__all__ = ["CODE", "T0", "Recorder", "all_clear", "fever", "fever_event", "make_page"]
