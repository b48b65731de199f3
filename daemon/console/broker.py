"""The console's MQTT side, on daemon/mqtt_link.MqttLink (the project's one paho module).

Two kinds of connection:
- the console's own identity (role `console` on the clinic broker): subscribes to the status,
  alert, wearable and vitals topics of the patients in its config, and can publish nothing;
- one connection per logged-in nurse, made with the password the nurse just typed, used only to
  publish that nurse's acknowledgements on ``.../alert/ack/<username>``. The broker checks that
  login against its own ACL, so neither the console nor a nurse can acknowledge as anyone else.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from daemon.config import MqttSettings
from daemon.console.config import ConsoleConfig
from daemon.console.service import LIMITS
from daemon.mqtt_link import IncomingMessage, LinkCallbacks, MqttLink
from daemon.payloads import AlertEvent, DeliveryReceipt

log = logging.getLogger(__name__)


def subscriptions(config: ConsoleConfig) -> list[tuple[str, int]]:
    """Explicit per-hub and per-patient filters (never ``crs/v1/+/...``): the broker's ACL
    decides what arrives, and these name only what this console serves."""
    prefix = config.mqtt.topic_prefix
    subs: list[tuple[str, int]] = []
    hubs: set[str] = set()
    for team in config.teams:
        for ref in team.patients:
            if ref.hub not in hubs:
                hubs.add(ref.hub)
                subs.append((f"{prefix}/{ref.hub}/status", 1))
            base = f"{prefix}/{ref.hub}/{ref.patient}"
            subs += [(f"{base}/alert/event", 1), (f"{base}/alert/state", 1),
                     (f"{base}/device/+/status", 1), (f"{base}/vitals", 0)]
    return subs


MAX_INPUT_BYTES = LIMITS.max_bytes


def receipt_topic(prefix: str, hub_id: str, patient_id: str) -> str:
    return f"{prefix}/{hub_id}/{patient_id}/alert/receipt"


def receipt_sender(config: ConsoleConfig, link: MqttLink) -> Callable[[AlertEvent], None]:
    """Confirms each alert event shown, duplicates included (cheap and idempotent). QoS 1; paho
    keeps it while the link is down and sends it on reconnect."""
    consumer = config.mqtt.username or config.console.client_id

    def send(event: AlertEvent) -> None:
        receipt = DeliveryReceipt(event_id=event.event_id, consumer=consumer)
        link.publish(receipt_topic(config.mqtt.topic_prefix, event.hub_id, event.patient_id),
                     receipt.model_dump_json().encode(), qos=1)

    return send


def ack_topic(prefix: str, hub_id: str, patient_id: str, username: str) -> str:
    """The acknowledgement identity contract (docs/care-team.md)."""
    return f"{prefix}/{hub_id}/{patient_id}/alert/ack/{username}"


def console_link(config: ConsoleConfig, on_message: Callable[[IncomingMessage], None], *,
                 persistent: bool = True) -> MqttLink:
    """The console's own connection. ``persistent``: the configured client id and session
    expiry (the web console); otherwise a throw-away clean session (--watch, which must not
    take the console's session over)."""
    settings = config.console
    persistent = persistent and settings.session_expiry_s > 0
    return MqttLink(
        config.mqtt,
        settings.client_id if persistent else f"{settings.client_id}-{secrets.token_hex(3)}",
        callbacks=LinkCallbacks(message=on_message), subscriptions=subscriptions(config),
        session_expiry_s=settings.session_expiry_s if persistent else None,
        # A retained alert state lists every open alert with its patient message: several kB.
        max_input_bytes=MAX_INPUT_BYTES)


@dataclass
class _NurseLink:
    link: MqttLink
    pending: dict[int, asyncio.Future[tuple[bool, str]]] = field(default_factory=dict)


class NurseLinks:
    """One broker login per nurse with an open session, for their acknowledgements only."""

    def __init__(self, settings: MqttSettings) -> None:
        # The console's own credentials are not copied into a nurse's connection.
        self._settings = settings.model_copy(update={"username": None, "password_file": None,
                                                     "password_env": None})
        self._links: dict[str, _NurseLink] = {}

    def open(self, username: str, password: str) -> None:
        if username in self._links:
            return
        nurse = _NurseLink(MqttLink(self._settings,
                                    f"crs-console-{username}-{secrets.token_hex(3)}"))
        nurse.link.callbacks.published = lambda mid, ok, reason: self._done(nurse, mid, ok,
                                                                            reason)
        # paho keeps the password for its reconnects while the session lasts; it is never logged.
        nurse.link.client.username_pw_set(username, password)
        nurse.link.start()
        self._links[username] = nurse

    @staticmethod
    def _done(nurse: _NurseLink, mid: int, ok: bool, reason: str) -> None:
        future = nurse.pending.pop(mid, None)
        if future is not None and not future.done():
            future.set_result((ok, reason))

    async def publish(self, username: str, topic: str, payload: bytes,
                      timeout_s: float = 5.0) -> tuple[bool, str]:
        """(accepted by the broker, reason). QoS 1: accepted means a PUBACK without error."""
        nurse = self._links.get(username)
        if nurse is None:
            return False, "no broker session for this nurse (log in again)"
        try:
            await asyncio.wait_for(nurse.link.connected_event.wait(), timeout_s)
        except TimeoutError:
            return False, "the broker is unreachable or refused this nurse's login"
        mid = nurse.link.publish(topic, payload, qos=1)
        if mid is None:
            return False, "the MQTT client refused the message"
        future: asyncio.Future[tuple[bool, str]] = asyncio.get_running_loop().create_future()
        nurse.pending[mid] = future
        try:
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            nurse.pending.pop(mid, None)
            return False, "no answer from the broker"

    async def close(self, username: str) -> None:
        nurse = self._links.pop(username, None)
        if nurse is not None:
            await nurse.link.stop()

    async def close_all(self) -> None:
        for username in list(self._links):
            await self.close(username)
