"""Privacy: everything the hub publishes in a whole scenario, checked for device addresses."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from daemon.hub import Hub
from tests.support.hubs import FakeClock, Subscriber, hub_config
from tests.support.mosquitto import Mosquitto
from tests.test_pipeline_mqtt import feed_crs_onset

pytestmark = pytest.mark.integration

ADDRESSES = ["AA:BB:CC:DD:EE:01", "AA:BB:CC:DD:EE:02"]


def address_forms(address: str) -> list[str]:
    bare = address.replace(":", "")
    return [address, address.lower(), bare, bare.lower(), address.replace(":", "_"),
            address.replace(":", "-")]


def test_no_device_address_in_any_topic_or_payload(mosquitto: Mosquitto, tmp_path: Path) -> None:
    clock = FakeClock()
    config = hub_config(tmp_path / "data", mosquitto.port,
                        vitals={"publish": True, "interval_s": 5},
                        home_assistant={"enabled": True})

    async def scenario() -> None:
        hub = Hub(config, clock=clock, tick_interval_s=3600, heartbeat_interval_s=3600)
        await hub.start()
        assert await hub.wait_connected(10)
        for device in hub.devices:
            hub.on_connection_change(device, True)
        await feed_crs_onset(hub, clock, until=3000)
        hub.heartbeat()
        hub.publish_vitals()
        for _ in range(100):
            if hub.outbox.pending == 0:
                break
            await asyncio.sleep(0.05)
        await hub.stop()

    with Subscriber(mosquitto.port, topic="#") as everything:
        asyncio.run(scenario())
        assert everything.wait_for(lambda s: s.on("/vitals") and s.on("/config"))
        messages = list(everything.messages)

    topics = {m.topic for m in messages}
    # The capture covers every kind of message the hub sends, or the check proves little.
    for suffix in ("/status", "/alert/event", "/alert/state", "/vitals", "/config"):
        assert any(t.endswith(suffix) for t in topics), (suffix, topics)
    assert any(t.endswith("/device/chest-strap/status") for t in topics)
    for message in messages:
        text = message.topic + "\n" + message.payload.decode("utf-8", "replace")
        for address in ADDRESSES:
            for form in address_forms(address):
                assert form not in text, (message.topic, form)
        assert not re.search(r"([0-9A-Fa-f]{2}[:_-]){5}[0-9A-Fa-f]{2}", text), message.topic
    # Topics carry pseudonymous ids only.
    for topic in topics:
        assert all(re.fullmatch(r"[a-z0-9_-]+", level) for level in topic.split("/")), topic
    # Vitals are telemetry: never retained.
    assert all(not m.retain for m in messages if m.topic.endswith("/vitals"))


def test_home_assistant_discovery_is_republished_when_it_comes_online(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config = hub_config(tmp_path / "data", mosquitto.port, home_assistant={"enabled": True})

    async def scenario(care: Subscriber) -> int:
        hub = Hub(config, clock=FakeClock(), tick_interval_s=3600, heartbeat_interval_s=3600)
        await hub.start()
        assert await hub.wait_connected(10)
        await asyncio.to_thread(care.wait_for, lambda s: len(s.on("/config")) >= 4)
        before = len(care.on("/config"))
        ha = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="fake-home-assistant")
        ha.connect("127.0.0.1", mosquitto.port)
        ha.loop_start()
        ha.publish("homeassistant/status", "online", qos=1).wait_for_publish(5)
        ha.loop_stop()
        ha.disconnect()
        await asyncio.to_thread(care.wait_for, lambda s: len(s.on("/config")) >= 2 * before)
        await hub.stop()
        return before

    with Subscriber(mosquitto.port, topic="homeassistant/#") as care:
        before = asyncio.run(scenario(care))
        configs = care.on("/config")
    assert len(configs) >= 2 * before
    temperature = [json.loads(m.payload) for m in configs if "temperature" in m.topic]
    assert temperature and all(c.get("unit_of_meas", c.get("unit_of_measurement")) == "°C"
                               for c in temperature)
    # Retained at the broker: a Home Assistant that subscribes later still finds them.
    with Subscriber(mosquitto.port, topic="homeassistant/#") as late:
        assert late.wait_for(lambda s: len(s.on("/config")) >= before)
        assert all(m.retain for m in late.on("/config"))
