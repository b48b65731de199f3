"""The pure monitor: payload in, alert event out. No broker, no D-Bus, no clock."""

from __future__ import annotations

import itertools
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from daemon.alerts import AlertKind, AlertState, Severity
from daemon.decoding import CHARACTERISTICS
from daemon.encoding import encode_heart_rate, encode_temperature
from daemon.monitor import (
    Acknowledgement,
    BrokerLink,
    ConnectionChange,
    GattPayload,
    HubFault,
    Monitor,
    MonitorOutput,
    Start,
    SymptomReport,
    Tick,
)
from daemon.payloads import AlertEvent, Tier
from daemon.profiles import load_profiles
from tests.support.hubs import T0, hub_config

TEMP = CHARACTERISTICS["temperature_measurement"]
HR = CHARACTERISTICS["heart_rate_measurement"]
PROFILES = load_profiles()


def monitor(tmp_path: Path, prefix: str = "id", **sections: Any) -> Monitor:
    counter = itertools.count(1)
    return Monitor(hub_config(tmp_path, 1883, **sections), PROFILES,
                   new_id=lambda: f"{prefix}-{next(counter)}")


def run_fever(m: Monitor, *, step_s: int = 30, until_s: int = 900, celsius: float = 38.6,
              wall_shift: timedelta = timedelta(0), shift_from_s: int = 0,
              with_mono: bool = False) -> list[AlertEvent]:
    """Patch payloads every ``step_s`` (36.9 °C skin... raised to core by the profile offset) and
    a tick every second; the wall clock jumps by ``wall_shift`` at ``shift_from_s``."""
    events: list[AlertEvent] = []

    def wall(s: int) -> Any:
        return T0 + timedelta(seconds=s) + (wall_shift if s >= shift_from_s else timedelta(0))

    def mono(s: int) -> float | None:
        return 1000.0 + s if with_mono else None

    events += m.handle(Start(wall(0), mono(0))).events
    events += m.handle(BrokerLink(True, wall(0), mono(0))).events
    for s in range(until_s + 1):
        if s % step_s == 0:
            payload = encode_temperature(celsius - 0.5)  # the patch profile adds +0.5 °C
            events += m.handle(GattPayload("temp-patch", TEMP, payload, wall(s), mono(s))).events
        events += m.handle(Tick(wall(s), mono(s))).events
    return events


def clinical(events: list[AlertEvent]) -> list[AlertEvent]:
    return [e for e in events if not e.technical]


def test_a_fever_from_patch_payloads_raises_one_alert_with_a_patient_message(
        tmp_path: Path) -> None:
    events = clinical(run_fever(monitor(tmp_path)))
    assert [(e.kind, e.state) for e in events] == [(AlertKind.FEVER, AlertState.RAISED)]
    fever = events[0]
    assert fever.tier is Tier.PATIENT
    assert fever.value == pytest.approx(38.6, abs=0.05)
    assert "you have a fever" in fever.patient_message
    assert "+1 555 0100" in fever.patient_message
    # confirmed on the second reading 60 s apart (confirm_min_span_s), not the first
    assert fever.raised_at == T0 + timedelta(seconds=60)


def test_escalation_moves_up_a_tier_and_an_ack_stops_it(tmp_path: Path) -> None:
    m = monitor(tmp_path, escalation={"enabled": True, "repeat_min": {"high": 2}})
    events = clinical(run_fever(m, until_s=400))
    assert [(e.state, e.tier) for e in events] == [
        (AlertState.RAISED, Tier.PATIENT),
        (AlertState.ESCALATED, Tier.CAREGIVER),  # 120 s after the raise at 60 s
        (AlertState.ESCALATED, Tier.CARE_TEAM),
    ]
    alert_id = events[0].alert_id
    out = m.handle(Acknowledgement(alert_id, "nurse-7", T0 + timedelta(seconds=401)))
    assert out.ack is not None and out.ack.accepted
    assert [(e.state, e.acknowledged_by) for e in out.events] == [
        (AlertState.ACKNOWLEDGED, "nurse-7")]
    later = [m.handle(Tick(T0 + timedelta(seconds=s))) for s in range(402, 1200)]
    assert not [e for o in later for e in o.events if e.state is AlertState.ESCALATED]
    snapshot = m.snapshot()
    assert [(a.alert_id, a.acknowledged_by) for a in snapshot.open
            if not a.kind.is_technical] == [(alert_id, "nurse-7")]


