"""Unit tests for daemon.rules.ClinicalRules: fever and tachycardia with confirmation,
hysteresis, latching severity, and restore after a restart.

Default thresholds: fever 38.0 / high 39.0 °C, confirm window 300 s, >= 2 samples spanning
>= 60 s, clear margin 0.3 °C held 900 s; tachycardia > 100 bpm for 600 s, max gap 60 s, clear
margin 5 bpm held 300 s. Expected times below are worked out by hand from those numbers.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import pytest

from daemon.alerts import AlertKind, AlertState, AlertTransition, Severity
from daemon.readings import Reading, Vital
from daemon.rules import ClinicalRules
from daemon.thresholds import FeverThresholds, TachycardiaThresholds, Thresholds

BASE = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
PATCH = "patch-1"
STRAP = "strap-1"


def at(seconds: float) -> datetime:
    return BASE + timedelta(seconds=seconds)


def temp(s: float, value: float, device: str = PATCH, contact: bool | None = None) -> Reading:
    return Reading(device, Vital.TEMPERATURE, value, at(s), contact)


def hr(s: float, value: float, device: str = STRAP, contact: bool | None = None) -> Reading:
    return Reading(device, Vital.HEART_RATE, value, at(s), contact)


class Ids:
    """Deterministic id factory: alert-1, alert-2, ..."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> str:
        self.n += 1
        return f"alert-{self.n}"


def journal(
    alert_id: str,
    kind: AlertKind,
    severity: Severity,
    *,
    state: AlertState = AlertState.RAISED,
    value: float = 0.0,
    unit: str = "",
    observed_s: float = 0.0,
    raised_s: float = 0.0,
    device: str | None = None,
) -> AlertTransition:
    """A transition as the hub's journal would hand it back after a restart."""
    return AlertTransition(
        alert_id, kind, state, severity, value, unit, None, at(observed_s), at(raised_s), device
    )


# These tests predate the longer window for tachycardia alone (window_alone_s, 30 min by
# default); they use one 600 s window throughout. tests/test_clinical_rules.py covers the new one.
# Likewise they use the earlier 300 s fever confirmation window (now 120 s, or 2.5 intervals).
SHORT_TACHYCARDIA = Thresholds(fever=FeverThresholds(confirm_window_s=300.0),
                               tachycardia=TachycardiaThresholds(window_alone_s=600.0))


def engine(thresholds: Thresholds | None = None) -> ClinicalRules:
    return ClinicalRules(thresholds or SHORT_TACHYCARDIA, new_id=Ids())


def feed(rules: ClinicalRules, readings: Iterable[Reading]) -> list[AlertTransition]:
    out: list[AlertTransition] = []
    for reading in sorted(readings, key=lambda r: r.observed_at):
        out.extend(rules.observe(reading))
    return out


def every(start: float, stop: float, step: float = 30.0) -> list[float]:
    """Times start, start+step, ... up to and including stop."""
    n = round((stop - start) / step)
    return [start + i * step for i in range(n + 1)]


def states(transitions: Iterable[AlertTransition]) -> list[tuple[AlertKind, AlertState]]:
    return [(t.kind, t.state) for t in transitions]


# -- fever: confirmation --------------------------------------------------------------------


def test_rising_temperature_raises_one_fever_then_high_fever() -> None:
    rules = engine()
    # +0.1 °C every 30 s. The 300 s window holds 11 readings; its low median is the reading
    # five back, so 38.0 (i=10) is the median at i=15 and 39.0 (i=20) at i=25.
    readings = [temp(30 * i, round(37.0 + 0.1 * i, 1)) for i in range(41)]
    out = feed(rules, readings)

    assert states(out) == [
        (AlertKind.FEVER, AlertState.RAISED),
        (AlertKind.HIGH_FEVER, AlertState.SEVERITY_CHANGED),
    ]
    raised, upgraded = out
    assert raised.observed_at == at(450) and raised.raised_at == at(450)
    assert raised.severity is Severity.HIGH
    assert (raised.value, raised.unit, raised.threshold) == (38.0, "°C", 38.0)
    assert raised.device == PATCH
    assert upgraded.alert_id == raised.alert_id == "alert-1"
    assert upgraded.observed_at == at(750) and upgraded.raised_at == at(450)
    assert upgraded.severity is Severity.CRITICAL
    assert (upgraded.value, upgraded.threshold) == (39.0, 39.0)
    assert rules.open_alerts() == [upgraded]


