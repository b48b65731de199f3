"""The simulated BlueZ, driven by the real bleak over a private dbus-daemon.

Pure tests check the scenarios' stories (deterministic, shaped to the rules' defaults); the
integration tests check that bleak discovers, connects, subscribes and sees disconnects the
way it would against bluetoothd.
"""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakDBusError, BleakError

from daemon.alerts import AlertKind, AlertState
from daemon.decoding import (
    HeartRateMeasurement,
    NoReading,
    TemperatureMeasurement,
    decode,
    to_readings,
)
from daemon.rules import ClinicalRules
from daemon.sim import (
    HR_STRAP_ADDRESS,
    HR_STRAP_NAME,
    TEMP_PATCH_ADDRESS,
    TEMP_PATCH_NAME,
    SimTiming,
    SimulatedBluez,
    build_scenario,
)
from daemon.sim.scenarios import MALFORMED_HR, ONSET_HEART_RATE, ONSET_TEMPERATURE
from daemon.sim.wearables import (
    BATTERY_LEVEL,
    BODY_SENSOR_LOCATION,
    HEALTH_THERMOMETER_SERVICE,
    HEART_RATE_MEASUREMENT,
    HEART_RATE_SERVICE,
    TEMPERATURE_MEASUREMENT,
    Battery,
    Curve,
    Disconnect,
    Emit,
    LeaveRange,
    Silence,
    TimelineEvent,
)
from daemon.thresholds import Thresholds
from tests.support.bluez import FAST_TIMING, require_dbus_daemon, run_with_sim, wait_until

REPO = Path(__file__).resolve().parents[1]


def _setter(event: asyncio.Event) -> Callable[[BleakClient], None]:
    """A bleak disconnected_callback that sets ``event``."""
    return lambda _client: event.set()


def _events_until(
    scenario_name: str, until_s: float, **params: object
) -> dict[str, list[TimelineEvent]]:
    scenario = build_scenario(scenario_name, **params)
    return {
        w.name: list(itertools.takewhile(lambda ev: ev.at_s <= until_s, w.events()))
        for w in scenario.wearables
    }


# --------------------------------------------------------------------------------------------
# Scenarios (pure)


@pytest.mark.parametrize("name", ["crs-onset", "steady", "flaky"])
def test_scenarios_replay_identically(name: str) -> None:
    first = _events_until(name, 4000.0)
    second = _events_until(name, 4000.0)
    assert first == second
    assert all(len(events) > 50 for events in first.values())
    assert set(first) == {HR_STRAP_NAME, TEMP_PATCH_NAME}


def test_seed_changes_the_noise_but_not_the_schedule() -> None:
    a = _events_until("steady", 600.0, seed=1)[HR_STRAP_NAME]
    b = _events_until("steady", 600.0, seed=2)[HR_STRAP_NAME]
    assert [ev.at_s for ev in a] == [ev.at_s for ev in b]
    assert [ev.action for ev in a] != [ev.action for ev in b]


def test_curve_interpolates_and_holds_its_ends() -> None:
    curve = Curve(((100.0, 36.0), (200.0, 38.0)))
    assert curve.at(0.0) == 36.0
    assert curve.at(150.0) == pytest.approx(37.0)
    assert curve.at(1e6) == 38.0
    with pytest.raises(ValueError):
        Curve(((2.0, 1.0), (1.0, 1.0)))


def test_crs_onset_payloads_decode_to_the_scripted_vitals() -> None:
    events = _events_until("crs-onset", 7200.0)
    hr = [ev for ev in events[HR_STRAP_NAME] if isinstance(ev.action, Emit)]
    temps = [ev for ev in events[TEMP_PATCH_NAME] if isinstance(ev.action, Emit)]
    assert len(hr) == 7200 // 5 + 1 and len(temps) == 7200 // 30 + 1
    for ev in hr:
        assert isinstance(ev.action, Emit)
        m = decode(HEART_RATE_MEASUREMENT, ev.action.data)
        assert isinstance(m, HeartRateMeasurement)
        assert m.sensor_contact is True
        assert m.heart_rate_bpm == ev.action.value
        assert abs(m.heart_rate_bpm - ONSET_HEART_RATE.at(ev.at_s)) <= 2
    for ev in temps:
        assert isinstance(ev.action, Emit)
        m = decode(TEMPERATURE_MEASUREMENT, ev.action.data)
        assert isinstance(m, TemperatureMeasurement)
        assert m.temperature_type == "armpit"
        assert m.temperature_c == pytest.approx(ev.action.value)
        assert abs(m.temperature_c - ONSET_TEMPERATURE.at(ev.at_s)) <= 0.06
    peak = max(float(ev.action.value or 0) for ev in temps if isinstance(ev.action, Emit))
    assert peak > 39.2
    # tachycardic (> 100 bpm) for one unbroken run far longer than the 600 s window
    longest = run_start = 0.0
    for ev in hr:
        assert isinstance(ev.action, Emit)
        if (ev.action.value or 0) <= 100:
            run_start = ev.at_s + 5.0
        longest = max(longest, ev.at_s - run_start)
    assert longest > 2400


