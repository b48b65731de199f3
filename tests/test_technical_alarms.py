"""Tests for daemon.technical_alarms.TechnicalAlarms: each alarm fires after its delay, once, and
clears on its own condition; restore after a restart; a hypothesis lifecycle property.

Defaults: NO_DATA after 600 s (temperature) / 300 s (heart rate), contact lost 120 s,
disconnected 300 s, battery low <= 20 % (clears at 25 %), outbox > 100 (clears at 50),
disk < 200 MB (clears at 250 MB).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from daemon.alerts import AlertKind, AlertState, AlertTransition, Severity
from daemon.readings import Reading, Vital
from daemon.technical_alarms import TechnicalAlarms, alarm_key
from daemon.thresholds import HubHealthThresholds, StaleDataThresholds, Thresholds

BASE = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
PATCH = "patch-1"
STRAP = "strap-1"
MB = 1_000_000


def at(seconds: float) -> datetime:
    return BASE + timedelta(seconds=seconds)


class Ids:
    def __init__(self, prefix: str = "tech") -> None:
        self.prefix, self.n = prefix, 0

    def __call__(self) -> str:
        self.n += 1
        return f"{self.prefix}-{self.n}"


def alarms(prefix: str = "tech") -> TechnicalAlarms:
    return TechnicalAlarms(StaleDataThresholds(), new_id=Ids(prefix))


def reading(
    s: float,
    vital: Vital = Vital.TEMPERATURE,
    value: float = 37.0,
    device: str = PATCH,
    contact: bool | None = None,
) -> Reading:
    return Reading(device, vital, value, at(s), contact)


def summary(transitions: list[AlertTransition]) -> list[tuple[AlertKind, AlertState, str | None]]:
    return [(t.kind, t.state, t.device) for t in transitions]


# -- NO_DATA --------------------------------------------------------------------------------


def test_a_device_that_never_sends_raises_no_data_after_its_delay() -> None:
    tech = alarms()
    tech.expect(PATCH, {Vital.TEMPERATURE}, at(0))
    assert tech.tick(at(599)) == []
    [raised] = tech.tick(at(600))
    assert (raised.kind, raised.state, raised.severity) == (
        AlertKind.NO_DATA,
        AlertState.RAISED,
        Severity.MEDIUM,  # temperature: the fever would go unseen
    )
    assert (raised.value, raised.unit, raised.threshold) == (600, "s", 600)
    assert (raised.device, raised.observed_at, raised.raised_at) == (PATCH, at(600), at(600))
    assert tech.tick(at(1200)) == []  # raised once, not again every tick
    assert tech.open_alerts() == [raised]


def test_heart_rate_no_data_is_low_and_faster() -> None:
    tech = alarms()
    tech.expect(STRAP, {Vital.HEART_RATE}, at(0))
    assert tech.tick(at(299)) == []
    [raised] = tech.tick(at(300))
    assert (raised.kind, raised.severity, raised.threshold) == (
        AlertKind.NO_DATA,
        Severity.LOW,
        300,
    )


def test_fresh_reading_clears_no_data() -> None:
    tech = alarms()
    tech.expect(PATCH, {Vital.TEMPERATURE}, at(0))
    [raised] = tech.tick(at(600))
    [cleared] = tech.observe(reading(700))
    assert (cleared.state, cleared.alert_id) == (AlertState.CLEARED, raised.alert_id)
    # value: how long the wearable alarm was open; no threshold (every condition must go).
    assert (cleared.value, cleared.threshold, cleared.observed_at) == (100, None, at(700))
    assert tech.open_alerts() == []


def test_regular_readings_keep_no_data_quiet_and_it_fires_once_they_stop() -> None:
    tech = alarms()
    tech.expect(PATCH, {Vital.TEMPERATURE}, at(0))
    for s in range(0, 7201, 60):
        assert tech.observe(reading(s)) == []
        assert tech.tick(at(s + 30)) == []
    assert tech.tick(at(7200 + 599)) == []
    [raised] = tech.tick(at(7200 + 600))
    assert (raised.kind, raised.value) == (AlertKind.NO_DATA, 600)


def test_a_late_delivered_old_reading_does_not_clear() -> None:
    tech = alarms()
    tech.expect(PATCH, {Vital.TEMPERATURE}, at(0))
    tech.tick(at(600))
    assert tech.tick(at(2000)) == []
    assert tech.observe(reading(1000)) == []  # 1000 s old when it arrives
    assert [t.state for t in tech.observe(reading(2000))] == [AlertState.CLEARED]


def test_a_late_reading_does_not_set_freshness_back() -> None:
    tech = alarms()
    tech.expect(PATCH, {Vital.TEMPERATURE}, at(0))
    assert tech.observe(reading(500)) == []
    assert tech.observe(reading(100)) == []
    assert tech.tick(at(1099)) == []  # 599 s after the newest reading
    assert [t.value for t in tech.tick(at(1100))] == [600]


def test_readings_without_contact_are_not_fresh_data() -> None:
    tech = alarms()
    tech.expect(STRAP, {Vital.HEART_RATE}, at(0))
    out: list[AlertTransition] = []
    for s in range(0, 301, 30):
        out += tech.observe(reading(s, Vital.HEART_RATE, 0, STRAP, contact=False))
        out += tech.tick(at(s))
    # One condition, one alarm: contact lost at 120 s escalates to no data at 300 s.
    assert summary(out) == [
        (AlertKind.SENSOR_CONTACT_LOST, AlertState.RAISED, STRAP),
        (AlertKind.NO_DATA, AlertState.SEVERITY_CHANGED, STRAP),
    ]
    assert [t.observed_at for t in out] == [at(120), at(300)]
    assert out[0].alert_id == out[1].alert_id


def test_device_with_two_vitals_raises_severity_when_temperature_goes_stale() -> None:
    tech = alarms()
    tech.expect("watch", {Vital.TEMPERATURE, Vital.HEART_RATE}, at(0))
    [low] = tech.tick(at(300))
    assert (low.severity, low.value, low.threshold) == (Severity.LOW, 300, 300)
    [medium] = tech.tick(at(600))
    assert (medium.state, medium.alert_id) == (AlertState.SEVERITY_CHANGED, low.alert_id)
    assert (medium.severity, medium.value, medium.threshold) == (Severity.MEDIUM, 600, 600)
    # Heart rate comes back, temperature is still missing: stays open, nothing new.
    assert tech.observe(reading(650, Vital.HEART_RATE, 80, "watch")) == []
    assert tech.tick(at(660)) == []
    [cleared] = tech.observe(reading(670, Vital.TEMPERATURE, 37.0, "watch"))
    assert (cleared.state, cleared.alert_id, cleared.severity) == (
        AlertState.CLEARED,
        low.alert_id,
        Severity.MEDIUM,
    )


def test_expect_again_does_not_restart_the_clock_and_vitals_without_a_limit_are_ignored() -> None:
    tech = alarms()
    tech.expect(PATCH, {Vital.TEMPERATURE}, at(0))
    tech.expect(PATCH, {Vital.TEMPERATURE}, at(500))
    tech.expect("oximeter", {Vital.SPO2, Vital.PULSE_RATE}, at(0))
    assert summary(tech.tick(at(600))) == [(AlertKind.NO_DATA, AlertState.RAISED, PATCH)]
    assert tech.tick(at(100_000)) == []


def test_an_unexpected_device_that_sends_is_monitored_from_then_on() -> None:
    tech = alarms()
    assert tech.observe(reading(0, Vital.HEART_RATE, 70, "spare")) == []
    assert tech.tick(at(299)) == []
    assert summary(tech.tick(at(300))) == [(AlertKind.NO_DATA, AlertState.RAISED, "spare")]


# -- sensor contact -------------------------------------------------------------------------


def test_contact_lost_raises_after_its_delay_and_a_reading_with_contact_clears() -> None:
    tech = alarms()
    assert tech.contact_lost(STRAP, at(0)) == []
    assert tech.contact_lost(STRAP, at(60)) == []  # still counting from 0
    assert tech.tick(at(119)) == []
    [raised] = tech.tick(at(120))
    assert (raised.kind, raised.severity, raised.device) == (
        AlertKind.SENSOR_CONTACT_LOST,
        Severity.LOW,
        STRAP,
    )
    assert (raised.value, raised.unit, raised.threshold) == (120, "s", 120)
    assert tech.contact_lost(STRAP, at(150)) == []
    # A battery level says nothing about skin contact.
    assert tech.observe(reading(160, Vital.BATTERY, 80, STRAP)) == []
    [cleared] = tech.observe(reading(200, Vital.HEART_RATE, 72, STRAP, contact=True))
    assert (cleared.state, cleared.alert_id, cleared.value) == (
        AlertState.CLEARED,
        raised.alert_id,
        80,  # open from 120 to 200 s
    )


def test_contact_back_before_the_delay_never_alarms() -> None:
    tech = alarms()
    tech.contact_lost(STRAP, at(0))
    assert tech.observe(reading(60, Vital.HEART_RATE, 72, STRAP, contact=None)) == []
    assert tech.tick(at(359)) == []  # (at 360 the strap's heart rate would be stale)
    assert tech.open_alerts() == []


def test_readings_flagged_without_contact_start_the_contact_timer() -> None:
    tech = alarms()
    assert tech.observe(reading(0, Vital.HEART_RATE, 0, STRAP, contact=False)) == []
    assert tech.observe(reading(60, Vital.HEART_RATE, 0, STRAP, contact=False)) == []
    out = tech.observe(reading(120, Vital.HEART_RATE, 0, STRAP, contact=False))
    assert summary(out) == [(AlertKind.SENSOR_CONTACT_LOST, AlertState.RAISED, STRAP)]


# -- connection, battery, adapter, hub ------------------------------------------------------


def test_disconnected_raises_after_its_delay_and_reconnect_clears() -> None:
    tech = alarms()
    assert tech.connection_changed(PATCH, False, at(0)) == []
    assert tech.connection_changed(PATCH, False, at(200)) == []  # does not restart the timer
    assert tech.tick(at(299)) == []
    [raised] = tech.tick(at(300))
    assert (raised.kind, raised.severity, raised.value, raised.threshold) == (
        AlertKind.DEVICE_DISCONNECTED,
        Severity.LOW,
        300,
        300,
    )
    assert tech.tick(at(360)) == []
    [cleared] = tech.connection_changed(PATCH, True, at(400))
    assert (cleared.state, cleared.alert_id, cleared.value) == (
        AlertState.CLEARED,
        raised.alert_id,
        100,  # open from 300 to 400 s
    )


def test_short_disconnection_never_alarms() -> None:
    tech = alarms()
    tech.connection_changed(PATCH, False, at(0))
    assert tech.connection_changed(PATCH, True, at(299)) == []
    tech.connection_changed(PATCH, False, at(400))
    assert tech.tick(at(699)) == []  # the new outage counts from 400
    assert len(tech.tick(at(700))) == 1


def test_battery_low_with_hysteresis() -> None:
    tech = alarms()
    levels = [50, 21, 20, 19, 21, 19, 24, 20, 25, 24, 19]
    out = [
        t for i, lvl in enumerate(levels) for t in tech.observe(reading(i * 60, Vital.BATTERY, lvl))
    ]
    assert [(t.state, t.value, t.threshold) for t in out] == [
        (AlertState.RAISED, 20, 20),
        (AlertState.CLEARED, 25, 25),
        (AlertState.RAISED, 19, 20),
    ]
    assert all(t.kind is AlertKind.BATTERY_LOW and t.unit == "%" for t in out)
    assert out[0].alert_id == out[1].alert_id != out[2].alert_id
    assert tech.observe(reading(0, Vital.BATTERY, 90)) == []  # older than the last level


def test_adapter_problem_is_immediate_and_medium() -> None:
    tech = alarms()
    assert tech.adapter_problem(None, at(0)) == []
    [raised] = tech.adapter_problem("org.bluez.Error.NotReady", at(10))
    assert (raised.kind, raised.severity, raised.device, raised.observed_at) == (
        AlertKind.ADAPTER_UNAVAILABLE,
        Severity.MEDIUM,
        None,
        at(10),
    )
    assert tech.adapter_problem("hci0 removed", at(20)) == []
    [cleared] = tech.adapter_problem(None, at(30))
    assert (cleared.state, cleared.alert_id) == (AlertState.CLEARED, raised.alert_id)
    assert tech.adapter_problem(None, at(40)) == []


def test_outbox_backlog_and_disk_low_with_hysteresis() -> None:
    tech = alarms()
    assert tech.hub_resources(100, 200 * MB, at(0)) == []
    [backlog] = tech.hub_resources(101, 200 * MB, at(10))
    assert (backlog.kind, backlog.severity, backlog.device) == (
        AlertKind.OUTBOX_BACKLOG,
        Severity.LOW,
        None,
    )
    assert (backlog.value, backlog.unit, backlog.threshold) == (101, "messages", 100)
    assert tech.hub_resources(500, 200 * MB, at(20)) == []
    assert tech.hub_resources(51, 200 * MB, at(30)) == []
    cleared, disk = tech.hub_resources(50, 200 * MB - 1, at(40))
    assert (cleared.kind, cleared.state, cleared.alert_id, cleared.threshold) == (
        AlertKind.OUTBOX_BACKLOG,
        AlertState.CLEARED,
        backlog.alert_id,
        50,
    )
    assert (disk.kind, disk.state, disk.severity) == (
        AlertKind.DISK_LOW,
        AlertState.RAISED,
        Severity.LOW,
    )
    assert (disk.value, disk.unit, disk.threshold) == (200 * MB - 1, "B", 200 * MB)
    assert tech.hub_resources(0, 250 * MB - 1, at(50)) == []
    [disk_cleared] = tech.hub_resources(0, 250 * MB, at(60))
    assert (disk_cleared.state, disk_cleared.alert_id) == (AlertState.CLEARED, disk.alert_id)
    assert tech.open_alerts() == []


def test_hub_thresholds_can_be_configured() -> None:
    hub = HubHealthThresholds(outbox_pending_max=10, outbox_clear_pending=0)
    tech = TechnicalAlarms(StaleDataThresholds(), hub, new_id=Ids())
    assert summary(tech.hub_resources(11, 10**12, at(0))) == [
        (AlertKind.OUTBOX_BACKLOG, AlertState.RAISED, None)
    ]
    assert tech.hub_resources(1, 10**12, at(1)) == []


def test_threshold_additions_are_sourced_defaults_and_validated() -> None:
    t = Thresholds()
    assert (t.hub.outbox_pending_max, t.hub.outbox_clear_pending) == (100, 50)
    assert (t.hub.disk_free_min_bytes, t.hub.disk_clear_margin_bytes) == (200 * MB, 50 * MB)
    assert t.stale.battery_clear_margin_percent == 5
    with pytest.raises(ValidationError):
        HubHealthThresholds(outbox_pending_max=10, outbox_clear_pending=10)
    with pytest.raises(ValidationError):
        HubHealthThresholds(unknown=1)  # type: ignore[call-arg]


# -- restore --------------------------------------------------------------------------------


def open_everything(tech: TechnicalAlarms) -> None:
    tech.expect(PATCH, {Vital.TEMPERATURE}, at(0))
    tech.contact_lost(STRAP, at(0))
    tech.connection_changed("cuff", False, at(0))
    tech.observe(reading(0, Vital.BATTERY, 10, "cuff"))
    tech.adapter_problem("powered off", at(0))
    tech.hub_resources(1000, 0, at(0))
    tech.tick(at(600))


def test_restore_round_trip_does_not_raise_again_and_clears_with_the_same_ids() -> None:
    before = alarms("before")
    open_everything(before)
    journal = before.open_alerts()
    assert {t.kind for t in journal} == {
        AlertKind.NO_DATA,
        AlertKind.SENSOR_CONTACT_LOST,
        AlertKind.DEVICE_DISCONNECTED,
        AlertKind.BATTERY_LOW,
        AlertKind.ADAPTER_UNAVAILABLE,
        AlertKind.OUTBOX_BACKLOG,
        AlertKind.DISK_LOW,
    }
    after = alarms("after")
    after.restore(journal)
    assert after.open_alerts() == journal
    # The restarted hub starts monitoring again: the restored conditions are not raised anew.
    after.expect(PATCH, {Vital.TEMPERATURE}, at(5000))
    after.contact_lost(STRAP, at(5000))
    after.connection_changed("cuff", False, at(5000))
    after.adapter_problem("powered off", at(5000))
    assert after.hub_resources(1000, 0, at(5000)) == []
    assert after.tick(at(9000)) == []
    cleared = after.observe(reading(9000))
    cleared += after.observe(reading(9000, Vital.HEART_RATE, 70, STRAP, contact=True))
    cleared += after.connection_changed("cuff", True, at(9000))
    cleared += after.observe(reading(9000, Vital.BATTERY, 90, "cuff"))
    cleared += after.adapter_problem(None, at(9000))
    cleared += after.hub_resources(0, 10**12, at(9000))
    assert all(t.state is AlertState.CLEARED for t in cleared)
    assert sorted(t.alert_id for t in cleared) == sorted(t.alert_id for t in journal)
    assert after.open_alerts() == []


def test_restore_ignores_clinical_and_cleared_and_refuses_late_calls() -> None:
    fever = AlertTransition(
        "f-1",
        AlertKind.FEVER,
        AlertState.RAISED,
        Severity.HIGH,
        38.5,
        "°C",
        38.0,
        at(0),
        at(0),
        PATCH,
    )
    gone = AlertTransition(
        "n-1", AlertKind.NO_DATA, AlertState.CLEARED, Severity.LOW, 0, "s", 300, at(9), at(0), STRAP
    )
    tech = alarms()
    tech.restore([fever, gone])
    assert tech.open_alerts() == []
    tech.tick(at(0))
    with pytest.raises(RuntimeError):
        tech.restore([])


# -- property: lifecycle under any sequence of inputs ---------------------------------------

OPS = st.one_of(
    st.tuples(st.just("tick")),
    st.tuples(st.just("temp"), st.sampled_from([None, True, False])),
    st.tuples(st.just("hr"), st.sampled_from([None, True, False])),
    st.tuples(st.just("battery"), st.integers(0, 100)),
    st.tuples(st.just("contact_lost"), st.sampled_from([PATCH, STRAP])),
    st.tuples(st.just("connection"), st.sampled_from([PATCH, STRAP]), st.booleans()),
    st.tuples(st.just("adapter"), st.sampled_from([None, "gone"])),
    st.tuples(st.just("hub"), st.integers(0, 200), st.integers(0, 400 * MB)),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 400), OPS), max_size=80))
def test_lifecycle_and_delays_under_any_input_sequence(steps: list[tuple[int, Any]]) -> None:
    stale = StaleDataThresholds()
    tech = TechnicalAlarms(stale, new_id=Ids())
    tech.expect(PATCH, {Vital.TEMPERATURE}, at(0))
    tech.expect(STRAP, {Vital.HEART_RATE}, at(0))
    last_fresh = {PATCH: at(0), STRAP: at(0)}
    limit = {PATCH: stale.temperature_s, STRAP: stale.heart_rate_s}
    latest: dict[str, AlertTransition] = {}
    open_by_key: dict[tuple[str, str | None], str] = {}
    disconnected = {PATCH: False, STRAP: False}
    absent = {PATCH: False, STRAP: False}
    cleared: set[str] = set()
    t = 0
    for dt, op in steps:
        t += dt
        now = at(t)
        match op:
            case ("tick",):
                out = tech.tick(now)
            case ("temp", contact):
                out = tech.observe(reading(t, Vital.TEMPERATURE, 37.0, PATCH, contact))
                absent[PATCH] = contact is False
                if contact is not False:
                    last_fresh[PATCH] = now
            case ("hr", contact):
                out = tech.observe(reading(t, Vital.HEART_RATE, 70, STRAP, contact))
                absent[STRAP] = contact is False
                if contact is not False:
                    last_fresh[STRAP] = now
            case ("battery", level):
                out = tech.observe(reading(t, Vital.BATTERY, level, PATCH))
            case ("contact_lost", device):
                out = tech.contact_lost(device, now)
                absent[device] = True
            case ("connection", device, connected):
                out = tech.connection_changed(device, connected, now)
                disconnected[device] = not connected
            case ("adapter", reason):
                out = tech.adapter_problem(reason, now)
            case ("hub", pending, free):
                out = tech.hub_resources(pending, free, now)
            case _:
                raise AssertionError(op)
        for tr in out:
            key = alarm_key(tr)
            assert key is not None
            assert tr.alert_id not in cleared, "transition after CLEARED"
            assert tr.observed_at == now
            if tr.state is AlertState.RAISED:
                assert key not in open_by_key and tr.alert_id not in latest
                if tr.unit == "s":  # time-based alarms only after their delay
                    assert tr.value is not None and tr.threshold is not None
                    assert tr.value >= tr.threshold
                open_by_key[key] = tr.alert_id
            else:
                assert open_by_key.get(key) == tr.alert_id
                previous = latest[tr.alert_id]
                assert tr.severity.rank >= previous.severity.rank
                assert tr.raised_at == previous.raised_at
                if tr.state is AlertState.CLEARED:
                    cleared.add(tr.alert_id)
                    del open_by_key[key]
            latest[tr.alert_id] = tr
        assert {x.alert_id for x in tech.open_alerts()} == set(open_by_key.values())
        # Stale data is never missed once a tick has looked, and fresh data clears the one
        # wearable alarm once the wearable is also connected and in contact.
        for device in (PATCH, STRAP):
            stale_now = (now - last_fresh[device]).total_seconds() >= limit[device]
            wearable_open = ("wearable", device) in open_by_key
            if op == ("tick",) and stale_now:
                assert wearable_open
            if last_fresh[device] == now and not disconnected[device] and not absent[device]:
                assert not wearable_open