def test_single_artifact_among_normal_readings_never_alarms() -> None:
    rules = engine()
    readings = [temp(s, 37.0) for s in every(0, 3600)]
    readings.append(temp(1215, 40.0))
    assert feed(rules, readings) == []
    assert rules.open_alerts() == []


def test_lone_hot_reading_is_too_few_samples() -> None:
    rules = engine()
    # Readings far apart: each window holds one sample, never the two required.
    assert feed(rules, [temp(s, 40.5) for s in every(0, 3600, 400)]) == []


def test_confirmation_needs_the_minimum_span() -> None:
    rules = engine()
    assert feed(rules, [temp(0, 38.5), temp(10, 38.5), temp(20, 38.5), temp(59, 38.5)]) == []
    out = rules.observe(temp(60, 38.5))
    assert states(out) == [(AlertKind.FEVER, AlertState.RAISED)]
    assert out[0].observed_at == at(60)


def test_confirmation_needs_the_minimum_sample_count() -> None:
    rules = engine(Thresholds(fever=FeverThresholds(confirm_min_samples=4)))
    assert feed(rules, [temp(s, 38.5) for s in every(0, 60)]) == []  # 3 samples, 60 s
    assert states(rules.observe(temp(90, 38.5))) == [(AlertKind.FEVER, AlertState.RAISED)]


def test_threshold_is_inclusive() -> None:
    out = feed(engine(), [temp(0, 38.0), temp(60, 38.0)])
    assert states(out) == [(AlertKind.FEVER, AlertState.RAISED)]


def test_just_below_threshold_never_alarms() -> None:
    assert feed(engine(), [temp(s, 37.99) for s in every(0, 3600)]) == []


def test_temperature_without_contact_is_ignored() -> None:
    rules = engine()
    assert feed(rules, [temp(s, 39.5, contact=False) for s in every(0, 900)]) == []
    out = feed(rules, [temp(s, 39.5, contact=True) for s in every(930, 990)])
    assert states(out) == [(AlertKind.HIGH_FEVER, AlertState.RAISED)]
    assert out[0].observed_at == at(990)


def test_other_vitals_are_ignored() -> None:
    rules = engine()
    assert rules.observe(Reading(PATCH, Vital.SPO2, 70.0, at(0))) == []
    assert rules.observe(Reading(PATCH, Vital.PULSE_RATE, 150.0, at(0))) == []
    assert rules.tick(at(0)) == []
    assert rules.open_alerts() == []


def test_late_readings_are_dropped() -> None:
    rules = engine()
    # Not sorted: 30 s and 40 s arrive after 60 s. Counted, they would make the window at 90 s
    # [38.5, 37.0, 38.5, 38.5, 37.0] with a low median of 38.5 and confirm a fever.
    readings = [temp(0, 38.5), temp(60, 37.0), temp(30, 38.5), temp(40, 38.5), temp(90, 37.0)]
    assert [t for r in readings for t in rules.observe(r)] == []
    heart = (
        [hr(s, 120) for s in every(0, 300)] + [hr(100, 60)] + [hr(s, 120) for s in every(330, 600)]
    )
    out = [t for r in heart for t in rules.observe(r)]  # the late 60 bpm does not break the run
    assert states(out) == [(AlertKind.TACHYCARDIA, AlertState.RAISED)]
    assert out[0].observed_at == at(600)


