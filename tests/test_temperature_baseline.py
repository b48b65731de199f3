"""Personal-baseline temperature notice: care team only, circadian bins, sustained rise, trend."""

from __future__ import annotations

import gc
import itertools
import math
import random
import tracemalloc
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.alerts import AlertKind, AlertState, AlertTransition, Severity
from daemon.patient_messages import CareContact, patient_message
from daemon.readings import Reading, Vital
from daemon.temperature_baseline import (
    TemperatureBaseline,
    TemperatureTrendThresholds,
    _Samples,
)

T0 = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
CONTACT = CareContact("the CAR-T clinic", "+1 555 0100", "911", fahrenheit_first=False)


def circadian(t_s: float, mean: float = 36.6, amplitude: float = 0.25) -> float:
    """Trough about 04:00, peak about 16:00 (UTC here)."""
    hours = t_s / 3600.0
    return mean - amplitude * math.cos(2 * math.pi * (hours - 4.0) / 24.0)


def engine(**overrides: object) -> TemperatureBaseline:
    ids = (f"n{i}" for i in itertools.count())
    return TemperatureBaseline(
        TemperatureTrendThresholds.model_validate(overrides), new_id=lambda: next(ids)
    )


def run(
    notice: TemperatureBaseline,
    curve: Callable[[float], float],
    until_s: float,
    *,
    start_s: float = 0.0,
    every_s: float = 60.0,
    noise_c: float = 0.05,
    seed: int = 7,
) -> list[tuple[float, AlertTransition]]:
    rng = random.Random(seed)
    out: list[tuple[float, AlertTransition]] = []
    t = start_s
    while t < until_s:
        value = round(curve(t) + rng.gauss(0, noise_c), 2)
        reading = Reading("patch", Vital.TEMPERATURE, value, T0 + timedelta(seconds=t))
        out.extend((t, tr) for tr in notice.observe(reading))
        t += every_s
    return out


DAY = 86400.0


def test_two_afebrile_days_with_a_daily_rhythm_raise_nothing() -> None:
    notice = engine()
    assert run(notice, circadian, 3 * DAY) == []
    morning = notice.baseline("patch", T0 + timedelta(days=2, hours=4))
    evening = notice.baseline("patch", T0 + timedelta(days=2, hours=16))
    assert morning is not None and evening is not None
    assert (morning.hour_bin, evening.hour_bin) == (4, 16)  # circadian bins in use
    assert evening.mean_c - morning.mean_c > 0.3  # the day's swing is in the baseline
    assert evening.sd_c >= 0.15  # floored


def test_slow_pre_fever_rise_raises_a_low_notice_well_before_38() -> None:
    notice = engine()
    onset = 2 * DAY + 10 * 3600  # 10:00 on day 3

    def story(t: float) -> float:
        base = circadian(t)
        return base if t < onset else min(39.0, base + 0.35 * (t - onset) / 3600.0)

    events = run(notice, story, onset + 8 * 3600)
    raised = [(t, tr) for t, tr in events if tr.state is AlertState.RAISED]
    assert len(raised) == 1
    t_notice, tr = raised[0]
    assert (tr.kind, tr.severity, tr.unit) == (AlertKind.TEMPERATURE_TREND, Severity.LOW, "°C")
    assert tr.value is not None and tr.value < 38.0
    # when the 38.0 °C rule would first see a reading at 38.0 or more
    t_fever = next(t for t in itertools.count(onset, 60) if story(t) >= 38.0)
    lead_h = (t_fever - t_notice) / 3600.0
    assert 1.5 <= lead_h <= 6, lead_h  # the goal for median lead time
    assert t_notice > onset  # nothing before the rise


