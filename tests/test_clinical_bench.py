"""The clinical benchmark's generator and scoring (bench/synthetic_patients.py, bench/clinical.py):
deterministic weeks, ground truth that holds, and metrics that count what they claim to."""

from __future__ import annotations

from random import Random

from bench.clinical import Event, Outcome, ScenarioScore, goals, score
from bench.synthetic_patients import FEVER_C, WEEK_MIN, generate
from daemon.alerts import AlertKind, AlertState


def test_a_week_is_the_same_for_a_seed_and_differs_between_seeds() -> None:
    a, b, c = (generate("p", "crs_onset", s) for s in (7, 7, 8))
    assert a.core == b.core and a.hr == b.hr and a.oral_checks == b.oral_checks
    assert a.core != c.core
    assert len(a.core) == len(a.patch_skin) == len(a.hr) == WEEK_MIN


def test_ground_truth_matches_the_core_temperature() -> None:
    quiet = generate("q", "quiet", 3)
    assert quiet.fevers == [] and max(quiet.core) < FEVER_C
    crs = generate("c", "crs_onset", 3)
    assert len(crs.fevers) == 1
    fever = crs.fevers[0]
    assert crs.core[fever.start_s // 60] >= FEVER_C > crs.core[fever.start_s // 60 - 1]
    tachy = generate("t", "sinus_tachycardia", 3)
    for case in tachy.tachycardias:
        assert min(tachy.hr[case.start_s // 60:case.end_s // 60]) >= 105


def test_scoring_counts_delay_miss_false_alerts_and_clears_while_febrile() -> None:
    week = generate("c", "crs_onset", 3)
    fever = week.fevers[0]
    on_time = Outcome(week, [
        Event(fever.start_s + 300, "f1", AlertKind.FEVER, AlertState.RAISED, "temp-patch"),
        Event(fever.start_s + 600, "f1", AlertKind.FEVER, AlertState.CLEARED, "temp-patch"),
        Event(10.0, "f0", AlertKind.FEVER, AlertState.RAISED, "temp-patch"),  # no fever near
        Event(20.0, "n1", AlertKind.NO_DATA, AlertState.RAISED, "temp-patch"),
    ])
    s = ScenarioScore("crs_onset")
    score(on_time, s, Random(1))
    assert (s.delays, s.misses) == ([0.0], 0)  # f0 is still open when the fever starts
    assert s.cleared_febrile == 1 and s.false_clinical["fever"] == 1
    assert s.technical["no_data"] == 1

    everything = set(range(WEEK_MIN))  # the patch read every minute
    missed = ScenarioScore("crs_onset")
    score(Outcome(week, [], usable_minutes=everything), missed, Random(1))
    assert (missed.delays, missed.misses, missed.unseen) == ([], 1, 0)
    unseen = ScenarioScore("crs_onset")  # the patch sent nothing usable: out of range, off
    score(Outcome(week, []), unseen, Random(1))
    assert (unseen.misses, unseen.unseen) == (0, 1)
    late = ScenarioScore("crs_onset")
    score(Outcome(week, [Event(fever.start_s + 300, "f1", AlertKind.FEVER, AlertState.RAISED,
                               "temp-patch")]), late, Random(1))
    assert late.delays == [5.0]


def test_a_missed_goal_fails() -> None:
    week = generate("c", "crs_onset", 3)
    s = ScenarioScore("crs_onset")
    score(Outcome(week, [], usable_minutes=set(range(WEEK_MIN))), s, Random(1))
    verdicts = {name: ok for name, _, _, ok in goals([s])}
    assert verdicts["fever episodes missed"] is False
    assert verdicts["fever alerts cleared while febrile"] is True


def test_an_alert_during_a_tachycardia_the_strap_saw_only_in_part_is_not_false() -> None:
    week = generate("t", "sinus_tachycardia", 3)
    # The third run starts 33 min before an outing takes the strap out of range: not a case the
    # detection goal can ask for, yet 30 min of it were seen and it is sustained tachycardia.
    [partial] = [t for t in week.tachycardia_episodes if t not in week.tachycardias]
    assert any(partial.start_s < o.start_s < partial.end_s for o in week.outings)
    assert min(week.hr[partial.start_s // 60:partial.end_s // 60]) >= 105
    raised = partial.start_s + 31 * 60
    events = [
        Event(raised, "t1", AlertKind.TACHYCARDIA, AlertState.RAISED, "chest-strap"),
        Event(raised + 1200, "t1", AlertKind.TACHYCARDIA, AlertState.CLEARED, "chest-strap"),
        Event(3600.0, "t0", AlertKind.TACHYCARDIA, AlertState.RAISED, "chest-strap"),  # at rest
        Event(4000.0, "t0", AlertKind.TACHYCARDIA, AlertState.CLEARED, "chest-strap"),
    ]
    s = ScenarioScore("sinus_tachycardia")
    score(Outcome(week, events), s, Random(1))
    assert s.false_clinical["tachycardia"] == 1  # t0 only
    assert s.tachy_cases == len(week.tachycardias) == 2