def test_devices_above_the_band_at_raise_time_must_cool_too() -> None:
    rules = engine()
    # patch-b read 37.9 (above the 37.7 clear band) just before patch-a confirmed, then went
    # silent: it may be the hotter site, so patch-a cooling alone does not clear.
    readings = [temp(0, 37.9, device="patch-b"), temp(30, 37.9, device="patch-b")]
    readings += [temp(s, 38.6, device="patch-a") for s in every(10, 70)]
    # (37.6, not lower: a fall of more than 1.0 °C at once is an implausible fall, never a clear)
    readings += [temp(s, 37.6, device="patch-a") for s in every(100, 3600)]
    out = feed(rules, readings)
    assert states(out) == [(AlertKind.FEVER, AlertState.RAISED)]
    back = feed(rules, [temp(s, 37.0, device="patch-b") for s in every(3630, 4530)])
    assert states(back) == [(AlertKind.FEVER, AlertState.CLEARED)]
    assert back[0].observed_at == at(4530)


def test_a_device_last_seen_long_before_the_raise_does_not_hold_the_alert() -> None:
    rules = engine()
    readings = [temp(0, 37.9, device="spare"), temp(30, 37.9, device="spare")]
    readings += [temp(s, 38.6, device="patch-a") for s in every(1000, 1060)]
    readings += [temp(s, 37.6, device="patch-a") for s in every(1090, 2500)]
    out = feed(rules, readings)
    assert states(out) == [
        (AlertKind.FEVER, AlertState.RAISED),
        (AlertKind.FEVER, AlertState.CLEARED),
    ]


# -- fever: hysteresis ----------------------------------------------------------------------


def raised_fever(rules: ClinicalRules) -> AlertTransition:
    out = feed(rules, [temp(s, 38.5) for s in every(0, 60)])
    assert states(out) == [(AlertKind.FEVER, AlertState.RAISED)]
    return out[0]


def test_fever_clears_only_after_the_hold() -> None:
    rules = engine()
    raised = raised_fever(rules)
    # 38.5 at 0/30/60 s, then 37.5 from 90 s (a quicker fall of more than 1.0 °C is
    # implausible): at 150 s the window holds 3 hot and 3 cool readings and its LOW median is
    # 37.5 < 37.7, so the hold runs from 150 s to 1050 s.
    assert feed(rules, [temp(s, 37.5) for s in every(90, 1020)]) == []
    out = rules.observe(temp(1050, 37.5))
    assert len(out) == 1
    cleared = out[0]
    assert cleared.state is AlertState.CLEARED
    assert cleared.alert_id == raised.alert_id
    assert cleared.kind is AlertKind.FEVER and cleared.severity is Severity.HIGH
    assert cleared.observed_at == at(1050) and cleared.raised_at == at(60)
    assert cleared.value == 37.5
    assert cleared.threshold == pytest.approx(37.7)
    assert rules.open_alerts() == []
    assert feed(rules, [temp(s, 37.5) for s in every(1080, 4000)]) == []


def test_value_inside_the_band_restarts_the_hold() -> None:
    rules = engine()
    raised_fever(rules)
    # An hour at 37.8 °C: below 38.0 but not below 38.0 - 0.3, so never a clear.
    assert feed(rules, [temp(s, 37.8) for s in every(90, 3690)]) == []
    # Then 37.0 from 3720: the median turns cool at 3720 + 150, the hold ends 900 s later.
    assert feed(rules, [temp(s, 37.0) for s in every(3720, 4740)]) == []
    assert states(rules.observe(temp(4770, 37.0))) == [(AlertKind.FEVER, AlertState.CLEARED)]


def test_no_clear_without_readings() -> None:
    rules = engine()
    raised = raised_fever(rules)
    assert rules.tick(at(86_400)) == []
    assert rules.open_alerts() == [raised]
    # One cool reading, silence, one cool reading two hours later: the hold was not observed.
    assert rules.observe(temp(600, 36.8)) == []
    assert rules.observe(temp(7800, 36.8)) == []
    assert rules.open_alerts() == [raised]
    # Readings resume: the window is just the new readings, so the hold counts from 7800.
    assert feed(rules, [temp(s, 36.8) for s in every(7830, 8670)]) == []
    assert states(rules.observe(temp(8700, 36.8))) == [(AlertKind.FEVER, AlertState.CLEARED)]