def test_an_ack_for_an_unknown_alert_is_refused_and_counted(tmp_path: Path) -> None:
    m = monitor(tmp_path)
    m.handle(Start(T0))
    out = m.handle(Acknowledgement("no-such-alert", "nurse-7", T0))
    assert out.ack is not None and not out.ack.accepted
    assert out.ack.reason == "unknown or closed alert"
    assert out.events == [] and m.counters.acks_rejected == 1


def test_refusal_reasons_stay_bounded_when_a_wearable_sends_garbage(tmp_path: Path) -> None:
    """Decode errors name values from the payload: 5,000 distinct ones must not become 5,000
    counter keys (a faulty wearable at 1 Hz would add 86,400 a day)."""
    m = monitor(tmp_path)
    m.handle(Start(T0))
    for extra in range(1, 5001):
        m.handle(GattPayload("chest-strap", HR, bytes([0, 72]) + bytes(extra), T0))
    reasons = m.counters.by_reason
    assert m.counters.decode_errors == 5000 and sum(reasons.values()) == 5000
    assert len(reasons) <= 65
    assert reasons["1 trailing byte: payload is 3 bytes, flags describe 2"] == 1  # named
    assert reasons["other reasons"] >= 5000 - 64
    m.handle(GattPayload("chest-strap", HR, b"\x00\x48\x00", T0))  # a named one, again
    assert reasons["1 trailing byte: payload is 3 bytes, flags describe 2"] == 2


def test_a_malformed_payload_is_counted_and_skipped(tmp_path: Path) -> None:
    m = monitor(tmp_path)
    m.handle(Start(T0))
    out = m.handle(GattPayload("chest-strap", HR, b"\x01\x48", T0))  # 16-bit flag, one byte
    assert not out and m.counters.decode_errors == 1
    good = m.handle(GattPayload("chest-strap", HR, encode_heart_rate(72), T0))
    assert [r.value for r in good.readings] == [72.0]


def test_a_backward_clock_step_does_not_delay_a_fever(tmp_path: Path) -> None:
    """Issue 14: a Pi without an RTC steps its clock back 2 h when NTP catches up. On monotonic
    rule time the fever still confirms 60 s after it starts, and is stamped with the corrected
    (new) wall time."""
    step = timedelta(hours=-2)
    events = clinical(run_fever(monitor(tmp_path), wall_shift=step, shift_from_s=0 + 1,
                                with_mono=True))
    assert [(e.kind, e.state) for e in events] == [(AlertKind.FEVER, AlertState.RAISED)]
    assert events[0].event_at == T0 + timedelta(seconds=60) + step


def test_without_monotonic_time_a_backward_step_would_delay_the_fever(tmp_path: Path) -> None:
    """The same step on wall time alone: readings look older than the last one and are ignored,
    which is why the daemon passes the monotonic clock (the control for the test above)."""
    events = clinical(run_fever(monitor(tmp_path), wall_shift=timedelta(hours=-2),
                                shift_from_s=1))
    assert events == []


def test_a_forward_clock_step_is_not_a_gap(tmp_path: Path) -> None:
    m = monitor(tmp_path)
    events = run_fever(m, celsius=36.9, wall_shift=timedelta(days=1), shift_from_s=300,
                       with_mono=True, until_s=900)
    technical = [e for e in events if e.technical and e.state is AlertState.RAISED]
    assert [e.kind for e in technical] == [AlertKind.NO_DATA]  # the strap never sent: real
    assert technical[0].device == "chest-strap"


