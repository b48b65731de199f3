"""The emergency tier: SpO2 < 90 % held, SBP < 90 and >= 10 below baseline, fever combined."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from daemon.alerts import AlertKind, AlertState, AlertTransition, Severity
from daemon.decoding import NoReading, decode, to_readings
from daemon.emergency_rules import EmergencyRules, EmergencyThresholds, SbpBaseline
from daemon.encoding import encode_blood_pressure, encode_plx_continuous, encode_plx_spot_check
from daemon.patient_messages import CareContact, patient_message
from daemon.readings import Reading, Vital

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
CONTACT = CareContact("the CAR-T clinic", "+1 555 0100", "911", fahrenheit_first=False)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def engine(**overrides: object) -> EmergencyRules:
    ids = (f"e{i}" for i in itertools.count())
    return EmergencyRules(EmergencyThresholds.model_validate(overrides), new_id=lambda: next(ids))


def feed_payloads(
    rules: EmergencyRules, payloads: Iterable[tuple[float, str, bytes]]
) -> list[AlertTransition]:
    """Real decoder -> readings -> rules, as the monitor does it."""
    out: list[AlertTransition] = []
    for s, characteristic, data in payloads:
        result = decode(characteristic, data)
        if isinstance(result, NoReading):
            continue
        for reading in to_readings(result, "oximeter", at(s)):
            out.extend(rules.observe(reading, spot_check=characteristic == "plx_spot_check"))
    return out


def spo2(value: float, s: float, device: str = "oximeter", contact: bool | None = None) -> Reading:
    return Reading(device, Vital.SPO2, value, at(s), contact)


def sbp(value: float, s: float) -> Reading:
    return Reading("cuff", Vital.SYSTOLIC, value, at(s))


def observe_all(rules: EmergencyRules, readings: Iterable[Reading]) -> list[AlertTransition]:
    return [tr for r in readings for tr in rules.observe(r)]


# --------------------------------------------------------------------------- hypoxia


def test_spo2_89_held_raises_emergency() -> None:
    rules = engine()
    stream = [(s, "plx_continuous", encode_plx_continuous(89, 96)) for s in range(0, 121, 1)]
    out = feed_payloads(rules, stream)
    assert [(tr.kind, tr.state, tr.severity) for tr in out] == [
        (AlertKind.HYPOXIA, AlertState.RAISED, Severity.EMERGENCY)
    ]
    raised = out[0]
    assert raised.observed_at == at(60)  # 60 s of data, most of it below 90: not the first dip
    assert (raised.value, raised.unit, raised.threshold) == (89.0, "%", 90.0)
    message = patient_message(raised.kind, raised.state, raised.value, CONTACT)
    assert "Call 911 now" in message and "89 %" in message


def test_motion_flagged_spo2_85_does_not_raise() -> None:
    rules = engine()
    erratic_signal = 1 << 6  # PLX Device and Sensor Status: what motion looks like
    stream = [
        (s, "plx_continuous", encode_plx_continuous(85, 120, device_sensor_status=erratic_signal))
        for s in range(0, 600, 1)
    ]
    assert feed_payloads(rules, stream) == []
    assert rules.open_alerts() == []
    # the same values without the flag do raise: the flag, not the value, kept it quiet
    clean = [(600 + s, "plx_continuous", encode_plx_continuous(85, 120)) for s in range(0, 61)]
    assert [tr.kind for tr in feed_payloads(rules, clean)] == [AlertKind.HYPOXIA]


# low perfusion, signal processing irregularity, sensor interference
@pytest.mark.parametrize("flag_bit", [5, 2, 10])
def test_signal_quality_flags_never_raise(flag_bit: int) -> None:
    rules = engine()
    stream = [
        (s, "plx_continuous", encode_plx_continuous(80, 120, device_sensor_status=1 << flag_bit))
        for s in range(0, 300, 2)
    ]
    assert feed_payloads(rules, stream) == []


def test_brief_dips_do_not_raise() -> None:
    rules = engine()
    # unflagged dips of 40 and 55 s below 90 in steady monitoring: under half the 120 s window
    values = [97] * 300 + [86] * 40 + [97] * 300 + [84] * 55 + [97] * 300
    assert observe_all(rules, (spo2(v, i) for i, v in enumerate(values))) == []


def test_hovering_at_89_to_90_still_raises() -> None:
    rules = engine()
    values = [97] * 300 + [89, 89, 90] * 60  # a reading of 90 every 3 s must not reset it
    out = observe_all(rules, (spo2(v, i) for i, v in enumerate(values)))
    # two in three readings low: a majority of the 120 s window after about 90 s
    assert [(tr.kind, tr.observed_at) for tr in out] == [(AlertKind.HYPOXIA, at(300 + 90))]


def test_gap_breaks_the_run() -> None:
    rules = engine()
    readings = [spo2(88, 0), spo2(88, 30), spo2(88, 200), spo2(88, 230)]  # 170 s gap > 120 s
    assert observe_all(rules, readings) == []
    assert [tr.kind for tr in rules.observe(spo2(88, 260))] == [AlertKind.HYPOXIA]


def test_contact_lost_breaks_the_run_and_is_not_used() -> None:
    rules = engine()
    readings = [spo2(85, s) for s in range(0, 50)] + [spo2(70, 50, contact=False)]
    readings += [spo2(85, s) for s in range(51, 100)]  # 49 s after the break
    assert observe_all(rules, readings) == []


def test_one_spot_check_below_90_raises_at_once() -> None:
    rules = engine()
    out = feed_payloads(rules, [(0, "plx_spot_check", encode_plx_spot_check(87, 102))])
    assert [(tr.kind, tr.severity) for tr in out] == [(AlertKind.HYPOXIA, Severity.EMERGENCY)]


def test_spot_check_with_low_perfusion_does_not_raise() -> None:
    rules = engine()
    payload = encode_plx_spot_check(84, 102, device_sensor_status=1 << 5)
    assert feed_payloads(rules, [(0, "plx_spot_check", payload)]) == []


def test_hypoxia_clears_after_hold_above_margin_and_raises_once() -> None:
    rules = engine()
    low = [spo2(87, s) for s in range(0, 61)]
    # 90-91 %: above the threshold but inside the margin, so it neither raises again nor clears
    between = [spo2(90 + (s % 2), 61 + s) for s in range(0, 600)]
    high = [spo2(95, 661 + s) for s in range(0, 301)]
    out = observe_all(rules, low + between + high)
    assert [(tr.state, tr.observed_at) for tr in out] == [
        (AlertState.RAISED, at(60)),
        (AlertState.CLEARED, at(661 + 300)),
    ]
    assert out[0].alert_id == out[1].alert_id
    assert out[1].threshold == 92.0


def test_two_oximeters_raise_one_alert() -> None:
    rules = engine()
    readings = [spo2(86, s, device=d) for s in range(0, 120) for d in ("finger", "wrist")]
    out = observe_all(rules, readings)
    assert [tr.state for tr in out] == [AlertState.RAISED]


# --------------------------------------------------------------------------- hypotension


def cuff(systolic: float, s: float) -> tuple[float, str, bytes]:
    return (s, "blood_pressure_measurement", encode_blood_pressure(systolic, 60, None))


def test_sbp_88_with_baseline_120_raises_emergency() -> None:
    rules = engine(sbp_baseline_mmhg=120)
    out = feed_payloads(rules, [cuff(88, 0)])
    assert [(tr.kind, tr.state, tr.severity) for tr in out] == [
        (AlertKind.HYPOTENSION, AlertState.RAISED, Severity.EMERGENCY)
    ]
    assert (out[0].value, out[0].unit, out[0].threshold) == (88.0, "mmHg", 90.0)
    assert "Call 911 now" in patient_message(out[0].kind, out[0].state, out[0].value, CONTACT)
    assert rules.sbp_baseline() == SbpBaseline(120.0, "config", 0, 0)


def test_sbp_88_with_baseline_95_does_not_raise() -> None:
    rules = engine(sbp_baseline_mmhg=95)
    assert feed_payloads(rules, [cuff(88, 0), cuff(86, 600)]) == []  # drops of 7 and 9 mmHg
    out = feed_payloads(rules, [cuff(85, 1200)])  # a drop of exactly 10
    assert [tr.kind for tr in out] == [AlertKind.HYPOTENSION]
    assert out[0].threshold == 85.0


def test_sbp_91_is_never_hypotension_whatever_the_drop() -> None:
    rules = engine(sbp_baseline_mmhg=160)
    assert observe_all(rules, [sbp(91, 0), sbp(90, 60)]) == []


def test_learned_baseline_is_the_median_of_the_first_readings_and_exposed() -> None:
    rules = engine()
    assert rules.sbp_baseline() == SbpBaseline(None, "learning", 0, 3)
    observe_all(rules, [sbp(118, 0), sbp(140, 3600)])  # 140: one high reading
    assert rules.sbp_baseline() == SbpBaseline(None, "learning", 2, 3)
    observe_all(rules, [sbp(122, 7200)])
    assert rules.sbp_baseline() == SbpBaseline(122.0, "learned", 3, 3)
    assert rules.sbp_baseline().as_payload()["sbp_baseline_mmhg"] == 122.0
    observe_all(rules, [sbp(100, 9000)])  # later readings do not move it
    assert rules.sbp_baseline().mmhg == 122.0
    assert [tr.kind for tr in rules.observe(sbp(88, 10800))] == [AlertKind.HYPOTENSION]


def test_low_readings_are_not_learned_but_still_alert_without_a_baseline() -> None:
    rules = engine()
    out = rules.observe(sbp(84, 0))
    assert [tr.kind for tr in out] == [AlertKind.HYPOTENSION]
    assert rules.sbp_baseline().readings_used == 0


def test_without_baseline_alerting_can_be_switched_off() -> None:
    rules = engine(sbp_alert_without_baseline=False)
    assert rules.observe(sbp(84, 0)) == []


def test_hypotension_clears_after_two_readings_above_the_band() -> None:
    rules = engine(sbp_baseline_mmhg=120)
    out = observe_all(rules, [sbp(85, 0), sbp(93, 600), sbp(100, 1200), sbp(92, 1800)])
    # 93 and 92 are inside the 5 mmHg margin: the 100 between them is one reading, not two
    assert [tr.state for tr in out] == [AlertState.RAISED]
    assert rules.observe(sbp(101, 2400)) == []
    out = observe_all(rules, [sbp(99, 3000)])
    assert [(tr.state, tr.threshold) for tr in out] == [(AlertState.CLEARED, 95.0)]


def test_confirmation_by_two_readings_is_configurable() -> None:
    rules = engine(sbp_baseline_mmhg=120, sbp_confirm_readings=2)
    assert rules.observe(sbp(85, 0)) == []
    assert rules.observe(sbp(110, 300)) == []
    assert rules.observe(sbp(85, 600)) == []
    assert [tr.kind for tr in rules.observe(sbp(86, 900))] == [AlertKind.HYPOTENSION]


# --------------------------------------------------------------------------- with fever


def fever_transition(state: AlertState, s: float) -> AlertTransition:
    return AlertTransition("f1", AlertKind.FEVER, state, Severity.HIGH, 38.4, "°C", 38.0, at(s),
                           at(0), "patch")


def test_fever_then_hypotension_raises_the_combined_kind() -> None:
    rules = engine(sbp_baseline_mmhg=120)
    assert rules.note_fever([fever_transition(AlertState.RAISED, 0)]) == []
    out = rules.observe(sbp(84, 60))
    assert [(tr.kind, tr.state) for tr in out] == [(AlertKind.FEVER_HYPOTENSION, AlertState.RAISED)]
    text = patient_message(out[0].kind, out[0].state, out[0].value, CONTACT)
    assert "fever" in text and "Call 911 now" in text


def test_hypoxia_then_fever_changes_the_same_alert_once() -> None:
    rules = engine()
    raised = observe_all(rules, (spo2(86, s) for s in range(0, 61)))
    assert [tr.kind for tr in raised] == [AlertKind.HYPOXIA]
    out = rules.note_fever([fever_transition(AlertState.RAISED, 100)])
    assert [(tr.kind, tr.state, tr.alert_id) for tr in out] == [
        (AlertKind.FEVER_HYPOXIA, AlertState.SEVERITY_CHANGED, raised[0].alert_id)
    ]
    assert out[0].value == 86.0 and out[0].unit == "%"
    # a later fever severity change changes nothing more, and neither does the fever clearing
    assert rules.note_fever([fever_transition(AlertState.SEVERITY_CHANGED, 200)]) == []
    assert rules.note_fever([fever_transition(AlertState.CLEARED, 300)]) == []
    assert rules.open_alerts()[0].kind is AlertKind.FEVER_HYPOXIA  # latched
    assert not rules.fever_open


def test_other_transitions_do_not_count_as_fever() -> None:
    rules = engine(sbp_baseline_mmhg=120)
    tachy = AlertTransition("t1", AlertKind.TACHYCARDIA, AlertState.RAISED, Severity.MEDIUM,
                            120, "bpm", 100, at(0), at(0), "strap")
    rules.note_fever([tachy])
    assert [tr.kind for tr in rules.observe(sbp(84, 60))] == [AlertKind.HYPOTENSION]


def test_restore_reopens_without_raising_and_keeps_fever_and_baseline() -> None:
    first = engine()
    observe_all(first, [sbp(120, 0), sbp(118, 1), sbp(122, 2)])
    raised = first.observe(sbp(84, 100))
    learned = first.sbp_baseline().mmhg
    second = engine()
    second.restore([*raised, fever_transition(AlertState.RAISED, 50)], learned_sbp_baseline=learned)
    assert second.fever_open
    assert second.sbp_baseline() == SbpBaseline(120.0, "restored", 0, 3)
    assert second.observe(sbp(83, 200)) == []  # still open: no second raise
    out = observe_all(second, [sbp(110, 300), sbp(112, 400)])
    assert [(tr.state, tr.alert_id) for tr in out] == [(AlertState.CLEARED, raised[0].alert_id)]
    with pytest.raises(RuntimeError):
        second.restore([])


def test_thresholds_reject_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ValidationError, match="extra"):
        EmergencyThresholds.model_validate({"spo2_below": 90})
    with pytest.raises(ValidationError):
        EmergencyThresholds(spo2_below_percent=99, spo2_clear_margin_percent=2)
    with pytest.raises(ValidationError, match="spo2_min_span_s"):
        EmergencyThresholds(spo2_window_s=30, spo2_min_span_s=60)


# --------------------------------------------------------------------------- properties


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(90.0, 100.0), min_size=1, max_size=200))
def test_spo2_at_or_above_90_never_raises(values: list[float]) -> None:
    rules = engine()
    assert observe_all(rules, (spo2(v, i) for i, v in enumerate(values))) == []


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(40.0, 200.0), min_size=1, max_size=60),
    st.none() | st.floats(80.0, 180.0),
)
def test_hypotension_only_on_both_criteria_and_lifecycle_alternates(
    values: list[float], baseline: float | None
) -> None:
    rules = engine(sbp_baseline_mmhg=baseline)
    states: list[AlertState] = []
    for i, v in enumerate(values):
        before = rules.sbp_baseline().mmhg
        for tr in rules.observe(sbp(v, i * 600.0)):
            states.append(tr.state)
            if tr.state is AlertState.RAISED:
                assert v < 90.0
                assert before is None or v <= before - 10.0
    # raised, cleared, raised, ... : never two raises in a row
    assert all(a != b for a, b in itertools.pairwise(states))
    assert states[:1] in ([], [AlertState.RAISED])


def test_warm_baseline_from_stored_readings_raises_nothing() -> None:
    rules = engine()
    warmed = rules.warm_sbp_baseline([85.0, 119.0, 121.0, 130.0])  # 85 is never learned
    assert warmed == SbpBaseline(121.0, "learned", 3, 3)
    assert rules.open_alerts() == []
    assert rules.observe(sbp(112, 0)) == []  # 9 below: not yet
    assert [tr.kind for tr in rules.observe(sbp(89, 60))] == [AlertKind.HYPOTENSION]
    with pytest.raises(RuntimeError):
        rules.warm_sbp_baseline([120.0])


@pytest.mark.parametrize(
    ("characteristic", "device_spot_check", "expected"),
    [
        ("plx_spot_check", False, True),  # a continuous oximeter's optional spot-check
        ("plx_continuous", False, False),
        (None, True, True),  # pulse_oximeter_spot_check: no sample interval
        (None, False, False),
    ],
)
def test_spo2_spot_check(characteristic: str | None, device_spot_check: bool,
                         expected: bool) -> None:
    from daemon.emergency_rules import spo2_spot_check

    assert spo2_spot_check(characteristic, device_spot_check) is expected


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(80, 99), st.integers(1, 90)), min_size=1, max_size=40))
def test_hypoxia_raises_only_on_a_low_majority_and_alternates(
    segments: list[tuple[int, int]]
) -> None:
    """Random runs of SpO2 values at 1 Hz: every raise has the latest value and most of the
    last 120 s below 90 %, and the lifecycle is raised, cleared, raised, ..."""
    rules = engine()
    history: list[tuple[int, float]] = []
    states: list[AlertState] = []
    t = 0
    for value, seconds in segments:
        for _ in range(seconds):
            history.append((t, value))
            for tr in rules.observe(spo2(value, t)):
                states.append(tr.state)
                if tr.state is AlertState.RAISED:
                    window = [v for s, v in history if s > t - 120]
                    assert value < 90 and sum(v < 90 for v in window) > len(window) / 2
            t += 1
    assert all(a != b for a, b in itertools.pairwise(states))
    assert states[:1] in ([], [AlertState.RAISED])
