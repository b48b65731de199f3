"""The annunciator's pure planner: what sounds, in which order, how often, and when it stops."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import time

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from daemon.alerts import AlertKind, AlertState, Severity
from daemon.annunciator import (
    AnnunciatorPlanner,
    AnnunciatorSettings,
    Pattern,
    QuietPeriod,
    pattern_for,
    quietable,
)
from daemon.payloads import AlertEvent, AlertStateSnapshot, OpenAlert
from tests.support.alert_events import T0, alert_event

NOON = time(12, 0)
NIGHT = time(23, 30)
QUIET = AnnunciatorSettings(quiet_period=QuietPeriod(start=time(22, 0), end=time(7, 0)))
event = alert_event


def snapshot(*alerts: OpenAlert) -> AlertStateSnapshot:
    return AlertStateSnapshot(hub_id="hub-1", patient_id="p-1", open=list(alerts), updated_at=T0)


def open_alert(alert_id: str, severity: Severity, *, acknowledged_by: str | None = None,
               kind: AlertKind = AlertKind.FEVER) -> OpenAlert:
    return OpenAlert(alert_id=alert_id, kind=kind, severity=severity, tier="patient",
                     value=None, unit="", raised_at=T0, updated_at=T0, device=None,
                     acknowledged_by=acknowledged_by, patient_message="restored message")


def test_patterns_follow_priority_and_technical_alarms_have_their_own() -> None:
    assert pattern_for(Severity.EMERGENCY, False) is Pattern.HIGH
    assert pattern_for(Severity.CRITICAL, False) is Pattern.HIGH
    assert pattern_for(Severity.HIGH, False) is Pattern.HIGH
    assert pattern_for(Severity.MEDIUM, False) is Pattern.MEDIUM
    assert pattern_for(Severity.LOW, False) is Pattern.LOW
    assert pattern_for(Severity.MEDIUM, True) is Pattern.TECHNICAL
    assert pattern_for(Severity.LOW, True) is Pattern.TECHNICAL
    # A technical condition at high priority is as urgent as a clinical one.
    assert pattern_for(Severity.HIGH, True) is Pattern.HIGH


def test_raised_alert_sounds_at_once_then_repeats_after_its_interval() -> None:
    planner = AnnunciatorPlanner(AnnunciatorSettings(repeat_s={"high": 15.0}))
    planner.observe(event("a1", AlertState.RAISED, message="Your temperature is high."))
    first = planner.decide(100.0, NOON)
    assert first.play is not None
    assert (first.play.alert_id, first.play.pattern, first.play.message) == (
        "a1", Pattern.HIGH, "Your temperature is high.")
    planner.finished("a1", 104.0)
    waiting = planner.decide(110.0, NOON)
    assert waiting.play is None and waiting.next_at == pytest.approx(119.0)
    assert planner.decide(118.99, NOON).play is None
    again = planner.decide(119.0, NOON)
    assert again.play is not None and again.play.alert_id == "a1"


@pytest.mark.parametrize("actor", ["patient", "nurse-7", "caregiver-2"])
def test_acknowledgement_by_anyone_stops_the_sound(actor: str) -> None:
    planner = AnnunciatorPlanner(AnnunciatorSettings())
    planner.observe(event("a1", AlertState.RAISED))
    planner.observe(event("a1", AlertState.ACKNOWLEDGED, acknowledged_by=actor,
                          message="The care team has seen this alert."))
    assert planner.decide(1e6, NOON).play is None
    assert planner.decide(1e6, NOON).next_at is None
    assert planner.selected(NOON) is None


def test_clear_stops_the_sound_and_forgets_the_alert() -> None:
    planner = AnnunciatorPlanner(AnnunciatorSettings())
    planner.observe(event("a1", AlertState.RAISED))
    planner.observe(event("a1", AlertState.CLEARED))
    assert planner.decide(0.0, NOON) == planner.decide(1e6, NOON)
    assert planner.decide(0.0, NOON).play is None
    assert planner.unconfirmed() == []


def test_escalation_after_the_patient_confirmed_does_not_sound_again() -> None:
    # Escalation to the care team continues for high alerts; the patient is not re-alarmed.
    planner = AnnunciatorPlanner(AnnunciatorSettings())
    planner.observe(event("a1", AlertState.RAISED))
    planner.observe(event("a1", AlertState.ACKNOWLEDGED, acknowledged_by="patient"))
    planner.observe(event("a1", AlertState.ESCALATED))
    assert planner.decide(1e6, NOON).play is None


def test_a_worse_severity_needs_a_new_confirmation_and_sounds_at_once() -> None:
    planner = AnnunciatorPlanner(AnnunciatorSettings())
    planner.observe(event("a1", AlertState.RAISED, Severity.HIGH))
    planner.decide(0.0, NOON)
    planner.finished("a1", 5.0)
    planner.observe(event("a1", AlertState.ACKNOWLEDGED, Severity.HIGH, acknowledged_by="patient"))
    # Lower or equal severity after confirmation: still confirmed.
    planner.observe(event("a1", AlertState.SEVERITY_CHANGED, Severity.HIGH))
    assert planner.decide(6.0, NOON).play is None
    planner.observe(event("a1", AlertState.SEVERITY_CHANGED, Severity.CRITICAL,
                          message="Your temperature is very high."))
    worse = planner.decide(6.0, NOON)
    assert worse.play is not None
    assert (worse.play.severity, worse.play.message) == (Severity.CRITICAL,
                                                         "Your temperature is very high.")


def test_most_severe_unconfirmed_sounds_first_then_the_next() -> None:
    planner = AnnunciatorPlanner(AnnunciatorSettings())
    planner.observe(event("tech", AlertState.RAISED, Severity.MEDIUM, technical=True))
    planner.observe(event("med", AlertState.RAISED, Severity.MEDIUM))
    planner.observe(event("crit", AlertState.RAISED, Severity.CRITICAL))
    planner.observe(event("low", AlertState.RAISED, Severity.LOW))
    order = []
    for alert_id in ("crit", "med", "tech", "low"):
        play = planner.decide(0.0, NOON).play
        assert play is not None
        order.append(play.alert_id)
        planner.observe(event(alert_id, AlertState.ACKNOWLEDGED, acknowledged_by="patient"))
    # Clinical before technical at the same severity.
    assert order == ["crit", "med", "tech", "low"]
    assert planner.decide(0.0, NOON).play is None


def test_quiet_period_holds_low_and_technical_until_it_ends() -> None:
    planner = AnnunciatorPlanner(QUIET)
    planner.observe(event("low", AlertState.RAISED, Severity.LOW))
    planner.observe(event("tech", AlertState.RAISED, Severity.MEDIUM, technical=True))
    held = planner.decide(1000.0, time(6, 30))
    assert held.play is None
    assert held.next_at == pytest.approx(1000.0 + 30 * 60)  # 07:00
    after = planner.decide(1000.0 + 30 * 60, time(7, 0))
    assert after.play is not None and after.play.alert_id == "tech"


def test_quiet_period_never_holds_a_clinical_medium_or_anything_high() -> None:
    planner = AnnunciatorPlanner(QUIET)
    planner.observe(event("med", AlertState.RAISED, Severity.MEDIUM))
    play = planner.decide(0.0, NIGHT).play
    assert play is not None and play.alert_id == "med"
    planner.observe(event("tech-high", AlertState.RAISED, Severity.HIGH, technical=True))
    play = planner.decide(0.0, NIGHT).play
    assert play is not None and play.alert_id == "tech-high"


def test_snapshot_teaches_missed_alerts_and_forgets_closed_ones() -> None:
    planner = AnnunciatorPlanner(AnnunciatorSettings())
    planner.observe(event("gone", AlertState.RAISED, Severity.CRITICAL))
    # After a restart the monitor restores open alerts: one already acknowledged, one not.
    planner.sync(snapshot(open_alert("seen", Severity.EMERGENCY, acknowledged_by="patient"),
                          open_alert("restored", Severity.HIGH)))
    play = planner.decide(0.0, NOON).play
    assert play is not None
    assert (play.alert_id, play.message) == ("restored", "restored message")
    assert planner.unconfirmed() == ["restored"]


def test_a_stale_snapshot_never_silences_an_alert_just_raised() -> None:
    planner = AnnunciatorPlanner(AnnunciatorSettings())
    planner.observe(event("new", AlertState.RAISED))
    planner.sync(snapshot(), keep=frozenset({"new"}))
    play = planner.decide(0.0, NOON).play
    assert play is not None and play.alert_id == "new"


def test_settings_reject_unknown_keys_silent_high_priority_and_bad_devices() -> None:
    with pytest.raises(ValidationError, match="extra"):
        AnnunciatorSettings.model_validate({"volume": 50})
    with pytest.raises(ValidationError, match="volume_percent"):
        AnnunciatorSettings(volume_percent=5)
    with pytest.raises(ValidationError, match="high"):
        AnnunciatorSettings.model_validate({"repeat_s": {"high": 600}})
    with pytest.raises(ValidationError, match="alsa_device"):
        AnnunciatorSettings(alsa_device="hw:0; rm -rf /")
    with pytest.raises(ValidationError, match="must differ"):
        QuietPeriod(start=time(22, 0), end=time(22, 0))
    parsed = AnnunciatorSettings.model_validate(
        {"quiet_period": {"start": "22:00", "end": "07:00"}, "volume_percent": 60})
    assert parsed.quiet_period == QuietPeriod()
    assert parsed.espeak_amplitude == 120


def test_quiet_period_spans_midnight_or_not() -> None:
    night = QuietPeriod(start=time(22, 0), end=time(7, 0))
    assert night.contains(time(23, 0)) and night.contains(time(3, 0))
    assert not night.contains(time(7, 0)) and not night.contains(time(12, 0))
    afternoon = QuietPeriod(start=time(13, 0), end=time(15, 0))
    assert afternoon.contains(time(14, 0)) and not afternoon.contains(time(16, 0))
    assert night.seconds_until_end(time(23, 0)) == 8 * 3600


# --- properties -------------------------------------------------------------------------------

SEVERITIES = list(Severity)
IDS = ["a", "b", "c"]


@dataclass
class Model:
    """What the planner must respect: open alerts and whether the patient confirmed them."""

    open: dict[str, tuple[Severity, bool, bool]] = field(default_factory=dict)  # sev, tech, conf

    def apply(self, e: AlertEvent) -> None:
        if e.state is AlertState.CLEARED:
            self.open.pop(e.alert_id, None)
            return
        sev, _tech, confirmed = self.open.get(e.alert_id, (e.severity, e.technical, False))
        if e.severity.rank > sev.rank:
            confirmed = False
        self.open[e.alert_id] = (e.severity, e.technical,
                                 confirmed or e.state is AlertState.ACKNOWLEDGED)


events = st.builds(
    lambda alert_id, state, severity, technical: (alert_id, state, severity, technical),
    st.sampled_from(IDS), st.sampled_from(list(AlertState)), st.sampled_from(SEVERITIES),
    st.booleans(),
)
steps = st.one_of(
    st.tuples(st.just("event"), events),
    st.tuples(st.just("event"), events),  # events twice as likely as waits

    st.tuples(st.just("wait"), st.floats(min_value=0.0, max_value=400.0)),
    st.tuples(st.just("local"), st.sampled_from([NOON, NIGHT, time(6, 59), time(22, 0)])),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(steps, max_size=60), st.floats(min_value=0.0, max_value=30.0))
# Confirmed, then worse: must sound again.
@example([("event", ("a", AlertState.RAISED, Severity.LOW, False)),
          ("event", ("a", AlertState.ACKNOWLEDGED, Severity.LOW, False)),
          ("event", ("a", AlertState.SEVERITY_CHANGED, Severity.HIGH, False))], 1.0)
def test_planner_respects_confirmation_priority_quiet_hours_and_intervals(
        script: list[tuple[str, object]], play_s: float) -> None:
    config = QUIET
    planner = AnnunciatorPlanner(config)
    model = Model()
    technical_of: dict[str, bool] = {}
    now, local = 0.0, NOON
    last_end: dict[str, float] = {}

    def interval_of(alert_id: str) -> float:
        sev, tech, _ = model.open[alert_id]
        if tech and sev.rank < Severity.HIGH.rank:
            return config.repeat_s.technical
        return float(getattr(config.repeat_s, sev.value))

    def shell_turn() -> None:
        """What the player does: ask, play for ``play_s``, report the end."""
        nonlocal now
        decision = planner.decide(now, local)
        silenced = {i for i, (sev, tech, _) in model.open.items()
                    if quietable(sev, tech) and config.quiet_period is not None
                    and config.quiet_period.contains(local)}
        waiting = {i: v for i, v in model.open.items() if not v[2] and i not in silenced}
        if decision.play is None:
            # Nothing waiting, or waiting for a time; never "nothing to do" with alerts waiting.
            assert not waiting or decision.next_at is not None
            assert decision.next_at is None or decision.next_at > now
            if waiting:
                # Silence with alerts waiting only while the most severe one has just sounded.
                top = max(v[0].rank for v in waiting.values())
                assert any(i in last_end and now - last_end[i] < interval_of(i)
                           for i, v in waiting.items() if v[0].rank == top)
            return
        played = decision.play
        assert played.alert_id in waiting, "a confirmed, cleared or silenced alert sounded"
        sev, tech, _ = model.open[played.alert_id]
        assert played.severity.rank == max(v[0].rank for v in waiting.values())
        assert played.pattern is pattern_for(sev, tech)
        if played.alert_id in last_end:
            assert now - last_end[played.alert_id] >= interval_of(played.alert_id) - 1e-9
        now += play_s
        planner.finished(played.alert_id, now)
        last_end[played.alert_id] = now

    for kind, arg in script:
        if kind == "event":
            alert_id, state, severity, technical = arg  # type: ignore[misc]
            technical = technical_of.setdefault(alert_id, technical)
            if alert_id not in model.open and state is not AlertState.RAISED:
                continue  # every alert starts with a raise
            if alert_id in model.open and state is AlertState.RAISED:
                continue
            before = model.open.get(alert_id)
            e = event(alert_id, state, severity, technical=technical)
            planner.observe(e)
            model.apply(e)
            if state is AlertState.CLEARED:
                technical_of.pop(alert_id, None)
                last_end.pop(alert_id, None)
            if before is not None and severity.rank > before[0].rank:
                last_end.pop(alert_id, None)  # a worse alert sounds at once
        elif kind == "wait":
            now += float(arg)  # type: ignore[arg-type]
        else:
            local = arg  # type: ignore[assignment]
        shell_turn()


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([Severity.HIGH, Severity.CRITICAL, Severity.EMERGENCY]), st.booleans(),
       st.times())
def test_high_and_above_are_never_silenced_by_quiet_hours(
        severity: Severity, technical: bool, local: time) -> None:
    planner = AnnunciatorPlanner(AnnunciatorSettings(
        quiet_period=QuietPeriod(start=time(0, 0), end=time(23, 59, 59))))
    planner.observe(event("a", AlertState.RAISED, severity, technical=technical))
    play = planner.decide(0.0, local).play
    assert play is not None and play.pattern is Pattern.HIGH


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=20.0), min_size=1, max_size=20),
       st.sampled_from(SEVERITIES), st.booleans(), st.sampled_from(["patient", "nurse-1"]))
def test_nothing_plays_after_acknowledgement_or_clear(
        gaps: list[float], severity: Severity, clear: bool, actor: str) -> None:
    planner = AnnunciatorPlanner(AnnunciatorSettings())
    planner.observe(event("a", AlertState.RAISED, severity))
    now = 0.0
    plays = 0
    for gap in gaps:
        decision = planner.decide(now, NOON)
        if decision.play is not None:
            plays += 1
            planner.finished("a", now + 1.0)
        now += gap + 1.0
    assert plays >= 1
    planner.observe(event("a", AlertState.CLEARED if clear else AlertState.ACKNOWLEDGED,
                          severity, acknowledged_by=None if clear else actor))
    for t in (now, now + 1e3, now + 1e6):
        assert planner.decide(t, NOON).play is None
        assert planner.decide(t, NIGHT).play is None


def test_the_documented_configuration_parses() -> None:
    import re
    import tomllib
    from pathlib import Path

    doc = (Path(__file__).parent.parent / "docs" / "sounds.md").read_text()
    (block,) = re.findall(r"```toml\n(.*?)```", doc, flags=re.S)
    settings = AnnunciatorSettings.model_validate(tomllib.loads(block)["annunciator"])
    assert settings.quiet_period == QuietPeriod(start=time(22, 0), end=time(7, 0))
    assert settings.repeat_s.emergency == 5.0 and settings.repeat_s.technical == 300.0
    assert settings == AnnunciatorSettings(quiet_period=QuietPeriod())  # documents the defaults
