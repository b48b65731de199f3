"""Acknowledgement and escalation of open alerts (pure; time is passed in).

An unacknowledged alert is re-announced every ``repeat`` interval for its severity, moving up one
tier each time (patient -> caregiver -> care team), like Nightscout's emergency-priority re-alerts.
An acknowledgement stops the repeats for that alert only; if the condition then worsens the alert
becomes unacknowledged again, so an ack never hides a worse condition (nightguard #39/#66).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from daemon.alerts import AlertState, AlertTransition, Severity
from daemon.payloads import Tier

_TIERS = [Tier.PATIENT, Tier.CAREGIVER, Tier.CARE_TEAM]


def next_tier(tier: Tier) -> Tier:
    return _TIERS[min(_TIERS.index(tier) + 1, len(_TIERS) - 1)]


@dataclass(frozen=True, slots=True)
class TrackedAlert:
    """What the hub knows about one open alert beyond the rule's latest transition."""

    transition: AlertTransition
    tier: Tier
    notified_at: datetime
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None

    @property
    def alert_id(self) -> str:
        return self.transition.alert_id

    @property
    def acknowledged(self) -> bool:
        return self.acknowledged_by is not None


def track(previous: TrackedAlert | None, transition: AlertTransition, now: datetime) -> TrackedAlert | None:
    """Fold a rule transition into the tracked state (None once the alert is cleared)."""
    if transition.state is AlertState.CLEARED:
        return None
    if previous is None:
        return TrackedAlert(transition, Tier.PATIENT, now)
    worse = transition.severity.rank > previous.transition.severity.rank
    if worse:
        # A worse condition is news: it needs a fresh acknowledgement.
        return TrackedAlert(transition, previous.tier, now)
    return replace(previous, transition=transition)


def acknowledge(alert: TrackedAlert, actor: str, now: datetime) -> TrackedAlert:
    return replace(alert, acknowledged_by=actor, acknowledged_at=now)


def due_escalations(
    alerts: Iterable[TrackedAlert], repeat: Mapping[Severity, timedelta], now: datetime
) -> list[TrackedAlert]:
    """The alerts to re-announce now, already moved up a tier and re-stamped."""
    due = []
    for alert in alerts:
        interval = repeat.get(alert.transition.severity)
        if alert.acknowledged or interval is None or interval <= timedelta(0):
            continue
        if now - alert.notified_at >= interval:
            due.append(replace(alert, tier=next_tier(alert.tier), notified_at=now))
    return due
