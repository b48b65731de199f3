"""The Core issue's end-to-end check: wearable bytes -> decode -> rules -> alerts -> real mosquitto."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from daemon.decoding import CHARACTERISTICS
from daemon.encoding import encode_heart_rate, encode_temperature
from daemon.hub import Hub
from tests.support.hubs import FakeClock, Subscriber, hub_config
from tests.support.mosquitto import Mosquitto

pytestmark = pytest.mark.integration

HR = CHARACTERISTICS["heart_rate_measurement"]
TEMP = CHARACTERISTICS["temperature_measurement"]


def temperature_at(t: float) -> float:
    """Normal, then climbing past 38 °C, a plateau, then recovery (1.4 °C in 30 min: much faster
    is a sensor problem, never a clear)."""
    if t < 600:
        return 36.9
    if t < 1200:
        return 36.9 + (38.6 - 36.9) * (t - 600) / 600
    if t < 2400:
        return 38.6
    return max(37.2, 38.6 - 1.4 * (t - 2400) / 1800)


def heart_rate_at(t: float) -> int:
    return 124 if 900 <= t < 2100 else 74


async def feed_crs_onset(hub: Hub, clock: FakeClock, until: float = 5400) -> None:
    t = 0.0
    while t <= until:
        clock.at(t)
        hub.on_payload("chest-strap", HR, encode_heart_rate(heart_rate_at(t), contact=True))
        if t % 60 == 0:
            # The patch reports at its body site; the profile's axillary offset is added.
            hub.on_payload("temp-patch", TEMP, encode_temperature(temperature_at(t) - 0.5))
        hub.tick()
        t += 15
        await asyncio.sleep(0)


def test_crs_onset_gives_exactly_the_expected_alerts(mosquitto: Mosquitto, tmp_path: Path) -> None:
    clock = FakeClock()
    config = hub_config(tmp_path / "data", mosquitto.port,
                        patient={"temperature_unit": "F"})

    async def scenario() -> None:
        hub = Hub(config, clock=clock, tick_interval_s=3600, heartbeat_interval_s=3600)
        await hub.start()
        assert await hub.wait_connected(10)
        for device in hub.devices:
            hub.on_connection_change(device, True)
        await feed_crs_onset(hub, clock)
        for _ in range(200):
            if hub.outbox.pending == 0:
                break
            await asyncio.sleep(0.05)
        assert hub.outbox.pending == 0
        assert hub.counters.decode_errors == 0
        await hub.stop()

    with Subscriber(mosquitto.port) as care_team:
        asyncio.run(scenario())
        assert care_team.wait_for(lambda s: len(s.events()) >= 5)
        events = care_team.events()

    summary = [(e["kind"], e["state"], e["severity"]) for e in events]
    assert summary == [
        ("fever", "raised", "high"),
        ("tachycardia", "raised", "medium"),
        ("fever_tachycardia", "severity_changed", "critical"),
        ("tachycardia", "cleared", "medium"),
        ("fever_tachycardia", "cleared", "critical"),
    ], summary
    fever, tachy, combined, tachy_clear, fever_clear = events
    assert combined["alert_id"] == fever["alert_id"] == fever_clear["alert_id"]
    assert tachy_clear["alert_id"] == tachy["alert_id"] != fever["alert_id"]
    assert len({e["event_id"] for e in events}) == 5
    for e in events:
        assert e["hub_id"] == "hub-test" and e["patient_id"] == "p-0001"
        assert e["observed_at"].endswith("Z") and e["raised_at"].endswith("Z")
    # Payload content: the measured value in the patient's unit, the number, when to call 911.
    assert fever["unit"] == "°C" and fever["threshold"] == 38.0
    assert 38.0 <= fever["value"] < 38.6
    assert fever["device"] == "temp-patch"
    assert "°F (" in fever["patient_message"] and "°C)" in fever["patient_message"]
    assert "Call the CAR-T team now at +1 555 0100." in fever["patient_message"]
    assert "Call 911 instead if you have trouble breathing" in fever["patient_message"]
    assert tachy["value"] > 100 and tachy["unit"] == "bpm" and tachy["threshold"] == 100
    assert tachy["device"] == "chest-strap"
    assert "heart rate has stayed above 100 beats per minute" in tachy["patient_message"]
    assert "resting" not in tachy["patient_message"]
    assert "heart rate has stayed above 100 beats per minute" in combined["patient_message"]
    assert "back below the alert level" in fever_clear["patient_message"]


def test_alert_events_and_state_use_the_documented_qos_retain_and_expiry(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    clock = FakeClock()
    config = hub_config(tmp_path / "data", mosquitto.port)

    async def scenario() -> None:
        hub = Hub(config, clock=clock, tick_interval_s=3600, heartbeat_interval_s=3600)
        await hub.start()
        assert await hub.wait_connected(10)
        hub.on_connection_change("temp-patch", True)
        await feed_crs_onset(hub, clock, until=1300)
        for _ in range(100):
            if hub.outbox.pending == 0:
                break
            await asyncio.sleep(0.05)
        await hub.stop()

    asyncio.run(scenario())
    # A subscriber that arrives later sees the retained state, never a retained event.
    with Subscriber(mosquitto.port) as late:
        assert late.wait_for(lambda s: s.on("/alert/state") and s.on("/status"))
        assert late.events() == []
        state = late.on("/alert/state")[-1]
        assert state.retain
        open_alerts = state.json()["open"]
        # By t=1300 s the fever is confirmed; the heart rate has not been high for 8 of the last
        # 10 min yet (80 % of the window with a fever open).
        assert [a["kind"] for a in open_alerts] == ["fever"], open_alerts
        assert "Call the CAR-T team now" in open_alerts[0]["patient_message"]
        status = late.on("hub-test/status")[-1]
        assert status.retain and status.json()["state"] == "offline"
        devices = late.on("/device/temp-patch/status")
        assert devices and devices[-1].retain
        status_json = devices[-1].json()
        assert status_json["device"] == "temp-patch" and status_json["connected"] is True
        assert status_json["profile"] == "temperature_patch"
        assert "AA:BB" not in devices[-1].payload.decode()
