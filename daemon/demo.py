"""`crs-hub demo`: the whole pipeline on simulated wearables, with no configuration.

Simulated BlueZ (private dbus-daemon) -> real bleak -> the real hub -> a broker (mosquitto when
installed, else the embedded amqtt broker) -> a care-team subscriber that prints each alert.
Scenario time runs ``time_scale`` times faster than real time; the hub's clock runs at the same
rate, so its 10-minute tachycardia window takes seconds here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import socket
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from daemon.access_code import AccessCode, generate_code
from daemon.config import Config, parse_config
from daemon.hub import Hub, ScaledClock
from daemon.service import run_service
from daemon.sim.scenarios import HR_STRAP_ADDRESS, TEMP_PATCH_ADDRESS, build_scenario
from daemon.sim.simulator import SimulatedBluez

DEMO_TIMEOUT_S = 55.0
# Skip most of the scenario's quiet baseline so the story fits in under a minute.
SCENARIO_START_S = 900.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def demo_broker(workdir: Path) -> AsyncIterator[tuple[int, str]]:
    """Yield (port, protocol): mosquitto (MQTT v5) if installed, else amqtt (MQTT 3.1.1)."""
    port = _free_port()
    binary = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/sbin")
    if binary:
        conf = workdir / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
        proc = await asyncio.create_subprocess_exec(
            binary, "-c", str(conf), stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL)
        try:
            await _wait_listening(port)
            yield port, "5"
        finally:
            proc.terminate()
            await proc.wait()
        return
    try:
        from amqtt.broker import Broker
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise SystemExit("crs-hub demo needs mosquitto on the PATH or the 'amqtt' package "
                         "(pip install 'crs-hub[demo]')") from exc
    broker = Broker({"listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
                     "sys_interval": 0, "auth": {"allow-anonymous": True},
                     "topic-check": {"enabled": False}})
    await broker.start()
    try:
        yield port, "3.1.1"
    finally:
        await broker.shutdown()


async def _wait_listening(port: int) -> None:
    for _ in range(200):
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        await asyncio.sleep(0.05)
    raise RuntimeError("the demo broker did not start")


def demo_config(data_dir: Path, port: int, protocol: str, page_port: int = 0) -> Config:
    return parse_config({
        "hub": {"id": "demo-hub", "data_dir": str(data_dir)},
        "patient": {"id": "p-demo", "care_team_name": "the CAR-T clinic",
                    "care_team_phone": "+1 555 0100", "temperature_unit": "F"},
        "devices": [
            {"id": "chest-strap", "profile": "heart_rate_strap", "address": HR_STRAP_ADDRESS},
            {"id": "temp-patch", "profile": "temperature_patch", "address": TEMP_PATCH_ADDRESS},
        ],
        "mqtt": {"host": "127.0.0.1", "port": port, "protocol": protocol, "reconnect_max_s": 1},
        "vitals": {"publish": False},
        # The patient's page, on this machine only (a demo has no business on the home Wi-Fi).
        "status_page": {"enabled": page_port > 0, "host": "127.0.0.1", "port": page_port},
        # The hub's alarm sound, written as WAV files (a demo machine may have no speaker).
        "annunciator": {"wav_dir": str(data_dir.parent / "sounds")},
    })


class CareTeam:
    """Subscribes like a care-team console and collects alert events."""

    def __init__(self, port: int, protocol: str, on_event: Callable[[dict[str, Any]], None]):
        self.events: list[dict[str, Any]] = []
        self.acked: set[str] = set()
        self._on_event = on_event
        self._ready = threading.Event()
        v5 = protocol == "5"
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="demo-care-team",
                                  protocol=MQTTProtocolVersion.MQTTv5 if v5
                                  else MQTTProtocolVersion.MQTTv311)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(
            "crs/v1/+/+/alert/event", qos=1)
        self.client.on_subscribe = lambda *a: self._ready.set()
        self.client.on_message = self._message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def wait_ready(self) -> bool:
        return self._ready.wait(10)

    def _message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            event = json.loads(msg.payload)
        except ValueError:
            return
        self.events.append(event)
        self._on_event(event)
        # A nurse acknowledges once an alert has escalated to the care team, which stops the
        # repeats (a worse condition would need a new acknowledgement).
        if event.get("state") == "escalated" and event.get("tier") == "care_team" and (
            event["alert_id"] not in self.acked
        ):
            self.acked.add(event["alert_id"])
            topic = f"crs/v1/{event['hub_id']}/{event['patient_id']}/alert/ack/nurse-demo"
            ack = {"alert_id": event["alert_id"], "actor": "nurse-demo"}
            client.publish(topic, json.dumps(ack), qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def story_complete(self) -> bool:
        seen = {(e["kind"], e["state"]) for e in self.events}
        fever_done = any(k in {"fever", "high_fever", "fever_tachycardia"} and s == "cleared"
                         for k, s in seen)
        tachy_done = ("tachycardia", "cleared") in seen
        return fever_done and tachy_done


def format_event(event: dict[str, Any], start: datetime) -> str:
    minutes = (datetime.fromisoformat(event["event_at"].replace("Z", "+00:00")) - start)
    stamp = f"+{minutes.total_seconds() / 60:5.1f} min"
    head = (f"[{stamp}] {event['state'].upper():<16} {event['kind']:<18} "
            f"severity={event['severity']:<8} tier={event['tier']}")
    value = event.get("value")
    if value is not None:
        head += f" value={value:g} {event['unit']}"
    return f"{head}\n    patient sees: {event['patient_message']}"


async def run_demo(*, json_output: bool, time_scale: float, verbose: bool) -> int:
    logging.basicConfig(level=logging.INFO if verbose else logging.ERROR,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    start = datetime.now(UTC).replace(microsecond=0)
    clock = ScaledClock(start, time_scale)

    def show(event: dict[str, Any]) -> None:
        line = json.dumps(event, ensure_ascii=False) if json_output else format_event(event, start)
        print(line, flush=True)

    with tempfile.TemporaryDirectory(prefix="crs-hub-demo-") as tmp:
        workdir = Path(tmp)
        if not json_output:
            print(f"crs-hub demo: simulated 'CRS onset' at {time_scale:g}x speed "
                  "(scenario minutes shown). Not a medical device.", flush=True)
        scenario = build_scenario("crs-onset")
        async with demo_broker(workdir) as (port, protocol), SimulatedBluez(
            scenario, time_scale=time_scale, start_at_s=SCENARIO_START_S
        ):
            care_team = await asyncio.to_thread(CareTeam, port, protocol, show)
            if not await asyncio.to_thread(care_team.wait_ready):
                print("demo: the care-team subscriber could not subscribe", file=sys.stderr)
                return 1
            stop = asyncio.Event()
            page_port = _free_port()
            config = demo_config(workdir / "data", port, protocol, page_port)
            code = generate_code()
            AccessCode.from_code(code).save(config.hub.data_dir)
            print(f"demo: the patient's status page is at http://127.0.0.1:{page_port}/ "
                  f"(access code {code})", file=sys.stderr if json_output else sys.stdout,
                  flush=True)
            started: list[Hub] = []
            service = asyncio.create_task(run_service(
                config, clock=clock, stop=stop, tick_interval_s=0.2, heartbeat_interval_s=5,
                on_started=started.append))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + DEMO_TIMEOUT_S
            while loop.time() < deadline and not care_team.story_complete():
                if service.done():
                    break
                await asyncio.sleep(0.1)
            stop.set()
            await service
            care_team.close()
        complete = care_team.story_complete()
        if not json_output:
            print("demo: complete: fever and tachycardia alerts raised and cleared" if complete
                  else "demo: INCOMPLETE: the expected alerts did not all arrive", flush=True)
        return 0 if complete else 1
