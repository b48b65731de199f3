from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from daemon.alerts import AlertKind, AlertState, AlertTransition, Severity
from daemon.escalation import acknowledge, due_escalations, next_tier, track
from daemon.payloads import Tier

T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
REPEAT = {Severity.HIGH: timedelta(minutes=15), Severity.CRITICAL: timedelta(minutes=5)}


def transition(state: AlertState, severity: Severity = Severity.HIGH,
               kind: AlertKind = AlertKind.FEVER) -> AlertTransition:
    return AlertTransition("a1", kind, state, severity, 38.4, "°C", 38.0, T0, T0, "patch")


def test_unacknowledged_alert_climbs_one_tier_per_interval_and_stops_at_care_team() -> None:
    alert = track(None, transition(AlertState.RAISED), T0)
    assert alert is not None and alert.tier is Tier.PATIENT
    assert due_escalations([alert], REPEAT, T0 + timedelta(minutes=14)) == []
    tiers = []
    now = T0
    for _ in range(4):
        now += timedelta(minutes=15)
        (alert,) = due_escalations([alert], REPEAT, now)
        tiers.append(alert.tier)
    assert tiers == [Tier.CAREGIVER, Tier.CARE_TEAM, Tier.CARE_TEAM, Tier.CARE_TEAM]


def test_acknowledgement_stops_escalation_until_the_condition_worsens() -> None:
    alert = track(None, transition(AlertState.RAISED), T0)
    assert alert is not None
    acked = acknowledge(alert, "nurse-7", T0 + timedelta(minutes=1))
    assert due_escalations([acked], REPEAT, T0 + timedelta(hours=5)) == []
    # The same severity again changes nothing; a worse one needs a new acknowledgement.
    same = track(acked, transition(AlertState.SEVERITY_CHANGED), T0 + timedelta(minutes=2))
    assert same is not None and same.acknowledged_by == "nurse-7"
    worse = track(acked, transition(AlertState.SEVERITY_CHANGED, Severity.CRITICAL,
                                    AlertKind.FEVER_TACHYCARDIA), T0 + timedelta(minutes=3))
    assert worse is not None and worse.acknowledged_by is None
    assert worse.transition.kind is AlertKind.FEVER_TACHYCARDIA
    (due,) = due_escalations([worse], REPEAT, T0 + timedelta(minutes=8))
    assert due.tier is Tier.CAREGIVER


def test_cleared_alerts_are_no_longer_tracked() -> None:
    alert = track(None, transition(AlertState.RAISED), T0)
    assert track(alert, transition(AlertState.CLEARED), T0 + timedelta(hours=1)) is None


@given(st.lists(st.integers(min_value=0, max_value=120), max_size=30))
def test_escalation_never_skips_a_tier(minutes: list[int]) -> None:
    alert = track(None, transition(AlertState.RAISED), T0)
    assert alert is not None
    now = T0
    for m in minutes:
        now += timedelta(minutes=m)
        for due in due_escalations([alert], REPEAT, now):
            assert due.tier is next_tier(alert.tier)
            assert due.notified_at == now
            alert = due
