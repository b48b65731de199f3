"""A Hypothesis state machine over the hub's delivery path (reliability.md §5): readings, broker
outages, acks, clean restarts and crashes of the hub, against one real mosquitto.

Invariant: every event in the journal (raised, escalated, acknowledged, cleared...) is either
still in the outbox or has reached the care team. A frozen broker (SIGSTOP) keeps messages in
flight, so a crash can catch them between paho and the PUBACK. A crash here is in-process (paho's thread and
socket and the SQLite handle dropped without any shutdown code); test_faults.py kills real
processes. The broker is only stopped gracefully here: a broker killed with -9 loses what it had
acknowledged, which no outbox can cover (see test_faults.py for the escalation that does).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from daemon.hub import Hub
from tests.support.faults import (
    AFEBRILE_C,
    CareTeam,
    advance,
    base_config,
    feed_fever,
    feed_heart_rate,
    outbox_event_ids,
    read_journal,
    read_outbox,
    until,
)
from tests.support.hubs import FakeClock
from tests.support.mosquitto import Mosquitto

pytestmark = pytest.mark.integration

T = TypeVar("T")
FEVER_KINDS = ("fever", "high_fever", "fever_tachycardia")
_examples = itertools.count()


class DeliveryMachine(RuleBasedStateMachine):
    broker: ClassVar[Mosquitto]
    care_team: ClassVar[CareTeam]
    base: ClassVar[Path]

    def __init__(self) -> None:
        super().__init__()
        n = next(_examples)
        self.data = self.base / f"example-{n}"
        self.config = base_config(
            self.data, self.broker.port, hub={"id": f"hub-{n}", "data_dir": str(self.data)},
            escalation={"enabled": True, "repeat_min": {"low": 60.0, "medium": 4.0,
                                                        "high": 4.0, "critical": 4.0}})
        self.clock = FakeClock()
        self.loop = asyncio.new_event_loop()
        if self.broker.process is None or self.broker.process.poll() is not None:
            self.broker.start()
        self.broker_up = True
        self.frozen = False
        self.acked: set[str] = set()
        self.hub = self.run(self._start_hub())

    # --- plumbing ---------------------------------------------------------------------------
    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """The hub's loop runs only inside rules; paho's callbacks queue up in between."""
        return self.loop.run_until_complete(coro)

    async def _start_hub(self) -> Hub:
        hub = Hub(self.config, clock=self.clock, tick_interval_s=3600, heartbeat_interval_s=3600)
        await hub.start()
        if self.broker_up and not self.frozen:
            assert await hub.wait_connected(10)
        return hub

    def journal_event_ids(self) -> list[str]:
        return [j.event_id for j in read_journal(self.data)]

    def unaccounted(self) -> set[str]:
        """Journaled events neither in the outbox nor delivered (outbox read first)."""
        in_outbox = set(outbox_event_ids(read_outbox(self.data)))
        delivered = self.care_team.event_ids()
        return set(self.journal_event_ids()) - in_outbox - delivered

    # --- rules ---------------------------------------------------------------------------------
    @rule(minutes=st.integers(2, 6))
    def fever(self, minutes: int) -> None:
        feed_fever(self.hub, self.clock, minutes=minutes, core_c=38.6)

    @rule()
    def recovery(self) -> None:
        feed_fever(self.hub, self.clock, minutes=16, core_c=AFEBRILE_C)

    @rule()
    def patch_falls_silent(self) -> None:
        for _ in range(11 * 4):
            feed_heart_rate(self.hub, "chest-strap", 72)
            advance(self.hub, self.clock, 15)

    @precondition(lambda self: self.broker_up and not self.frozen)
    @rule()
    def broker_freezes(self) -> None:
        """SIGSTOP: the TCP connection stays up, nothing is acknowledged (a hung broker or a
        silent network partition); whatever the hub publishes now stays in flight."""
        self._signal(signal.SIGSTOP)
        self.frozen = True

    @precondition(lambda self: self.frozen)
    @rule()
    def broker_thaws(self) -> None:
        self._signal(signal.SIGCONT)
        self.frozen = False
        assert self.run(self.hub.wait_connected(10))

    def _signal(self, signum: int) -> None:
        assert self.broker.process is not None
        os.kill(self.broker.process.pid, signum)

    @precondition(lambda self: self.broker_up and not self.frozen)
    @rule()
    def broker_goes_down(self) -> None:
        self.broker.stop()
        self.broker_up = False
        assert self.run(until(lambda: not self.hub.link.connected, 10))

    @precondition(lambda self: not self.broker_up)
    @rule()
    def broker_comes_back(self) -> None:
        self.broker.start()
        self.broker_up = True
        assert self.run(self.hub.wait_connected(10))

    @precondition(lambda self: self.broker_up and not self.frozen)
    @rule()
    def care_team_acks_everything_open(self) -> None:
        hub = self.hub
        assert self.run(hub.wait_connected(10))
        open_ids = [a for a, t in hub.tracked.items() if not t.acknowledged]
        for alert_id in open_ids:
            self.care_team.ack(alert_id, topic=hub.topics.alert_ack,
                               correlation=f"{alert_id}:{len(self.acked)}".encode())
        assert self.run(until(lambda: all(hub.tracked[a].acknowledged for a in open_ids), 10))
        self.acked.update(open_ids)

    @rule()
    def hub_restarts(self) -> None:
        self.run(self.hub.stop())
        self.hub = self.run(self._start_hub())

    @rule(in_flight=st.booleans())
    def hub_crashes(self, in_flight: bool) -> None:
        """A crash; with ``in_flight``, the broker freezes first and the fever starts or ends,
        so the crash catches events handed to paho and never acknowledged."""
        if in_flight and self.broker_up and not self.frozen:
            self.broker_freezes()
            fever_open = any(t.transition.kind.value in FEVER_KINDS
                             for t in self.hub.tracked.values())
            before = len(self.hub.store.journal())
            feed_fever(self.hub, self.clock, minutes=20 if fever_open else 6,
                       core_c=AFEBRILE_C if fever_open else 38.6)
            assert len(self.hub.store.journal()) > before
            assert self.run(until(lambda: self.hub.outbox.in_flight > 0, 5))

        async def crash() -> None:
            hub = self.hub
            assert hub.scheduler is not None
            hub.scheduler.shutdown(wait=False)
            # No DISCONNECT: the connection just drops (shutdown() also wakes paho's thread,
            # which would otherwise linger until its unacknowledged messages time out).
            sock = hub.link.client.socket()
            if isinstance(sock, socket.socket):
                sock.shutdown(socket.SHUT_RDWR)
            hub.link.client.loop_stop()  # paho's thread and its in-memory queue are gone
            if sock is not None:
                sock.close()
            # PUBACKs paho had already received were handled before the "crash".
            for _ in range(3):
                await asyncio.sleep(0)
            hub.link._loop = None
            hub.store._db.close()  # no flush, no clean close

        self.run(crash())
        self.hub = self.run(self._start_hub())

    # --- invariants ------------------------------------------------------------------------------
    @invariant()
    def every_journaled_event_is_delivered_or_still_in_the_outbox(self) -> None:
        if not self.broker_up or self.frozen:
            # PUBACKed events wait in the care team's saved session until the broker is back.
            return
        assert self.run(until(lambda: not self.unaccounted(), 15)), (
            f"lost: {self.unaccounted()}")

    @invariant()
    def outbox_holds_only_journaled_events(self) -> None:
        assert set(outbox_event_ids(read_outbox(self.data))) <= set(self.journal_event_ids())

    @invariant()
    def no_alert_is_raised_twice_and_one_fever_at_a_time(self) -> None:
        journal = read_journal(self.data)
        raised = [j.alert_id for j in journal if j.state == "raised"]
        assert len(raised) == len(set(raised))
        open_fevers = {j.alert_id for j in journal if j.kind in FEVER_KINDS}
        open_fevers -= {j.alert_id for j in journal if j.state == "cleared"}
        assert len(open_fevers) <= 1

    def teardown(self) -> None:
        try:
            if self.frozen:
                self._signal(signal.SIGCONT)
                self.frozen = False
            if not self.broker_up:
                self.broker.start()
                self.broker_up = True
            hub = self.hub
            assert self.run(hub.wait_connected(10))
            assert self.run(until(lambda: hub.outbox.pending == 0 and not self.unaccounted(),
                                  15)), f"lost at the end: {self.unaccounted()}"
            delivered = self.care_team.event_ids()
            assert set(self.journal_event_ids()) <= delivered
            self.run(hub.stop())
        finally:
            self.loop.close()


def test_every_event_is_delivered_or_in_the_outbox(mosquitto: Mosquitto,
                                                    tmp_path: Path) -> None:
    with CareTeam(mosquitto.port, client_id="care-team-machine", persistent=True) as care_team:
        DeliveryMachine.broker = mosquitto
        DeliveryMachine.care_team = care_team
        DeliveryMachine.base = tmp_path
        run_state_machine_as_test(DeliveryMachine, settings=settings(
            max_examples=10, stateful_step_count=6, deadline=None, derandomize=True,
            database=None, suppress_health_check=list(HealthCheck),
            # Each step drives real processes: report the failing run as it is, unshrunk.
            phases=[Phase.explicit, Phase.generate]))
