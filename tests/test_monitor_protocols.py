"""Issue 13 through the pure monitor: payload bytes in, AlertEvent out (docs/protocols.md §6)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from daemon.alerts import AlertKind, AlertState, Severity
from daemon.decoding import CHARACTERISTICS
from daemon.encoding import encode_blood_pressure, encode_plx_continuous, encode_temperature
from daemon.monitor import (
    BrokerLink,
    GattPayload,
    ManualReading,
    Monitor,
    Start,
    TherapyEvent,
    Tick,
)
from daemon.payloads import AlertEvent, Tier
from daemon.profiles import load_profiles
from daemon.readings import Reading, Vital
from daemon.therapy import due_between
from tests.support.hubs import T0, hub_config

PLX = CHARACTERISTICS["plx_continuous"]
BP = CHARACTERISTICS["blood_pressure_measurement"]
TEMP = CHARACTERISTICS["temperature_measurement"]
PROFILES = load_profiles()
ERRATIC_SIGNAL = 1 << 6  # PLX Device and Sensor Status: how an oximeter reports motion
DEVICES = [
    {"id": "oximeter", "profile": "pulse_oximeter", "address": "AA:BB:CC:DD:EE:03"},
    {"id": "bp-cuff", "profile": "blood_pressure_cuff", "address": "AA:BB:CC:DD:EE:04"},
    {"id": "temp-patch", "profile": "temperature_patch", "address": "AA:BB:CC:DD:EE:02"},
]


def monitor(tmp_path: Path, **sections: Any) -> Monitor:
    counter = itertools.count(1)
    sections.setdefault("devices", DEVICES)
    m = Monitor(hub_config(tmp_path, 1883, **sections), PROFILES,
                new_id=lambda: f"id-{next(counter)}")
    m.handle(Start(T0))
    m.handle(BrokerLink(True, T0))
    return m


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def clinical(events: list[AlertEvent]) -> list[AlertEvent]:
    return [e for e in events if not e.technical]


def oximeter(m: Monitor, spo2: float, seconds: range, *, status: int | None = None,
             tick: bool = True) -> list[AlertEvent]:
    events: list[AlertEvent] = []
    for s in seconds:
        payload = encode_plx_continuous(spo2, 80, device_sensor_status=status)
        events += m.handle(GattPayload("oximeter", PLX, payload, at(s))).events
        if tick:
            events += m.handle(Tick(at(s))).events
    return events


def cuff(m: Monitor, systolic: float, s: float) -> list[AlertEvent]:
    payload = encode_blood_pressure(systolic, 60, None, pulse_rate=90)
    return m.handle(GattPayload("bp-cuff", BP, payload, at(s))).events


def test_spo2_89_held_from_payload_bytes_raises_an_emergency_to_the_care_team_at_once(
        tmp_path: Path) -> None:
    m = monitor(tmp_path)
    events = clinical(oximeter(m, 97, range(0, 60)) + oximeter(m, 89, range(60, 200)))
    raised = [e for e in events if e.state is AlertState.RAISED]
    assert [(e.kind, e.severity, e.tier) for e in raised] == [
        (AlertKind.HYPOXIA, Severity.EMERGENCY, Tier.CARE_TEAM)]
    event = raised[0]
    assert event.value == 89
    # confirmed after a minute of readings below 90 %, not at the first one
    assert event.raised_at >= at(120)
    assert "Call 911 now" in event.patient_message
    # care team only: the partial NEWS2 of the latest vitals; the patient's text has no score
    assert event.news2 is not None and event.news2.scores["spo2_scale_1"] == 3
    assert event.news2.aggregate_is_lower_bound and "respiration_rate" in event.news2.missing
    assert "NEWS" not in event.patient_message and "score" not in event.patient_message
    assert any(a.kind is AlertKind.HYPOXIA for a in m.snapshot().open)


def test_motion_flagged_spo2_85_does_not_raise(tmp_path: Path) -> None:
    m = monitor(tmp_path)
    events = oximeter(m, 97, range(0, 60)) + oximeter(m, 85, range(60, 400),
                                                      status=ERRATIC_SIGNAL)
    assert not [e for e in clinical(events) if e.kind in (AlertKind.HYPOXIA,
                                                           AlertKind.FEVER_HYPOXIA)]
    assert m.counters.no_readings == 340  # each flagged payload voided, counted


@pytest.mark.parametrize(("baseline", "raises"), [(120, True), (95, False)])
def test_sbp_88_raises_only_10_below_the_configured_baseline(
        tmp_path: Path, baseline: float, raises: bool) -> None:
    m = monitor(tmp_path, thresholds={"emergency": {"sbp_baseline_mmhg": baseline}})
    events = clinical(cuff(m, 88, 10))
    if raises:
        assert [(e.kind, e.severity, e.tier) for e in events] == [
            (AlertKind.HYPOTENSION, Severity.EMERGENCY, Tier.CARE_TEAM)]
        assert events[0].baseline == {"sbp_baseline_mmhg": baseline, "source": "config",
                                      "readings_used": 0, "readings_needed": 0}
        assert "blood pressure is low (88 mmHg)" in events[0].patient_message
        assert events[0].news2 is not None and events[0].news2.scores["systolic"] == 3
    else:
        assert events == []


def test_fever_then_hypoxia_is_one_combined_alert(tmp_path: Path) -> None:
    m = monitor(tmp_path)
    events: list[AlertEvent] = []
    for s in range(0, 400):
        if s % 30 == 0:
            events += m.handle(GattPayload("temp-patch", TEMP, encode_temperature(38.2),
                                           at(s))).events
        spo2 = 97 if s < 200 else 87
        events += oximeter(m, spo2, range(s, s + 1))
    kinds = [(e.kind, e.state) for e in clinical(events)]
    assert (AlertKind.FEVER, AlertState.RAISED) in kinds
    assert (AlertKind.FEVER_HYPOXIA, AlertState.RAISED) in kinds
    assert AlertKind.HYPOXIA not in {k for k, _ in kinds}  # one condition, one alarm


def test_restore_brings_an_emergency_back_without_raising_it_again(tmp_path: Path) -> None:
    m = monitor(tmp_path, thresholds={"emergency": {"sbp_baseline_mmhg": 120}})
    raised = clinical(cuff(m, 84, 10))
    assert [e.kind for e in raised] == [AlertKind.HYPOTENSION]
    counter = itertools.count(100)
    again = Monitor(m.config, PROFILES, new_id=lambda: f"id-{next(counter)}")
    assert again.restore(raised) == 1
    again.handle(Start(at(20)))
    assert again.open_alert_kinds() == [AlertKind.HYPOTENSION]
    assert clinical(cuff(again, 83, 900)) == []  # still the same open alert
    cleared = clinical(cuff(again, 110, 1800) + cuff(again, 112, 2700))
    assert [(e.alert_id, e.state) for e in cleared] == [(raised[0].alert_id, AlertState.CLEARED)]


def test_warm_relearns_the_systolic_baseline_from_stored_readings(tmp_path: Path) -> None:
    config = hub_config(tmp_path, 1883, devices=DEVICES)
    m = Monitor(config, PROFILES)
    stored = [Reading("bp-cuff", Vital.SYSTOLIC, v, at(-3600 * i)) for i, v in
              enumerate((124, 121, 122))]
    assert m.warm(stored) == (3, 0)
    m.handle(Start(T0))
    assert m.emergency.sbp_baseline().mmhg == 122
    # 105 is not < 90 -> nothing; 88 is < 90 and >= 10 below the learned 122 -> emergency
    assert clinical(cuff(m, 105, 10)) == []
    assert [e.kind for e in clinical(cuff(m, 88, 900))] == [AlertKind.HYPOTENSION]


def trend_monitor(tmp_path: Path) -> Monitor:
    # A short-memory baseline so the test stays small: the engine's own tests cover the numbers.
    return monitor(tmp_path, devices=[DEVICES[2]], thresholds={"temperature_trend": {
        "bin_hours": 24, "min_bin_samples": 30, "min_baseline_samples": 30,
        "baseline_lag_s": 0, "sustain_window_s": 3600, "sustain_min_samples": 20,
        "sustain_min_span_s": 1800, "trend_window_s": 1800, "trend_min_samples": 10}})


def run_trend(m: Monitor) -> list[AlertEvent]:
    """An afebrile patch at ~36.6 °C for 3 h, then a slow rise that stays below 38.0 °C."""
    events: list[AlertEvent] = []
    for minute in range(0, 330):
        core = 36.6 + (0.02 if minute % 2 else -0.02)
        if minute >= 180:
            core += (minute - 180) * 0.008  # +0.48 °C/h, 37.8 °C at the end
        raw = core - 0.5  # the patch profile adds +0.5 °C
        events += m.handle(GattPayload("temp-patch", TEMP, encode_temperature(raw),
                                       at(minute * 60))).events
        events += m.handle(Tick(at(minute * 60))).events
    return events


def test_temperature_trend_notice_is_care_team_only_with_its_baseline(tmp_path: Path) -> None:
    m = trend_monitor(tmp_path)
    events = clinical(run_trend(m))
    notices = [e for e in events if e.kind is AlertKind.TEMPERATURE_TREND]
    assert notices and notices[0].state is AlertState.RAISED
    notice = notices[0]
    assert notice.severity is Severity.LOW and notice.tier is Tier.CARE_TEAM
    assert notice.care_team_only
    assert notice.baseline is not None and notice.baseline["device"] == "temp-patch"
    assert notice.baseline["mean_c"] == pytest.approx(36.6, abs=0.05)
    for word in ("fever", "temperature", "call", "emergency"):
        assert word not in notice.patient_message.lower()
    assert not [e for e in events if e.kind is AlertKind.FEVER]  # below 38.0 throughout
    assert [a.kind for a in m.snapshot().open] == [AlertKind.TEMPERATURE_TREND]


THERAPY = {
    "product_class": "bispecific", "product": "teclistamab", "timezone": "UTC",
    "spot_check": {"enabled": True, "times": ["06:00", "14:00", "22:00"]},
    "doses": [{"at": "2026-11-24T09:00:00", "label": "step-up 1", "kind": "step_up"}],
}


def test_therapy_events_give_a_patient_reminder_and_care_team_window_notices(
        tmp_path: Path) -> None:
    m = monitor(tmp_path, therapy=THERAPY)
    assert m.config.therapy is not None
    items = due_between(m.config.therapy, T0 - timedelta(days=1), T0 + timedelta(days=3))
    # 48 h after step-up 1: start 09:00 on day 1, six reminders (14:00, 22:00, 06:00, ...), end
    assert [(i.purpose.value, i.at.strftime("%d %H:%M")) for i in items] == [
        ("window_start", "24 09:00"), ("spot_check", "24 14:00"), ("spot_check", "24 22:00"),
        ("spot_check", "25 06:00"), ("spot_check", "25 14:00"), ("spot_check", "25 22:00"),
        ("spot_check", "26 06:00"), ("window_end", "26 09:00")]
    start = items[0].window.start
    out = m.handle(TherapyEvent("spot_check", start, items[1].at))
    assert [(e.kind, e.state, e.tier, e.severity) for e in out.events] == [
        (AlertKind.SPOT_CHECK_REMINDER, AlertState.RAISED, Tier.PATIENT, Severity.LOW)]
    assert "take your temperature with a thermometer now" in out.events[0].patient_message
    # a second reminder while one is open adds nothing; a thermometer reading answers it
    assert m.handle(TherapyEvent("spot_check", start, items[2].at)).events == []
    answered = m.handle(ManualReading(37.1, items[2].at + timedelta(minutes=5))).events
    assert [(e.kind, e.state) for e in answered] == [
        (AlertKind.SPOT_CHECK_REMINDER, AlertState.CLEARED)]
    end = m.handle(TherapyEvent("window_end", start, items[-1].at)).events
    assert [(e.kind, e.state, e.tier, e.care_team_only, e.value) for e in end] == [
        (AlertKind.MONITORING_WINDOW_ENDED, AlertState.RAISED, Tier.CARE_TEAM, True, 2.0),
        (AlertKind.MONITORING_WINDOW_ENDED, AlertState.CLEARED, Tier.CARE_TEAM, True, 2.0)]
    assert m.open_alerts() == []  # a notice, not a standing alarm


def test_an_unknown_therapy_purpose_is_counted_not_raised(tmp_path: Path) -> None:
    m = monitor(tmp_path, therapy=THERAPY)
    assert m.handle(TherapyEvent("party", datetime(2026, 11, 24, 9, tzinfo=UTC), at(5))).events == []
    assert m.counters.by_reason["unknown therapy event"] == 1
