"""Fleet scale: N hubs on one mosquitto, a care team on a shared subscription.

What is real: each hub is a real ``daemon.hub.Hub`` object - its own config (``hub-NNNN`` /
``p-NNNN``), ClinicalRules and TechnicalAlarms, SQLite store (journal + outbox, WAL,
``synchronous=FULL``), Outbox (written before publishing, deleted on PUBACK), the real payload
models (AlertEvent with the patient message, retained AlertStateSnapshot, HubStatus with a Last
Will) and its own paho MQTT v5 client with its own TCP connection, client id, will and its
subscription to its ack topic. The alerts come out of the rules: each hub's simulated patch
sends temperature bytes through ``Hub.on_payload``, a fever story (normal, 38.4 °C, 39.4 °C,
back to normal) that raises a FEVER alert, worsens it to HIGH_FEVER and clears it: three alert
events (and three retained state messages) per hub, RAISED at default thresholds.

What is lightweight: hubs share worker processes (``--processes``, 250 hubs per process at
N = 1,000) and their paho clients are driven by the worker's asyncio loop (paho's external-loop
API: ``loop_read``/``loop_write``/``loop_misc`` on socket callbacks) instead of one network
thread per hub; there is no Bluetooth and no APScheduler (no ticks, heartbeats or escalations);
each hub's clock is scenario time moved one minute per reading while readings are 0.5 s apart in
real time. Hubs start their story at random offsets over the first 10 s.

The care team: ``--consumers`` paho clients (2) in the share group ``$share/care-team/`` on
``crs/v1/+/+/alert/event``, QoS 1, in the benchmark process. Latency is from just before the
``on_payload`` call whose reading causes a transition to the first receipt of that event by a
consumer (CLOCK_MONOTONIC, shared by processes on one machine). Lost = journaled events never
received (after the outboxes drained and a grace period). Each hub's outbox must be empty.

Floor, in the same run on the same broker: the same fleet without crs-hub - the same number of
worker processes and paho clients driven the same way, each publishing a pre-serialised
AlertEvent of the same shape at QoS 1 at the same moments of the same schedule.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from bench.common import StepClock, broker, emit_rows, percentile, quiet_logging, run_worker
from bench.ingest import TEMP, temperature_bytes
from bench.report import Row
from daemon.alerts import AlertKind, AlertState, Severity
from daemon.config import Config, parse_config
from daemon.hub import Hub
from daemon.payloads import AlertEvent, Tier
from daemon.profiles import DeviceProfile, load_profiles
from daemon.sinks import EventCallback

PATCH = "patch-1"
STEP_S = 60.0  # scenario seconds per reading
INTERVAL_S = 0.5  # real seconds between a hub's readings
SPREAD_S = 10.0  # hubs start at random offsets within this
# Core temperatures (the patch profile adds +0.5 °C to what the patch sends).
STORY_C = [36.8] * 2 + [38.4] * 5 + [39.4] * 5 + [36.6] * 20
SHARE_GROUP = "care-team"
GOAL_LOST = 0


def hub_config(index: int, data_dir: Path, port: int) -> Config:
    return parse_config({
        "hub": {"id": f"hub-{index:04d}", "data_dir": str(data_dir)},
        "patient": {"id": f"p-{index:04d}", "care_team_name": "the clinic",
                    "care_team_phone": "+1 555 0100"},
        "devices": [{"id": PATCH, "profile": "temperature_patch",
                     "address": f"AA:BB:CC:{index // 65536 % 256:02X}:"
                                f"{index // 256 % 256:02X}:{index % 256:02X}"}],
        "mqtt": {"host": "127.0.0.1", "port": port, "reconnect_max_s": 1},
        "escalation": {"enabled": False},
        "vitals": {"publish": False},
    })


def transition_steps() -> list[int]:
    """Which readings of the story cause an alert event (the floor publishes at the same
    steps). Found by running the story through a real hub without a broker."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        clock = StepClock()
        hub = Hub(hub_config(0, Path(tmp), 1), clock=clock)
        steps: list[int] = []
        current = [0]
        hub.add_sink(EventCallback(lambda event: steps.append(current[0])))
        for step, core in enumerate(STORY_C):
            current[0] = step
            clock.set(step * STEP_S)
            hub.on_payload(PATCH, TEMP, temperature_bytes(core - 0.5))
        hub.store.close()
    return steps


