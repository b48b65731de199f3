"""Delivery receipts (docs/delivery.md) with a real mosquitto and a real v5 subscriber: the hub
re-publishes an unconfirmed alert event with backoff until a configured consumer's receipt
arrives, journals the receipt, raises care_team_not_reached when a high event stays unconfirmed
past receipt_timeout_s, keeps what awaits a receipt across a restart, and refuses bad receipts.

Scenario time is a FakeClock (the receipt tracker follows it); the hub's tick runs by hand."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from daemon.hub import Hub
from tests.support.faults import (
    AFEBRILE_C,
    CareTeam,
    advance,
    base_config,
    feed_fever,
    feed_heart_rate,
    feed_temperature,
    until,
)
from tests.support.hubs import FakeClock
from tests.support.mosquitto import Mosquitto

pytestmark = pytest.mark.integration

CONSUMER = "team-oncology"
# Re-sends at +30 s, +90 s, +210 s, +330 s, ... (30 s doubling to 120 s); the alarm at +300 s.
RECEIPTS = {"receipt_consumers": [CONSUMER], "receipt_resend_s": 30.0,
            "receipt_resend_max_s": 120.0, "receipt_timeout_s": 300.0}


def make_hub(data: Path, port: int, clock: FakeClock) -> Hub:
    return Hub(base_config(data, port, alerts=RECEIPTS), clock=clock, tick_interval_s=3600,
               heartbeat_interval_s=3600)


def run_with_hub(mosquitto: Mosquitto, tmp_path: Path,
                 body: Callable[[Hub, FakeClock], Awaitable[None]]) -> None:
    clock = FakeClock()

    async def scenario() -> None:
        hub = make_hub(tmp_path / "data", mosquitto.port, clock)
        await hub.start()
        assert await hub.wait_connected(10)
        try:
            await body(hub, clock)
        finally:
            await hub.stop()

    asyncio.run(scenario())


def fever_step(hub: Hub, clock: FakeClock, step: int) -> None:
    """15 s of a continuing fever (temperature every 60 s, heart rate every 15 s), then a tick."""
    if step % 4 == 0:
        feed_temperature(hub, "temp-patch", 38.6)
    feed_heart_rate(hub, "chest-strap", 72)
    advance(hub, clock, 15)


async def raise_fever(hub: Hub, clock: FakeClock, care_team: CareTeam) -> tuple[str, str, float]:
    """A fever alert raised and delivered once: (alert_id, event_id, raised at)."""
    feed_fever(hub, clock, minutes=2)
    (fever_id,) = hub.tracked
    (raised,) = hub.store.journal(fever_id)
    assert raised.state == "raised" and raised.severity == "high"
    assert await until(lambda: care_team.deliveries_of(raised.event_id) >= 1, 10)
    return fever_id, raised.event_id, raised.at.timestamp()


def elapsed(clock: FakeClock, since: float) -> float:
    return clock.now.timestamp() - since


async def settled(hub: Hub) -> bool:
    return await until(lambda: hub.outbox.pending == 0 and hub.outbox.in_flight == 0, 10)


def journal_kinds(hub: Hub, kind: str) -> list[Any]:
    return [j for j in hub.store.journal() if j.kind == kind]


def test_a_team_that_never_confirms_is_the_not_reached_alarm_in_time_until_it_confirms(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    with CareTeam(mosquitto.port) as care_team:

        async def body(hub: Hub, clock: FakeClock) -> None:
            _, event_id, raised_at = await raise_fever(hub, clock, care_team)
            step = 0
            while not journal_kinds(hub, "care_team_not_reached"):
                assert elapsed(clock, raised_at) < 300, "alarm raised too early or not at all"
                fever_step(hub, clock, step)
                step += 1
            (alarm,) = journal_kinds(hub, "care_team_not_reached")
            # Within its configured time: at the first tick at or after 300 s (ticks are 15 s).
            assert 300 <= alarm.at.timestamp() - raised_at < 315
            assert (alarm.state, alarm.severity) == ("raised", "high")
            # The unconfirmed fever went out again at +30, +90 and +210 s: four deliveries.
            assert await settled(hub)
            assert await until(lambda: care_team.deliveries_of(event_id) == 4, 10)
            assert hub.receipts.resent == 3 and hub.store.receipts(event_id) == []

            # Delivered to a real subscriber, telling the patient to phone.
            assert await until(lambda: care_team.deliveries_of(alarm.event_id) >= 1, 10)
            (seen,) = [e for e in care_team.first_events()
                       if e["kind"] == "care_team_not_reached"]
            assert seen["state"] == "raised" and seen["severity"] == "high"
            assert "Phone the CAR-T team now at +1 555 0100" in seen["patient_message"]
            assert "cannot confirm that your care team received it" in seen["patient_message"]

            # The team comes back and confirms what it has shown: the alarm clears.
            for e in care_team.first_events():
                care_team.send_receipt(e["event_id"], topic=hub.topics.alert_receipt,
                                       consumer=CONSUMER)
            assert await until(lambda: hub.receipts.confirmed == 2, 10)
            fever_step(hub, clock, step)
            cleared = [j for j in journal_kinds(hub, "care_team_not_reached")
                       if j.state == "cleared"]
            assert len(cleared) == 1
            assert alarm.alert_id not in hub.tracked
            assert await until(lambda: any(e["kind"] == "care_team_not_reached"
                                           and e["state"] == "cleared"
                                           for e in care_team.events()), 10)
            care_team.send_receipt(cleared[0].event_id, topic=hub.topics.alert_receipt,
                                   consumer=CONSUMER)
            assert await until(lambda: hub.receipts.pending == 0, 10)
            # Ten more minutes of fever, all confirmed: no new alarm.
            for i in range(40):
                fever_step(hub, clock, step + 1 + i)
            assert len(journal_kinds(hub, "care_team_not_reached")) == 2

        run_with_hub(mosquitto, tmp_path, body)


def test_a_receipt_stops_the_resends_and_is_journaled(mosquitto: Mosquitto,
                                                       tmp_path: Path) -> None:
    with CareTeam(mosquitto.port) as care_team:

        async def body(hub: Hub, clock: FakeClock) -> None:
            fever_id, event_id, raised_at = await raise_fever(hub, clock, care_team)
            step = 0
            while elapsed(clock, raised_at) < 90:
                fever_step(hub, clock, step)
                step += 1
            assert await until(lambda: care_team.deliveries_of(event_id) == 3, 10)

            care_team.send_receipt(event_id, topic=hub.topics.alert_receipt, consumer=CONSUMER)
            assert await until(lambda: hub.store.receipts(event_id), 10)
            ((consumer, at),) = hub.store.receipts(event_id)
            assert consumer == CONSUMER and at.tzinfo is not None
            assert hub.receipts.confirmed == 1 and hub.receipts.pending == 0
            (waited,) = hub.receipts.time_to_receipt_s
            assert waited >= 90  # scenario seconds, on the tracker's clock
            resent = hub.receipts.resent
            # A duplicate receipt changes nothing.
            care_team.send_receipt(event_id, topic=hub.topics.alert_receipt, consumer=CONSUMER)
            # Twenty more minutes of fever: no re-send; the alarm is not raised either.
            for i in range(80):
                fever_step(hub, clock, step + i)
            assert hub.receipts.resent == resent
            # Barrier: the fever's clear goes out after any re-send would have.
            feed_fever(hub, clock, minutes=20, core_c=AFEBRILE_C)
            (cleared,) = [j for j in hub.store.journal(fever_id) if j.state == "cleared"]
            assert await until(lambda: care_team.deliveries_of(cleared.event_id) >= 1, 10)
            assert care_team.deliveries_of(event_id) == 3
            assert journal_kinds(hub, "care_team_not_reached") == []
            assert len(hub.store.receipts(event_id)) == 1

        run_with_hub(mosquitto, tmp_path, body)


def test_a_receipt_from_an_unconfigured_consumer_is_ignored(mosquitto: Mosquitto,
                                                              tmp_path: Path) -> None:
    with CareTeam(mosquitto.port) as care_team:

        async def body(hub: Hub, clock: FakeClock) -> None:
            _, event_id, raised_at = await raise_fever(hub, clock, care_team)
            care_team.send_receipt(event_id, topic=hub.topics.alert_receipt,
                                   consumer="home-assistant")
            assert await until(lambda: hub.receipts.ignored == 1, 10)
            assert hub.store.receipts(event_id) == [] and hub.receipts.pending == 1
            step = 0
            while elapsed(clock, raised_at) < 90:
                fever_step(hub, clock, step)
                step += 1
            # Still re-sent: the ignored receipt confirmed nothing.
            assert await until(lambda: care_team.deliveries_of(event_id) == 3, 10)
            care_team.send_receipt(event_id, topic=hub.topics.alert_receipt, consumer=CONSUMER)
            assert await until(lambda: hub.receipts.pending == 0, 10)
            assert [c for c, _ in hub.store.receipts(event_id)] == [CONSUMER]

        run_with_hub(mosquitto, tmp_path, body)


def test_an_awaiting_event_survives_a_hub_restart(mosquitto: Mosquitto, tmp_path: Path) -> None:
    clock = FakeClock()
    data = tmp_path / "data"
    with CareTeam(mosquitto.port) as care_team:

        async def scenario() -> None:
            hub = make_hub(data, mosquitto.port, clock)
            await hub.start()
            assert await hub.wait_connected(10)
            _, event_id, _ = await raise_fever(hub, clock, care_team)
            assert await settled(hub)
            await hub.stop()

            clock.now += timedelta(seconds=5)
            hub = make_hub(data, mosquitto.port, clock)
            await hub.start()
            try:
                assert await hub.wait_connected(10)
                assert hub.receipts.pending == 1
                # (The outbox may deliver it once more on its own: the first hub's link went
                # down within the outbox's re-send window after the PUBACK.)
                assert await settled(hub)
                before = care_team.deliveries_of(event_id)
                # receipt_resend_s after the restart, it goes out again (same event_id).
                advance(hub, clock, 15)
                assert hub.receipts.resent == 0
                advance(hub, clock, 15)
                assert hub.receipts.resent == 1
                assert await until(lambda: care_team.deliveries_of(event_id) == before + 1, 10)
                care_team.send_receipt(event_id, topic=hub.topics.alert_receipt,
                                       consumer=CONSUMER)
                assert await until(lambda: hub.receipts.pending == 0, 10)
                assert [c for c, _ in hub.store.receipts(event_id)] == [CONSUMER]
            finally:
                await hub.stop()
            # ... and a third hub has nothing left awaiting.
            hub = make_hub(data, mosquitto.port, clock)
            assert hub.receipts.load() == 0
            hub.store.close()

        asyncio.run(scenario())


def test_malformed_and_oversized_receipts_are_refused_counted_and_break_nothing(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    with CareTeam(mosquitto.port) as care_team:

        async def body(hub: Hub, clock: FakeClock) -> None:
            _, event_id, _ = await raise_fever(hub, clock, care_team)
            topic = hub.topics.alert_receipt
            bad: list[tuple[bytes, str]] = [
                (b'{"event_id": "', "receipt not_json"),
                (b"", "receipt not_json"),
                (b"\xff\xfe", "receipt not_utf8"),
                (json.dumps({"event_id": event_id}).encode(), "receipt invalid"),
                (json.dumps({"event_id": event_id, "consumer": "team oncology; DROP"}).encode(),
                 "receipt invalid"),
                (json.dumps({"event_id": event_id, "consumer": CONSUMER,
                             "extra": 1}).encode(), "receipt invalid"),
                (b"[" * 2000 + b"]" * 2000, "receipt too_deep"),
            ]
            for payload, _ in bad:
                care_team.send_receipt_payload(payload, topic=topic)
            # 1 MB: refused on paho's thread before any parsing.
            huge = json.dumps({"event_id": event_id, "consumer": CONSUMER,
                               "pad": "x" * 1_000_000}).encode()
            care_team.send_receipt_payload(huge, topic=topic)

            def refused() -> int:
                return sum(n for r, n in hub.counters.by_reason.items()
                           if r.startswith("receipt "))

            assert await until(lambda: refused() == len(bad)
                               and hub.link.input_refused[topic] == 1, 10)
            expected: dict[str, int] = {}
            for _, reason in bad:
                expected[reason] = expected.get(reason, 0) + 1
            assert {r: n for r, n in hub.counters.by_reason.items()
                    if r.startswith("receipt ")} == expected
            assert hub.store.receipts(event_id) == [] and hub.receipts.pending == 1
            assert hub.receipts.confirmed == 0 and hub.receipts.ignored == 0
            # The hub goes on: a valid receipt still confirms.
            care_team.send_receipt(event_id, topic=topic, consumer=CONSUMER)
            assert await until(lambda: hub.receipts.pending == 0, 10)
            assert [c for c, _ in hub.store.receipts(event_id)] == [CONSUMER]

        run_with_hub(mosquitto, tmp_path, body)
