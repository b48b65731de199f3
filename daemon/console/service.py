"""The console process: MQTT messages in, SQLite history and the ward model updated, the web
page served. The one place in the console that reads the clock."""

from __future__ import annotations

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
from daemon.untrusted import Limits, UntrustedInputError, parse_bounded_json

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


# A retained alert state lists every open alert with its patient message: several kB. The same
# bound is the console link's inbound limit (daemon/console/broker.py).
LIMITS = Limits(max_bytes=256 * 1024, max_depth=16)


def parse_message(prefix: str, topic: str, payload: bytes) -> Parsed | None:
    """A message on a documented topic as its payload model; None for topics the console does
    not read (and for an empty retained payload, which only clears a retained message).
    Payloads are untrusted: size and nesting are bounded before json.loads (daemon/untrusted)."""
    if not topic.startswith(prefix + "/") or not payload:
        return None
    levels = topic[len(prefix) + 1:].split("/")
    kind = _kind(levels)
    if kind is None:
        return None
    try:
        data = parse_bounded_json(payload, LIMITS)
        if not isinstance(data, dict):
            raise MalformedMessage("not a JSON object")
        if kind == "hub_status":
            # therapy_day: sent by hubs that know it; optional and not (yet) in HubStatus.
            therapy = data.get("therapy_day") if "therapy_day" in HubStatus.model_fields \
                else data.pop("therapy_day", None)
            status = HubStatus.model_validate(data)
            if status.hub_id != levels[0]:
                raise MalformedMessage("hub_id differs from the topic")
            day = therapy if isinstance(therapy, int) and not isinstance(therapy, bool) else None
            return Parsed(kind, levels[0], None, status, day)
        if kind == "alert_event":
            event = AlertEvent.model_validate(data)
            if (event.hub_id, event.patient_id) != (levels[0], levels[1]):
                raise MalformedMessage("hub_id/patient_id differ from the topic")
            return Parsed(kind, levels[0], levels[1], event)
        if kind == "alert_state":
            snap = AlertStateSnapshot.model_validate(data)
            if (snap.hub_id, snap.patient_id) != (levels[0], levels[1]):
                raise MalformedMessage("hub_id/patient_id differ from the topic")
            return Parsed(kind, levels[0], levels[1], snap)
        if kind == "device_status":
            device = DeviceStatus.model_validate(data)
            if device.device != levels[3]:
                raise MalformedMessage("device differs from the topic")
            return Parsed(kind, levels[0], levels[1], device)
        return Parsed(kind, levels[0], levels[1], VitalsSample.model_validate(data))
    except UntrustedInputError as exc:
        raise MalformedMessage(str(exc)) from None
    except ValidationError as exc:
        raise MalformedMessage("; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'payload'}: {e['msg']}"
            for e in exc.errors(include_url=False))) from None


def _kind(levels: list[str]) -> str | None:
    if len(levels) == 2 and levels[1] == "status":
        return "hub_status"
    if len(levels) == 4 and levels[2] == "alert" and levels[3] in ("event", "state"):
        return f"alert_{levels[3]}"
    if len(levels) == 5 and levels[2] == "device" and levels[4] == "status":
        return "device_status"
    if len(levels) == 3 and levels[2] == "vitals":
        return "vitals"
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
        # Watchers get every new (deduplicated) alert event.
        self.event_listeners: list[Callable[[AlertEvent], None]] = []
        # Called for every alert event the page now shows, duplicates included (receipts).
        self.shown: Callable[[AlertEvent], None] = lambda event: None

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
                if self.ward.patient(event.hub_id, event.patient_id) is None:
                    self.ward.counters.unknown_patient += 1
                    return
                if not self.history.add_event(event, now):
                    self.ward.counters.duplicates += 1
                    log.debug("duplicate event %s dropped", event.event_id)
                    self.shown(event)  # shown already; the hub may not have our receipt
                    return
                self.ward.apply_event(event)
                # Stored in the history and on the page: now it has been shown.
                self.shown(event)
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