# --- paho on the worker's asyncio loop ----------------------------------------------------------


class LoopDriver:
    """Drive many paho clients from one asyncio loop (paho's external event loop API)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.clients: list[mqtt.Client] = []

    def attach(self, client: mqtt.Client) -> None:
        loop = self.loop

        def on_open(c: mqtt.Client, userdata: Any, sock: Any) -> None:
            loop.add_reader(sock, c.loop_read)

        def on_close(c: mqtt.Client, userdata: Any, sock: Any) -> None:
            loop.remove_reader(sock)

        def on_write(c: mqtt.Client, userdata: Any, sock: Any) -> None:
            loop.add_writer(sock, c.loop_write)

        def on_unwrite(c: mqtt.Client, userdata: Any, sock: Any) -> None:
            loop.remove_writer(sock)

        client.on_socket_open = on_open
        client.on_socket_close = on_close
        client.on_socket_register_write = on_write
        client.on_socket_unregister_write = on_unwrite
        self.clients.append(client)

    async def misc(self) -> None:
        while True:
            for client in self.clients:
                client.loop_misc()
            await asyncio.sleep(1.0)


def _connect_with_retry(client: mqtt.Client, port: int, keepalive: int) -> None:
    for attempt in range(50):
        try:
            client.connect("127.0.0.1", port, keepalive=keepalive)
            return
        except OSError:
            time.sleep(0.05 * (attempt + 1))
    raise RuntimeError("could not connect to mosquitto")


# --- workers ------------------------------------------------------------------------------------


async def hub_worker(first: int, count: int, port: int, workdir: Path, seed: int,
                     interval_s: float, spread_s: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    driver = LoopDriver(loop)
    misc = asyncio.create_task(driver.misc())
    profiles: dict[str, DeviceProfile] = load_profiles(None)
    hubs: list[tuple[Hub, StepClock]] = []
    sent: list[tuple[str, float]] = []
    inside_ms: list[float] = []  # on_payload calls that caused a transition, start to return
    for index in range(first, first + count):
        clock = StepClock()
        hub = Hub(hub_config(index, workdir / f"hub-{index:04d}", port), clock=clock,
                  profiles=profiles)
        link = hub.link
        # What MqttLink.start does, minus paho's network thread: the driver runs the socket.
        link._loop = loop
        driver.attach(link.client)
        _connect_with_retry(link.client, port, link.settings.keepalive_s)
        hubs.append((hub, clock))
        if index % 25 == 0:
            await asyncio.sleep(0)  # let CONNACKs in
    deadline = time.monotonic() + 60
    while not all(h.link.connected for h, _ in hubs):
        if time.monotonic() > deadline:
            raise RuntimeError("not every hub connected")
        await asyncio.sleep(0.05)
    for hub, _ in hubs:
        hub.on_connection_change(PATCH, True)

    rng = random.Random(seed)
    payloads = [temperature_bytes(c - 0.5) for c in STORY_C]

    async def story(hub: Hub, clock: StepClock, delay: float) -> None:
        t0 = [0.0]
        hub.add_sink(EventCallback(lambda event: sent.append((event.event_id, t0[0]))))
        await asyncio.sleep(delay)
        for step, data in enumerate(payloads):
            clock.set(step * STEP_S)
            t0[0] = time.monotonic()
            before = len(sent)
            hub.on_payload(PATCH, TEMP, data)
            if len(sent) > before:
                inside_ms.append((time.monotonic() - t0[0]) * 1000)
            await asyncio.sleep(interval_s)

    started = time.monotonic()
    await asyncio.gather(*(story(h, c, rng.uniform(0, spread_s)) for h, c in hubs))
    fed_s = time.monotonic() - started
    deadline = time.monotonic() + 60
    while any(h.outbox.pending for h, _ in hubs) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    pending = sum(h.outbox.pending for h, _ in hubs)
    journaled = sum(len(h.store.journal()) for h, _ in hubs)
    for hub, _ in hubs:
        hub.link.client.disconnect()
    await asyncio.sleep(0.2)
    misc.cancel()
    for hub, _ in hubs:
        hub.store.close()
    return {"sent": sent, "outbox_pending": pending, "journaled": journaled, "hubs": len(hubs),
            "fed_s": fed_s, "inside_ms": inside_ms}


def floor_event(index: int) -> Callable[[], bytes]:
    """A fresh AlertEvent of the hubs' shape (new event_id each call), pre-rendered."""
    now = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
    template = AlertEvent(
        event_id=str(uuid.uuid4()), alert_id=str(uuid.uuid4()), hub_id=f"hub-{index:04d}",
        patient_id=f"p-{index:04d}", kind=AlertKind.FEVER, state=AlertState.RAISED,
        severity=Severity.HIGH, tier=Tier.PATIENT, value=38.4, unit="°C", threshold=38.0,
        observed_at=now, raised_at=now, event_at=now, device=PATCH,
        patient_message="Your temperature is 38.4 °C (101.1 °F). This can be a sign of "
        "cytokine release syndrome. Call the clinic now at +1 555 0100. Call 911 instead if "
        "you have trouble breathing, feel confused or faint.",
        acknowledged_by=None, technical=False,
    ).to_json()
    marker = template.split(b'"event_id":"', 1)[1][:36]

    def make() -> bytes:
        return template.replace(marker, str(uuid.uuid4()).encode(), 1)

    return make