@pytest.mark.parametrize("site_offset_c", [0.0, 0.5])
def test_crs_onset_raises_and_clears_fever_and_tachycardia_with_default_rules(
    site_offset_c: float,
) -> None:
    """Replays the story through the real decoder and rules engine with default thresholds."""
    events = _events_until("crs-onset", 9000.0)
    merged = sorted(
        (ev for evs in events.values() for ev in evs if isinstance(ev.action, Emit)),
        key=lambda ev: ev.at_s,
    )
    start = datetime(2025, 1, 1, tzinfo=UTC)
    ids = (f"a{i}" for i in itertools.count())
    rules = ClinicalRules(Thresholds(), new_id=lambda: next(ids))
    seen: list[tuple[float, AlertKind, AlertState]] = []
    for ev in merged:
        assert isinstance(ev.action, Emit)
        when = start + timedelta(seconds=ev.at_s)
        result = decode(ev.action.char_uuid, ev.action.data)
        assert not isinstance(result, NoReading)
        device = "strap" if ev.action.char_uuid == HEART_RATE_MEASUREMENT else "patch"
        for reading in to_readings(result, device, when, site_offset_c):
            for tr in rules.observe(reading):
                seen.append((ev.at_s, tr.kind, tr.state))
    raised = {kind for _, kind, state in seen if state is AlertState.RAISED}
    assert AlertKind.TACHYCARDIA in raised
    kinds = {kind for _, kind, _ in seen}
    assert AlertKind.HIGH_FEVER in kinds or AlertKind.FEVER_TACHYCARDIA in kinds
    first_raise = min(t for t, _, state in seen if state is AlertState.RAISED)
    assert first_raise > 1200  # nothing during the 20 min baseline
    cleared = [t for t, _, state in seen if state is AlertState.CLEARED]
    assert len(cleared) == 2 and max(cleared) < 9000
    assert rules.open_alerts() == []


def test_flaky_scenario_scripts_every_failure_mode() -> None:
    events = _events_until("flaky", 3600.0, disconnect_every_s=120.0)
    strap = [ev.action for ev in events[HR_STRAP_NAME]]
    patch = [ev.action for ev in events[TEMP_PATCH_NAME]]
    assert sum(isinstance(a, Disconnect) for a in strap) == 30
    assert any(isinstance(a, Silence) for a in strap)
    malformed = [a for a in strap if isinstance(a, Emit) and a.data == MALFORMED_HR]
    assert malformed and all(a.value is None for a in malformed)
    with pytest.raises(ValueError):  # the hub's decoder rejects it
        decode(HEART_RATE_MEASUREMENT, MALFORMED_HR)
    batteries = [a.percent for a in strap if isinstance(a, Battery)]
    assert (
        batteries[0] == 40 and batteries[-1] == 30 and batteries == sorted(batteries, reverse=True)
    )
    assert any(isinstance(a, LeaveRange) and a.return_after_s == 300.0 for a in patch)


# --------------------------------------------------------------------------------------------
# The real bleak against the simulator (integration)


@pytest.mark.integration
def test_discover_lists_both_wearables_with_names_and_advertised_services() -> None:
    async def body(sim: SimulatedBluez) -> dict[str, tuple[BLEDevice, AdvertisementData]]:
        return await BleakScanner.discover(timeout=0.4, return_adv=True)

    found = run_with_sim(body, "crs-onset")
    by_name = {adv.local_name: (dev, adv) for dev, adv in found.values()}
    assert set(by_name) == {HR_STRAP_NAME, TEMP_PATCH_NAME}
    strap_dev, strap_adv = by_name[HR_STRAP_NAME]
    patch_dev, patch_adv = by_name[TEMP_PATCH_NAME]
    assert strap_dev.address == HR_STRAP_ADDRESS and patch_dev.address == TEMP_PATCH_ADDRESS
    assert strap_adv.service_uuids == [HEART_RATE_SERVICE]
    assert patch_adv.service_uuids == [HEALTH_THERMOMETER_SERVICE]
    assert strap_adv.manufacturer_data == {0x006B: b"\x33\x1e\x33\x4a"}
    assert -100 < strap_adv.rssi < -30


