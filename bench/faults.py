"""``python -m bench faults``: kill -9 the broker and the hub during bursts of alerts, then count
every alert by alert_id (reliability.md §5, "loss accounting under faults").

    .venv/bin/python -m bench faults [--quick] [--rounds 2] [--wave 15] [--kills 3]
        [--broker-kills 30] [--seed 14] [--workdir DIR]

Needs mosquitto (PATH or /usr/sbin). Takes about 2 min on 2 cores (``--quick``: about 40 s).
The last line is exactly

    faults: generated=N delivered=N lost=0 duplicates=D drain_s=X resent=R \
        receipt_p50_s=X receipt_p99_s=X receipt_max_s=X awaiting=0

and the exit status is non-zero if any alert or event was lost (or raised twice after a
restart), or if anything still awaits a receipt after the final drain.

Scenario "broker" (the hub in this process, a real mosquitto): per round, three waves of real
NO_DATA alarms (silent temperature patches). Wave A reaches the care team directly. Wave B is
PUBACKed by the broker and queued in its memory for the care team, who is offline. Wave C is
published into a frozen broker (SIGSTOP), so it is in flight. Then ``kill -9`` of mosquitto;
150 s (scenario) of outage; restart. The care team acks every alert it sees; the hub re-announces
unacknowledged alerts every 30 s (scenario), which is what recovers wave B: a broker killed with -9
loses what it had acknowledged. An alert counts as delivered once any event of it reached the
care team, and the round ends only when every patient alert is acknowledged.

Scenario "hub" (the hub in a subprocess, ``python -m tests.support.faults hub --scenario burst``,
broker up): patches fall silent and come back in a cycle, so alarms are raised and cleared
continuously; the hub is killed with -9 ``--kills`` times mid-burst and restarted on the same
data directory; a last process drains the outbox. Here an alert counts as delivered only if every
event journaled for it (raised, cleared) reached the care team: the outbox alone must do it.

Scenario "subscriber" (tests/support/receipt_faults.py; counted at the subscriber, by event_id):
a real-time hub raises and clears NO_DATA alarms continuously while mosquitto, running the
shipped config (deploy/mosquitto/crs-hub.conf via tests/support/broker_conf.py), is killed with
-9 ``--broker-kills`` times at seeded random moments and restarted. The subscriber is a
persistent MQTT v5 session (fixed client id, clean start off, session expiry) that also goes
offline for seconds at a time, and sends a delivery receipt for every alert event delivery; the
hub has it as its receipt consumer (re-send after 1 s, doubling to 8 s). Every event the hub
journaled must reach the subscriber at least once, and after a final drain nothing may await a
receipt. Its figures: kills, offline periods, re-sends (all; while the subscriber was away), time
from publish to receipt (p50/p99/max, real seconds), events still awaiting, duplicates seen at
the subscriber.

Counts: generated = distinct alert_ids raised in the journals (the hub's own outage alarm
included); delivered = of those, delivered as defined above; lost = generated - delivered;
duplicates = deliveries of an event_id after its first (at-least-once; subscribers drop them by
event_id); drain_s = the longest time from the end of a fault (broker restarted, hub restarted)
until the care team had everything.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import mosquitto_binary, percentile, quiet_logging
from daemon.hub import Hub
from tests.support.faults import (
    CareTeam,
    HubProcess,
    NoDataBurst,
    burst_config,
    outbox_event_ids,
    patch_ids,
    raised_alert_ids,
    read_journal,
    read_outbox,
    until,
    wait_until,
)
from tests.support.hubs import T0, FakeClock
from tests.support.mosquitto import Mosquitto, running_mosquitto
from tests.support.receipt_faults import ReceiptFaultOutcome, ReceiptFaultRun

FAST_ESCALATION = {"enabled": True,
                   "repeat_min": {s: 0.5 for s in ("low", "medium", "high", "critical",
                                                   "emergency")}}


@dataclass
class Outcome:
    name: str
    generated: set[str] = field(default_factory=set)
    delivered: set[str] = field(default_factory=set)
    duplicates: int = 0
    drains: list[float] = field(default_factory=list)
    reraised: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def lost(self) -> set[str]:
        return self.generated - self.delivered

    def line(self) -> str:
        drain = max(self.drains, default=0.0)
        return (f"faults[{self.name}]: generated={len(self.generated)} "
                f"delivered={len(self.delivered & self.generated)} lost={len(self.lost)} "
                f"duplicates={self.duplicates} reraised={self.reraised} drain_s={drain:.2f} "
                + " ".join(self.notes))


# --- broker kill -9 --------------------------------------------------------------------------

async def _broker_kill(broker: Mosquitto, data: Path, care_team: CareTeam, rounds: int,
                       wave: int, outcome: Outcome) -> None:
    devices = patch_ids(rounds * 3 * wave)
    config = burst_config(data, broker.port, len(devices), escalation=FAST_ESCALATION)
    clock = FakeClock()
    hub = Hub(config, clock=clock, tick_interval_s=3600, heartbeat_interval_s=3600)
    burst = NoDataBurst(hub, clock, step_s=5.0)
    burst.feed_all()
    await hub.start()
    if not await hub.wait_connected(10):
        raise RuntimeError("the hub never connected")
    patient_alerts: list[str] = []

    def raised_for(group: list[str]) -> list[str]:
        opened = burst.open_no_data()
        return [opened[d] for d in group if d in opened]

    def acknowledged(alert_ids: list[str]) -> bool:
        done = {j.alert_id for j in read_journal(data) if j.state == "acknowledged"}
        return set(alert_ids) <= done

    async def raise_wave(group: list[str]) -> list[str]:
        burst.silence(group)
        if not await until(lambda: len(raised_for(group)) == len(group), 20, step=burst.step):
            raise RuntimeError("a wave of alarms did not come up")
        return raised_for(group)

    outbox_at_kill = 0
    for r in range(rounds):
        a, b, c = (devices[(3 * r + i) * wave:(3 * r + i + 1) * wave] for i in range(3))
        patient_alerts.extend(await raise_wave(a))
        await until(lambda: acknowledged(patient_alerts), 20, step=burst.step)
        care_team.go_offline()
        patient_alerts.extend(await raise_wave(b))
        await until(lambda: hub.outbox.pending == 0 and hub.outbox.in_flight == 0, 20)
        assert broker.process is not None
        os.kill(broker.process.pid, signal.SIGSTOP)
        target = hub.outbox.stats.published + len(c)
        burst.silence(c)
        while len(raised_for(c)) < len(c):
            burst.step()
        patient_alerts.extend(raised_for(c))
        # Wave C is handed to paho, which writes it into the frozen broker's socket.
        await until(lambda: hub.outbox.stats.published >= target, 10)  # noqa: B023
        broker.kill()
        await until(lambda: not hub.link.connected, 10)
        outbox_at_kill += len(outbox_event_ids(read_outbox(data)))
        for _ in range(30):  # 150 s of scenario time without a broker
            burst.step()
            await asyncio.sleep(0)
        broker.start()
        restarted = time.monotonic()
        care_team.go_online()

        def recovered() -> bool:
            outage = {j.event_id for j in read_journal(data) if j.kind == "broker_unreachable"}
            return (care_team.alert_ids() >= set(patient_alerts)
                    and care_team.event_ids() >= outage and acknowledged(patient_alerts))

        await until(recovered, 30, step=burst.step)
        outcome.drains.append(time.monotonic() - restarted)
    await hub.stop()
    journal = read_journal(data)
    outcome.generated = set(raised_alert_ids(journal, hub_alarms=True))
    outcome.delivered = care_team.alert_ids() & outcome.generated
    outcome.duplicates = care_team.duplicates()
    raised = raised_alert_ids(journal, hub_alarms=True)
    outcome.reraised = len(raised) - len(set(raised))
    first_state: dict[str, str] = {}
    for event in care_team.first_events():
        first_state.setdefault(event["alert_id"], event["state"])
    by_escalation = sum(first_state.get(a) == "escalated" for a in patient_alerts)
    outcome.notes.append(f"(kills={rounds} events_in_outbox_at_kill={outbox_at_kill} "
                         f"first_seen_by_escalation={by_escalation})")


def broker_scenario(workdir: Path, rounds: int, wave: int) -> Outcome:
    outcome = Outcome("broker")
    with running_mosquitto(mosquitto_binary(), workdir / "broker-mosquitto") as broker:
        care_team = CareTeam(broker.port, client_id="bench-care-team-broker", persistent=True,
                             auto_ack=True)
        care_team.start()
        try:
            asyncio.run(_broker_kill(broker, workdir / "broker-hub", care_team, rounds, wave,
                                     outcome))
        finally:
            care_team.stop()
    return outcome


# --- hub kill -9 -----------------------------------------------------------------------------

def hub_scenario(workdir: Path, kills: int, raises_per_life: int) -> Outcome:
    outcome = Outcome("hub")
    data = workdir / "hub-data"
    config_path = workdir / "hub.json"
    in_outbox_at_kill: list[int] = []
    with running_mosquitto(mosquitto_binary(), workdir / "hub-mosquitto") as broker, \
            CareTeam(broker.port, client_id="bench-care-team-hub") as care_team:
        config_path.write_text(burst_config(data, broker.port, 20).model_dump_json())

        def start_s() -> float:
            journal = read_journal(data) if (data / "crs-hub.sqlite3").exists() else []
            last = max((j.at for j in journal), default=T0.timestamp())
            return last - T0.timestamp() + 60

        for _ in range(kills):
            before = len(raised_alert_ids(read_journal(data))) if data.exists() else 0
            child = HubProcess(config_path, "burst", start_s=start_s(),
                               log_path=workdir / "hub.log").start()
            child.report()
            target = before + raises_per_life
            if not wait_until(lambda: len(raised_alert_ids(read_journal(data))) >= target,  # noqa: B023
                              30, every=0.005):
                child.kill()
                raise RuntimeError("the hub process raised too few alarms")
            child.kill()
            in_outbox_at_kill.append(len(outbox_event_ids(read_outbox(data))))
        drain = HubProcess(config_path, "drain", start_s=start_s(),
                           log_path=workdir / "hub.log")
        restarted = time.monotonic()
        drain.start()
        report = drain.report()
        drain.wait()
        journal = read_journal(data)
        expected = {j.event_id for j in journal}
        wait_until(lambda: care_team.event_ids() >= expected, 20)
        outcome.drains.append(time.monotonic() - restarted)
        received = care_team.event_ids()
        outcome.generated = set(raised_alert_ids(journal, hub_alarms=True))
        missing_events = {j.alert_id for j in journal if j.event_id not in received}
        outcome.delivered = outcome.generated - missing_events
        outcome.duplicates = care_team.duplicates()
        raised = raised_alert_ids(journal, hub_alarms=True)
        outcome.reraised = len(raised) - len(set(raised))
        outcome.notes.append(
            f"(kills={kills} events={len(expected)} events_lost={len(expected - received)} "
            f"events_in_outbox_at_kill={in_outbox_at_kill} restored_at_drain={len(report['restored'])})")
    return outcome


# --- kill -9 of mosquitto, counted at a subscriber that confirms -----------------------------

def subscriber_scenario(workdir: Path, kills: int, seed: int) -> ReceiptFaultOutcome:
    return ReceiptFaultRun(workdir, mosquitto_binary(), kills=kills, seed=seed).run()


# The reference run: the old 60 s broker timer, no receipts, and kills and absences longer than
# the outbox's 5 s re-send window. It shows that counting at the subscriber catches loss.
OLD_TIMER = {"autosave_on_changes": "false", "autosave_interval": "60"}


def reference_scenario(workdir: Path, seed: int) -> ReceiptFaultOutcome:
    return ReceiptFaultRun(workdir / "reference", mosquitto_binary(), kills=3, seed=seed,
                           receipts=False, broker_overrides=OLD_TIMER, up_s=(6.0, 9.0),
                           online_s=(1.0, 3.0), away_s=(4.0, 10.0)).run()


def receipt_figures(o: ReceiptFaultOutcome) -> str:
    ttr = o.time_to_receipt_s
    return (f"resent={o.resent} receipt_p50_s={percentile(ttr, 50):.2f} "
            f"receipt_p99_s={percentile(ttr, 99):.2f} receipt_max_s={max(ttr, default=0.0):.2f} "
            f"awaiting={o.awaiting_end}")


def subscriber_line(o: ReceiptFaultOutcome) -> str:
    return (f"faults[subscriber]: generated={len(o.journaled)} "
            f"delivered={len(o.journaled & o.received)} lost={len(o.lost)} "
            f"duplicates={o.duplicates} drain_s={o.drain_s:.2f} {receipt_figures(o)} "
            f"(events, by event_id; kills={o.kills} offline_periods={o.offline_periods} "
            f"resent_while_away={o.resent_while_away} confirmed={o.confirmed} "
            f"run_s={o.elapsed_s:.1f})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench faults", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2, help="broker kills (default 2)")
    parser.add_argument("--wave", type=int, default=15,
                        help="alarms per wave, three waves per broker kill (default 15)")
    parser.add_argument("--kills", type=int, default=3, help="hub kills (default 3)")
    parser.add_argument("--raises", type=int, default=25,
                        help="alarms a hub process raises before it is killed (default 25)")
    parser.add_argument("--broker-kills", type=int, default=None,
                        help="kill -9 of mosquitto in the subscriber scenario (default 30; "
                             "--quick: 8)")
    parser.add_argument("--seed", type=int, default=14,
                        help="seeds the subscriber scenario's kill and offline moments")
    parser.add_argument("--quick", action="store_true",
                        help="a short run (about 40 s): 1 broker round, 2 hub kills, 8 broker "
                             "kills in the subscriber scenario, no reference run")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the brokers' and hubs' files here (default: a temp dir)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.kills = 1, 2
    broker_kills = args.broker_kills if args.broker_kills is not None else (
        8 if args.quick else 30)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="crs-bench-faults-"))
    workdir.mkdir(parents=True, exist_ok=True)
    quiet_logging(workdir / "bench-faults.log")
    started = time.monotonic()
    try:
        outcomes = [broker_scenario(workdir, args.rounds, args.wave),
                    hub_scenario(workdir, args.kills, args.raises)]
        subscriber = subscriber_scenario(workdir, broker_kills, args.seed)
        reference = None if args.quick else reference_scenario(workdir, args.seed)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    for outcome in outcomes:
        print(outcome.line())
        for alert_id in sorted(outcome.lost):
            print(f"  lost: {alert_id}")
    print(subscriber_line(subscriber))
    for event_id in sorted(subscriber.lost):
        print(f"  lost event: {event_id}")
    if reference is not None:
        print(f"# reference, not in the totals: the old 60 s broker timer, no receipts: "
              f"generated={len(reference.journaled)} lost={len(reference.lost)} "
              f"(kills={reference.kills} offline_periods={reference.offline_periods})")
    # Alerts (broker, hub scenarios) and events (subscriber scenario) add up as items lost.
    generated = sum(len(o.generated) for o in outcomes) + len(subscriber.journaled)
    delivered = sum(len(o.delivered & o.generated) for o in outcomes) + len(
        subscriber.journaled & subscriber.received)
    lost = sum(len(o.lost) for o in outcomes) + len(subscriber.lost)
    duplicates = sum(o.duplicates for o in outcomes) + subscriber.duplicates
    drain = max([d for o in outcomes for d in o.drains] + [subscriber.drain_s])
    print(f"# {time.monotonic() - started:.1f} s; workdir {workdir}"
          + ("" if args.workdir else " (removed)"))
    print(f"faults: generated={generated} delivered={delivered} lost={lost} "
          f"duplicates={duplicates} drain_s={drain:.2f} {receipt_figures(subscriber)}")
    return 1 if lost or subscriber.awaiting_end or any(o.reraised for o in outcomes) else 0