async def floor_worker(first: int, count: int, port: int, seed: int, steps: list[int],
                       interval_s: float, spread_s: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    driver = LoopDriver(loop)
    misc = asyncio.create_task(driver.misc())
    clients: list[tuple[int, mqtt.Client]] = []
    acked: set[int] = set()
    sent: list[tuple[str, float]] = []
    connected = [0]
    for index in range(first, first + count):
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"floor-{index:04d}",
                             protocol=MQTTProtocolVersion.MQTTv5)
        client.max_inflight_messages_set(20)
        client.on_connect = lambda *a: connected.__setitem__(0, connected[0] + 1)
        client.on_publish = lambda c, u, mid, rc, p: acked.add(mid)
        driver.attach(client)
        _connect_with_retry(client, port, 30)
        clients.append((index, client))
        if index % 25 == 0:
            await asyncio.sleep(0)
    deadline = time.monotonic() + 60
    while connected[0] < count:
        if time.monotonic() > deadline:
            raise RuntimeError("not every floor client connected")
        await asyncio.sleep(0.05)
    rng = random.Random(seed)
    wanted = set(steps)
    mids: list[int] = []

    async def story(index: int, client: mqtt.Client, delay: float) -> None:
        make = floor_event(index)
        topic = f"crs/v1/hub-{index:04d}/p-{index:04d}/alert/event"
        await asyncio.sleep(delay)
        for step in range(len(STORY_C)):
            if step in wanted:
                payload = make()
                t0 = time.monotonic()
                info = client.publish(topic, payload, qos=1)
                sent.append((json.loads(payload)["event_id"], t0))
                mids.append(info.mid)
            await asyncio.sleep(interval_s)

    started = time.monotonic()
    await asyncio.gather(*(story(i, c, rng.uniform(0, spread_s)) for i, c in clients))
    fed_s = time.monotonic() - started
    await asyncio.sleep(1.0)
    for _, client in clients:
        client.disconnect()
    await asyncio.sleep(0.2)
    misc.cancel()
    return {"sent": sent, "outbox_pending": 0, "journaled": len(sent), "hubs": len(clients),
            "fed_s": fed_s}


# --- orchestration ------------------------------------------------------------------------------