def test_restore_keeps_an_open_alert_without_raising_it_again(tmp_path: Path) -> None:
    first = monitor(tmp_path)
    events = clinical(run_fever(first))
    second = monitor(tmp_path, prefix="restarted")
    assert second.restore(events) == 1
    again = clinical(run_fever(second))
    assert again == []
    assert [a.alert_id for a in second.open_alerts()
            if not a.transition.kind.is_technical] == [events[0].alert_id]


def test_a_hub_fault_is_one_technical_alarm_until_it_ends(tmp_path: Path) -> None:
    m = monitor(tmp_path)
    m.handle(Start(T0))
    raised = m.handle(HubFault("job tick keeps failing", T0)).events
    assert [(e.kind, e.state, e.technical) for e in raised] == [
        (AlertKind.HUB_FAULT, AlertState.RAISED, True)]
    assert m.handle(HubFault("job tick keeps failing", T0)).events == []
    cleared = m.handle(HubFault(None, T0 + timedelta(seconds=5))).events
    assert [(e.kind, e.state) for e in cleared] == [(AlertKind.HUB_FAULT, AlertState.CLEARED)]


def test_connection_changes_give_device_status_without_a_mac(tmp_path: Path) -> None:
    m = monitor(tmp_path)
    m.handle(Start(T0))
    out: MonitorOutput = m.handle(ConnectionChange("chest-strap", True, T0))
    assert [(d.device, d.connected) for d in out.devices] == [("chest-strap", True)]
    assert "AA:BB" not in out.devices[0].model_dump_json()


def test_a_symptom_report_goes_to_the_care_team_at_once_and_worsens_to_emergency(
        tmp_path: Path) -> None:
    m = monitor(tmp_path)
    m.handle(Start(T0))
    first = m.handle(SymptomReport("chills", T0)).events
    assert [(e.kind, e.state, e.severity, e.tier) for e in first] == [
        (AlertKind.SYMPTOM_REPORTED, AlertState.RAISED, Severity.HIGH, Tier.CARE_TEAM)]
    assert first[0].patient_message.startswith("You reported: Chills or shaking. The hub has told")
    assert "Call the CAR-T team now at +1 555 0100" in first[0].patient_message
    worse = m.handle(SymptomReport("trouble_breathing", T0 + timedelta(minutes=5))).events
    assert [(e.state, e.severity, e.alert_id) for e in worse] == [
        (AlertState.SEVERITY_CHANGED, Severity.EMERGENCY, first[0].alert_id)]
    assert "Call 911 now" in worse[0].patient_message
    assert not m.handle(SymptomReport("no_such_symptom", T0)).events
    assert m.counters.by_reason["unknown symptom"] == 1
    assert not clinical(m.handle(Tick(T0 + timedelta(hours=12))).events)  # held 12 h
    cleared = clinical(m.handle(Tick(T0 + timedelta(hours=12, minutes=5))).events)
    assert [(e.kind, e.state) for e in cleared] == [
        (AlertKind.SYMPTOM_REPORTED, AlertState.CLEARED)]


@pytest.mark.parametrize("step", [timedelta(hours=-2), timedelta(hours=2), timedelta(days=1)],
                         ids=["-2h", "+2h", "+1d"])
def test_a_clock_step_during_a_fever_onset_changes_neither_delay_nor_silence(
        tmp_path: Path, step: timedelta) -> None:
    """Issue 14: the wall clock steps 30 s into a fever onset. The alert comes at its normal
    delay in true (monotonic) time, no technical alarm fakes or hides a gap, and its stamps
    are the corrected wall time."""
    events = run_fever(monitor(tmp_path), wall_shift=step, shift_from_s=30, with_mono=True)
    fever = clinical(events)
    assert [(e.kind, e.state) for e in fever] == [(AlertKind.FEVER, AlertState.RAISED)]
    assert fever[0].event_at == T0 + timedelta(seconds=60) + step
    assert fever[0].raised_at == T0 + timedelta(seconds=60) + step
    technical = {e.kind for e in events if e.technical and e.state is AlertState.RAISED}
    assert technical == {AlertKind.NO_DATA}  # the strap, which never sent (a real gap)
    assert all(e.device == "chest-strap" for e in events if e.technical)
