"""The home broker's crash-safe persistence: what saving on every change costs.

What runs: a real mosquitto with the settings of deploy/mosquitto/crs-hub.conf (adapted to a
temp dir and a free port by tests/support/broker_conf.py), i.e. ``autosave_on_changes true``
with ``autosave_interval 1``: the whole database is written after every loop pass that changed
it. Floor: the same broker with the old setting (a 60 s save timer), which lost acknowledged
alert events in kill -9 tests. Both in the same run, one after the other.

A paho v5 client publishes QoS 1 messages one at a time, each waiting for its PUBACK:

- latency: PUBACK round trip (publish() to on_publish), p99 over the messages;
- disk: ``write_bytes`` of the mosquitto process (/proc/<pid>/io) per message, in two states:
  * ``retained``: 300-byte retained status messages, with an online subscriber (the hub's
    steady traffic: device and hub status every 30 s; the database holds a few KB);
  * ``queued``: 1 KB alert events while a care-team console's persistent session is offline,
    so the broker's database grows by every message (mosquitto writes the whole file at each
    save, eclipse/mosquitto#49: the cost per message grows with the backlog).

The per-day figure multiplies the ``retained`` cost by the hub's steady rate: 10 QoS 1
retained messages a minute (4 device statuses and the hub status every 30 s). Its floor is the
old timer's 1,440 saves a day of the same database (computed: a short run sees no timer save).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bench.common import emit_rows, mosquitto_binary, percentile
from bench.report import Row
from tests.support.broker_conf import render
from tests.support.mosquitto import Mosquitto, free_port

GOAL_P99_MS = 10.0
STEADY_PER_DAY = 10 * 60 * 24  # retained QoS 1 messages a day from one hub (see docstring)
OLD_TIMER = {"autosave_interval": "60", "autosave_on_changes": "false"}


def broker_write_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    raise RuntimeError("no write_bytes")


class Publisher:
    def __init__(self, port: int) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-publisher",
                                  protocol=MQTTProtocolVersion.MQTTv5)
        self._acked = threading.Event()
        self.client.on_publish = lambda *a: self._acked.set()
        connected = threading.Event()
        self.client.on_connect = lambda *a: connected.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not connected.wait(10):
            raise RuntimeError("publisher could not connect")

    def publish(self, topic: str, payload: bytes, retain: bool) -> float:
        self._acked.clear()
        started = time.perf_counter()
        self.client.publish(topic, payload, qos=1, retain=retain)
        if not self._acked.wait(10):
            raise RuntimeError("no PUBACK")
        return time.perf_counter() - started

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def offline_console(port: int, topic: str) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-console",
                         protocol=MQTTProtocolVersion.MQTTv5)
    done = threading.Event()
    client.on_subscribe = lambda *a: done.set()
    client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 86400
    client.connect("127.0.0.1", port, clean_start=False, properties=props)
    client.loop_start()
    if not done.wait(10):
        raise RuntimeError("console got no SUBACK")
    client.disconnect()
    client.loop_stop()


def online_subscriber(port: int, topic: str) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-online",
                         protocol=MQTTProtocolVersion.MQTTv5)
    done = threading.Event()
    client.on_subscribe = lambda *a: done.set()
    client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
    client.connect("127.0.0.1", port)
    client.loop_start()
    if not done.wait(10):
        raise RuntimeError("subscriber got no SUBACK")
    return client


def measure(overrides: dict[str, str], messages: int, workdir: Path) -> dict[str, Any]:
    port = free_port()
    broker = Mosquitto(mosquitto_binary(), workdir, port,
                       extra_config=render(port, workdir, overrides=overrides))
    broker.start()
    assert broker.process is not None
    pid = broker.process.pid
    try:
        sub = online_subscriber(port, "crs/v1/hub-b/#")
        offline_console(port, "crs/v1/hub-b/p-b/alert/event")
        pub = Publisher(port)
        status = json.dumps({"device": "strap-1", "connected": True, "pad": "x" * 220}).encode()
        before = broker_write_bytes(pid)
        latencies = [pub.publish(f"crs/v1/hub-b/p-b/device/strap-{i % 4}/status", status, True)
                     for i in range(messages)]
        retained_bytes = broker_write_bytes(pid) - before
        event = json.dumps({"event_id": "e", "pad": "x" * 1000}).encode()
        before = broker_write_bytes(pid)
        latencies_queued = [pub.publish("crs/v1/hub-b/p-b/alert/event", event, False)
                            for _ in range(messages)]
        queued_bytes = broker_write_bytes(pid) - before
        pub.stop()
        sub.disconnect()
        sub.loop_stop()
    finally:
        broker.stop()
    return {
        "p50_ms": percentile(latencies, 50) * 1e3, "p99_ms": percentile(latencies, 99) * 1e3,
        "queued_p99_ms": percentile(latencies_queued, 99) * 1e3,
        "retained_bytes_per_msg": retained_bytes / messages,
        "queued_bytes_per_msg": queued_bytes / messages, "messages": messages,
        "db_bytes": (workdir / "mosquitto.db").stat().st_size
        if (workdir / "mosquitto.db").exists() else 0,
    }


def rows(shipped: dict[str, Any], old: dict[str, Any]) -> list[Row]:
    per_day_mb = shipped["retained_bytes_per_msg"] * STEADY_PER_DAY / 1e6
    # The old timer writes the same database once a minute, whatever the traffic (a short run
    # sees no save at all, so this floor is computed from the measured cost of one save).
    old_per_day_mb = shipped["retained_bytes_per_msg"] * 1440 / 1e6
    n = shipped["messages"]
    return [
        Row(key="broker_persist_p99", name="Broker PUBACK p99, save on change", unit="ms",
            figure=shipped["p99_ms"], floor=old["p99_ms"], goal=f"<= {GOAL_P99_MS:g} ms",
            passed=shipped["p99_ms"] <= GOAL_P99_MS,
            floor_label="same broker, old 60 s save timer",
            note=f"{n} QoS 1 retained statuses one at a time; with a growing offline queue "
                 f"p99 {shipped['queued_p99_ms']:.1f} ms (timer: {old['queued_p99_ms']:.1f} ms)",
            detail={"shipped": shipped, "old_timer": old}),
        Row(key="broker_persist_disk", name="Broker disk writes, save on change", unit="MB/day",
            figure=per_day_mb, floor=old_per_day_mb, goal="reported", passed=None,
            floor_label="old 60 s timer: 1,440 saves/day of the same database",
            note=f"{shipped['retained_bytes_per_msg'] / 1024:.1f} KiB written per retained "
                 f"status x {STEADY_PER_DAY:,}/day; while {n} events queue for an offline "
                 f"console: {shipped['queued_bytes_per_msg'] / 1024:.1f} KiB per event "
                 f"(the whole file each save)",
            detail={"shipped": shipped, "old_timer": old}),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.broker_persistence")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    messages = 200 if args.quick else 1000
    with tempfile.TemporaryDirectory(prefix="crs-bench-broker-") as tmp:
        shipped = measure({}, messages, Path(tmp) / "shipped")
        old = measure(OLD_TIMER, messages, Path(tmp) / "old")
    emit_rows(rows(shipped, old))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
