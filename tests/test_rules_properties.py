"""Property tests for daemon.rules.ClinicalRules (hypothesis).

Series are built from segments (a level held for a number of readings at a fixed step, with
occasional long gaps) so that raise → clear → raise cycles actually happen; a ``find`` test at
the end proves the generator reaches them, so the lifecycle properties are not vacuous.
Short windows keep the series small; the first-raise tests compare with a direct, independent
reading of the spec (an oracle over the whole series).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, Phase, find, given, settings, target
from hypothesis import strategies as st

from daemon.alerts import AlertKind, AlertState, AlertTransition
from daemon.readings import Reading, Vital
from daemon.rules import ClinicalRules
from daemon.thresholds import FeverThresholds, TachycardiaThresholds, Thresholds

BASE = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)

FAST = Thresholds(
    fever=FeverThresholds(
        confirm_window_s=120, confirm_min_samples=2, confirm_min_span_s=30, clear_hold_s=300
    ),
    tachycardia=TachycardiaThresholds(
        window_s=120, window_alone_s=120, max_gap_s=40, clear_hold_s=150
    ),
)
FEVER_KINDS = {AlertKind.FEVER, AlertKind.HIGH_FEVER, AlertKind.FEVER_TACHYCARDIA}

PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def at(seconds: float) -> datetime:
    return BASE + timedelta(seconds=seconds)


def family(kind: AlertKind) -> str:
    return "fever" if kind in FEVER_KINDS else "tachycardia"


class Ids:
    def __init__(self, prefix: str = "alert") -> None:
        self.prefix, self.n = prefix, 0

    def __call__(self) -> str:
        self.n += 1
        return f"{self.prefix}-{self.n}"


# -- strategies -----------------------------------------------------------------------------

# Levels near the thresholds and bands (twice as likely), or anywhere plausible.
_TEMP_MARKS = st.sampled_from([36.6, 37.2, 37.75, 38.0, 38.2, 38.8, 39.0, 39.6])
TEMP_LEVELS = st.one_of(_TEMP_MARKS, _TEMP_MARKS, st.floats(35.0, 41.0, allow_nan=False))
_HR_MARKS = st.sampled_from([60.0, 88.0, 97.0, 100.0, 101.0, 115.0, 140.0])
HR_LEVELS = st.one_of(_HR_MARKS, _HR_MARKS, st.floats(40.0, 180.0, allow_nan=False))
CONTACT = st.sampled_from([None, None, True, True, True, False])


@st.composite
def timeline(
    draw: st.DrawFn,
    vital: Vital,
    levels: st.SearchStrategy[float],
    devices: Sequence[str],
    *,
    with_contact: bool = False,
    max_segments: int = 10,
) -> list[Reading]:
    """Readings of one vital, strictly increasing in time."""
    out: list[Reading] = []
    t = float(draw(st.integers(0, 30)))
    for _ in range(draw(st.integers(1, max_segments))):
        if draw(st.integers(0, 5)) == 0:
            t += draw(st.integers(60, 1500))  # a long gap
        level = draw(levels)
        step = draw(st.integers(5, 45))
        device = draw(st.sampled_from(list(devices)))
        for _ in range(draw(st.integers(1, 25))):
            value = level + draw(st.sampled_from([-0.1, 0.0, 0.0, 0.1]))
            contact = draw(CONTACT) if with_contact else None
            out.append(Reading(device, vital, value, at(t), contact))
            t += step
    return out


def temperatures(devices: Sequence[str] = ("patch-1",)) -> st.SearchStrategy[list[Reading]]:
    return timeline(Vital.TEMPERATURE, TEMP_LEVELS, devices)


def heart_rates(contact: bool = True) -> st.SearchStrategy[list[Reading]]:
    return timeline(Vital.HEART_RATE, HR_LEVELS, ("strap-1",), with_contact=contact)


@st.composite
def mixed(draw: st.DrawFn) -> list[Reading]:
    """Temperature (one or two patches) and heart rate interleaved by time."""
    readings = draw(temperatures(("patch-1", "patch-2"))) + draw(heart_rates())
    return sorted(readings, key=lambda r: r.observed_at)


def run(rules: ClinicalRules, readings: Sequence[Reading]) -> list[AlertTransition]:
    out: list[AlertTransition] = []
    for reading in readings:
        out.extend(rules.observe(reading))
    return out


# -- oracles: the spec, read directly -------------------------------------------------------


def fever_oracle(readings: Sequence[Reading], t: FeverThresholds) -> tuple[int, AlertKind] | None:
    """Index and tier of the first reading at which the fever is confirmed (single device)."""
    for i, now in enumerate(readings):
        start = now.observed_at - timedelta(seconds=t.confirm_window_s)
        window = [r for r in readings[: i + 1] if r.observed_at >= start]
        span = (now.observed_at - window[0].observed_at).total_seconds()
        low = statistics.median_low([r.value for r in window])
        if len(window) >= t.confirm_min_samples and span >= t.confirm_min_span_s:
            if low >= t.high_threshold_c:
                return i, AlertKind.HIGH_FEVER
            if low >= t.threshold_c:
                return i, AlertKind.FEVER
    return None


def tachycardia_oracle(readings: Sequence[Reading], t: TachycardiaThresholds) -> int | None:
    """Index of the first reading at which, with no fever open, a run of readings with contact
    and no gap > max_gap_s has lasted >= window_alone_s, >= min_fraction of its readings in
    the last window_alone_s are above the threshold, and most of that window's first and last
    60 s."""
    window = t.window_alone_s
    run_start: datetime | None = None
    previous: Reading | None = None
    for i, r in enumerate(readings):
        gap = previous is not None and (
            (r.observed_at - previous.observed_at).total_seconds() > t.max_gap_s
        )
        previous = r
        if r.sensor_contact is False or gap:
            run_start = None
        if r.sensor_contact is False:
            continue
        run_start = run_start or r.observed_at
        if (r.observed_at - run_start).total_seconds() < window:
            continue
        horizon = r.observed_at - timedelta(seconds=window)
        recent = [x for x in readings[: i + 1]
                  if x.observed_at > horizon and x.sensor_contact is not False]
        head = [x for x in recent if x.observed_at <= horizon + timedelta(seconds=60)]
        tail = [x for x in recent if x.observed_at > r.observed_at - timedelta(seconds=60)]
        if (sum(x.value > t.threshold_bpm for x in recent) >= t.min_fraction * len(recent)
                and 2 * sum(x.value > t.threshold_bpm for x in head) > len(head)
                and 2 * sum(x.value > t.threshold_bpm for x in tail) > len(tail)):
            return i
    return None


def first_raise_index(
    rules: ClinicalRules, readings: Sequence[Reading]
) -> tuple[int, AlertTransition] | None:
    for i, reading in enumerate(readings):
        for transition in rules.observe(reading):
            if transition.state is AlertState.RAISED:
                return i, transition
    return None


# -- lifecycle checker ----------------------------------------------------------------------


@dataclass
class Lifecycle:
    """Replays transitions and fails on any lifecycle violation."""

    known: dict[str, AlertTransition]
    open_by_family: dict[str, str]
    cleared: set[str]

    @classmethod
    def start(cls, restored: Sequence[AlertTransition] = ()) -> Lifecycle:
        life = cls({}, {}, set())
        for t in restored:
            life.known[t.alert_id] = t
            life.open_by_family[family(t.kind)] = t.alert_id
        return life

    def apply(self, transitions: Sequence[AlertTransition]) -> None:
        for t in transitions:
            assert t.alert_id not in self.cleared, f"transition after CLEARED: {t}"
            fam = family(t.kind)
            previous = self.known.get(t.alert_id)
            if t.state is AlertState.RAISED:
                assert previous is None, f"RAISED twice with one id: {t}"
                assert fam not in self.open_by_family, f"second open {fam} alert: {t}"
                assert t.raised_at == t.observed_at
                self.open_by_family[fam] = t.alert_id
            else:
                assert previous is not None, f"{t.state} before RAISED: {t}"
                assert family(previous.kind) == fam
                assert t.raised_at == previous.raised_at
                assert t.device == previous.device
                assert t.severity.rank >= previous.severity.rank, "severity went down while open"
                assert t.observed_at >= previous.observed_at
                if t.state is AlertState.SEVERITY_CHANGED:
                    assert (t.kind, t.severity) != (previous.kind, previous.severity)
                else:
                    assert t.state is AlertState.CLEARED
                    assert (t.kind, t.severity) == (previous.kind, previous.severity)
                    self.cleared.add(t.alert_id)
                    del self.open_by_family[fam]
            self.known[t.alert_id] = t

    def open_latest(self) -> set[AlertTransition]:
        return {self.known[i] for i in self.open_by_family.values()}


def assert_raises_spaced(transitions: Sequence[AlertTransition]) -> None:
    holds = {"fever": FAST.fever.clear_hold_s, "tachycardia": FAST.tachycardia.clear_hold_s}
    last: dict[str, datetime] = {}
    for t in transitions:
        if t.state is not AlertState.RAISED:
            continue
        fam = family(t.kind)
        if fam in last:
            assert (t.observed_at - last[fam]).total_seconds() >= holds[fam], (last[fam], t)
        last[fam] = t.observed_at


# -- properties -----------------------------------------------------------------------------


@PROPS
@given(temperatures())
def test_first_fever_raise_is_exactly_where_the_spec_confirms(readings: list[Reading]) -> None:
    expected = fever_oracle(readings, FAST.fever)
    got = first_raise_index(ClinicalRules(FAST, new_id=Ids()), readings)
    if expected is None:
        assert got is None
    else:
        assert got is not None
        index, transition = got
        assert (index, transition.kind) == expected
        assert transition.threshold == (
            FAST.fever.high_threshold_c
            if transition.kind is AlertKind.HIGH_FEVER
            else FAST.fever.threshold_c
        )


@PROPS
@given(heart_rates())
def test_first_tachycardia_raise_is_exactly_after_the_full_window(readings: list[Reading]) -> None:
    expected = tachycardia_oracle(readings, FAST.tachycardia)
    got = first_raise_index(ClinicalRules(FAST, new_id=Ids()), readings)
    assert (None if got is None else got[0]) == expected
    if got is not None:
        assert got[1].kind is AlertKind.TACHYCARDIA


@PROPS
@given(
    st.lists(st.floats(-0.29, 0.29), min_size=1, max_size=200),
    st.lists(st.integers(5, 400), min_size=1, max_size=200),
)
def test_fever_oscillating_within_the_band_raises_at_most_once(
    offsets: list[float], steps: list[int]
) -> None:
    # Any series within threshold ± (margin − ε), ε = 0.01 °C, at any sampling, with any gaps.
    rules = ClinicalRules(FAST, new_id=Ids())
    t, out = 0.0, []
    for i, offset in enumerate(offsets):
        out += rules.observe(Reading("patch-1", Vital.TEMPERATURE, 38.0 + offset, at(t)))
        t += steps[i % len(steps)]
    assert [x.state for x in out] in ([], [AlertState.RAISED])


@PROPS
@given(
    st.lists(st.tuples(st.floats(-4.99, 4.99), CONTACT), min_size=1, max_size=200),
    st.lists(st.integers(5, 120), min_size=1, max_size=200),
)
def test_heart_rate_oscillating_within_the_band_raises_at_most_once(
    samples: list[tuple[float, bool | None]], steps: list[int]
) -> None:
    rules = ClinicalRules(FAST, new_id=Ids())
    t, out = 0.0, []
    for i, (offset, contact) in enumerate(samples):
        out += rules.observe(Reading("strap-1", Vital.HEART_RATE, 100.0 + offset, at(t), contact))
        t += steps[i % len(steps)]
    assert [x.state for x in out] in ([], [AlertState.RAISED])


@PROPS
@given(mixed())
def test_lifecycle_and_raise_spacing(readings: list[Reading]) -> None:
    rules = ClinicalRules(FAST, new_id=Ids())
    life = Lifecycle.start()
    all_out: list[AlertTransition] = []
    for reading in readings:
        out = rules.observe(reading)
        life.apply(out)
        all_out += out
        assert set(rules.open_alerts()) == life.open_latest()
    # Steer generation towards series with many raise/clear cycles.
    target(float(sum(t.state is AlertState.RAISED for t in all_out)))
    assert_raises_spaced(all_out)
    assert len({t.alert_id for t in all_out if t.state is AlertState.RAISED}) == sum(
        t.state is AlertState.RAISED for t in all_out
    )


@PROPS
@given(mixed(), st.data())
def test_restart_anywhere_never_re_raises_and_keeps_the_lifecycle(
    readings: list[Reading], data: st.DataObject
) -> None:
    split = data.draw(st.integers(0, len(readings)))
    before = ClinicalRules(FAST, new_id=Ids("before"))
    prefix = run(before, readings[:split])
    after = ClinicalRules(FAST, new_id=Ids("after"))
    restored = before.open_alerts()
    after.restore(restored)
    assert set(after.open_alerts()) == set(restored)
    suffix = run(after, readings[split:])
    for t in suffix:
        if t.alert_id in {r.alert_id for r in restored}:
            assert t.state is not AlertState.RAISED
    # The journal across the restart is one valid lifecycle, raises still spaced by the hold.
    life = Lifecycle.start()
    life.apply(prefix + suffix)
    assert_raises_spaced(prefix + suffix)
    assert set(after.open_alerts()) == life.open_latest()


@PROPS
@given(
    st.lists(st.tuples(st.floats(35.0, 37.9), st.integers(5, 400)), min_size=1, max_size=150),
    st.floats(38.0, 45.0),
    st.data(),
)
def test_one_artifact_never_alarms(
    normal: list[tuple[float, int]], spike: float, data: st.DataObject
) -> None:
    where = data.draw(st.integers(0, len(normal)))
    values = [v for v, _ in normal]
    values.insert(where, spike)
    steps = [s for _, s in normal] + [30]
    rules = ClinicalRules(Thresholds(), new_id=Ids())  # the shipped defaults
    t, out = 0.0, []
    for value, step in zip(values, steps, strict=True):
        out += rules.observe(Reading("patch-1", Vital.TEMPERATURE, value, at(t)))
        t += step
    assert out == []


def _cycles(readings: list[Reading]) -> list[AlertTransition]:
    return run(ClinicalRules(FAST, new_id=Ids()), readings)


def _fever_raised_twice(readings: list[Reading]) -> bool:
    out = _cycles(readings)
    return sum(t.state is AlertState.RAISED and family(t.kind) == "fever" for t in out) >= 2


def _tachycardia_raised_twice(readings: list[Reading]) -> bool:
    out = _cycles(readings)
    return sum(t.state is AlertState.RAISED and t.kind is AlertKind.TACHYCARDIA for t in out) >= 2


def _combined(readings: list[Reading]) -> bool:
    return any(t.kind is AlertKind.FEVER_TACHYCARDIA for t in _cycles(readings))


@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")  # large repr
@pytest.mark.parametrize("condition", [_fever_raised_twice, _tachycardia_raised_twice, _combined])
def test_generator_reaches_clear_and_re_raise_cycles(
    condition: Callable[[list[Reading]], bool],
) -> None:
    """Guards the lifecycle properties against vacuity: the `mixed` strategy does produce
    alerts raised, cleared and raised again, and the combined fever + tachycardia alert."""
    example = find(
        mixed(),
        condition,
        settings=settings(max_examples=3000, database=None, phases=[Phase.generate]),
    )
    assert condition(example)
