"""End-to-end delivery under real faults, counted at the subscriber (issue 14).

A real-time hub in this process raises and clears NO_DATA alarms continuously (temperature
patches fall silent for longer than a short stale window, then report again). mosquitto runs
the shipped home-broker config (tests/support/broker_conf.py) and is killed with -9 at seeded
random moments, then restarted on the same persistence file. The subscriber is a persistent
MQTT v5 session (fixed client id, clean start off, session expiry) that also goes offline at
seeded random moments; it sends a delivery receipt for every alert event delivery, duplicates
included, and the hub has it as its receipt consumer with a short re-send backoff.

Counting is by event_id: every event the hub journaled must have reached the subscriber at least
once, and after a final drain nothing may still await a receipt. Used by tests/test_faults.py
(a few kills) and ``python -m bench faults`` (30 or more).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from daemon.hub import Hub
from daemon.profiles import load_profiles
from tests.support.broker_conf import render
from tests.support.faults import CareTeam, burst_config, feed_temperature, patch_ids, until
from tests.support.mosquitto import Mosquitto, free_port

CONSUMER = "care-console"
SUBSCRIBER_ID = "care-console-faults"


@dataclass
class ReceiptFaultOutcome:
    kills: int = 0
    offline_periods: int = 0
    journaled: set[str] = field(default_factory=set)
    received: set[str] = field(default_factory=set)
    duplicates: int = 0
    resent: int = 0
    resent_while_away: int = 0
    confirmed: int = 0
    ignored: int = 0
    time_to_receipt_s: list[float] = field(default_factory=list)
    awaiting_end: int = -1
    drain_s: float = 0.0
    elapsed_s: float = 0.0

    @property
    def lost(self) -> set[str]:
        return self.journaled - self.received


@dataclass
class ReceiptFaultRun:
    """``kills`` broker kills at seeded moments: up ``up_s`` (uniform range), down ``down_s``.
    The subscriber is online ``online_s`` and away ``away_s`` at a time (seeded too)."""

    workdir: Path
    mosquitto_binary: str
    kills: int
    seed: int = 14
    devices: int = 12
    stale_s: float = 1.0
    step_s: float = 0.2
    up_s: tuple[float, float] = (1.5, 4.0)
    down_s: tuple[float, float] = (0.1, 0.8)
    online_s: tuple[float, float] = (2.0, 6.0)
    away_s: tuple[float, float] = (1.0, 4.0)
    resend_s: float = 1.0
    resend_max_s: float = 8.0
    drain_within_s: float = 60.0
    # False: the same run without receipts (the hub expects none), to show what they close.
    receipts: bool = True
    # Replaces shipped broker settings (e.g. the old 60 s autosave timer, for comparison).
    broker_overrides: dict[str, str] = field(default_factory=dict)
    outcome: ReceiptFaultOutcome = field(default_factory=ReceiptFaultOutcome)
    _feeding: asyncio.Task[None] | None = None
    _stop: asyncio.Event | None = None

    def run(self) -> ReceiptFaultOutcome:
        port = free_port()
        broker_dir = self.workdir / "receipts-mosquitto"
        broker = Mosquitto(self.mosquitto_binary, broker_dir, port,
                           extra_config=render(port, broker_dir, overrides=self.broker_overrides))
        broker.start()
        subscriber = CareTeam(port, client_id=SUBSCRIBER_ID, persistent=True,
                              topic="crs/v1/+/+/alert/event", receipt_consumer=CONSUMER)
        try:
            subscriber.start()
            asyncio.run(self._scenario(broker, subscriber))
        finally:
            subscriber.stop()
            broker.stop()
        return self.outcome

    async def _scenario(self, broker: Mosquitto, subscriber: CareTeam) -> None:
        started = time.monotonic()
        config = burst_config(
            self.workdir / "receipts-hub", broker.port, self.devices,
            thresholds={"stale": {"temperature_s": self.stale_s}},
            alerts={"receipt_consumers": [CONSUMER] if self.receipts else [],
                    "receipt_resend_s": self.resend_s,
                    "receipt_resend_max_s": self.resend_max_s})
        # Patches that report every step_s, so that a silence of stale_s is NO_DATA (the
        # shipped profile reports once a minute).
        profiles = load_profiles(None)
        profiles["temperature_patch"] = profiles["temperature_patch"].model_copy(
            update={"expected_sample_interval_s": self.step_s})
        # The real clocks: receipt backoff and time to receipt are real seconds.
        hub = Hub(config, tick_interval_s=self.step_s, heartbeat_interval_s=30.0,
                  profiles=profiles)
        rng = random.Random(self.seed)
        kill_rng, away_rng = random.Random(rng.random()), random.Random(rng.random())
        self._stop = asyncio.Event()
        await hub.start()
        try:
            if not await hub.wait_connected(10):
                raise RuntimeError("the hub never connected")
            traffic = asyncio.create_task(self._traffic(hub, random.Random(rng.random())))
            away = asyncio.create_task(self._subscriber_away(hub, subscriber, away_rng))
            await self._kill_broker(broker, kill_rng)
            self._stop.set()
            drain_started = time.monotonic()
            await away
            await traffic
            await self._drain(hub, subscriber, drain_started)
        finally:
            await hub.stop()
        self.outcome.elapsed_s = time.monotonic() - started

    async def _traffic(self, hub: Hub, rng: random.Random) -> None:
        """Patches fall silent (NO_DATA raised after stale_s) and report again once their alarm
        is open (cleared): a raise/clear pair per patch every few seconds."""
        devices = patch_ids(self.devices)
        fed = set(devices)
        while not self._stopped:
            open_alarms = {a.transition.device for a in hub.tracked.values()
                           if a.transition.device is not None}
            for device in devices:
                if device in fed:
                    feed_temperature(hub, device, 36.9)
                    if rng.random() < 0.08:
                        fed.discard(device)
                elif device in open_alarms and rng.random() < 0.3:
                    fed.add(device)
            await asyncio.sleep(self.step_s)
        # Traffic ends: every patch reports (open alarms clear) and keeps reporting until the
        # drain is over, so no new alarm is raised meanwhile.
        self._feeding = asyncio.create_task(self._keep_fed(hub, devices))

    async def _keep_fed(self, hub: Hub, devices: list[str]) -> None:
        while True:
            for device in devices:
                feed_temperature(hub, device, 36.9)
            await asyncio.sleep(self.step_s)

    async def _kill_broker(self, broker: Mosquitto, rng: random.Random) -> None:
        for _ in range(self.kills):
            await asyncio.sleep(rng.uniform(*self.up_s))
            broker.kill()
            self.outcome.kills += 1
            await asyncio.sleep(rng.uniform(*self.down_s))
            await asyncio.to_thread(broker.start)

    @property
    def _stopped(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake up when the kills are over."""
        assert self._stop is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _subscriber_away(self, hub: Hub, subscriber: CareTeam, rng: random.Random) -> None:
        while True:
            await self._pause(rng.uniform(*self.online_s))
            if self._stopped:
                return
            await asyncio.to_thread(subscriber.go_offline)
            self.outcome.offline_periods += 1
            resent_before = hub.receipts.resent
            await self._pause(rng.uniform(*self.away_s))
            self.outcome.resent_while_away += hub.receipts.resent - resent_before
            await asyncio.to_thread(subscriber.go_online, wait=False)

    async def _drain(self, hub: Hub, subscriber: CareTeam, drain_started: float) -> None:
        """Broker up, subscriber online, no new alarms: wait until every journaled event has
        reached the subscriber and every receipt has come back."""

        def journaled() -> set[str]:
            return {j.event_id for j in hub.store.journal()}

        def drained() -> bool:
            return (hub.tracked == {} and hub.receipts.pending == 0
                    and subscriber.event_ids() >= journaled())

        await until(drained, self.drain_within_s if self.receipts else 10.0)
        if self._feeding is not None:
            self._feeding.cancel()
        out = self.outcome
        out.drain_s = time.monotonic() - drain_started
        out.journaled = journaled()
        out.received = subscriber.event_ids()
        out.duplicates = subscriber.duplicates()
        out.resent = hub.receipts.resent
        out.confirmed = hub.receipts.confirmed
        out.ignored = hub.receipts.ignored
        out.time_to_receipt_s = list(hub.receipts.time_to_receipt_s)
        out.awaiting_end = hub.receipts.pending