@pytest.mark.integration
def test_find_device_by_filter_and_by_address() -> None:
    async def body(
        sim: SimulatedBluez,
    ) -> tuple[BLEDevice | None, BLEDevice | None, BLEDevice | None]:
        by_service = await BleakScanner.find_device_by_filter(
            lambda d, adv: HEALTH_THERMOMETER_SERVICE in adv.service_uuids, timeout=3.0
        )
        by_address = await BleakScanner.find_device_by_address(HR_STRAP_ADDRESS, timeout=3.0)
        absent = await BleakScanner.find_device_by_address("F0:0D:00:00:00:00", timeout=0.3)
        return by_service, by_address, absent

    by_service, by_address, absent = run_with_sim(body)
    assert by_service is not None and by_service.name == TEMP_PATCH_NAME
    assert by_address is not None and by_address.name == HR_STRAP_NAME
    assert absent is None


@pytest.mark.integration
def test_heart_rate_notifications_carry_the_scenario_bytes() -> None:
    async def body(sim: SimulatedBluez) -> tuple[list[bytes], list[bytes], set[bytes]]:
        device = await BleakScanner.find_device_by_address(HR_STRAP_ADDRESS, timeout=3.0)
        assert device is not None
        received: list[bytes] = []
        async with BleakClient(device, timeout=10.0) as client:
            services = {s.uuid for s in client.services}
            assert HEART_RATE_SERVICE in services
            await client.start_notify(
                HEART_RATE_MEASUREMENT, lambda _c, data: received.append(bytes(data))
            )
            await wait_until(lambda: len(received) >= 8, 5.0, "8 heart-rate notifications")
            await client.stop_notify(HEART_RATE_MEASUREMENT)
        delivered = [d.data for d in sim.delivered(HR_STRAP_ADDRESS, HEART_RATE_MEASUREMENT)]
        until = sim.now_s() + 60
        scripted = {
            ev.action.data
            for ev in itertools.takewhile(
                lambda ev: ev.at_s <= until, sim.scenario.wearable(HR_STRAP_NAME).events()
            )
            if isinstance(ev.action, Emit)
        }
        return received, delivered, scripted

    received, delivered, scripted = run_with_sim(body, "crs-onset", time_scale=120.0)
    assert received == delivered[: len(received)]
    assert set(received) <= scripted
    for data in received:
        m = decode(HEART_RATE_MEASUREMENT, data)
        assert isinstance(m, HeartRateMeasurement) and 60 <= m.heart_rate_bpm <= 90


@pytest.mark.integration
def test_acquire_notify_is_never_offered_so_bleak_uses_start_notify() -> None:
    """bleak 3.x uses AcquireNotify only when asked (use_start_notify=False) AND the
    characteristic exposes NotifyAcquired; it has no fallback if AcquireNotify then fails.
    The simulator omits NotifyAcquired, so even that request ends up on StartNotify."""

    async def body(sim: SimulatedBluez) -> tuple[dict[str, object], int]:
        device = await BleakScanner.find_device_by_address(HR_STRAP_ADDRESS, timeout=3.0)
        assert device is not None
        received: list[bytes] = []
        async with BleakClient(device, timeout=10.0) as client:
            char = client.services.get_characteristic(HEART_RATE_MEASUREMENT)
            assert char is not None
            props = dict(char.obj[1])
            await client.start_notify(
                char, lambda _c, d: received.append(bytes(d)), bluez={"use_start_notify": False}
            )
            await wait_until(lambda: len(received) >= 2, 3.0, "notifications")
        return props, sim.counters(HR_STRAP_ADDRESS).start_notify_calls

    props, start_notify_calls = run_with_sim(body, time_scale=300.0)
    assert "NotifyAcquired" not in props and props["Flags"] == ["notify"]
    assert start_notify_calls == 1