def test_a_sustained_plateau_above_baseline_plus_2_sd_raises_once_and_then_clears() -> None:
    notice = engine()
    start = 2 * DAY + 9 * 3600

    def story(t: float) -> float:
        if start <= t < start + 3 * 3600:
            return circadian(t) + 0.8  # a step to well above +2 SD, still below 38
        return circadian(t)

    events = run(notice, story, start + 8 * 3600)
    states = [(tr.state, tr.alert_id) for _, tr in events]
    assert [s for s, _ in states] == [AlertState.RAISED, AlertState.CLEARED]  # no flapping
    assert states[0][1] == states[1][1]
    t_raise, raised = events[0]
    # a step is not a trend: the 3 h window's low median passes +2 SD after 1.5 h of it
    assert start + 1.4 * 3600 <= t_raise <= start + 1.6 * 3600
    assert raised.threshold is not None and raised.value is not None
    assert raised.value > raised.threshold
    t_clear = events[1][0]
    # the 3 h window must fall back below +2 SD, then an hour at or below +1 SD
    assert t_clear >= start + 5.4 * 3600


def test_steps_like_a_warm_blanket_do_not_raise() -> None:
    notice = engine()
    start = 2 * DAY + 2 * 3600

    def story(t: float) -> float:
        blanket = start <= t < start + 80 * 60 or start + 6 * 3600 <= t < start + 6.5 * 3600
        return circadian(t) + (0.6 if blanket else 0.0)

    assert run(notice, story, start + 10 * 3600) == []


def test_fever_readings_are_left_to_the_fever_rule_and_not_learned() -> None:
    notice = engine()
    run(notice, circadian, 2 * DAY)
    before = notice.baseline("patch", T0 + timedelta(days=2))
    assert before is not None
    # a jump straight to 38.5: no trend notice (the fever alert speaks), nothing learned
    events = run(notice, lambda t: 38.5, 2 * DAY + 3 * 3600, start_s=2 * DAY, noise_c=0.0)
    assert events == []
    after = notice.baseline("patch", T0 + timedelta(days=2))
    assert after is not None and after.samples - before.samples < 3 * 60


def test_no_notice_while_still_learning() -> None:
    notice = engine()
    # a rise on the first day: no baseline for that time of day yet, so no notice
    assert run(notice, lambda t: 36.5 + 0.2 * t / 3600.0 if t < 7 * 3600 else 37.9, 10 * 3600) == []
    assert notice.baseline("patch", T0 + timedelta(hours=10)) is None


def test_an_open_fever_alert_suppresses_new_notices() -> None:
    notice = engine()
    run(notice, circadian, 2 * DAY)
    fever = AlertTransition("f1", AlertKind.FEVER, AlertState.RAISED, Severity.HIGH, 38.2, "°C",
                            38.0, T0 + timedelta(days=2), T0 + timedelta(days=2), "oral")
    notice.note_fever([fever])
    plateau = run(notice, lambda t: circadian(t) + 0.8, 2 * DAY + 2 * 3600, start_s=2 * DAY)
    assert plateau == []
    # the same plateau without the fever alert does raise
    control = engine()
    run(control, circadian, 2 * DAY)
    raised = run(control, lambda t: circadian(t) + 0.8, 2 * DAY + 2 * 3600, start_s=2 * DAY)
    assert [tr.kind for _, tr in raised] == [AlertKind.TEMPERATURE_TREND]


def test_contact_lost_readings_are_ignored() -> None:
    notice = engine()
    run(notice, circadian, 2 * DAY)
    at = T0 + timedelta(days=2)
    for i in range(120):  # a hot blanket over a loose patch, flagged off-body
        out = notice.observe(Reading("patch", Vital.TEMPERATURE, 37.9, at + timedelta(minutes=i),
                                     sensor_contact=False))
        assert out == []


def test_the_notice_is_care_team_only_and_says_nothing_alarming_to_the_patient() -> None:
    kind = AlertKind.TEMPERATURE_TREND
    assert kind.is_care_team_only and not kind.is_technical
    assert not AlertKind.FEVER.is_care_team_only and not AlertKind.HYPOXIA.is_care_team_only
    for state in AlertState:
        text = patient_message(kind, state, 37.7, CONTACT).lower()
        for alarming in ("fever", "temperature", "call", "emergency", "911", "crs", "warm"):
            assert alarming not in text, (state, text)


