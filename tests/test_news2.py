"""Partial NEWS2 against the published RCP 2017 bands (clinical.md §4)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon.news2 import (
    NOT_MEASURED,
    News2Parameter,
    News2Response,
    score_latest,
    score_partial,
    score_pulse,
    score_spo2_scale_1,
    score_systolic,
    score_temperature,
)
from daemon.readings import Reading, Vital

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

# Every band edge of the chart: (value, score), both sides of each boundary.
PULSE = [(30, 3), (40, 3), (41, 1), (50, 1), (51, 0), (90, 0), (91, 1), (110, 1), (111, 2),
         (130, 2), (131, 3), (180, 3)]
SPO2 = [(80, 3), (91, 3), (92, 2), (93, 2), (94, 1), (95, 1), (96, 0), (100, 0)]
SYSTOLIC = [(70, 3), (90, 3), (91, 2), (100, 2), (101, 1), (110, 1), (111, 0), (219, 0),
            (220, 3), (250, 3)]
TEMPERATURE = [(34.0, 3), (35.0, 3), (35.1, 1), (36.0, 1), (36.1, 0), (38.0, 0), (38.1, 1),
               (39.0, 1), (39.1, 2), (41.0, 2)]


@pytest.mark.parametrize(("value", "score"), PULSE)
def test_pulse_bands(value: float, score: int) -> None:
    assert score_pulse(value) == score


@pytest.mark.parametrize(("value", "score"), SPO2)
def test_spo2_scale_1_bands(value: float, score: int) -> None:
    assert score_spo2_scale_1(value) == score


@pytest.mark.parametrize(("value", "score"), SYSTOLIC)
def test_systolic_bands(value: float, score: int) -> None:
    assert score_systolic(value) == score


@pytest.mark.parametrize(("value", "score"), TEMPERATURE)
def test_temperature_bands(value: float, score: int) -> None:
    assert score_temperature(value) == score


def test_values_are_rounded_as_charted_before_banding() -> None:
    assert score_temperature(38.04) == 0 and score_temperature(38.05) == 1
    assert score_spo2_scale_1(95.4) == 1 and score_spo2_scale_1(95.5) == 0
    assert score_systolic(90.4) == 3 and score_systolic(90.5) == 2
    assert score_pulse(90.49) == 0 and score_pulse(90.5) == 1


def test_fever_at_38_scores_zero_so_news2_cannot_replace_the_fever_rule() -> None:
    assert score_partial(temperature_c=38.0).aggregate == 0


def test_aggregate_response_and_missing_parameters() -> None:
    calm = score_partial(pulse_bpm=72, spo2_percent=98, systolic_mmhg=124, temperature_c=36.8)
    assert (calm.aggregate, calm.response) == (0, News2Response.LOW)
    assert calm.missing == NOT_MEASURED  # respiration, consciousness, oxygen are never measured
    # CRS-like: pulse 115 (2), SpO2 93 (2), SBP 98 (2), 39.2 °C (2) = 8
    sick = score_partial(pulse_bpm=115, spo2_percent=93, systolic_mmhg=98, temperature_c=39.2)
    assert dict(sick.scores) == {
        News2Parameter.PULSE: 2,
        News2Parameter.SPO2_SCALE_1: 2,
        News2Parameter.SYSTOLIC: 2,
        News2Parameter.TEMPERATURE: 2,
    }
    assert (sick.aggregate, sick.response) == (8, News2Response.EMERGENCY)
    # a single 3 is urgent even with a low aggregate
    single = score_partial(systolic_mmhg=88)
    assert (single.aggregate, single.single_parameter_3, single.response) == (
        3, True, News2Response.URGENT)
    five = score_partial(pulse_bpm=120, temperature_c=39.5, spo2_percent=95)  # 2 + 2 + 1
    assert (five.aggregate, five.response) == (5, News2Response.URGENT)
    payload = five.as_payload()
    assert payload["partial"] is True and payload["aggregate_is_lower_bound"] is True
    assert payload["missing"] == ["systolic", "respiration_rate", "consciousness", "air_or_oxygen"]
    assert payload["scores"] == {"pulse": 2, "spo2_scale_1": 1, "temperature": 2}


def test_score_latest_uses_fresh_readings_with_contact_and_prefers_heart_rate() -> None:
    readings = [
        Reading("strap", Vital.HEART_RATE, 95, T0 - timedelta(minutes=5)),
        Reading("strap", Vital.HEART_RATE, 118, T0 - timedelta(minutes=1)),
        Reading("oxi", Vital.PULSE_RATE, 60, T0 - timedelta(seconds=10)),
        Reading("oxi", Vital.SPO2, 97, T0 - timedelta(seconds=10)),
        Reading("oxi", Vital.SPO2, 80, T0, sensor_contact=False),  # off the finger: ignored
        Reading("cuff", Vital.SYSTOLIC, 85, T0 - timedelta(hours=3)),  # too old: missing
        Reading("patch", Vital.TEMPERATURE, 38.6, T0 - timedelta(minutes=2)),
    ]
    result = score_latest(readings, T0)
    assert dict(result.values) == {
        News2Parameter.PULSE: 118,
        News2Parameter.SPO2_SCALE_1: 97,
        News2Parameter.TEMPERATURE: 38.6,
    }
    assert result.aggregate == 2 + 0 + 1
    assert News2Parameter.SYSTOLIC in result.missing


@given(
    st.floats(20, 250), st.floats(50, 100), st.floats(40, 260), st.floats(30, 43),
)
def test_aggregate_is_the_sum_and_within_the_partial_maximum(
    pulse: float, spo2: float, sbp: float, temp: float
) -> None:
    result = score_partial(pulse_bpm=pulse, spo2_percent=spo2, systolic_mmhg=sbp,
                           temperature_c=temp)
    assert result.aggregate == (score_pulse(pulse) + score_spo2_scale_1(spo2)
                                + score_systolic(sbp) + score_temperature(temp))
    assert 0 <= result.aggregate <= 3 + 3 + 3 + 3


@given(st.floats(90, 100), st.floats(90, 100))
def test_spo2_score_never_rises_with_saturation(a: float, b: float) -> None:
    low, high = sorted((a, b))
    assert score_spo2_scale_1(low) >= score_spo2_scale_1(high)