class CareTeam:
    """Consumers in one share group; first receipt time (CLOCK_MONOTONIC) per event_id."""

    def __init__(self, port: int, members: int) -> None:
        self.first: dict[str, float] = {}
        self.count = 0
        self.per_member = [0] * members
        self._lock = threading.Lock()
        self.clients: list[mqtt.Client] = []
        ready = [threading.Event() for _ in range(members)]
        for m in range(members):
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"care-team-{m}",
                                 protocol=MQTTProtocolVersion.MQTTv5)
            client.max_inflight_messages_set(100)
            client.on_connect = (lambda c, u, f, rc, p: c.subscribe(
                f"$share/{SHARE_GROUP}/crs/v1/+/+/alert/event", qos=1))
            client.on_subscribe = (lambda e: lambda *a: e.set())(ready[m])
            client.on_message = self._handler(m)
            client.connect("127.0.0.1", port)
            client.loop_start()
            self.clients.append(client)
        for event in ready:
            if not event.wait(10):
                raise RuntimeError("care-team consumer got no SUBACK")

    def _handler(self, member: int) -> Callable[[mqtt.Client, Any, mqtt.MQTTMessage], None]:
        def on_message(client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
            t = time.monotonic()
            event_id = json.loads(msg.payload)["event_id"]
            with self._lock:
                self.count += 1
                self.per_member[member] += 1
                self.first.setdefault(event_id, t)

        return on_message

    def close(self) -> None:
        for client in self.clients:
            client.disconnect()
            client.loop_stop()


def _run_fleet(kind: str, hubs: int, processes: int, port: int, workdir: Path,
               steps: list[int], pace: tuple[float, float]) -> list[dict[str, Any]]:
    per = -(-hubs // processes)
    results: list[dict[str, Any] | None] = [None] * processes
    errors: list[str] = []

    def run(p: int) -> None:
        first = p * per + 1
        count = min(per, hubs - p * per)
        if count <= 0:
            results[p] = {"sent": [], "outbox_pending": 0, "journaled": 0, "hubs": 0,
                          "fed_s": 0.0}
            return
        try:
            results[p] = run_worker("bench.fleet", [
                "--worker", kind, "--first", str(first), "--count", str(count),
                "--port", str(port), "--workdir", str(workdir / kind), "--seed", str(p),
                "--steps", ",".join(map(str, steps)), "--interval", str(pace[0]),
                "--spread", str(pace[1])], timeout=600).data
        except Exception as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=run, args=(p,)) for p in range(processes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(errors[0])
    return [r for r in results if r is not None]


def _summarise(results: list[dict[str, Any]], care: CareTeam, before: int) -> dict[str, Any]:
    sent = [(e, t) for r in results for e, t in r["sent"]]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if all(e in care.first for e, _ in sent):
            break
        time.sleep(0.1)
    time.sleep(0.5)
    latencies = [(care.first[e] - t) * 1000 for e, t in sent if e in care.first]
    lost = sum(1 for e, _ in sent if e not in care.first)
    return {
        "events": len(sent), "lost": lost, "received": care.count - before,
        "journaled": sum(r["journaled"] for r in results),
        "outbox_pending": sum(r["outbox_pending"] for r in results),
        "p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies, default=float("nan")),
        "fed_s": max((r["fed_s"] for r in results), default=0.0),
        "hubs": sum(r["hubs"] for r in results),
        "inside_p50_ms": percentile([x for r in results for x in r.get("inside_ms", [])], 50),
        "inside_p99_ms": percentile([x for r in results for x in r.get("inside_ms", [])], 99),
    }


def measure(hubs: int, processes: int, consumers: int, workdir: Path,
            pace: tuple[float, float]) -> dict[str, Any]:
    steps = transition_steps()
    with broker(workdir) as mq:
        care = CareTeam(mq.port, consumers)
        try:
            before = care.count
            floor = _summarise(
                _run_fleet("floor", hubs, processes, mq.port, workdir, steps, pace), care, before)
            before = care.count
            fleet = _summarise(
                _run_fleet("hub", hubs, processes, mq.port, workdir, steps, pace), care, before)
            per_member = list(care.per_member)
        finally:
            care.close()
    return {"hubs": hubs, "processes": processes, "consumers": consumers,
            "interval_s": pace[0], "spread_s": pace[1],
            "transition_steps": steps, "fleet": fleet, "floor": floor,
            "per_consumer": per_member}


def rows(result: dict[str, Any]) -> list[Row]:
    fleet, floor, n = result["fleet"], result["floor"], result["hubs"]
    per_hub = len(result["transition_steps"])
    ok_count = fleet["events"] == per_hub * n and fleet["journaled"] == fleet["events"]
    lost_ok = fleet["lost"] <= GOAL_LOST and fleet["outbox_pending"] == 0 and ok_count
    detail = dict(result)
    return [
        Row(key="fleet_lost", name=f"Fleet of {n:,} hubs: lost alerts", unit="alerts",
            figure=float(fleet["lost"]), floor=float(floor["lost"]), goal="0 lost",
            passed=lost_ok, ratio_kind="figure/floor",
            floor_label="the same fleet of bare paho clients publishing the same events",
            note=f"{fleet['events']:,} alert events from {fleet['hubs']:,} hubs in "
            f"{result['processes']} processes over {fleet['fed_s']:.0f} s, shared subscription "
            f"over {result['consumers']} consumers ({result['per_consumer']} messages each, "
            f"floor included); outboxes left {fleet['outbox_pending']}",
            detail=detail),
        Row(key="fleet_p99", name=f"Fleet of {n:,} hubs: alert latency p99", unit="ms",
            figure=fleet["p99_ms"], floor=floor["p99_ms"], goal="reported", passed=None,
            note=f"p50 {fleet['p50_ms']:.1f} ms (floor {floor['p50_ms']:.1f} ms), max "
            f"{fleet['max_ms']:.1f} ms; inside the hub (the on_payload call: rules, journal + "
            f"outbox commit with fsync, publish) p50 {fleet['inside_p50_ms']:.1f} ms, p99 "
            f"{fleet['inside_p99_ms']:.1f} ms: all {n:,} hubs' fsyncs share one disk and "
            f"two cores here, where each real hub has its own", detail={}),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--hubs", type=int, default=None)
    parser.add_argument("--processes", type=int, default=None)
    parser.add_argument("--consumers", type=int, default=2)
    parser.add_argument("--worker", choices=["hub", "floor"], help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--steps", default="", help=argparse.SUPPRESS)
    parser.add_argument("--interval", type=float, default=INTERVAL_S,
                        help="real seconds between a hub's readings")
    parser.add_argument("--spread", type=float, default=None,
                        help="hubs start at random offsets within this many seconds")
    args = parser.parse_args(argv)
    if args.worker == "hub":
        args.workdir.mkdir(parents=True, exist_ok=True)
        quiet_logging(args.workdir / f"hubs-{args.first}.log")
        out = asyncio.run(hub_worker(args.first, args.count, args.port, args.workdir,
                                     args.seed, args.interval, args.spread))
        print(json.dumps(out), flush=True)
        return 0
    if args.worker == "floor":
        steps = [int(s) for s in args.steps.split(",") if s]
        out = asyncio.run(floor_worker(args.first, args.count, args.port, args.seed, steps,
                                       args.interval, args.spread))
        print(json.dumps(out), flush=True)
        return 0
    hubs = args.hubs or (100 if args.quick else 1000)
    processes = args.processes or max(1, min(4, hubs // 100))
    interval = 0.05 if args.quick and args.interval == INTERVAL_S else args.interval
    spread = args.spread if args.spread is not None else (1.0 if args.quick else SPREAD_S)
    pace = (interval, spread)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="crs-bench-fleet-") as tmp:
        result = measure(hubs, processes, args.consumers, Path(tmp), pace)
    emit_rows(rows(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
