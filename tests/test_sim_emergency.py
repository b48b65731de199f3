"""The hypoxia and hypotension scenarios: their stories through the real decoder and rules, and
the simulated oximeter and cuff over the real bleak and a private dbus-daemon."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta

import pytest
from bleak import BleakClient, BleakScanner

from daemon.alerts import AlertKind, AlertState, AlertTransition
from daemon.decoding import (
    BloodPressureMeasurement,
    NoReading,
    PlxContinuous,
    decode,
    to_readings,
)
from daemon.emergency_rules import EmergencyRules, EmergencyThresholds
from daemon.profiles import load_profiles, match_profile
from daemon.rules import ClinicalRules
from daemon.sim import (
    BP_CUFF_ADDRESS,
    BP_CUFF_NAME,
    OXIMETER_ADDRESS,
    OXIMETER_NAME,
    TEMP_PATCH_NAME,
    SimulatedBluez,
    build_scenario,
)
from daemon.sim.scenarios import HYPOXIA_MOTION
from daemon.sim.wearables import (
    BLOOD_PRESSURE_MEASUREMENT,
    BLOOD_PRESSURE_SERVICE,
    PLX_CONTINUOUS,
    PLX_FEATURES,
    PULSE_OXIMETER_SERVICE,
    Emit,
    TimelineEvent,
)
from daemon.thresholds import Thresholds
from tests.support.bluez import FAST_TIMING, require_dbus_daemon, wait_until

START = datetime(2026, 12, 1, tzinfo=UTC)
DEVICE_OF = {PLX_CONTINUOUS: "oximeter", BLOOD_PRESSURE_MEASUREMENT: "cuff"}


def _events(name: str, until_s: float) -> dict[str, list[TimelineEvent]]:
    scenario = build_scenario(name)
    return {
        w.name: list(itertools.takewhile(lambda ev: ev.at_s <= until_s, w.events()))
        for w in scenario.wearables
    }


def _replay(name: str) -> tuple[list[tuple[float, AlertTransition]], int, EmergencyRules]:
    """The scenario through decode -> readings -> fever rules + emergency rules, as the monitor
    wires them (fever transitions fed to the emergency engine). Returns transitions and the
    number of payloads the decoder voided."""
    duration = build_scenario(name).duration_s
    assert duration is not None
    events = _events(name, duration)
    merged = sorted(
        (ev for evs in events.values() for ev in evs if isinstance(ev.action, Emit)),
        key=lambda ev: (ev.at_s, ev.order),
    )
    ids = (f"a{i}" for i in itertools.count())
    fever = ClinicalRules(Thresholds(), new_id=lambda: next(ids))
    fever.expect("patch", interval_s=60.0)  # the temperature_patch profile, as the monitor does
    emergency = EmergencyRules(EmergencyThresholds(), new_id=lambda: next(ids))
    seen: list[tuple[float, AlertTransition]] = []
    voided = 0
    for ev in merged:
        assert isinstance(ev.action, Emit)
        result = decode(ev.action.char_uuid, ev.action.data)
        if isinstance(result, NoReading):
            voided += 1
            continue
        device = DEVICE_OF.get(ev.action.char_uuid, "patch")
        offset = 0.5 if device == "patch" else 0.0
        for reading in to_readings(result, device, START + timedelta(seconds=ev.at_s), offset):
            fever_out = fever.observe(reading)
            out = [*fever_out, *emergency.note_fever(fever_out), *emergency.observe(reading)]
            seen.extend((ev.at_s, tr) for tr in out)
    return seen, voided, emergency


def test_scenarios_are_registered_and_replay_identically() -> None:
    for name, wearable in (("hypoxia", OXIMETER_NAME), ("hypotension", BP_CUFF_NAME)):
        first, second = _events(name, 3000.0), _events(name, 3000.0)
        assert first == second
        assert set(first) == {wearable, TEMP_PATCH_NAME}


def test_hypoxia_story_raises_fever_then_fever_hypoxia_and_clears_both() -> None:
    seen, voided, _ = _replay("hypoxia")
    assert voided == sum(int(b - a) for a, b in HYPOXIA_MOTION)  # every motion sample voided
    emergency = [(t, tr.kind, tr.state) for t, tr in seen
                 if tr.kind in (AlertKind.HYPOXIA, AlertKind.FEVER_HYPOXIA)]
    assert [(k, s) for _, k, s in emergency] == [
        (AlertKind.FEVER_HYPOXIA, AlertState.RAISED),  # fever already open: the combined kind
        (AlertKind.FEVER_HYPOXIA, AlertState.CLEARED),
    ]
    raised_at = emergency[0][0]
    assert 2870 < raised_at < 3000  # 60 s after SpO2 went below 90 %, not at the motion dips
    fever_raised = min(t for t, tr in seen if tr.kind is AlertKind.FEVER)
    assert fever_raised < raised_at
    assert sum(1 for _, tr in seen if tr.state is AlertState.CLEARED) == 2


def test_hypotension_story_learns_the_baseline_then_raises_fever_hypotension() -> None:
    seen, voided, engine = _replay("hypotension")
    assert voided == 0
    emergency = [(t, tr) for t, tr in seen
                 if tr.kind in (AlertKind.HYPOTENSION, AlertKind.FEVER_HYPOTENSION)]
    assert [(t, tr.kind, tr.state) for t, tr in emergency] == [
        (4500.0, AlertKind.FEVER_HYPOTENSION, AlertState.RAISED),
        (7200.0, AlertKind.FEVER_HYPOTENSION, AlertState.CLEARED),
    ]
    raised = emergency[0][1]
    assert raised.value is not None and raised.value < 90
    baseline = engine.sbp_baseline()
    assert baseline.source == "learned" and baseline.mmhg is not None
    assert 119 <= baseline.mmhg <= 125  # the first three readings, ~122 mmHg
    assert raised.value <= baseline.mmhg - 10 and raised.threshold == 90.0


def test_simulated_devices_match_their_profiles() -> None:
    profiles = load_profiles()
    cuff = build_scenario("hypotension").wearable(BP_CUFF_NAME)
    assert match_profile(cuff.name, cuff.advertised_uuids, profiles) == profiles[cuff.kind]
    assert cuff.peripheral_spec().paired  # cuffs must be bonded
    oximeter = build_scenario("hypoxia").wearable(OXIMETER_NAME)
    assert oximeter.kind in profiles  # two profiles share 0x1822: the config names the kind


@pytest.mark.integration
def test_oximeter_notifies_and_cuff_indicates_over_real_bleak() -> None:
    require_dbus_daemon()

    async def oximeter(sim: SimulatedBluez) -> tuple[list[bytes], set[str], bytes]:
        device = await BleakScanner.find_device_by_address(OXIMETER_ADDRESS, timeout=3.0)
        assert device is not None
        received: list[bytes] = []
        async with BleakClient(device, timeout=10.0) as client:
            services = {s.uuid for s in client.services}
            features = bytes(await client.read_gatt_char(PLX_FEATURES))
            await client.start_notify(PLX_CONTINUOUS, lambda _c, d: received.append(bytes(d)))
            await wait_until(lambda: len(received) >= 20, 10.0, "20 PLX notifications")
        return received, services, features

    async def cuff(sim: SimulatedBluez) -> tuple[list[bytes], list[str], bool]:
        device = await BleakScanner.find_device_by_address(BP_CUFF_ADDRESS, timeout=3.0)
        assert device is not None
        received: list[bytes] = []
        async with BleakClient(device, timeout=10.0) as client:
            char = client.services.get_characteristic(BLOOD_PRESSURE_MEASUREMENT)
            assert char is not None
            await client.start_notify(char, lambda _c, d: received.append(bytes(d)))
            await wait_until(lambda: len(received) >= 2, 10.0, "2 cuff indications")
            has_service = BLOOD_PRESSURE_SERVICE in {s.uuid for s in client.services}
        return received, list(char.properties), has_service

    async def main() -> tuple[object, ...]:
        # Start inside the desaturation: 20 notifications are 20 scenario seconds.
        async with SimulatedBluez(build_scenario("hypoxia"), time_scale=20.0,
                                  timing=FAST_TIMING, start_at_s=3100.0) as sim:
            plx = await asyncio.wait_for(oximeter(sim), 30.0)
        # Cuff readings every 900 scenario seconds: run fast, from the fall.
        async with SimulatedBluez(build_scenario("hypotension"), time_scale=900.0,
                                  timing=FAST_TIMING, start_at_s=4400.0) as sim:
            bp = await asyncio.wait_for(cuff(sim), 30.0)
        return (*plx, *bp)

    plx_data, services, features, bp_data, bp_props, bp_service = asyncio.run(main())
    assert PULSE_OXIMETER_SERVICE in services
    assert features[:2] == b"\x02\x00"  # device and sensor status supported
    values = [decode(PLX_CONTINUOUS, d) for d in plx_data]
    assert all(isinstance(v, PlxContinuous) and 84 <= v.spo2_percent <= 90 for v in values)
    assert bp_props == ["indicate"]
    readings = [decode(BLOOD_PRESSURE_MEASUREMENT, d) for d in bp_data]
    assert all(isinstance(r, BloodPressureMeasurement) for r in readings)
    first = readings[0]
    assert isinstance(first, BloodPressureMeasurement) and first.systolic_mmhg < 90
    assert bp_service
