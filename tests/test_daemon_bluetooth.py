"""The real daemon pipeline (run_service) with real bleak, the simulated BlueZ and mosquitto."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from daemon.decoding import CHARACTERISTICS
from daemon.demo import SCENARIO_START_S, demo_config
from daemon.hub import Hub, ScaledClock
from daemon.replay import read_recording, replay_rows
from daemon.service import run_service
from daemon.sim.recording import scenario_rows
from daemon.sim.scenarios import (
    HR_STRAP_ADDRESS,
    MALFORMED_HR,
    TEMP_PATCH_ADDRESS,
    build_scenario,
)
from daemon.sim.simulator import SimulatedBluez
from tests.support.bluez import run_with_sim, wait_until
from tests.support.hubs import Subscriber, hub_config
from tests.support.mosquitto import Mosquitto
from tests.support.requirements import require_binary

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parent.parent


def test_malformed_payload_is_counted_and_skipped_and_readings_continue(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config = hub_config(tmp_path / "data", mosquitto.port, devices=[
        {"id": "chest-strap", "profile": "heart_rate_strap", "address": HR_STRAP_ADDRESS},
        {"id": "temp-patch", "profile": "temperature_patch", "address": TEMP_PATCH_ADDRESS},
    ])

    async def body(sim: SimulatedBluez) -> None:
        stop = asyncio.Event()
        hubs: list[Hub] = []
        clock = ScaledClock(datetime.now(UTC), sim.time_scale)
        service = asyncio.create_task(run_service(config, clock=clock, stop=stop,
                                                  tick_interval_s=0.2, on_started=hubs.append))
        await wait_until(lambda: bool(hubs), 15, "the hub to start")
        hub = hubs[0]
        await wait_until(lambda: all(d.connected for d in hub.devices.values()), 15,
                         "both wearables to connect")
        await wait_until(lambda: hub.counters.readings >= 4, 15, "readings from both wearables")
        assert sim.inject(HR_STRAP_ADDRESS, CHARACTERISTICS["heart_rate_measurement"],
                          MALFORMED_HR)
        await wait_until(lambda: hub.counters.decode_errors == 1, 10, "the decode error count")
        after = hub.counters.readings
        await wait_until(lambda: hub.counters.readings >= after + 3, 10, "readings to continue")
        assert not service.done()
        assert hub.devices["chest-strap"].last_reading_at is not None
        assert hub.devices["temp-patch"].last_reading_at is not None
        stop.set()
        assert await service == 0

    with Subscriber(mosquitto.port) as care:
        run_with_sim(body, "steady", time_scale=60, timeout_s=60)
        assert care.wait_for(lambda s: s.on("/device/chest-strap/status"))
        statuses = [m.json() for m in care.on("/device/chest-strap/status")]
    assert any(s["connected"] for s in statuses)
    assert all("AA:BB" not in json.dumps(s) and HR_STRAP_ADDRESS not in json.dumps(s)
               for s in statuses)


def test_demo_json_prints_alerts_and_clears_within_a_minute() -> None:
    require_binary("dbus-daemon")
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "daemon.cli", "demo", "--json"], cwd=REPO,
                            capture_output=True, text=True, timeout=90,
                            env={k: v for k, v in os.environ.items()
                                 if k != "DBUS_SYSTEM_BUS_ADDRESS"})
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-3000:]
    events = [json.loads(line) for line in result.stdout.splitlines()]
    states = [(e["kind"], e["state"]) for e in events]
    fever_raised = next(i for i, e in enumerate(events)
                        if e["kind"] == "fever" and e["state"] == "raised")
    tachy_raised = next(i for i, e in enumerate(events)
                        if e["kind"] == "tachycardia" and e["state"] == "raised")
    fever_alert = events[fever_raised]["alert_id"]
    cleared = {e["alert_id"]: i for i, e in enumerate(events) if e["state"] == "cleared"}
    assert cleared[fever_alert] > fever_raised, states
    assert cleared[events[tachy_raised]["alert_id"]] > tachy_raised, states
    assert "you have a fever" in events[fever_raised]["patient_message"]
    assert "heart rate has stayed high" in events[tachy_raised]["patient_message"]
    assert elapsed < 60, f"demo took {elapsed:.1f} s"

    # The same story replayed through the monitor gives the same clinical alerts, in the same
    # order (escalations and the demo care team's acks depend on wall time, so they are left out).
    def story(evs: list[dict[str, object]]) -> list[tuple[object, object]]:
        return [(e["kind"], e["state"]) for e in evs
                if not e["technical"] and e["state"] in ("raised", "severity_changed", "cleared")]

    config = demo_config(Path("/nonexistent"), 1883, "5")
    lines = scenario_rows(build_scenario("crs-onset"),
                          {HR_STRAP_ADDRESS: "chest-strap", TEMP_PATCH_ADDRESS: "temp-patch"},
                          datetime(2026, 11, 2, tzinfo=UTC), until_s=7200)
    rows, bad = read_recording(config, io.StringIO("\n".join(
        line for i, line in enumerate(lines) if i == 0 or _after_start(line))))
    assert not bad
    replayed = replay_rows(config, rows, tail_s=60)
    assert story([json.loads(e.model_dump_json()) for e in replayed.events]) == story(events)
    assert ("fever", "raised") in story(events) and ("tachycardia", "cleared") in story(events)


def _after_start(line: str) -> bool:
    """Rows from the second the demo's simulated BlueZ starts its scenario."""
    stamp = datetime.fromisoformat(line.split(",", 1)[0])
    return (stamp - datetime(2026, 11, 2, tzinfo=UTC)).total_seconds() >= SCENARIO_START_S