@pytest.mark.integration
def test_temperature_indications_arrive_and_battery_reads() -> None:
    async def body(sim: SimulatedBluez) -> tuple[list[bytes], list[str], bytes, int]:
        device = await BleakScanner.find_device_by_address(TEMP_PATCH_ADDRESS, timeout=3.0)
        assert device is not None
        received: list[bytes] = []
        async with BleakClient(device, timeout=10.0) as client:
            char = client.services.get_characteristic(TEMPERATURE_MEASUREMENT)
            assert char is not None
            await client.start_notify(char, lambda _c, data: received.append(bytes(data)))
            await wait_until(lambda: len(received) >= 3, 5.0, "3 temperature indications")
            battery = bytes(await client.read_gatt_char(BATTERY_LEVEL))
        return (
            received,
            list(char.properties),
            battery,
            sim.counters(TEMP_PATCH_ADDRESS).indications_sent,
        )

    received, properties, battery, indications = run_with_sim(body, "crs-onset", time_scale=600.0)
    assert properties == ["indicate"]
    assert indications >= len(received) >= 3
    temps = [decode(TEMPERATURE_MEASUREMENT, d) for d in received]
    assert all(
        isinstance(t, TemperatureMeasurement) and 36.3 < t.temperature_c < 37.0 for t in temps
    )
    assert battery == bytes([88])


@pytest.mark.integration
def test_disconnected_callback_fires_on_link_loss_and_leaving_range() -> None:
    async def body(sim: SimulatedBluez) -> list[str]:
        events: list[str] = []
        for how in ("link-loss", "out-of-range"):
            device = await BleakScanner.find_device_by_address(HR_STRAP_ADDRESS, timeout=3.0)
            assert device is not None
            gone = asyncio.Event()
            client = BleakClient(device, disconnected_callback=_setter(gone), timeout=10.0)
            await client.connect()
            assert client.is_connected and sim.is_connected(HR_STRAP_ADDRESS)
            if how == "link-loss":
                assert sim.disconnect(HR_STRAP_ADDRESS)
            else:
                sim.leave_range(HR_STRAP_ADDRESS, return_after_s=30.0)
            await asyncio.wait_for(gone.wait(), 3.0)
            events.append(f"{how}: connected={client.is_connected}")
            await client.disconnect()  # no-op after a disconnect; must not raise
        return events

    assert run_with_sim(body) == ["link-loss: connected=False", "out-of-range: connected=False"]


@pytest.mark.integration
def test_notify_sessions_live_and_die_with_the_clients_bus() -> None:
    """Like bluetoothd, a notify session belongs to the D-Bus connection that asked for it.

    bleak keeps a dropped client's bus open until ``disconnect()`` is called, and while it is
    open bluetoothd re-enables that session on the next connection (the "auto re-subscribe"
    quirk), yet the new BleakClient gets nothing until it calls ``start_notify`` itself. So a
    session must release the old client and subscribe again on every reconnect.
    """

    async def body(sim: SimulatedBluez) -> dict[str, object]:
        device = await BleakScanner.find_device_by_address(HR_STRAP_ADDRESS, timeout=3.0)
        assert device is not None
        counters = sim.counters(HR_STRAP_ADDRESS)
        out: dict[str, object] = {}

        old: list[bytes] = []
        client = BleakClient(device, timeout=10.0)
        await client.connect()
        await client.start_notify(HEART_RATE_MEASUREMENT, lambda _c, d: old.append(bytes(d)))
        await wait_until(lambda: len(old) >= 2, 3.0, "notifications before the drop")
        sim.disconnect(HR_STRAP_ADDRESS)
        await wait_until(lambda: not client.is_connected, 3.0, "bleak to see the drop")

        # old bus still open: bluetoothd resumes its session, the new client hears nothing
        new: list[bytes] = []
        client2 = BleakClient(device, timeout=10.0)
        await client2.connect()
        before = counters.notifications_sent
        await asyncio.sleep(0.2)
        out["resumed_for_old_bus"] = counters.notifications_sent > before
        out["new_client_heard"] = len(new)
        await client2.disconnect()

        # old bus released: nothing is sent until the new client subscribes
        await client.disconnect()
        client3 = BleakClient(device, timeout=10.0)
        await client3.connect()
        before = counters.notifications_sent
        await asyncio.sleep(0.2)
        out["sent_without_subscriber"] = counters.notifications_sent - before
        await client3.start_notify(HEART_RATE_MEASUREMENT, lambda _c, d: new.append(bytes(d)))
        await wait_until(lambda: len(new) >= 2, 3.0, "notifications after subscribing again")
        await client3.disconnect()
        out["connects"] = counters.connects
        return out

    out = run_with_sim(body, time_scale=300.0)
    assert out == {
        "resumed_for_old_bus": True,
        "new_client_heard": 0,
        "sent_without_subscriber": 0,
        "connects": 3,
    }


