"""A thin asyncio layer over paho-mqtt 2.x (CallbackAPIVersion.VERSION2), in the spirit of aiomqtt.

paho runs its own network thread (``loop_start``), which reconnects by itself with a capped
delay; every paho callback is handed to the asyncio loop with ``call_soon_threadsafe`` so the
rest of the hub stays single-threaded. Delivery guarantees are *not* this module's job: paho
keeps unacknowledged messages in memory only, so the outbox (daemon/outbox.py) owns them.

Inbound messages are untrusted (acks, receipts, Home Assistant's status). Two bounds apply
before anything parses them: with MQTT v5 the CONNECT tells the broker the largest packet the
hub accepts (``max_packet_bytes``; the broker drops bigger ones for this client, so they never
reach memory here), and every message above its topic's payload limit (``max_input_bytes``, or
``input_limits`` per topic filter) is refused on paho's thread: counted in ``input_refused``,
logged with topic and size only, never handed on. Parsing what passes is bounded too
(daemon/untrusted.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from daemon.config import MqttSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    topic: str
    payload: bytes
    response_topic: str | None = None
    correlation_data: bytes | None = None


@dataclass
class LinkCallbacks:
    connected: Callable[[], None] = lambda: None
    disconnected: Callable[[str], None] = lambda reason: None
    # (mid, ok, reason): ok is False when the broker refused the message (v5 reason >= 0x80).
    published: Callable[[int, bool, str], None] = lambda mid, ok, reason: None
    message: Callable[[IncomingMessage], None] = lambda msg: None


@dataclass
class MqttLink:
    settings: MqttSettings
    client_id: str
    will: tuple[str, bytes] | None = None
    callbacks: LinkCallbacks = field(default_factory=LinkCallbacks)
    subscriptions: list[tuple[str, int]] = field(default_factory=list)
    # Largest inbound payload per message, unless a topic filter in input_limits says otherwise
    # (acks and receipts are a few hundred bytes).
    max_input_bytes: int = 4096
    input_limits: dict[str, int] = field(default_factory=dict)
    # MQTT v5 Maximum Packet Size announced to the broker: above this it never sends us a packet.
    max_packet_bytes: int = 2 * 1024 * 1024
    # MQTT v5 only: keep the session (subscriptions and queued QoS 1 messages) this long while
    # disconnected; clean start is then off on every connect, the first included (mosquitto 2.0
    # stores a session only when the latest CONNECT had clean start off). None: clean sessions.
    session_expiry_s: int | None = None

    def __post_init__(self) -> None:
        # Refused inbound messages by topic (written on paho's thread only).
        self.input_refused: Counter[str] = Counter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected = False
        # time.monotonic() when the last established connection was found lost (the outbox
        # re-sends what the broker acknowledged just before).
        self.disconnected_at: float | None = None
        self.connected_event = asyncio.Event()
        self.v5 = self.settings.protocol == "5"
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=MQTTProtocolVersion.MQTTv5 if self.v5 else MQTTProtocolVersion.MQTTv311,
            reconnect_on_failure=True,
        )
        # paho's default backoff grows to 120 s; a fever alert must not wait that long.
        self.client.reconnect_delay_set(1, max(1, round(self.settings.reconnect_max_s)))
        self.client.max_inflight_messages_set(20)
        if self.settings.username:
            password = self.settings.password()
            self.client.username_pw_set(
                self.settings.username, password.get_secret_value() if password else None
            )
        if self.settings.tls is not None:
            tls = self.settings.tls
            self.client.tls_set(
                ca_certs=str(tls.ca_file),
                certfile=str(tls.cert_file) if tls.cert_file else None,
                keyfile=str(tls.key_file) if tls.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        if self.will is not None:
            topic, payload = self.will
            self.client.will_set(topic, payload, qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.client.on_connect_fail = self._on_connect_fail

    @property
    def connected(self) -> bool:
        return self._connected

    def start(self) -> None:
        """Start connecting in the background; returns at once (the broker may be down)."""
        self._loop = asyncio.get_running_loop()
        properties = None
        clean_start: bool | Literal[3] = mqtt.MQTT_CLEAN_START_FIRST_ONLY
        if self.v5:
            properties = Properties(PacketTypes.CONNECT)
            properties.MaximumPacketSize = self.max_packet_bytes
            if self.session_expiry_s:
                properties.SessionExpiryInterval = self.session_expiry_s
                clean_start = False
        self.client.connect_async(
            self.settings.host, self.settings.port, keepalive=self.settings.keepalive_s,
            clean_start=clean_start, properties=properties,
        )
        self.client.loop_start()

    async def stop(self, final: tuple[str, bytes] | None = None, wait_s: float = 3.0) -> None:
        """Publish ``final`` (e.g. a clean 'offline' status), disconnect, stop the thread."""
        if final is not None and self._connected:
            info = self.client.publish(final[0], final[1], qos=1, retain=True)
            await asyncio.to_thread(_wait, info, wait_s)
        self.client.disconnect()
        await asyncio.to_thread(self.client.loop_stop)
        self._connected = False

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        expiry_s: int | None = None,
        correlation_data: bytes | None = None,
        content_type: str | None = "application/json",
    ) -> int | None:
        """Hand one message to paho. Returns its mid, or None when paho refused it outright."""
        properties = None
        if self.v5:
            properties = Properties(PacketTypes.PUBLISH)
            if expiry_s is not None:
                properties.MessageExpiryInterval = max(1, int(expiry_s))
            if correlation_data is not None:
                properties.CorrelationData = correlation_data
            if content_type is not None:
                properties.ContentType = content_type
        info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            log.warning("paho refused a publish on %s: %s", topic, mqtt.error_string(info.rc))
            return None
        return int(info.mid)

    # --- paho thread -> asyncio loop -----------------------------------------------------------
    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, *args)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode,
                    properties: Properties | None) -> None:
        if reason.is_failure:
            log.error("MQTT broker refused the connection: %s", reason)
            return
        for topic, qos in self.subscriptions:
            client.subscribe(topic, qos=qos)
        self._post(self._set_connected, True, "connected")

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode,
                       properties: Properties | None) -> None:
        self._post(self._set_connected, False, str(reason))

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self._post(self._set_connected, False, "connection failed")

    def _set_connected(self, connected: bool, reason: str) -> None:
        was = self._connected
        self._connected = connected
        if connected:
            self.connected_event.set()
        else:
            self.connected_event.clear()
        if connected and not was:
            log.info("MQTT connected to %s:%s", self.settings.host, self.settings.port)
            self.callbacks.connected()
        elif not connected:
            if was:
                self.disconnected_at = time.monotonic()
                log.warning("MQTT connection lost: %s", reason)
            self.callbacks.disconnected(reason)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode,
                    properties: Properties | None) -> None:
        # v5: paho fires on_publish even for a refusing PUBACK; check the reason code.
        self._post(self.callbacks.published, mid, not reason.is_failure, str(reason))

    def input_limit(self, topic: str) -> int:
        for topic_filter, limit in self.input_limits.items():
            if mqtt.topic_matches_sub(topic_filter, topic):
                return limit
        return self.max_input_bytes

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        size = len(message.payload)
        limit = self.input_limit(message.topic)
        if size > limit:
            self.input_refused[message.topic] += 1
            log.warning("MQTT input on %s refused before parsing: %d bytes, limit %d",
                        message.topic, size, limit)
            return
        props = getattr(message, "properties", None)
        response_topic = getattr(props, "ResponseTopic", None) if props else None
        correlation = getattr(props, "CorrelationData", None) if props else None
        self._post(
            self.callbacks.message,
            IncomingMessage(message.topic, bytes(message.payload), response_topic, correlation),
        )


def _wait(info: mqtt.MQTTMessageInfo, timeout: float) -> None:
    # paho raises RuntimeError when the link drops meanwhile; the outbox copes with that.
    with contextlib.suppress(RuntimeError, ValueError):
        info.wait_for_publish(timeout)
