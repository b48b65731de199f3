"""Restart safety: a new Hub on the same data_dir takes its open alerts and its pending outbox
from the store; nothing is lost, nothing is raised again as new, acknowledgements and escalation
tiers carry over. (kill -9 of a hub process is in test_faults.py; here the restarts are clean
stops, the case every upgrade and reboot goes through.)"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from daemon.alerts import AlertKind
from daemon.escalation import next_tier
from daemon.hub import Hub
from daemon.payloads import Tier
from tests.support.faults import (
    AFEBRILE_C,
    CareTeam,
    advance,
    base_config,
    feed_fever,
    feed_temperature,
    outbox_event_ids,
    read_journal,
    read_outbox,
    until,
)
from tests.support.hubs import FakeClock
from tests.support.mosquitto import Mosquitto

pytestmark = pytest.mark.integration

FAST_ESCALATION = {"enabled": True,
                   "repeat_min": {"low": 60.0, "medium": 2.0, "high": 2.0, "critical": 2.0,
                                  "emergency": 2.0}}


def new_hub(data: Path, port: int, clock: FakeClock, **sections: Any) -> Hub:
    return Hub(base_config(data, port, **sections), clock=clock, tick_interval_s=3600,
               heartbeat_interval_s=3600)


def test_open_alerts_and_pending_outbox_are_loaded_and_nothing_is_raised_again(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    clock = FakeClock()
    mosquitto.stop()  # first life: the broker is down the whole time

    async def first_life() -> None:
        hub = new_hub(data, mosquitto.port, clock)
        await hub.start()
        # Fever on the patch while the chest strap sends nothing: a clinical and a technical
        # alarm, both journaled and waiting in the outbox.
        for _ in range(7):
            feed_temperature(hub, "temp-patch", 38.6)
            for _ in range(4):
                advance(hub, clock, 15)
        assert sorted(hub.open_alert_kinds()) == sorted(
            [AlertKind.FEVER, AlertKind.NO_DATA, AlertKind.BROKER_UNREACHABLE])
        await hub.stop()

    asyncio.run(first_life())
    journal = read_journal(data)
    assert [(j.kind, j.state) for j in journal] == [
        ("fever", "raised"), ("broker_unreachable", "raised"), ("no_data", "raised")]
    fever_id, outage_id, no_data_id = (j.alert_id for j in journal)
    pending = read_outbox(data)
    assert outbox_event_ids(pending) == [j.event_id for j in journal]

    mosquitto.start()

    async def second_life(care_team: CareTeam) -> None:
        hub = new_hub(data, mosquitto.port, clock)
        # Loaded before anything else happens: the open alerts and the pending rows.
        assert hub.outbox.pending == len(pending)
        await hub.start()
        assert {a: (t.transition.kind, t.transition.raised_at)
                for a, t in hub.tracked.items()} == {
            j.alert_id: (AlertKind(j.kind), datetime.fromisoformat(j.record["raised_at"]))
            for j in journal}
        assert await hub.wait_connected(10)
        assert await until(lambda: hub.outbox.pending == 0
                           and care_team.event_ids() >= {j.event_id for j in journal}, 10)
        # Connected: the outage alarm clears under its first id.
        assert [(j.alert_id, j.state) for j in hub.store.journal()[3:]] == [
            (outage_id, "cleared")]
        # The same conditions go on for 10 minutes: still the same two alerts, no new event.
        for _ in range(10):
            feed_temperature(hub, "temp-patch", 38.6)
            for _ in range(4):
                advance(hub, clock, 15)
        assert len(hub.store.journal()) == 4
        # The strap comes back and the fever goes: both alerts clear under their first ids.
        feed_fever(hub, clock, minutes=20, core_c=AFEBRILE_C)
        assert hub.tracked == {}
        assert await until(lambda: hub.outbox.pending == 0 and len(care_team.events()) >= 6, 10)
        await hub.stop()

    with CareTeam(mosquitto.port) as care_team:
        asyncio.run(second_life(care_team))
        assert care_team.wait(lambda c: (c.latest_state() or {}).get("open") == [])
        first_events = care_team.first_events()

    after = read_journal(data)
    assert after[:3] == journal
    assert sorted((j.alert_id, j.state) for j in after[3:]) == sorted(
        [(outage_id, "cleared"), (fever_id, "cleared"), (no_data_id, "cleared")])
    assert [j.state for j in after].count("raised") == 3
    # The care team saw the pre-restart events first, exactly as journaled, then the clears.
    assert first_events[:3] == [j.record for j in journal]
    assert [e["event_id"] for e in first_events] == [j.event_id for j in after]


def test_acknowledgement_and_tier_carry_over_a_restart(mosquitto: Mosquitto,
                                                       tmp_path: Path) -> None:
    data = tmp_path / "data"
    clock = FakeClock()
    ids: dict[str, str] = {}

    async def first_life(care_team: CareTeam) -> None:
        hub = new_hub(data, mosquitto.port, clock, escalation=FAST_ESCALATION)
        await hub.start()
        assert await hub.wait_connected(10)
        # Fever and a fast heart rate: fever+tachycardia (critical) and tachycardia (medium).
        feed_fever(hub, clock, minutes=12, bpm=124)
        by_kind = {t.transition.kind: a for a, t in hub.tracked.items()}
        ids["fever"] = by_kind[AlertKind.FEVER_TACHYCARDIA]
        ids["tachy"] = by_kind[AlertKind.TACHYCARDIA]
        care_team.ack(ids["fever"], topic=hub.topics.alert_ack, correlation=b"ack")
        assert await until(lambda: care_team.responses(b"ack"), 10)
        assert hub.tracked[ids["fever"]].acknowledged_by == "nurse-7"
        ids["tachy_tier"] = hub.tracked[ids["tachy"]].tier.value
        assert await until(lambda: hub.outbox.pending == 0, 10)
        await hub.stop()

    async def second_life(care_team: CareTeam) -> None:
        hub = new_hub(data, mosquitto.port, clock, escalation=FAST_ESCALATION)
        await hub.start()
        fever, tachy = hub.tracked[ids["fever"]], hub.tracked[ids["tachy"]]
        assert fever.acknowledged_by == "nurse-7" and fever.acknowledged_at is not None
        assert fever.transition.kind is AlertKind.FEVER_TACHYCARDIA
        assert tachy.acknowledged_by is None and tachy.tier.value == ids["tachy_tier"]
        assert await hub.wait_connected(10)
        before = len(hub.store.journal())
        feed_fever(hub, clock, minutes=5, bpm=124)
        assert await until(lambda: hub.outbox.pending == 0, 10)
        new = hub.store.journal()[before:]
        # The acknowledged alert stays quiet; the other one goes on escalating, one tier up
        # from where it was, never raised again.
        assert {j.alert_id for j in new} == {ids["tachy"]}
        assert {j.state for j in new} == {"escalated"}
        assert json.loads(new[0].record)["tier"] == next_tier(Tier(ids["tachy_tier"])).value
        assert hub.tracked[ids["tachy"]].tier is Tier.CARE_TEAM
        await hub.stop()

    with CareTeam(mosquitto.port) as care_team:
        asyncio.run(first_life(care_team))
        restart_at = len(care_team.deliveries)
        asyncio.run(second_life(care_team))
        assert care_team.wait(lambda c: any(
            d.topic.endswith("/alert/state") for d in c.deliveries[restart_at:]))
        snapshots = [d.json() for d in care_team.deliveries[restart_at:]
                     if d.topic.endswith("/alert/state")]
    # The second life's first retained state already shows who acknowledged what.
    first = {a["alert_id"]: a for a in snapshots[0]["open"]}
    assert first[ids["fever"]]["acknowledged_by"] == "nurse-7"
    assert first[ids["tachy"]]["acknowledged_by"] is None
    assert [j.state for j in read_journal(data)].count("raised") == 2