def test_fever_oscillating_around_threshold_raises_once_and_never_clears() -> None:
    rules = engine()
    readings = [temp(s, 38.1 if i % 2 else 37.9) for i, s in enumerate(every(0, 3 * 3600))]
    out = feed(rules, readings)
    assert states(out) == [(AlertKind.FEVER, AlertState.RAISED)]


def test_a_febrile_device_keeps_the_alert_open_while_another_reads_normal() -> None:
    rules = engine()
    febrile = [temp(s, 38.6, device="patch-a") for s in every(0, 600)]
    detached = [temp(s + 5, 36.0, device="patch-b") for s in every(0, 4 * 3600)]
    out = feed(rules, febrile + detached)
    # Per-device windows: patch-b's 36.0 does not dilute patch-a's fever. patch-a then goes
    # silent while febrile, and four hours of patch-b below the band do not clear it.
    assert states(out) == [(AlertKind.FEVER, AlertState.RAISED)]
    assert out[0].device == "patch-a"
    # patch-a reports again, cool: its own hold clears the alert.
    cool = feed(rules, [temp(s, 37.6, device="patch-a") for s in every(15000, 16200)])
    assert states(cool) == [(AlertKind.FEVER, AlertState.CLEARED)]
    assert cool[0].observed_at == at(15000 + 900)


def test_every_device_that_ran_hot_during_the_alert_must_cool() -> None:
    rules = engine()
    a = [temp(s, 38.6, device="patch-a") for s in every(0, 570)]
    a += [temp(s, 37.6, device="patch-a") for s in every(600, 4500)]  # cool from 750: held 1650
    b = [temp(s + 7, 38.6, device="patch-b") for s in every(300, 3000)]  # joins after the raise
    b += [temp(s + 7, 37.6, device="patch-b") for s in every(3030, 4500)]  # cool from 3187
    out = feed(rules, a + b)
    assert states(out) == [
        (AlertKind.FEVER, AlertState.RAISED),
        (AlertKind.FEVER, AlertState.CLEARED),
    ]
    assert out[0].device == "patch-a" and out[0].observed_at == at(60)
    assert out[1].observed_at == at(3187 + 900)


# -- tachycardia ----------------------------------------------------------------------------


def test_tachycardia_raises_once_after_the_full_window() -> None:
    rules = engine()
    assert feed(rules, [hr(s, 110) for s in every(0, 570)]) == []
    out = rules.observe(hr(600, 110))
    assert len(out) == 1
    raised = out[0]
    assert (raised.kind, raised.state, raised.severity) == (
        AlertKind.TACHYCARDIA,
        AlertState.RAISED,
        Severity.MEDIUM,
    )
    assert (raised.value, raised.unit, raised.threshold) == (110, "bpm", 100)
    assert raised.observed_at == at(600) and raised.device == STRAP
    assert feed(rules, [hr(s, 110) for s in every(630, 3600)]) == []


def test_heart_rate_at_threshold_is_not_tachycardia() -> None:
    assert feed(engine(), [hr(s, 100) for s in every(0, 3600)]) == []


def test_contact_loss_resets_the_tachycardia_window() -> None:
    rules = engine()
    readings = [hr(s, 110) for s in every(0, 270)] + [hr(300, 110, contact=False)]
    readings += [hr(s, 110, contact=True) for s in every(330, 900)]
    assert feed(rules, readings) == []
    assert states(rules.observe(hr(930, 110, contact=True))) == [
        (AlertKind.TACHYCARDIA, AlertState.RAISED)
    ]


def test_gap_resets_the_tachycardia_window() -> None:
    rules = engine()
    readings = [hr(s, 120) for s in every(0, 300)] + [hr(s, 120) for s in every(370, 940)]
    assert feed(rules, readings) == []  # 70 s gap after 300: the window restarts at 370
    assert states(rules.observe(hr(970, 120))) == [(AlertKind.TACHYCARDIA, AlertState.RAISED)]


