"""Acknowledgements from the care team over real MQTT v5: journaled with the actor, announced,
retained in the state, honoured by escalation, answered on the v5 response topic; bad ones are
refused without breaking anything; a worse condition needs a new acknowledgement."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from daemon.hub import Hub
from tests.support.faults import AFEBRILE_C, CareTeam, base_config, feed_fever, until
from tests.support.hubs import FakeClock
from tests.support.mosquitto import Mosquitto

pytestmark = pytest.mark.integration

ESCALATION = {"enabled": True,
              "repeat_min": {"low": 60.0, "medium": 60.0, "high": 2.0, "critical": 2.0,
                             "emergency": 2.0}}


def run_with_hub(mosquitto: Mosquitto, tmp_path: Path, care_team: CareTeam,
                 body: Callable[[Hub, FakeClock], Awaitable[None]]) -> None:
    clock = FakeClock()

    async def scenario() -> None:
        hub = Hub(base_config(tmp_path / "data", mosquitto.port, escalation=ESCALATION),
                  clock=clock, tick_interval_s=3600, heartbeat_interval_s=3600)
        await hub.start()
        assert await hub.wait_connected(10)
        try:
            await body(hub, clock)
        finally:
            await hub.stop()

    asyncio.run(scenario())


def events_for(care_team: CareTeam, alert_id: str) -> list[dict[str, Any]]:
    return [e for e in care_team.first_events() if e["alert_id"] == alert_id]


async def response(care_team: CareTeam, correlation: bytes) -> dict[str, Any]:
    assert await until(lambda: care_team.responses(correlation), 10), (
        f"no response for {correlation!r}")
    (answer,) = care_team.responses(correlation)
    return answer


def test_valid_ack_is_journaled_announced_retained_and_stops_escalation(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    with CareTeam(mosquitto.port) as care_team:

        async def body(hub: Hub, clock: FakeClock) -> None:
            feed_fever(hub, clock, minutes=2)
            (fever_id,) = hub.tracked
            # Unacknowledged, the alert is re-announced every 2 minutes, one tier up each time
            # (raised at 60 s; escalated at 180 s and 300 s).
            feed_fever(hub, clock, minutes=4)
            assert await until(lambda: [e["state"] for e in events_for(care_team, fever_id)]
                               == ["raised", "escalated", "escalated"], 10)

            care_team.ack(fever_id, topic=hub.topics.alert_ack, correlation=b"corr-1")
            answer = await response(care_team, b"corr-1")
            assert answer == {"alert_id": fever_id, "accepted": True, "reason": None}
            last = hub.store.journal(fever_id)[-1]
            assert (last.state, last.actor) == ("acknowledged", "nurse-7")
            assert hub.counters.acks_accepted == 1 and hub.counters.acks_rejected == 0

            assert await until(lambda: len(events_for(care_team, fever_id)) == 4, 10)
            acked = events_for(care_team, fever_id)[-1]
            assert acked["state"] == "acknowledged" and acked["acknowledged_by"] == "nurse-7"
            assert acked["event_id"] == last.event_id and acked["tier"] == "care_team"
            assert "the CAR-T team has seen this alert" in acked["patient_message"]
            assert await until(lambda: (care_team.latest_state() or {}).get("open", [{}])[0]
                               .get("acknowledged_by") == "nurse-7", 10)
            (open_alert,) = (care_team.latest_state() or {})["open"]
            assert open_alert["alert_id"] == fever_id and open_alert["acknowledged_at"]

            # Twenty more minutes of fever: no re-announcement, nothing new in the journal.
            journal_length = len(hub.store.journal())
            feed_fever(hub, clock, minutes=20)
            assert await until(lambda: hub.outbox.pending == 0, 10)
            assert len(hub.store.journal()) == journal_length
            assert [e["state"] for e in events_for(care_team, fever_id)] == [
                "raised", "escalated", "escalated", "acknowledged"]
            # A second ack of an acknowledged alert is accepted and changes nothing.
            care_team.ack(fever_id, topic=hub.topics.alert_ack, actor="dr-2",
                          correlation=b"corr-2")
            assert (await response(care_team, b"corr-2"))["accepted"] is True
            assert len(hub.store.journal()) == journal_length

        run_with_hub(mosquitto, tmp_path, care_team, body)


def test_malformed_and_unknown_acks_are_refused_logged_and_break_nothing(
    mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with CareTeam(mosquitto.port) as care_team, \
            caplog.at_level(logging.WARNING, logger="daemon.hub"):

        async def body(hub: Hub, clock: FakeClock) -> None:
            feed_fever(hub, clock, minutes=2)
            (fever_id,) = hub.tracked
            topic = hub.topics.alert_ack_by("nurse-7")
            bad: list[tuple[bytes, bytes, str]] = [
                (b"bad-json", b'{"alert_id": "', "malformed ack"),
                (b"empty", b"", "malformed ack"),
                (b"no-alert-id", json.dumps({"actor": "nurse-7"}).encode(), "malformed ack"),
                (b"bad-actor", json.dumps({"alert_id": fever_id,
                                           "actor": "nurse 7; DROP"}).encode(), "malformed ack"),
                (b"forged", json.dumps({"alert_id": fever_id, "actor": "dr-who"}).encode(),
                 "actor does not match the login"),
                (b"extra-key", json.dumps({"alert_id": fever_id, "actor": "nurse-7",
                                           "snooze": True}).encode(), "malformed ack"),
                (b"unknown", json.dumps({"alert_id": "no-such-alert",
                                         "actor": "nurse-7"}).encode(),
                 "unknown or closed alert"),
            ]
            for correlation, payload, _ in bad:
                care_team.send_ack_payload(payload, topic=topic, correlation=correlation)
            for correlation, _, reason in bad:
                answer = await response(care_team, correlation)
                assert answer["accepted"] is False and answer["reason"] == reason, correlation
            assert (await response(care_team, b"unknown"))["alert_id"] == "no-such-alert"
            assert hub.counters.acks_rejected == len(bad) and hub.counters.acks_accepted == 0
            assert [j.state for j in hub.store.journal(fever_id)] == ["raised"]
            assert hub.tracked[fever_id].acknowledged_by is None

            # The hub goes on: escalation still runs, and a valid ack still works.
            feed_fever(hub, clock, minutes=3)
            assert await until(lambda: "escalated" in
                               [e["state"] for e in events_for(care_team, fever_id)], 10)
            care_team.ack(fever_id, topic=hub.topics.alert_ack, correlation=b"good")
            assert (await response(care_team, b"good"))["accepted"] is True
            assert hub.store.journal(fever_id)[-1].state == "acknowledged"

        run_with_hub(mosquitto, tmp_path, care_team, body)

    messages = [r.getMessage() for r in caplog.records]
    malformed = [m for m in messages if m.startswith("rejected a malformed ack")]
    assert len(malformed) == 5
    assert any("alert_id: Field required" in m for m in malformed)
    assert any("actor: String should match pattern" in m for m in malformed)
    assert any("snooze: Extra inputs are not permitted" in m for m in malformed)
    assert any("rejected an ack for unknown or closed alert no-such-alert from nurse-7" in m
               for m in messages)


def test_a_worse_condition_after_an_ack_goes_out_and_needs_a_new_ack(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    with CareTeam(mosquitto.port) as care_team:

        async def body(hub: Hub, clock: FakeClock) -> None:
            feed_fever(hub, clock, minutes=2)
            (fever_id,) = hub.tracked
            care_team.ack(fever_id, topic=hub.topics.alert_ack, correlation=b"first")
            assert (await response(care_team, b"first"))["accepted"] is True

            # The heart rate climbs and stays high: the fever alert becomes fever+tachycardia.
            feed_fever(hub, clock, minutes=12, bpm=124)
            assert await until(lambda: any(e["state"] == "severity_changed"
                                           for e in events_for(care_team, fever_id)), 10)
            worse = next(e for e in events_for(care_team, fever_id)
                         if e["state"] == "severity_changed")
            assert worse["kind"] == "fever_tachycardia" and worse["severity"] == "critical"
            assert worse["acknowledged_by"] is None
            assert hub.tracked[fever_id].acknowledged_by is None
            # ... and, unacknowledged again, it is re-announced until someone acks it.
            feed_fever(hub, clock, minutes=3, bpm=124)
            assert await until(lambda: [e["state"] for e in events_for(care_team, fever_id)]
                               [-1] == "escalated", 10)
            care_team.ack(fever_id, topic=hub.topics.alert_ack, actor="dr-2",
                          correlation=b"second")
            assert (await response(care_team, b"second"))["accepted"] is True
            acks = [(j.state, j.actor) for j in hub.store.journal(fever_id)
                    if j.state == "acknowledged"]
            assert acks == [("acknowledged", "nurse-7"), ("acknowledged", "dr-2")]
            settled = len(hub.store.journal(fever_id))
            feed_fever(hub, clock, minutes=10, bpm=124)
            assert len(hub.store.journal(fever_id)) == settled

        run_with_hub(mosquitto, tmp_path, care_team, body)
        states = [e["state"] for e in care_team.first_events()
                  if e["kind"] in ("fever", "fever_tachycardia")]
        assert states[:3] == ["raised", "acknowledged", "severity_changed"]
        assert states[-1] == "acknowledged" and "escalated" in states[3:]


def test_an_ack_for_a_cleared_alert_is_refused(mosquitto: Mosquitto, tmp_path: Path) -> None:
    with CareTeam(mosquitto.port) as care_team:

        async def body(hub: Hub, clock: FakeClock) -> None:
            feed_fever(hub, clock, minutes=2)
            (fever_id,) = hub.tracked
            feed_fever(hub, clock, minutes=20, core_c=AFEBRILE_C)
            assert hub.tracked == {}
            assert hub.store.journal(fever_id)[-1].state == "cleared"
            care_team.ack(fever_id, topic=hub.topics.alert_ack, correlation=b"late")
            answer = await response(care_team, b"late")
            assert answer == {"alert_id": fever_id, "accepted": False,
                              "reason": "unknown or closed alert"}
            assert hub.store.journal(fever_id)[-1].state == "cleared"

        run_with_hub(mosquitto, tmp_path, care_team, body)
