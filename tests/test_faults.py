"""Issue 4, "No alarm lost, none silent": the hub under real faults (mosquitto and the hub killed
with -9, long broker outages, a refusing broker, a silent wearable), counted by alert_id/event_id.

The end-to-end guarantee has two layers. Hub -> broker: the SQLite outbox (a row leaves only on a
successful PUBACK). Broker -> care team: a broker killed with -9 loses what it had acknowledged
but not yet delivered or saved, so the answer there is the application-level ack: the hub
re-announces an unacknowledged alert on the escalation interval until a care team acks it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from daemon.alerts import AlertKind
from daemon.hub import Hub
from tests.support.faults import (
    CareTeam,
    HubProcess,
    NoDataBurst,
    advance,
    base_config,
    burst_config,
    feed_fever,
    feed_heart_rate,
    feed_temperature,
    outbox_event_ids,
    patch_ids,
    raised_alert_ids,
    read_journal,
    read_outbox,
    until,
    wait_until,
)
from tests.support.hubs import FakeClock
from tests.support.mosquitto import Mosquitto, running_mosquitto
from tests.support.requirements import require_binary

pytestmark = pytest.mark.integration

# Short escalation so an unacknowledged alert is re-announced every 30 scenario seconds.
FAST_ESCALATION = {"enabled": True,
                   "repeat_min": {s: 0.5 for s in ("low", "medium", "high", "critical",
                                                   "emergency")}}


def make_hub(config_dir: Path, port: int, clock: FakeClock, **sections: Any) -> Hub:
    return Hub(base_config(config_dir, port, **sections), clock=clock, tick_interval_s=3600,
               heartbeat_interval_s=3600)


# --- kill -9 of mosquitto during a burst --------------------------------------------------------

def test_broker_killed_mid_burst_every_alert_reaches_the_care_team_and_is_acked(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """60 real NO_DATA alarms in three waves, then mosquitto is killed with -9. Wave A reaches
    the care team directly. Wave B was PUBACKed by the broker (so the hub deleted its outbox
    rows) and queued in the broker's memory for the offline care team: the kill loses it, and
    only escalation can bring it back. Wave C was in flight to a frozen broker at the kill (no
    PUBACK): its rows stay in the outbox and go out again after the restart."""
    data = tmp_path / "data"
    config = burst_config(data, mosquitto.port, 60, escalation=FAST_ESCALATION)
    clock = FakeClock()
    devices = patch_ids(60)
    wave_a, wave_b, wave_c = devices[:20], devices[20:40], devices[40:]
    care_team = CareTeam(mosquitto.port, client_id="care-team-burst", persistent=True,
                         auto_ack=True)
    care_team.start()

    async def scenario() -> dict[str, list[str]]:
        hub = Hub(config, clock=clock, tick_interval_s=3600, heartbeat_interval_s=3600)
        # This test is about escalation recovering what the broker lost. The outbox's re-send
        # of rows acknowledged just before a link loss (tests/test_broker_persistence.py) would
        # recover wave B too when the kill comes within its window, i.e. depending on timing.
        hub.outbox.resend_window_s = 0.0
        burst = NoDataBurst(hub, clock, step_s=5.0)
        burst.feed_all()
        await hub.start()
        assert await hub.wait_connected(10)
        waves: dict[str, list[str]] = {}

        def raised_for(wave: list[str]) -> list[str]:
            opened = burst.open_no_data()
            return [opened[d] for d in wave if d in opened]

        def acked(alert_ids: list[str]) -> bool:
            done = {j.alert_id for j in read_journal(data) if j.state == "acknowledged"}
            return set(alert_ids) <= done

        # Wave A, care team online: delivered and acknowledged the ordinary way.
        burst.silence(wave_a)
        assert await until(lambda: len(raised_for(wave_a)) == 20, 10, step=burst.step)
        waves["a"] = raised_for(wave_a)
        assert await until(lambda: acked(waves["a"]), 15, step=burst.step)

        # Wave B, care team offline: the broker PUBACKs and queues (in memory) for its session.
        care_team.go_offline()
        burst.silence(wave_b)
        assert await until(lambda: len(raised_for(wave_b)) == 20, 10, step=burst.step)
        waves["b"] = raised_for(wave_b)
        assert await until(lambda: hub.outbox.pending == 0 and hub.outbox.in_flight == 0, 10)

        # Wave C: published into a frozen broker (SIGSTOP: no PUBACK can come), then kill -9.
        assert mosquitto.process is not None
        os.kill(mosquitto.process.pid, signal.SIGSTOP)
        published = hub.outbox.stats.published
        burst.silence(wave_c)
        while len(raised_for(wave_c)) < 20:
            burst.step()
        waves["c"] = raised_for(wave_c)
        assert await until(lambda: hub.outbox.stats.published >= published + 20, 10)
        mosquitto.kill()
        assert await until(lambda: not hub.link.connected, 10)
        in_outbox = set(outbox_event_ids(read_outbox(data)))
        journal = read_journal(data)
        assert {j.event_id for j in journal if j.alert_id in waves["c"]} <= in_outbox
        # 150 s of outage: escalations of B and C pile up in the outbox, and after 120 s the
        # hub raises its own BROKER_UNREACHABLE alarm (into the outbox too).
        for _ in range(30):
            burst.step()
            await asyncio.sleep(0)
        assert len(read_outbox(data)) > len(in_outbox)
        assert AlertKind.BROKER_UNREACHABLE in hub.open_alert_kinds()

        mosquitto.start()
        care_team.go_online()
        everything = waves["a"] + waves["b"] + waves["c"]

        def all_delivered() -> bool:
            journal = read_journal(data)
            return (care_team.event_ids() >= {j.event_id for j in journal
                                              if j.kind == "broker_unreachable"}
                    and care_team.alert_ids() >= set(everything) and acked(everything))

        assert await until(all_delivered, 30, step=burst.step), (
            f"missing {set(everything) - care_team.alert_ids()}")
        await hub.stop()
        return waves

    try:
        waves = asyncio.run(scenario())
    finally:
        care_team.stop()

    journal = read_journal(data)
    generated = raised_alert_ids(journal)
    assert len(generated) == len(set(generated)) == 60
    assert sorted(generated) == sorted(waves["a"] + waves["b"] + waves["c"])
    delivered = care_team.alert_ids()
    assert set(generated) - delivered == set(), "alerts lost"
    # The outage itself was announced: raised while the broker was dead, delivered afterwards,
    # then cleared by the reconnection.
    (outage_alarm,) = set(raised_alert_ids(journal, hub_alarms=True)) - set(generated)
    assert [j.state for j in journal if j.alert_id == outage_alarm][-1] == "cleared"
    assert {e["state"] for e in care_team.events() if e["alert_id"] == outage_alarm} >= {
        "raised", "cleared"}
    # Every patient alert was acknowledged by the care team's actor, once (a repeat ack is a
    # no-op); the outage alarm may have been acknowledged too before it cleared.
    acks = [j for j in journal if j.state == "acknowledged"]
    assert sorted(j.alert_id for j in acks if j.alert_id != outage_alarm) == sorted(generated)
    assert {j.actor for j in acks} == {"nurse-7"}
    # Wave B's RAISED events died with the broker: the care team first heard of those alerts
    # through an escalation. This is the loss the outbox alone cannot prevent.
    first_state: dict[str, str] = {}
    for event in care_team.first_events():
        first_state.setdefault(event["alert_id"], event["state"])
    raised_event = {j.alert_id: j.event_id for j in journal if j.state == "raised"}
    assert {first_state[a] for a in waves["b"]} == {"escalated"}
    assert not {raised_event[a] for a in waves["b"]} & care_team.event_ids()
    assert {first_state[a] for a in waves["a"]} == {"raised"}
    # Whatever arrived is the journaled event, byte for byte (de-duplicable by event_id).
    records = {j.event_id: j.record for j in journal}
    for event in care_team.events():
        assert event == records[event["event_id"]]
        assert event["technical"] is True
        assert event["kind"] == ("broker_unreachable" if event["alert_id"] == outage_alarm
                                 else "no_data")


# --- kill -9 of the hub between creating an alert and publishing it ---------------------------

def test_hub_killed_before_publishing_delivers_after_restart_without_raising_again(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    mosquitto.stop()  # the broker is down: alerts can be created, not published
    config = base_config(data, mosquitto.port)
    config_path = tmp_path / "hub.json"
    config_path.write_text(config.model_dump_json())
    child = HubProcess(config_path, "fever").start()
    report = child.report()
    child.kill()

    assert report["connected"] is False
    journal = read_journal(data)
    assert [(j.state, j.kind) for j in journal] == [
        ("raised", "fever"), ("raised", "broker_unreachable"), ("raised", "tachycardia"),
        ("severity_changed", "fever_tachycardia")]
    assert [[j.alert_id, j.event_id, j.state, j.kind] for j in journal] == report["journal"]
    fever_id, outage_id, tachy_id = (j.alert_id for j in journal[:3])
    assert journal[3].alert_id == fever_id
    # Committed before the kill: all three events wait in the outbox, oldest first.
    assert outbox_event_ids(read_outbox(data)) == [j.event_id for j in journal]

    mosquitto.start()
    clock = FakeClock(datetime.fromisoformat(report["now"]) + timedelta(seconds=15))

    async def restart(care_team: CareTeam) -> None:
        hub = Hub(config, clock=clock, tick_interval_s=3600, heartbeat_interval_s=3600)
        await hub.start()
        assert {a: t.transition.kind for a, t in hub.tracked.items()} == {
            fever_id: AlertKind.FEVER_TACHYCARDIA, tachy_id: AlertKind.TACHYCARDIA,
            outage_id: AlertKind.BROKER_UNREACHABLE}
        assert await hub.wait_connected(10)
        assert await until(lambda: hub.outbox.pending == 0
                           and care_team.event_ids() >= {j.event_id for j in journal}, 10)
        assert outage_id not in hub.tracked  # the connection cleared the outage alarm
        # The fever and the fast heart rate go on: still the same two alerts, nothing new.
        feed_fever(hub, clock, minutes=6, bpm=124)
        assert await until(lambda: hub.outbox.pending == 0, 10)
        await hub.stop()

    with CareTeam(mosquitto.port) as care_team:
        asyncio.run(restart(care_team))
        assert care_team.wait(lambda c: (c.latest_state() or {}).get("open"))
        state = care_team.latest_state()

    # Delivered exactly as journaled before the kill (same alert_id, event_id, content), then
    # the outage alarm's clear; nothing raised again, no clinical alert changed.
    after = read_journal(data)
    assert after[:len(journal)] == journal
    assert [(j.alert_id, j.state) for j in after[len(journal):]] == [(outage_id, "cleared")]
    assert care_team.first_events() == [j.record for j in after]
    assert state is not None
    assert sorted(a["alert_id"] for a in state["open"]) == sorted([fever_id, tachy_id])


def test_hub_killed_mid_burst_with_the_broker_up_loses_no_journaled_event(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """kill -9 at an arbitrary moment of a stream of alarms (raised and cleared): whatever the
    hub had journaled is delivered, by the broker before the kill or by the restarted hub."""
    data = tmp_path / "data"
    config_path = tmp_path / "hub.json"
    config_path.write_text(burst_config(data, mosquitto.port, 20).model_dump_json())
    with CareTeam(mosquitto.port, client_id="care-team-kill") as care_team:
        child = HubProcess(config_path, "burst").start()
        child.report()
        assert wait_until(lambda: len(raised_alert_ids(read_journal(data))) >= 50, 30)
        child.kill()
        journal = read_journal(data)
        at_kill = outbox_event_ids(read_outbox(data))
        last = max(j.at for j in journal)
        drain = HubProcess(config_path, "drain",
                           start_s=last - FakeClock().now.timestamp() + 60).start()
        report = drain.report()
        assert drain.wait() == 0 and report["drained"] is True
        # Alarms open at the kill come back from the journal rather than being raised anew.
        open_at_kill = {j.alert_id for j in journal} - {
            j.alert_id for j in journal if j.state == "cleared"}
        assert set(report["restored"]) == open_at_kill
        expected = {j.event_id for j in journal}
        assert care_team.wait(lambda c: c.event_ids() >= expected, 15), (
            f"lost {len(expected - care_team.event_ids())} of {len(expected)}; "
            f"{len(at_kill)} were in the outbox at the kill")
    assert read_journal(data) == journal


# --- a long outage, time-compressed -------------------------------------------------------------

def test_long_outage_drains_oldest_first_and_raises_then_clears_outbox_backlog(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    clock = FakeClock()
    care_team = CareTeam(mosquitto.port, client_id="care-team-outage", persistent=True)
    care_team.start()
    sections: dict[str, dict[str, Any]] = {
        "escalation": {"enabled": True, "repeat_min": {"high": 10.0, "critical": 5.0,
                                                       "medium": 10.0, "low": 30.0}},
        "thresholds": {"hub": {"outbox_pending_max": 20, "outbox_clear_pending": 5}},
    }

    async def scenario() -> list[tuple[datetime, int]]:
        hub = make_hub(tmp_path / "data", mosquitto.port, clock, **sections)
        await hub.start()
        assert await hub.wait_connected(10)
        for device in hub.devices:
            hub.on_connection_change(device, True)
        feed_fever(hub, clock, minutes=10, core_c=36.9, bpm=72)
        assert await until(lambda: hub.outbox.pending == 0, 10)

        # Graceful stop: mosquitto saves the care team's session (and its subscription) in its
        # database. The care team stays away until the hub has drained, so every event has to
        # be queued for it by the restarted broker.
        mosquitto.stop()
        care_team.go_offline()
        assert await until(lambda: not hub.link.connected, 10)
        pending_at_heartbeat: list[tuple[datetime, int]] = []
        # Three hours of scenario time without a broker: fever from minute 20 to 100, falling
        # 1.2 °C/h from there (an instant fall would be a patch coming off, never a clear), a
        # fast heart rate from 40 to 80, the patch silent from 120 to 150; heartbeat every 5 min.
        def core_c(minute: int) -> float:
            if minute < 20:
                return 36.9
            return 38.7 if minute < 100 else max(36.9, 38.7 - 0.02 * (minute - 100))

        for minute in range(180):
            if not 120 <= minute < 150:
                feed_temperature(hub, "temp-patch", core_c(minute))
            for _ in range(4):
                feed_heart_rate(hub, "chest-strap", 124 if 40 <= minute < 80 else 72)
                advance(hub, clock, 15)
            if minute % 5 == 4:
                pending_at_heartbeat.append((clock.now, hub.outbox.pending))
                hub.heartbeat()
            await asyncio.sleep(0)
        assert not hub.link.connected
        mosquitto.start()
        journal = hub.store.journal()
        assert await until(lambda: hub.outbox.pending == 0, 20)
        care_team.go_online()
        assert care_team.sessions_present[-1] is True
        assert await until(lambda: care_team.event_ids() >= {j.event_id for j in journal}, 10)
        hub.heartbeat()  # the next heartbeat sees the drained outbox
        assert await until(lambda: hub.outbox.pending == 0 and any(
            e["kind"] == "outbox_backlog" and e["state"] == "cleared"
            for e in care_team.events()), 10)
        await hub.stop()
        return pending_at_heartbeat

    try:
        pending_at_heartbeat = asyncio.run(scenario())
    finally:
        care_team.stop()

    journal = read_journal(tmp_path / "data")
    kinds = {(j.kind, j.state) for j in journal}
    for expected in [("broker_unreachable", "raised"), ("broker_unreachable", "cleared"),
                     ("fever", "raised"), ("tachycardia", "raised"),
                     ("fever_tachycardia", "severity_changed"), ("fever_tachycardia", "escalated"),
                     ("tachycardia", "cleared"), ("fever_tachycardia", "cleared"),
                     ("no_data", "raised"), ("no_data", "cleared"),
                     ("outbox_backlog", "raised"), ("outbox_backlog", "cleared")]:
        assert expected in kinds, expected
    # Everything arrives, each event once in the order it was journaled: oldest first, so per
    # alert raised -> ... -> cleared.
    assert [e["event_id"] for e in care_team.first_events()] == [j.event_id for j in journal]
    # OUTBOX_BACKLOG went up at the first heartbeat that saw more than 20 pending messages.
    backlog = [j for j in journal if j.kind == "outbox_backlog" and j.state != "escalated"]
    assert [j.state for j in backlog] == ["raised", "cleared"]
    first_over_at, first_over = next((t, p) for t, p in pending_at_heartbeat if p > 20)
    assert backlog[0].record["value"] == first_over and backlog[0].record["threshold"] == 20
    assert datetime.fromisoformat(backlog[0].record["event_at"]) == first_over_at
    assert "cannot reach your care team's system" in backlog[0].record["patient_message"]
    assert backlog[1].record["value"] <= 5


# --- a wearable falls silent ------------------------------------------------------------------

def test_silent_patch_raises_no_data_within_its_window_with_a_thermometer_message(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    clock = FakeClock()

    async def scenario(care_team: CareTeam) -> tuple[datetime, datetime | None]:
        hub = make_hub(tmp_path / "data", mosquitto.port, clock)
        await hub.start()
        assert await hub.wait_connected(10)
        feed_fever(hub, clock, minutes=10, core_c=36.9, bpm=72)
        last_temperature = clock.now - timedelta(seconds=60)
        raised_at: datetime | None = None
        # The patch stops; the strap goes on. Tick every 15 s for 15 minutes.
        for _ in range(60):
            feed_heart_rate(hub, "chest-strap", 72)
            advance(hub, clock, 15)
            if raised_at is None and AlertKind.NO_DATA in hub.open_alert_kinds():
                raised_at = clock.now
        feed_temperature(hub, "temp-patch", 36.9)  # back on: the alarm clears
        advance(hub, clock, 15)
        assert await until(lambda: hub.outbox.pending == 0, 10)
        await hub.stop()
        return last_temperature, raised_at

    with CareTeam(mosquitto.port) as care_team:
        last_temperature, raised_at = asyncio.run(scenario(care_team))
        assert care_team.wait(lambda c: len(c.events()) >= 2)
        events = care_team.events()

    assert raised_at is not None
    # Raised at the first tick at or after 600 s (thresholds.stale.temperature_s) of silence.
    assert timedelta(seconds=600) <= raised_at - last_temperature < timedelta(seconds=615)
    assert [(e["kind"], e["state"], e["device"]) for e in events] == [
        ("no_data", "raised", "temp-patch"), ("no_data", "cleared", "temp-patch")]
    raised, cleared = events
    assert raised["alert_id"] == cleared["alert_id"]
    assert raised["severity"] == "medium" and raised["technical"] is True
    assert raised["unit"] == "s" and raised["threshold"] == 600 and raised["value"] >= 600
    assert datetime.fromisoformat(raised["event_at"]) == raised_at
    message = raised["patient_message"]
    assert "Check that the patch or strap is on your skin" in message
    assert "Take your temperature with a thermometer now" in message
    assert "+1 555 0100" in message


# --- a broker that refuses a message ------------------------------------------------------------

def test_refused_puback_keeps_the_outbox_row_until_the_broker_accepts_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """mosquitto's ACL denies the hub the event topic: PUBACK 0x87 (not authorised). The row
    stays; once the ACL is fixed (SIGHUP reload, same connection) the retry delivers it."""
    binary = require_binary("mosquitto")
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite crs/v1/#\ntopic readwrite care/#\n"
                   "topic deny crs/v1/+/+/alert/event\n")
    clock = FakeClock()
    with running_mosquitto(binary, tmp_path / "broker", f"acl_file {acl}\n") as broker, \
            CareTeam(broker.port) as care_team:

        async def scenario() -> None:
            hub = make_hub(tmp_path / "data", broker.port, clock)
            hub.outbox.retry_refused_s = 0.5
            await hub.start()
            assert await hub.wait_connected(10)
            feed_fever(hub, clock, minutes=3)
            (raised,) = hub.store.journal()
            assert await until(lambda: hub.outbox.stats.refused >= 1
                               and hub.outbox.in_flight == 0, 10)
            # Only the event is left; the retained state beside it was accepted.
            rows = hub.store.pending()
            assert [(r.message.topic, r.message.retain) for r in rows] == [
                (hub.topics.alert_event, False)]
            assert outbox_event_ids([(r.seq, r.message.topic, r.message.payload)
                                     for r in rows]) == [raised.event_id]
            assert await until(lambda: (care_team.latest_state() or {}).get("open"), 5)
            assert care_team.events() == []
            # Still refused on retry, still kept; the refusal is its own technical alarm (issue
            # 14), whose event the broker refuses too (the page and the sound still show it).
            refused = hub.outbox.stats.refused
            assert await until(lambda: hub.outbox.stats.refused > refused, 5, step=hub.tick)
            assert AlertKind.PUBLISH_REFUSED in hub.open_alert_kinds()
            kinds = [json.loads(r.message.payload)["kind"] for r in hub.store.pending()]
            assert kinds == ["fever", "publish_refused"]
            # The ACL is fixed; nothing else happens but the hub's own 1 s tick.
            acl.write_text("topic readwrite crs/v1/#\ntopic readwrite care/#\n")
            assert broker.process is not None
            os.kill(broker.process.pid, signal.SIGHUP)
            assert await until(lambda: hub.outbox.pending == 0
                               and AlertKind.PUBLISH_REFUSED not in hub.open_alert_kinds(), 10,
                               every=0.1, step=hub.tick)
            assert await until(lambda: raised.event_id in care_team.event_ids(), 5)
            delivered = {(e["kind"], e["state"]) for e in care_team.events()}
            assert {("publish_refused", "raised"), ("publish_refused", "cleared")} <= delivered
            await hub.stop()

        with caplog.at_level(logging.ERROR, logger="daemon.outbox"):
            asyncio.run(scenario())
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert refusals and all("Not authorized" in m for m in refusals)