def test_gap_of_exactly_max_gap_is_tolerated() -> None:
    out = feed(engine(), [hr(s, 120) for s in every(0, 600, 60)])
    assert states(out) == [(AlertKind.TACHYCARDIA, AlertState.RAISED)]
    assert out[0].observed_at == at(600)


def raised_tachycardia(rules: ClinicalRules) -> AlertTransition:
    out = feed(rules, [hr(s, 110) for s in every(0, 900)])
    assert states(out) == [(AlertKind.TACHYCARDIA, AlertState.RAISED)]
    return out[0]


def test_tachycardia_clears_once_most_of_the_hold_is_below_the_band() -> None:
    rules = engine()
    raised = raised_tachycardia(rules)
    # 90 bpm from 930, one 97 (inside 95..100) at 1110: a lone value in the band does not
    # restart the hold. At 1170 the 300 s window (870, 1170] holds 900 (110), six 90s, the 97
    # and two 90s: 8 of 10 below 95 = min_fraction 0.8, so it clears; at 1140 it was 7 of 10.
    readings = [hr(s, 90) for s in every(930, 1080)] + [hr(1110, 97), hr(1140, 90)]
    assert feed(rules, readings) == []
    out = rules.observe(hr(1170, 90))
    assert states(out) == [(AlertKind.TACHYCARDIA, AlertState.CLEARED)]
    assert out[0].alert_id == raised.alert_id
    # value: the mean over the hold window, (110 + 8 * 90 + 97) / 10 = 92.7
    assert (out[0].value, out[0].threshold) == (93, 95)


def test_a_run_in_the_band_restarts_the_tachycardia_hold() -> None:
    rules = engine()
    raised_tachycardia(rules)
    # Seven readings at 97 (1110-1290): the window (t-300, t] holds at most two of them, and so
    # 8 of 10 below 95, only from t = 1530.
    readings = [hr(s, 90) for s in every(930, 1080)] + [hr(s, 97) for s in every(1110, 1290)]
    readings += [hr(s, 90) for s in every(1320, 1500)]
    assert feed(rules, readings) == []
    assert states(rules.observe(hr(1530, 90))) == [(AlertKind.TACHYCARDIA, AlertState.CLEARED)]


def test_contact_loss_during_clear_hold_restarts_it() -> None:
    rules = engine()
    raised_tachycardia(rules)
    readings = [hr(s, 80) for s in every(930, 1080)] + [hr(1110, 0, contact=False)]
    readings += [hr(s, 80) for s in every(1140, 1410)]
    assert feed(rules, readings) == []
    assert states(rules.observe(hr(1440, 80))) == [(AlertKind.TACHYCARDIA, AlertState.CLEARED)]


def test_heart_rate_oscillating_around_threshold_never_clears_or_reraises() -> None:
    rules = engine()
    raised_tachycardia(rules)
    readings = [hr(s, 102 if i % 2 else 98) for i, s in enumerate(every(930, 4 * 3600))]
    assert feed(rules, readings) == []
    assert [t.kind for t in rules.open_alerts()] == [AlertKind.TACHYCARDIA]


# -- combination and latching ---------------------------------------------------------------


def test_fever_then_tachycardia_upgrades_the_fever_alert_once() -> None:
    rules = engine()
    readings = [temp(s, 38.5) for s in every(0, 1800)] + [hr(s + 1, 115) for s in every(0, 1800)]
    out = feed(rules, readings)
    assert states(out) == [
        (AlertKind.FEVER, AlertState.RAISED),
        (AlertKind.TACHYCARDIA, AlertState.RAISED),
        (AlertKind.FEVER_TACHYCARDIA, AlertState.SEVERITY_CHANGED),
    ]
    fever, tachy, combined = out
    assert combined.alert_id == fever.alert_id != tachy.alert_id
    assert combined.severity is Severity.CRITICAL
    assert combined.observed_at == tachy.observed_at == at(601)
    assert (combined.value, combined.unit) == (38.5, "°C")
    assert {t.alert_id for t in rules.open_alerts()} == {fever.alert_id, tachy.alert_id}


