"""The one best-effort publishing path: what is superseded within seconds anyway.

The hub's heartbeat (retained ``status``, refreshed every heartbeat) and the low-rate vitals
sample (QoS 0, never retained) go straight to paho while the link is up and are simply skipped
while it is down: the next one replaces them. Everything that matters (alert events, retained
alert state, device status, ack responses, Home Assistant discovery) goes through the durable
outbox instead (daemon/outbox_sink.py).
"""

from __future__ import annotations

from daemon.mqtt_link import MqttLink


class BestEffortTelemetry:
    def __init__(self, link: MqttLink) -> None:
        self._link = link
        self.skipped = 0

    def publish(self, topic: str, payload: bytes, *, qos: int, retain: bool) -> bool:
        if not self._link.connected:
            self.skipped += 1
            return False
        return self._link.publish(topic, payload, qos=qos, retain=retain) is not None
