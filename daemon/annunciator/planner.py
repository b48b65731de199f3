"""What the hub's speaker should say, and when: pure decisions over alert events.

No I/O and no clock: the shell passes the monotonic time (for repeat intervals, immune to wall
clock steps at boot) and the local time of day (for the quiet period) into every decision.

Rules:
- Only open alerts the patient has not confirmed sound. Confirmation is an acknowledgement by
  anyone, or a clear; a later rise in severity needs a new confirmation (as escalation does).
- One sound at a time: the most severe unconfirmed alert, clinical before technical at the same
  severity, then the oldest.
- An alert repeats ``repeat_s`` seconds after its previous announcement ended.
- The quiet period silences only alerts below high priority that are low or technical; they sound
  when it ends if still unconfirmed. High, critical and emergency are never silenced.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from datetime import time
from enum import StrEnum

from daemon.alerts import AlertKind, AlertState, Severity
from daemon.annunciator.settings import AnnunciatorSettings
from daemon.payloads import AlertEvent, AlertStateSnapshot


class Pattern(StrEnum):
    """The tone that starts an announcement (IEC 60601-1-8 style priorities)."""

    HIGH = "high"  # high, critical, emergency: 10-pulse burst
    MEDIUM = "medium"  # 3 pulses
    LOW = "low"  # 1 pulse
    TECHNICAL = "technical"  # technical alarms below high: 2 falling pulses


def pattern_for(severity: Severity, technical: bool) -> Pattern:
    if severity.rank >= Severity.HIGH.rank:
        return Pattern.HIGH
    if technical:
        return Pattern.TECHNICAL
    return Pattern.MEDIUM if severity is Severity.MEDIUM else Pattern.LOW


@dataclass(frozen=True, slots=True)
class Announcement:
    alert_id: str
    severity: Severity
    technical: bool
    pattern: Pattern
    message: str


@dataclass(frozen=True, slots=True)
class Decision:
    """``play`` now (or nothing); call ``decide`` again at monotonic ``next_at`` or on new input
    (``None``: nothing is waiting on time)."""

    play: Announcement | None
    next_at: float | None


@dataclass(slots=True)
class _Alert:
    alert_id: str
    severity: Severity
    technical: bool
    message: str
    order: int
    confirmed: bool
    last_finished: float | None = None


class AnnunciatorPlanner:
    def __init__(self, settings: AnnunciatorSettings) -> None:
        self._settings = settings
        self._alerts: dict[str, _Alert] = {}
        self._order = itertools.count()

    # --- inputs -------------------------------------------------------------------------------
    def observe(self, event: AlertEvent) -> None:
        alert = self._alerts.get(event.alert_id)
        if event.state is AlertState.CLEARED:
            self._alerts.pop(event.alert_id, None)
            return
        if alert is None:
            # Includes events for alerts raised before this planner existed (a restart).
            self._alerts[event.alert_id] = _Alert(
                event.alert_id, event.severity, event.technical, event.patient_message,
                next(self._order),
                confirmed=event.state is AlertState.ACKNOWLEDGED
                or event.acknowledged_by is not None,
            )
            return
        if event.severity.rank > alert.severity.rank:
            # Worse than what the patient confirmed: confirm again, and say it now.
            alert.confirmed = False
            alert.last_finished = None
        alert.severity = event.severity
        alert.technical = event.technical
        if event.state is not AlertState.ACKNOWLEDGED:
            alert.message = event.patient_message
        if event.state is AlertState.ACKNOWLEDGED:
            alert.confirmed = True

    def sync(self, snapshot: AlertStateSnapshot, keep: frozenset[str] = frozenset()) -> None:
        """Align with the monitor's open alerts: forget closed ones, learn missed ones.

        ``keep`` are alerts an event has just opened, kept even if the snapshot lacks them
        (a stale snapshot must never silence a new alarm).
        """
        open_ids = {a.alert_id for a in snapshot.open}
        for alert_id in list(self._alerts):
            if alert_id not in open_ids and alert_id not in keep:
                del self._alerts[alert_id]
        for item in snapshot.open:
            if item.alert_id not in self._alerts:
                self._alerts[item.alert_id] = _Alert(
                    item.alert_id, item.severity, _is_technical(item.kind), item.patient_message,
                    next(self._order), confirmed=item.acknowledged_by is not None,
                )

    def finished(self, alert_id: str, mono_s: float) -> None:
        """The announcement of ``alert_id`` ended (played, failed or interrupted) at ``mono_s``."""
        alert = self._alerts.get(alert_id)
        if alert is not None:
            alert.last_finished = mono_s

    # --- decisions ----------------------------------------------------------------------------
    def selected(self, local: time) -> str | None:
        """The alert that should be sounding now, due or not (to interrupt a superseded one)."""
        choice = self._choice(local)
        return choice.alert_id if choice else None

    def decide(self, mono_s: float, local: time) -> Decision:
        choice = self._choice(local)
        wake = self._quiet_end(mono_s, local)
        if choice is None:
            return Decision(None, wake)
        due = (-math.inf if choice.last_finished is None
               else choice.last_finished + self._interval(choice))
        if mono_s >= due:
            return Decision(self._announcement(choice), None)
        return Decision(None, due if wake is None else min(due, wake))

    def unconfirmed(self) -> list[str]:
        return [a.alert_id for a in self._alerts.values() if not a.confirmed]

    # --- helpers ------------------------------------------------------------------------------
    def _choice(self, local: time) -> _Alert | None:
        candidates = [a for a in self._alerts.values()
                      if not a.confirmed and not self._silenced(a, local)]
        if not candidates:
            return None
        return max(candidates, key=lambda a: (a.severity.rank, not a.technical, -a.order))

    def _silenced(self, alert: _Alert, local: time) -> bool:
        quiet = self._settings.quiet_period
        return quiet is not None and quietable(alert.severity, alert.technical) \
            and quiet.contains(local)

    def _quiet_end(self, mono_s: float, local: time) -> float | None:
        quiet = self._settings.quiet_period
        if quiet is None or not any(
            not a.confirmed and self._silenced(a, local) for a in self._alerts.values()
        ):
            return None
        return mono_s + quiet.seconds_until_end(local)

    def _interval(self, alert: _Alert) -> float:
        repeat = self._settings.repeat_s
        if alert.technical and alert.severity.rank < Severity.HIGH.rank:
            return repeat.technical
        return float(getattr(repeat, alert.severity.value))

    @staticmethod
    def _announcement(alert: _Alert) -> Announcement:
        return Announcement(alert.alert_id, alert.severity, alert.technical,
                            pattern_for(alert.severity, alert.technical), alert.message)


def quietable(severity: Severity, technical: bool) -> bool:
    """May the quiet period silence this alarm? Never at high priority or above."""
    return severity.rank < Severity.HIGH.rank and (technical or severity is Severity.LOW)


def _is_technical(kind: AlertKind) -> bool:
    return kind.is_technical
