"""Hub-level safety behaviour that needs no broker: the journal shows what the hub decided."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from daemon.decoding import CHARACTERISTICS
from daemon.encoding import encode_temperature
from daemon.hub import Hub
from daemon.reading_policy import flag_off_body
from daemon.readings import Reading, Vital
from tests.support.hubs import T0, FakeClock, Subscriber, hub_config
from tests.support.mosquitto import Mosquitto, free_port

TEMP = CHARACTERISTICS["temperature_measurement"]


def journal_kinds(hub: Hub) -> list[tuple[str, str]]:
    return [(e.kind, e.state) for e in hub.store.journal()]


def test_flag_off_body_marks_only_cold_temperatures() -> None:
    readings = [
        Reading("patch", Vital.TEMPERATURE, 30.2, T0),
        Reading("patch", Vital.TEMPERATURE, 36.9, T0),
        Reading("strap", Vital.HEART_RATE, 30.0, T0, sensor_contact=True),
    ]
    flagged = flag_off_body(readings, 34.0)
    assert [r.sensor_contact for r in flagged] == [False, None, True]
    assert [r.value for r in flagged] == [30.2, 36.9, 30.0]


def test_a_patch_that_falls_off_never_clears_a_fever_and_raises_contact_lost(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    # No broker listens on this port: alerts wait in the outbox, and the journal records them.
    config = hub_config(tmp_path / "data", free_port())

    async def scenario() -> list[tuple[str, str]]:
        hub = Hub(config, clock=clock, tick_interval_s=3600, heartbeat_interval_s=3600)
        await hub.start()
        for t in range(0, 600, 60):  # febrile: 38.3 °C skin + 0.5 °C site offset
            clock.at(t)
            hub.on_payload("temp-patch", TEMP, encode_temperature(38.3))
        assert ("fever", "raised") in journal_kinds(hub)
        for t in range(600, 600 + 3 * 3600, 60):  # off the skin, reading room air
            clock.at(t)
            hub.on_payload("temp-patch", TEMP, encode_temperature(24.5 + (t % 7) / 10))
            hub.tick()
        kinds = journal_kinds(hub)
        assert hub.outbox.pending >= len(kinds)
        await hub.stop()
        return kinds

    kinds = asyncio.run(scenario())
    assert ("fever", "cleared") not in kinds
    assert ("sensor_contact_lost", "raised") in kinds
    assert ("no_data", "raised") in kinds


def test_an_unreachable_broker_is_a_technical_alarm(tmp_path: Path) -> None:
    clock = FakeClock()
    config = hub_config(tmp_path / "data", free_port())

    async def scenario() -> list[tuple[str, str]]:
        hub = Hub(config, clock=clock, tick_interval_s=3600, heartbeat_interval_s=3600)
        await hub.start()
        clock.now = T0 + timedelta(seconds=119)
        hub.tick()
        assert ("broker_unreachable", "raised") not in journal_kinds(hub)
        clock.now = T0 + timedelta(seconds=121)
        hub.tick()
        kinds = journal_kinds(hub)
        event = next(e for e in hub.store.journal() if e.kind == "broker_unreachable")
        assert "cannot reach your care team" in event.record
        assert event.severity == "medium"
        await hub.stop()
        return kinds

    assert asyncio.run(scenario()).count(("broker_unreachable", "raised")) == 1


def test_an_alert_still_goes_out_when_the_store_cannot_write(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    clock = FakeClock()
    config = hub_config(tmp_path / "data", mosquitto.port)

    async def scenario() -> Hub:
        hub = Hub(config, clock=clock, tick_interval_s=3600, heartbeat_interval_s=3600)
        await hub.start()
        assert await hub.wait_connected(10)
        # Simulate a full disk: SQLite refuses every write from now on.
        hub.store._db.execute("PRAGMA query_only = ON")
        for t in range(0, 600, 60):
            clock.at(t)
            hub.on_payload("temp-patch", TEMP, encode_temperature(38.3))
        await asyncio.sleep(0.5)
        hub.store._db.execute("PRAGMA query_only = OFF")
        await hub.stop()
        return hub

    with Subscriber(mosquitto.port) as care:
        hub = asyncio.run(scenario())
        assert care.wait_for(lambda s: s.events())
        events = care.events()
    assert hub.store_failures >= 1
    assert [(e["kind"], e["state"]) for e in events] == [("fever", "raised")]
