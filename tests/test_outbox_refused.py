"""Issue 14, "refused publishes": a PUBACK with a failure reason code is a condition of its
own. The outbox exposes ``refused`` (seq -> reason) for the shell's ``publish_refused`` alarm;
a row leaves it when the broker later accepts it or when it leaves the outbox otherwise.

Against a real mosquitto whose ACL denies the hub the alert-event topic (PUBACK 0x87, "Not
authorized"), then allows it again (SIGHUP reload, same connection).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from daemon.config import MqttSettings
from daemon.mqtt_link import LinkCallbacks, MqttLink
from daemon.outbox import Outbox
from daemon.store import OutboundMessage, Store
from tests.support.mosquitto import running_mosquitto
from tests.support.requirements import require_binary

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
EVENT = "crs/v1/hub-t/p-t/alert/event"
STATE = "crs/v1/hub-t/p-t/alert/state"
DEVICE = "crs/v1/hub-t/p-t/device/strap/status"
ALLOW = "topic readwrite crs/v1/#\n"


async def until(condition: Callable[[], bool], outbox: Outbox, within_s: float = 10) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        outbox.kick()  # what the shell's 1 s tick does
        await asyncio.sleep(0.02)


def test_refused_rows_are_reported_with_their_reason_until_accepted(tmp_path: Path) -> None:
    acl = tmp_path / "acl"
    acl.write_text(ALLOW + "topic deny crs/v1/+/+/alert/event\n"
                   "topic deny crs/v1/+/+/device/+/status\n")
    with running_mosquitto(require_binary("mosquitto"), tmp_path / "broker",
                           f"acl_file {acl}\n") as broker:

        async def scenario() -> None:
            store = Store(tmp_path / "hub.sqlite3")
            outbox: Outbox | None = None

            def published(mid: int, ok: bool, reason: str) -> None:
                assert outbox is not None
                outbox.on_published(mid, ok, reason)

            link = MqttLink(MqttSettings(port=broker.port), client_id="crs-hub-t",
                            callbacks=LinkCallbacks(published=published))
            outbox = Outbox(store, link, retry_refused_s=0.2)
            link.start()
            try:
                await until(lambda: link.connected, outbox)
                assert outbox.refused == {}
                event = store.enqueue(OutboundMessage(EVENT, b'{"event_id":"e1"}'), T0)
                state = store.enqueue(OutboundMessage(STATE, b'{"open":[]}', 1, True), T0)
                old_status = store.enqueue(OutboundMessage(DEVICE, b'{"v":1}', 1, True), T0)
                outbox.kick()
                await until(lambda: set(outbox.refused) == {event, old_status}
                            and outbox.in_flight == 0, outbox)
                assert outbox.refused[event] == "Not authorized"
                assert state not in outbox.refused  # accepted: gone from the outbox
                assert [r.seq for r in store.pending()] == [event, old_status]

                # A newer retained status replaces the refused one: the old row's refusal
                # goes with it, and the new row is refused in its turn.
                new_status = store.enqueue(OutboundMessage(DEVICE, b'{"v":2}', 1, True), T0,
                                           exclude=outbox.seqs_in_flight)
                await until(lambda: set(outbox.refused) == {event, new_status}, outbox)

                # Still refused on retry; then the ACL is fixed and the retry is accepted.
                refusals = outbox.stats.refused
                await until(lambda: outbox.stats.refused > refusals + 1, outbox)
                assert set(outbox.refused) == {event, new_status}
                acl.write_text(ALLOW)
                assert broker.process is not None
                os.kill(broker.process.pid, signal.SIGHUP)
                await until(lambda: outbox.pending == 0, outbox)
                assert outbox.refused == {}
            finally:
                await link.stop()
                store.close()

        asyncio.run(scenario())


def test_a_refused_row_that_expires_leaves_the_refused_set(tmp_path: Path) -> None:
    acl = tmp_path / "acl"
    acl.write_text(ALLOW + "topic deny crs/v1/+/+/alert/event\n")
    with running_mosquitto(require_binary("mosquitto"), tmp_path / "broker",
                           f"acl_file {acl}\n") as broker:

        async def scenario() -> None:
            store = Store(tmp_path / "hub.sqlite3")
            wall = {"t": T0.timestamp()}
            outbox: Outbox | None = None

            def published(mid: int, ok: bool, reason: str) -> None:
                assert outbox is not None
                outbox.on_published(mid, ok, reason)

            link = MqttLink(MqttSettings(port=broker.port), client_id="crs-hub-t",
                            callbacks=LinkCallbacks(published=published))
            outbox = Outbox(store, link, retry_refused_s=0.2, wall_clock=lambda: wall["t"])
            link.start()
            try:
                await until(lambda: link.connected, outbox)
                seq = store.enqueue(OutboundMessage(EVENT, b"{}", 1, False,
                                                    expires_at=T0.timestamp() + 60), T0)
                outbox.kick()
                await until(lambda: seq in outbox.refused, outbox)
                wall["t"] += 120  # the event's expiry passes while it is refused
                await until(lambda: outbox.pending == 0, outbox)
                assert outbox.refused == {} and outbox.stats.expired == 1
            finally:
                await link.stop()
                store.close()

        asyncio.run(scenario())