@pytest.mark.integration
def test_two_scanners_on_one_bus_collide_like_bluetoothd() -> None:
    """bluetoothd allows one discovery session per D-Bus client; bleak shares one bus per loop."""

    async def body(sim: SimulatedBluez) -> str:
        first = BleakScanner()
        second = BleakScanner()
        await first.start()
        try:
            with pytest.raises(BleakDBusError) as err:
                await second.start()
            return err.value.dbus_error
        finally:
            await first.stop()

    assert run_with_sim(body) == "org.bluez.Error.InProgress"


@pytest.mark.integration
def test_adapter_power_off_drops_links_and_refuses_discovery() -> None:
    async def body(sim: SimulatedBluez) -> tuple[bool, str, int]:
        device = await BleakScanner.find_device_by_address(TEMP_PATCH_ADDRESS, timeout=3.0)
        assert device is not None
        gone = asyncio.Event()
        client = BleakClient(device, disconnected_callback=_setter(gone), timeout=10.0)
        await client.connect()
        sim.set_powered(False)
        await asyncio.wait_for(gone.wait(), 3.0)
        with pytest.raises(BleakError) as err:
            await BleakScanner.discover(timeout=0.2)
        sim.set_powered(True)
        await asyncio.sleep(0.1)  # the Powered signal reaches bleak's cache asynchronously
        found = await BleakScanner.discover(timeout=0.3)
        connected = client.is_connected
        await client.disconnect()
        return connected, str(err.value), len(found)

    connected, error, found_after = run_with_sim(body)
    assert connected is False
    assert "powered" in error.lower() or "NotReady" in error
    assert found_after == 2


@pytest.mark.integration
def test_unseen_unpaired_device_expires_and_a_stale_bledevice_cannot_connect() -> None:
    timing = SimTiming(**{**FAST_TIMING.__dict__, "temporary_timeout_s": 0.3})

    async def body(sim: SimulatedBluez) -> tuple[str, BLEDevice | None]:
        device = await BleakScanner.find_device_by_address(HR_STRAP_ADDRESS, timeout=3.0)
        assert device is not None
        sim.leave_range(HR_STRAP_ADDRESS)
        await wait_until(lambda: not sim.state(HR_STRAP_ADDRESS).device.exported, 3.0, "expiry")
        with pytest.raises(BleakError) as err:
            await BleakClient(device, timeout=2.0).connect()
        sim.return_to_range(HR_STRAP_ADDRESS)
        again = await BleakScanner.find_device_by_address(HR_STRAP_ADDRESS, timeout=3.0)
        return str(err.value), again

    error, again = run_with_sim(body, timing=timing)
    assert "not found" in error
    assert again is not None and again.name == HR_STRAP_NAME


@pytest.mark.integration
def test_body_sensor_location_and_malformed_injection() -> None:
    async def body(sim: SimulatedBluez) -> tuple[bytes, list[bytes]]:
        device = await BleakScanner.find_device_by_address(HR_STRAP_ADDRESS, timeout=3.0)
        assert device is not None
        received: list[bytes] = []
        async with BleakClient(device, timeout=10.0) as client:
            location = bytes(await client.read_gatt_char(BODY_SENSOR_LOCATION))
            sim.set_silent(HR_STRAP_ADDRESS, True)  # only the injected payload may arrive
            await client.start_notify(
                HEART_RATE_MEASUREMENT, lambda _c, d: received.append(bytes(d))
            )
            assert sim.inject(HR_STRAP_ADDRESS, HEART_RATE_MEASUREMENT, MALFORMED_HR)
            await wait_until(lambda: bool(received), 3.0, "the injected payload")
            await asyncio.sleep(0.2)
        return location, received

    location, received = run_with_sim(body, time_scale=600.0)
    assert location == b"\x01"  # chest
    assert received == [MALFORMED_HR]


@pytest.mark.integration
def test_python_m_daemon_sim_runs_standalone(monkeypatch: pytest.MonkeyPatch) -> None:
    require_dbus_daemon()
    proc = subprocess.Popen(
        [sys.executable, "-m", "daemon.sim", "--scenario", "steady", "--status-every", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        key, _, address = line.partition("=")
        assert key == "DBUS_SYSTEM_BUS_ADDRESS" and address.startswith("unix:path=")

        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)

        async def scan() -> set[str | None]:
            return {d.name for d in await BleakScanner.discover(timeout=0.4)}

        assert asyncio.run(scan()) == {HR_STRAP_NAME, TEMP_PATCH_NAME}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode == 0