def test_thresholds_validate() -> None:
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="bin_hours must divide 24"):
        TemperatureTrendThresholds(bin_hours=5)
    with pytest.raises(ValidationError, match="extra"):
        TemperatureTrendThresholds.model_validate({"sd": 2})


def test_disabled_engine_never_raises() -> None:
    notice = engine(enabled=False)
    assert run(notice, lambda t: circadian(t) + (0.8 if t > 2 * DAY else 0), 2.5 * DAY) == []


@settings(max_examples=25, deadline=None)
@given(st.floats(36.0, 37.2), st.floats(0.0, 0.4), st.integers(0, 10_000))
def test_steady_afebrile_patients_get_no_notice(mean: float, amplitude: float, seed: int) -> None:
    """False notices: none over two days for any steady circadian curve with sensor noise."""
    notice = engine()
    assert run(notice, lambda t: circadian(t, mean, amplitude), 2 * DAY, every_s=120.0,
               seed=seed) == []


def test_warm_from_stored_readings_keeps_the_baseline_across_a_restart() -> None:
    rng = random.Random(3)
    history = [
        Reading("patch", Vital.TEMPERATURE, round(circadian(t) + rng.gauss(0, 0.05), 2),
                T0 + timedelta(seconds=t))
        for t in range(0, int(2 * DAY), 60)
    ]
    restarted = engine()
    assert restarted.warm(history) == len(history)
    assert restarted.open_alerts() == []
    evening = restarted.baseline("patch", T0 + timedelta(days=2, hours=16))
    assert evening is not None and evening.hour_bin == 16
    # live again: a plateau is judged against the warmed baseline at once
    raised = run(restarted, lambda t: circadian(t) + 0.8, 2 * DAY + 2 * 3600, start_s=2 * DAY)
    assert [tr.kind for _, tr in raised] == [AlertKind.TEMPERATURE_TREND]


def test_what_the_engine_holds_is_about_16_bytes_a_reading_of_its_windows() -> None:
    """A hub runs for weeks: the lag and the windows are bounded by time, but at a 1 Hz patch
    they hold 39,600 readings, so the bytes a reading costs decide the engine's memory. Kept as
    (datetime, float) tuples they cost ~120 B a reading (about 2 MB a patch, from the second
    day on, when a baseline exists); as arrays, 16 B plus the sorted sustain window's 8."""
    every = 20.0
    lag_s = 3600.0
    tracemalloc.start()
    try:
        notice = engine(bin_hours=24, baseline_lag_s=lag_s)  # one bin: a baseline after ~2 h
        assert run(notice, lambda t: 36.6, 8 * 3600, every_s=every) == []
        gc.collect()
        held, _ = tracemalloc.get_traced_memory()
        assert notice.baseline("patch", T0 + timedelta(hours=8)) is not None
        del notice
        gc.collect()
        without, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    t = TemperatureTrendThresholds()
    windows = (t.sustain_window_s + t.trend_window_s + t.clear_window_s + lag_s) / every
    assert (held - without) / windows <= 48, (held - without) / windows


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.just("pop"), st.floats(-1e6, 1e6)), max_size=400))
def test_samples_queue_behaves_like_a_deque_of_pairs(ops: list[str | float]) -> None:
    samples, model = _Samples("q"), deque[tuple[int, float]]()
    for n, op in enumerate(ops):
        if op == "pop":
            if model:
                assert samples.popleft() == model.popleft()
        else:
            samples.append(n, float(op))
            model.append((n, float(op)))
        assert len(samples) == len(model)
        assert list(samples.items()) == list(model)
        assert list(samples.values()) == [v for _, v in model]
        if model:
            assert (samples.first_ts(), samples.last_ts()) == (model[0][0], model[-1][0])