def test_tachycardia_then_fever_raises_fever_tachycardia_directly() -> None:
    rules = engine()
    raised_tachycardia(rules)
    out = feed(rules, [temp(s, 38.5) for s in every(930, 990)] + [hr(960, 110)])
    assert states(out) == [(AlertKind.FEVER_TACHYCARDIA, AlertState.RAISED)]
    assert out[0].severity is Severity.CRITICAL


def test_high_fever_then_tachycardia_changes_kind_at_equal_severity() -> None:
    rules = engine()
    hot = feed(rules, [temp(s, 39.4) for s in every(0, 60)])
    assert states(hot) == [(AlertKind.HIGH_FEVER, AlertState.RAISED)]
    out = feed(
        rules, [temp(s, 39.4) for s in every(90, 600)] + [hr(s + 1, 110) for s in every(0, 600)]
    )
    assert states(out) == [
        (AlertKind.TACHYCARDIA, AlertState.RAISED),
        (AlertKind.FEVER_TACHYCARDIA, AlertState.SEVERITY_CHANGED),
    ]
    assert out[1].severity is Severity.CRITICAL


def test_severity_latches_while_open() -> None:
    rules = engine()
    feed(rules, [temp(s, 39.4) for s in every(0, 600)] + [hr(s + 1, 110) for s in every(0, 600)])
    fever_id = next(t.alert_id for t in rules.open_alerts() if t.kind is not AlertKind.TACHYCARDIA)
    # Temperature falls into the plain-fever tier and the heart rate recovers: the tachycardia
    # alert clears on its own, the fever alert stays FEVER_TACHYCARDIA / CRITICAL, no event.
    out = feed(
        rules, [temp(s, 38.3) for s in every(630, 1800)] + [hr(s + 1, 80) for s in every(630, 1800)]
    )
    assert states(out) == [(AlertKind.TACHYCARDIA, AlertState.CLEARED)]
    [fever] = rules.open_alerts()
    assert (fever.alert_id, fever.kind, fever.severity) == (
        fever_id,
        AlertKind.FEVER_TACHYCARDIA,
        Severity.CRITICAL,
    )
    # High fever again: HIGH_FEVER ranks below FEVER_TACHYCARDIA, so still nothing.
    assert feed(rules, [temp(s, 39.6) for s in every(1830, 2400)]) == []


# -- state: open_alerts, restore, ids -------------------------------------------------------


def test_ids_come_from_the_injected_factory() -> None:
    rules = ClinicalRules(Thresholds(), new_id=lambda: "fixed-id")
    assert [t.alert_id for t in feed(rules, [temp(0, 39.0), temp(60, 39.0)])] == ["fixed-id"]


def test_restore_round_trip_keeps_a_febrile_alert_open_without_a_new_raise() -> None:
    before = engine()
    raised = raised_fever(before)
    after = engine()
    after.restore(before.open_alerts())
    assert after.open_alerts() == [raised]
    # Still febrile after the restart: no new RAISED, no change.
    assert feed(after, [temp(s, 38.5) for s in every(600, 2400)]) == []
    assert after.open_alerts() == [raised]
    # Then it clears through the normal hysteresis, under the same id.
    out = feed(after, [temp(s, 37.5) for s in every(2430, 3600)])
    assert states(out) == [(AlertKind.FEVER, AlertState.CLEARED)]
    assert out[0].alert_id == raised.alert_id
    assert out[0].observed_at == at(2430 + 150 + 900)


def test_restored_alert_clears_normally_if_already_normal() -> None:
    before = engine()
    raised = raised_tachycardia(before)
    after = engine()
    after.restore(before.open_alerts())
    assert feed(after, [hr(s, 70) for s in every(5000, 5270)]) == []
    out = after.observe(hr(5300, 70))
    assert states(out) == [(AlertKind.TACHYCARDIA, AlertState.CLEARED)]
    assert out[0].alert_id == raised.alert_id


