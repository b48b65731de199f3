"""Issue 10: the rule defects met on realistic home data, one test each (each failed before).

Default thresholds unless said: fever 38.0 °C (band 37.7), implausible fall: from the band or
above, more than 1.0 °C + 1.6 °C/h x the time since; tachycardia > 100 bpm, 80 % of readings over 600 s with a fever open or 1800 s alone;
wearable alarm: contact 120 s, disconnected 300 s, temperature 600 s / heart rate 300 s or three
expected intervals.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from daemon.alerts import AlertKind, AlertState, AlertTransition
from daemon.decoding import TemperatureMeasurement
from daemon.patient_messages import CareContact, patient_message
from daemon.reading_policy import (
    MANUAL_DEVICE,
    device_value_readings,
    manual_reading,
    measurement_readings,
)
from daemon.readings import Reading, Vital
from daemon.rules import ClinicalRules
from daemon.technical_alarms import TechnicalAlarms
from daemon.thresholds import Thresholds

BASE = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
PATCH, STRAP, ORAL = "patch-1", "strap-1", "oral-1"
CONTACT = CareContact("the CAR-T team", "+1 555 0100", "911", fahrenheit_first=False)


def at(s: float) -> datetime:
    return BASE + timedelta(seconds=s)


class Ids:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> str:
        self.n += 1
        return f"id-{self.n}"


def temp(s: float, value: float, device: str = PATCH, *, spot: bool = False,
         contact: bool | None = None) -> Reading:
    return Reading(device, Vital.TEMPERATURE, value, at(s), contact, spot_check=spot)


def hr(s: float, value: float, contact: bool | None = True) -> Reading:
    return Reading(STRAP, Vital.HEART_RATE, value, at(s), contact)


def summary(out: list[AlertTransition]) -> list[tuple[AlertKind, AlertState]]:
    return [(t.kind, t.state) for t in out]


def feed(engine: ClinicalRules | TechnicalAlarms, readings: list[Reading]) -> list[AlertTransition]:
    out: list[AlertTransition] = []
    for r in readings:
        out += engine.observe(r)
        out += engine.tick(r.observed_at)
    return out


# -- no silent clear ------------------------------------------------------------------------


def detaching_patch() -> list[Reading]:
    """Febrile at 38.6 °C for 20 min, then the patch half-detaches: 35.6 °C within 3 minutes,
    and stays there for two hours."""
    readings = [temp(s, 38.6) for s in range(0, 1200, 60)]
    readings += [temp(1200, 37.6), temp(1260, 36.4), temp(1320, 35.7)]
    readings += [temp(s, 35.6) for s in range(1380, 1380 + 7200, 60)]
    return readings


def test_a_fall_faster_than_physiology_never_clears_the_fever() -> None:
    rules = ClinicalRules(Thresholds(), new_id=Ids())
    out = feed(rules, detaching_patch())
    assert summary(out) == [(AlertKind.FEVER, AlertState.RAISED)]
    assert [t.kind for t in rules.open_alerts()] == [AlertKind.FEVER]


def test_the_fall_raises_a_technical_alarm_asking_for_an_oral_reading() -> None:
    tech = TechnicalAlarms(Thresholds().stale, new_id=Ids())
    tech.expect(PATCH, {Vital.TEMPERATURE}, at(0), interval_s=60.0)
    out = feed(tech, detaching_patch())
    assert summary(out) == [(AlertKind.IMPLAUSIBLE_FALL, AlertState.RAISED)]
    # the median of the last three (37.6, 36.4, 35.7) is 2.2 °C under 38.6 two minutes after it
    assert out[0].observed_at == at(1320) and out[0].severity.value == "medium"
    text = patient_message(AlertKind.IMPLAUSIBLE_FALL, AlertState.RAISED, 0.0, CONTACT)
    assert "patch" in text and "by mouth with a thermometer now" in text


def test_an_oral_reading_below_the_band_then_clears_the_fever_and_the_alarm() -> None:
    rules = ClinicalRules(Thresholds(), new_id=Ids())
    tech = TechnicalAlarms(Thresholds().stale, new_id=Ids())
    tech.expect(PATCH, {Vital.TEMPERATURE}, at(0), interval_s=60.0)
    feed(rules, detaching_patch())
    feed(tech, detaching_patch())
    oral = temp(8700, 37.2, ORAL, spot=True)
    assert summary(rules.observe(oral)) == [(AlertKind.FEVER, AlertState.CLEARED)]
    assert summary(tech.observe(oral)) == [(AlertKind.IMPLAUSIBLE_FALL, AlertState.CLEARED)]


def test_a_slow_plausible_fall_still_clears_after_the_hold() -> None:
    rules = ClinicalRules(Thresholds(), new_id=Ids())
    # 38.6 falling 1.2 °C/h (0.02 per minute) to 37.0: defervescence, not a sensor problem.
    readings = [temp(s, 38.6) for s in range(0, 600, 60)]
    readings += [temp(600 + 60 * i, round(38.6 - 0.02 * i, 2)) for i in range(1, 81)]
    readings += [temp(s, 37.0) for s in range(600 + 60 * 81, 600 + 60 * 81 + 1800, 60)]
    assert summary(feed(rules, readings)) == [
        (AlertKind.FEVER, AlertState.RAISED), (AlertKind.FEVER, AlertState.CLEARED)]


def test_a_quick_fall_of_one_degree_from_a_fever_is_already_implausible() -> None:
    tech = TechnicalAlarms(Thresholds().stale, new_id=Ids())
    tech.expect(PATCH, {Vital.TEMPERATURE}, at(0), interval_s=60.0)
    readings = [temp(s, 38.4) for s in range(0, 1200, 60)]
    readings += [temp(s, 37.2) for s in range(1200, 2400, 60)]  # 1.2 °C within two minutes
    out = feed(tech, readings)
    assert summary(out) == [(AlertKind.IMPLAUSIBLE_FALL, AlertState.RAISED)]
    # Readings come back within 1.0 °C of the level before the fall: the patch is back.
    back = feed(tech, [temp(s, 38.3) for s in range(2400, 2640, 60)])
    assert summary(back) == [(AlertKind.IMPLAUSIBLE_FALL, AlertState.CLEARED)]


def test_a_shower_on_a_normal_day_raises_nothing() -> None:
    tech = TechnicalAlarms(Thresholds().stale, new_id=Ids())
    tech.expect(PATCH, {Vital.TEMPERATURE}, at(0), interval_s=60.0)
    readings = [temp(s, 36.9) for s in range(0, 1200, 60)]
    readings += [temp(s, 34.6) for s in range(1200, 2100, 60)]  # wet skin
    readings += [temp(s, 36.9) for s in range(2100, 3600, 60)]
    assert feed(tech, readings) == []


def patch_payload(raw_c: float) -> list[Reading]:
    return measurement_readings(TemperatureMeasurement(raw_c, False, None, None), PATCH, at(0),
                                0.5, 34.0)


def test_off_body_is_judged_on_the_raw_sensor_value() -> None:
    # 33.8 °C from the sensor is off the skin, although 34.3 °C after the offset.
    [r] = patch_payload(33.8)
    assert (r.value, r.sensor_contact, r.spot_check) == (34.3, False, False)
    [ok] = patch_payload(36.4)
    assert (ok.value, ok.sensor_contact) == (36.9, None)
    [row] = device_value_readings(PATCH, Vital.TEMPERATURE, 33.8, None, at(0), 0.5, 34.0)
    assert (row.value, row.sensor_contact) == (34.3, False)


def test_a_patch_reading_room_air_is_kept_as_off_body_not_dropped() -> None:
    [r] = patch_payload(21.0)  # no body temperature, but the news that the patch is off
    assert r.sensor_contact is False
    assert patch_payload(float("nan")) == []


# -- spot checks ----------------------------------------------------------------------------


def test_a_single_oral_reading_at_the_threshold_raises_the_fever_at_once() -> None:
    rules = ClinicalRules(Thresholds(), new_id=Ids())
    [reading] = measurement_readings(TemperatureMeasurement(39.5, False, None, None), ORAL, at(0),
                                     0.0, 34.0, spot_check=True)
    assert reading.spot_check
    [raised] = rules.observe(reading)
    assert (raised.kind, raised.state, raised.value) == (
        AlertKind.HIGH_FEVER, AlertState.RAISED, 39.5)
    text = patient_message(raised.kind, raised.state, raised.value, CONTACT, spot_check=True)
    assert text.startswith("Your thermometer reading is 39.5 °C")


def test_every_reading_of_a_device_declared_spot_check_is_one() -> None:
    rules = ClinicalRules(Thresholds(), new_id=Ids())
    rules.expect(ORAL, spot_check=True)
    assert summary(rules.observe(temp(0, 38.0, ORAL))) == [(AlertKind.FEVER, AlertState.RAISED)]


def test_a_reading_typed_in_by_hand_is_a_spot_check() -> None:
    rules = ClinicalRules(Thresholds(), new_id=Ids())
    reading = manual_reading(38.1, at(0))
    assert reading is not None and reading.device == MANUAL_DEVICE and reading.spot_check
    assert summary(rules.observe(reading)) == [(AlertKind.FEVER, AlertState.RAISED)]
    assert manual_reading(52.0, at(0)) is None  # not a body temperature


def test_an_oral_reading_never_starts_a_missing_data_alarm() -> None:
    tech = TechnicalAlarms(Thresholds().stale, new_id=Ids())
    tech.expect(PATCH, {Vital.TEMPERATURE}, at(0), interval_s=60.0)
    tech.expect(ORAL, {Vital.TEMPERATURE}, at(0), spot_check=True)
    out = feed(tech, [temp(s, 36.8) for s in range(0, 7200, 60)])
    out += tech.observe(temp(3000, 36.7, ORAL, spot=True))
    out += tech.tick(at(7199))
    assert out == []


def test_oral_below_the_band_does_not_clear_while_the_patch_reads_hot() -> None:
    rules = ClinicalRules(Thresholds(), new_id=Ids())
    assert summary(feed(rules, [temp(s, 38.5) for s in range(0, 600, 60)])) == [
        (AlertKind.FEVER, AlertState.RAISED)]
    assert rules.observe(temp(620, 37.4, ORAL, spot=True)) == []


# -- any sample interval --------------------------------------------------------------------


def test_a_patch_reporting_every_ten_minutes_confirms_a_fever() -> None:
    rules = ClinicalRules(Thresholds(), new_id=Ids())
    rules.expect(PATCH, interval_s=600.0)
    readings = [temp(0, 37.9), temp(600, 38.2), temp(1200, 38.3)]
    out = feed(rules, readings)
    assert summary(out) == [(AlertKind.FEVER, AlertState.RAISED)]
    assert out[0].observed_at == at(1200)


def test_the_missing_data_window_follows_the_interval() -> None:
    tech = TechnicalAlarms(Thresholds().stale, new_id=Ids())
    tech.expect(PATCH, {Vital.TEMPERATURE}, at(0), interval_s=900.0)
    out = feed(tech, [temp(s, 36.8) for s in range(0, 4 * 3600, 900)])
    assert out == []  # 900 s apart: more than temperature_s (600 s), yet on schedule
    last = 4 * 3600 - 900
    assert tech.tick(at(last + 3 * 900 - 1)) == []
    [raised] = tech.tick(at(last + 3 * 900))
    assert (raised.kind, raised.threshold) == (AlertKind.NO_DATA, 2700)


# -- tachycardia ----------------------------------------------------------------------------


def test_a_heart_rate_averaging_106_with_dips_to_100_alarms() -> None:
    rules = ClinicalRules(Thresholds(), new_id=Ids())
    # Three hours at 106-108 bpm, one reading in eight at 100 (every 5 s).
    readings = [hr(s, 100 if (s // 5) % 8 == 0 else 107) for s in range(0, 3 * 3600, 5)]
    out = feed(rules, readings)
    assert summary(out) == [(AlertKind.TACHYCARDIA, AlertState.RAISED)]
    assert out[0].observed_at == at(1800)


def test_a_twenty_minute_walk_does_not_alarm_but_fever_with_tachycardia_is_fast() -> None:
    rules = ClinicalRules(Thresholds(), new_id=Ids())
    walk = [hr(s, 75) for s in range(0, 600, 5)] + [hr(s, 118) for s in range(600, 1800, 5)]
    walk += [hr(s, 80) for s in range(1800, 3600, 5)]
    assert feed(rules, walk) == []
    fever = [temp(s, 38.4) for s in range(3600, 4200, 60)]
    heart = [hr(s, 112) for s in range(3600, 5400, 5)]
    out = feed(rules, sorted(fever + heart, key=lambda r: r.observed_at))
    assert summary(out) == [
        (AlertKind.FEVER, AlertState.RAISED),
        (AlertKind.TACHYCARDIA, AlertState.RAISED),
        (AlertKind.FEVER_TACHYCARDIA, AlertState.SEVERITY_CHANGED),
    ]
    # The 10 min window, not 30: at 3600 + 570 s the window's first minute is mostly fast.
    assert out[1].observed_at == at(3600 + 570)


def test_a_strap_taken_off_closes_the_tachycardia_alert_saying_so() -> None:
    rules = ClinicalRules(Thresholds(), new_id=Ids())
    out = feed(rules, [hr(s, 115) for s in range(0, 2400, 5)])
    assert summary(out) == [(AlertKind.TACHYCARDIA, AlertState.RAISED)]
    off = [hr(2400, 0, contact=False)]
    out = feed(rules, off)
    assert out == []
    assert rules.tick(at(2395 + 899)) == []
    [closed] = rules.tick(at(2395 + 900))
    assert (closed.kind, closed.state, closed.value) == (
        AlertKind.TACHYCARDIA, AlertState.CLEARED, None)
    text = patient_message(closed.kind, closed.state, closed.value, CONTACT)
    assert "stopped sending readings" in text and "below the alert level" not in text
    assert rules.tick(at(8 * 3600)) == []


def test_a_run_of_24_minutes_is_not_30_minutes_of_tachycardia() -> None:
    rules = ClinicalRules(Thresholds(), new_id=Ids())
    # 80 % of a 30 min window, but all of it at the end: a 24-minute walk.
    walk = [hr(s, 75) for s in range(0, 1800, 5)] + [hr(s, 118) for s in range(1800, 3240, 5)]
    walk += [hr(s, 80) for s in range(3240, 5400, 5)]
    assert feed(rules, walk) == []


def test_tachycardia_text_claims_only_what_was_measured() -> None:
    text = patient_message(AlertKind.TACHYCARDIA, AlertState.RAISED, 112.0, CONTACT)
    assert "resting" not in text
    assert "stayed above 100 beats per minute" in text and "about 112" in text


# -- technical alarms, consolidated ---------------------------------------------------------


def strap_taken_off(tech: TechnicalAlarms) -> list[AlertTransition]:
    out = feed(tech, [hr(s, 72) for s in range(0, 600, 1)])
    out += feed(tech, [hr(s, 0, contact=False) for s in range(600, 660, 1)])
    out += tech.connection_changed(STRAP, False, at(660))
    for s in range(660, 4 * 3600, 10):
        out += tech.tick(at(s))
    return out


def test_a_strap_taken_off_is_one_alarm_that_escalates() -> None:
    tech = TechnicalAlarms(Thresholds().stale, new_id=Ids())
    tech.expect(STRAP, {Vital.HEART_RATE}, at(0), interval_s=1.0)
    out = strap_taken_off(tech)
    assert summary(out) == [
        (AlertKind.SENSOR_CONTACT_LOST, AlertState.RAISED),  # 120 s without contact
        (AlertKind.NO_DATA, AlertState.SEVERITY_CHANGED),  # 300 s since the last good reading
    ]
    assert len({t.alert_id for t in out}) == 1
    back = tech.connection_changed(STRAP, True, at(5 * 3600))
    back += tech.observe(hr(5 * 3600 + 1, 70))
    assert summary(back) == [(AlertKind.NO_DATA, AlertState.CLEARED)]


def test_a_part_time_strap_does_not_alarm_on_being_taken_off() -> None:
    tech = TechnicalAlarms(Thresholds().stale, new_id=Ids())
    tech.expect(STRAP, {Vital.HEART_RATE}, at(0), interval_s=1.0, part_time=True)
    assert strap_taken_off(tech) == []


def test_the_primary_temperature_source_alarms_even_if_marked_part_time() -> None:
    tech = TechnicalAlarms(Thresholds().stale, new_id=Ids())
    tech.expect(PATCH, {Vital.TEMPERATURE}, at(0), interval_s=60.0, part_time=True)
    out = feed(tech, [temp(s, 36.8) for s in range(0, 600, 60)])
    [raised] = tech.tick(at(540 + 600))
    assert out == [] and (raised.kind, raised.severity.value) == (AlertKind.NO_DATA, "medium")


def test_no_temperature_from_any_source_is_always_an_alarm() -> None:
    tech = TechnicalAlarms(Thresholds().stale, new_id=Ids())
    tech.expect(ORAL, {Vital.TEMPERATURE}, at(0), spot_check=True)
    tech.expect(STRAP, {Vital.HEART_RATE}, at(0), interval_s=1.0, part_time=True)
    assert tech.observe(temp(3600, 36.9, ORAL, spot=True)) == []
    assert tech.tick(at(3600 + 9 * 3600 - 1)) == []
    [raised] = tech.tick(at(3600 + 9 * 3600))
    assert (raised.kind, raised.device, raised.severity.value) == (
        AlertKind.NO_DATA, None, "medium")
    reading = manual_reading(36.8, at(11 * 3600))
    assert reading is not None
    assert summary(tech.observe(reading)) == [(AlertKind.NO_DATA, AlertState.CLEARED)]


# -- tachycardia while a fever alert is held open by an old oral reading ---------------------


def fever_held_open_by_an_oral_reading(rules: ClinicalRules) -> list[AlertTransition]:
    """The patch confirms a fever (38.4 °C), an oral reading agrees (38.5 °C), then the fever
    breaks: the patch falls 1.4 °C in an hour (a plausible defervescence) and reads 37.0 °C for
    hours. The fever alert stays open (every device that ran hot must show a clear; the oral
    thermometer needs a new reading), though the wearable has held below the band for hours.
    Until 4 h, the strap on throughout: heart rate 75 bpm."""
    patch = [temp(s, 38.4) for s in range(0, 900, 60)]
    patch += [temp(s, 38.4 - 1.4 * (s - 900) / 3600) for s in range(900, 4500, 60)]
    patch += [temp(s, 37.0) for s in range(4500, 4 * 3600, 60)]
    oral = [temp(600, 38.5, ORAL, spot=True)]
    heart = [hr(s, 75) for s in range(0, 4 * 3600, 5)]
    return feed(rules, sorted(patch + oral + heart, key=lambda r: r.observed_at))


def walk(start_s: int, minutes: int, bpm: float = 118) -> list[Reading]:
    return [hr(s, bpm) for s in range(start_s, start_s + minutes * 60, 5)]


def patch_and(readings: list[Reading], start_s: int, end_s: int) -> list[Reading]:
    patch = [temp(s, 37.0) for s in range(start_s, end_s, 60)]
    return sorted(readings + patch, key=lambda r: r.observed_at)


def test_a_walk_hours_after_the_fever_broke_needs_the_30_minute_window() -> None:
    rules = ClinicalRules(Thresholds(), new_id=Ids())
    out = fever_held_open_by_an_oral_reading(rules)
    assert summary(out) == [(AlertKind.FEVER, AlertState.RAISED)]
    assert [t.kind for t in rules.open_alerts()] == [AlertKind.FEVER]
    # A 15-minute walk: fever with a fast heart rate is the CRS picture and gets the 10-minute
    # window, but the only fever left is an oral reading 3.8 h old, and the patch, which saw
    # this fever, has read 37.0 °C for 2.5 h since: not a fever with a fast heart rate.
    start = 4 * 3600
    heart = walk(start, 15) + [hr(s, 75) for s in range(start + 900, start + 3600, 5)]
    out = feed(rules, patch_and(heart, start, start + 3600))
    assert out == []
    # A 35-minute walk is still tachycardia on its own (the 30-minute window).
    heart = walk(start + 3600, 35) + [hr(s, 75) for s in range(start + 5700, start + 5820, 5)]
    out = feed(rules, patch_and(heart, start + 3600, start + 5820))
    assert summary(out) == [
        (AlertKind.TACHYCARDIA, AlertState.RAISED),
        (AlertKind.FEVER_TACHYCARDIA, AlertState.SEVERITY_CHANGED),
    ]
    assert out[0].observed_at == at(start + 3600 + 1800 - 30)


def test_a_new_febrile_oral_reading_brings_back_the_10_minute_window() -> None:
    rules = ClinicalRules(Thresholds(), new_id=Ids())
    fever_held_open_by_an_oral_reading(rules)
    # The patch under-reads now (37.0 °C) but the patient's oral thermometer says 38.3 °C:
    # that reading is newer than the patch's cool spell, so the fever is current.
    start = 4 * 3600
    oral = [temp(start - 30, 38.3, ORAL, spot=True)]
    heart = walk(start, 15)
    out = feed(rules, patch_and(oral + heart, start, start + 900))
    assert summary(out) == [
        (AlertKind.TACHYCARDIA, AlertState.RAISED),
        (AlertKind.FEVER_TACHYCARDIA, AlertState.SEVERITY_CHANGED),
    ]
    assert out[0].observed_at == at(start + 600 - 30)


def test_a_patch_gone_silent_while_febrile_keeps_the_10_minute_window() -> None:
    rules = ClinicalRules(Thresholds(), new_id=Ids())
    # Febrile, then the patch goes out of range: nothing newer says the fever is over.
    out = feed(rules, [temp(s, 38.4) for s in range(0, 900, 60)])
    assert summary(out) == [(AlertKind.FEVER, AlertState.RAISED)]
    start = 3600
    out = feed(rules, walk(start, 15))
    assert summary(out) == [
        (AlertKind.TACHYCARDIA, AlertState.RAISED),
        (AlertKind.FEVER_TACHYCARDIA, AlertState.SEVERITY_CHANGED),
    ]
    assert out[0].observed_at == at(start + 600)


def test_a_patch_gone_silent_after_the_fever_broke_no_longer_vouches_for_it() -> None:
    rules = ClinicalRules(Thresholds(), new_id=Ids())
    fever_held_open_by_an_oral_reading(rules)
    # The patch read 37.0 °C until 4 h, then went out of range; two hours later the fever
    # alert is still open and nothing current says the fever is over: the 10-minute window.
    start = 6 * 3600 + 600
    out = feed(rules, walk(start, 15))
    assert summary(out) == [
        (AlertKind.TACHYCARDIA, AlertState.RAISED),
        (AlertKind.FEVER_TACHYCARDIA, AlertState.SEVERITY_CHANGED),
    ]
    assert out[0].observed_at == at(start + 600)
