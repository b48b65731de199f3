"""The console process: MQTT messages in, SQLite history and the ward model updated, the web
page served. The one place in the console that reads the clock."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import ValidationError

from daemon.console.config import ConsoleConfig
from daemon.console.history import History
from daemon.console.ward import Ward
from daemon.mqtt_link import IncomingMessage, MqttLink
from daemon.payloads import AlertEvent, AlertStateSnapshot, DeviceStatus, HubStatus, VitalsSample

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Parsed:
    kind: str  # hub_status | alert_event | alert_state | device_status | vitals
    hub_id: str
    patient_id: str | None
    model: HubStatus | AlertEvent | AlertStateSnapshot | DeviceStatus | VitalsSample
    therapy_day: int | None = None


class MalformedMessage(ValueError):
    pass


def parse_message(prefix: str, topic: str, payload: bytes) -> Parsed | None:
    """A message on a documented topic as its payload model; None for topics the console does
    not read (and for an empty retained payload, which only clears a retained message)."""
    if not topic.startswith(prefix + "/") or not payload:
        return None
    levels = topic[len(prefix) + 1:].split("/")
    try:
        if len(levels) == 2 and levels[1] == "status":
            raw = json.loads(payload)
            if not isinstance(raw, dict):
                raise MalformedMessage("hub status is not an object")
            # therapy_day: sent by hubs that know it; optional and not (yet) in HubStatus.
            therapy = raw.pop("therapy_day", None) if "therapy_day" not in HubStatus.model_fields \
                else raw.get("therapy_day")
            status = HubStatus.model_validate(raw)
            if status.hub_id != levels[0]:
                raise MalformedMessage("hub_id differs from the topic")
            day = therapy if isinstance(therapy, int) and not isinstance(therapy, bool) else None
            return Parsed("hub_status", levels[0], None, status, day)
        if len(levels) == 4 and levels[2:] == ["alert", "event"]:
            event = AlertEvent.model_validate_json(payload)
            if (event.hub_id, event.patient_id) != (levels[0], levels[1]):
                raise MalformedMessage("hub_id/patient_id differ from the topic")
            return Parsed("alert_event", levels[0], levels[1], event)
        if len(levels) == 4 and levels[2:] == ["alert", "state"]:
            snap = AlertStateSnapshot.model_validate_json(payload)
            if (snap.hub_id, snap.patient_id) != (levels[0], levels[1]):
                raise MalformedMessage("hub_id/patient_id differ from the topic")
            return Parsed("alert_state", levels[0], levels[1], snap)
        if len(levels) == 5 and levels[2] == "device" and levels[4] == "status":
            device = DeviceStatus.model_validate_json(payload)
            if device.device != levels[3]:
                raise MalformedMessage("device differs from the topic")
            return Parsed("device_status", levels[0], levels[1], device)
        if len(levels) == 3 and levels[2] == "vitals":
            return Parsed("vitals", levels[0], levels[1], VitalsSample.model_validate_json(payload))
    except ValidationError as exc:
        raise MalformedMessage("; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'payload'}: {e['msg']}"
            for e in exc.errors(include_url=False))) from None
    except json.JSONDecodeError as exc:
        raise MalformedMessage(f"not JSON: {exc.msg}") from None
    except UnicodeDecodeError:
        raise MalformedMessage("not JSON: not UTF-8 text") from None
    return None


class Console:
    def __init__(self, config: ConsoleConfig, *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.config = config
        self.clock = clock
        self.ward = Ward([(ref.hub, ref.patient, team.id)
                          for team in config.teams for ref in team.patients])
        self.history = History(config.console.data_dir / "console.sqlite3")
        self.link: MqttLink | None = None
        # Watchers (--watch, tests) get every new (deduplicated) alert event.
        self.event_listeners: list[Callable[[AlertEvent], None]] = []

    def on_message(self, message: IncomingMessage) -> None:
        try:
            parsed = parse_message(self.config.mqtt.topic_prefix, message.topic, message.payload)
        except MalformedMessage as exc:
            self.ward.counters.malformed += 1
            # The topic names a patient by pseudonym only; the payload (vitals) is not logged.
            log.warning("malformed message on %s: %s", message.topic, exc)
            return
        if parsed is None:
            return
        now = self.clock()
        match parsed.model:
            case AlertEvent() as event:
                if not self.history.add_event(event, now):
                    self.ward.counters.duplicates += 1
                    log.debug("duplicate event %s dropped", event.event_id)
                    return
                if self.ward.apply_event(event):
                    for listener in self.event_listeners:
                        listener(event)
            case AlertStateSnapshot() as snap:
                self.ward.apply_state(snap)
            case HubStatus() as status:
                self.ward.apply_hub_status(status, parsed.therapy_day)
            case DeviceStatus() as device:
                assert parsed.patient_id is not None
                self.ward.apply_device(parsed.hub_id, parsed.patient_id, device)
            case VitalsSample() as sample:
                assert parsed.patient_id is not None
                if self.ward.apply_vitals(parsed.hub_id, parsed.patient_id, sample):
                    self.history.add_vitals(parsed.hub_id, parsed.patient_id, sample)