def test_restored_severity_still_latches() -> None:
    before = engine()
    feed(before, [temp(s, 39.5) for s in every(0, 60)])
    after = engine()
    after.restore(before.open_alerts())
    assert feed(after, [temp(s, 38.4) for s in every(600, 1800)]) == []
    [fever] = after.open_alerts()
    assert (fever.kind, fever.severity) == (AlertKind.HIGH_FEVER, Severity.CRITICAL)


def test_restored_fever_needs_its_own_device_to_cool() -> None:
    before = engine()
    raised = raised_fever(before)  # confirmed by patch-1
    after = engine()
    after.restore([raised])
    assert feed(after, [temp(s, 36.9, device="patch-2") for s in every(600, 7200)]) == []
    out = feed(after, [temp(s, 36.9) for s in every(7230, 8400)])
    assert states(out) == [(AlertKind.FEVER, AlertState.CLEARED)]


def test_restored_alert_without_a_device_still_needs_the_full_hold() -> None:
    rules = engine()
    rules.restore([journal("old-fever", AlertKind.FEVER, Severity.HIGH, value=38.4, unit="°C")])
    assert feed(rules, [temp(s, 37.0) for s in every(600, 1470)]) == []
    out = rules.observe(temp(1500, 37.0))
    assert states(out) == [(AlertKind.FEVER, AlertState.CLEARED)]
    assert out[0].alert_id == "old-fever"


def test_restore_filters_and_picks_the_latest_transition() -> None:
    rules = engine()
    raised = journal("old-fever", AlertKind.FEVER, Severity.HIGH, device=PATCH)
    upgraded = journal(
        "old-fever",
        AlertKind.HIGH_FEVER,
        Severity.CRITICAL,
        state=AlertState.SEVERITY_CHANGED,
        observed_s=300,
        device=PATCH,
    )
    cleared_tachy = journal(
        "old-tachy", AlertKind.TACHYCARDIA, Severity.MEDIUM, state=AlertState.CLEARED
    )
    technical = journal("old-nodata", AlertKind.NO_DATA, Severity.MEDIUM, device=PATCH)
    rules.restore([upgraded, raised, cleared_tachy, technical])
    assert rules.open_alerts() == [upgraded]


def test_restore_with_two_alerts_for_one_condition_keeps_the_worse() -> None:
    # A damaged journal: two open fever alerts. Keep the worse (then the older), never both.
    fever = journal("f-a", AlertKind.FEVER, Severity.HIGH, raised_s=0)
    high = journal("f-b", AlertKind.HIGH_FEVER, Severity.CRITICAL, raised_s=100)
    older = journal("f-c", AlertKind.FEVER, Severity.HIGH, raised_s=-50)
    for order in ([fever, high], [high, fever]):
        rules = engine()
        rules.restore(order)
        assert [t.alert_id for t in rules.open_alerts()] == ["f-b"]
    rules = engine()
    rules.restore([fever, older])
    assert [t.alert_id for t in rules.open_alerts()] == ["f-c"]


def test_restored_fever_and_tachycardia_combine_on_the_next_reading() -> None:
    before = engine()
    feed(before, [temp(s, 38.5) for s in every(0, 60)])
    fever = before.open_alerts()[0]
    tachy = journal("t-1", AlertKind.TACHYCARDIA, Severity.MEDIUM, device=STRAP)
    after = engine()
    after.restore([fever, tachy])
    out = after.observe(hr(600, 112))
    assert states(out) == [(AlertKind.FEVER_TACHYCARDIA, AlertState.SEVERITY_CHANGED)]
    assert out[0].alert_id == fever.alert_id


def test_restore_after_readings_is_refused() -> None:
    rules = engine()
    rules.observe(temp(0, 37.0))
    with pytest.raises(RuntimeError):
        rules.restore([])
