"""Therapy notices: the monitoring window's scheduled moments as alerts. Pure, like the rules.

The shell's scheduler (daemon/therapy_schedule.py) or a replay's ticks (daemon/therapy.py
``due_between``) say when a window starts or ends or a reminder falls due; this engine turns
that into low-severity alerts with the usual lifecycle (daemon/alert_book.py):

- ``spot_check_reminder`` (the patient): "take your temperature with a thermometer now" (Scott
  et al. 2025: every 8 h within the window). Stays open until a thermometer reading arrives
  (a spot-check temperature: a thermometer device or one typed in) or the window ends; a
  reminder while one is still open adds nothing (one condition, one alert). Unanswered, it
  escalates like any low alert.
- ``monitoring_window_started`` / ``monitoring_window_ended`` (care team only): raised and
  cleared at once, a notice rather than a condition. At the end the care team is told; every
  alert rule keeps running.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Literal

from daemon.alert_book import AlertBook, IdFactory, uuid4_id
from daemon.alerts import AlertKind, AlertTransition, Severity
from daemon.readings import Reading, Vital
from daemon.therapy import Purpose

NoticeKey = Literal["reminder"]
REMINDER: NoticeKey = "reminder"
_WINDOW_KIND = {
    Purpose.WINDOW_START: AlertKind.MONITORING_WINDOW_STARTED,
    Purpose.WINDOW_END: AlertKind.MONITORING_WINDOW_ENDED,
}


class TherapyNotices:
    def __init__(self, *, new_id: IdFactory = uuid4_id) -> None:
        self._book: AlertBook[NoticeKey] = AlertBook(new_id=new_id)
        self._new_id = new_id

    def due(self, purpose: Purpose, window_days: int | None, at: datetime) -> list[AlertTransition]:
        """A scheduled moment of a window (``window_days``: its M in "day N of M")."""
        if purpose is Purpose.SPOT_CHECK:
            if REMINDER in self._book:
                return []
            return [self._book.raise_alert(
                REMINDER, kind=AlertKind.SPOT_CHECK_REMINDER, severity=Severity.LOW,
                value=None, unit="", threshold=None, at=at, device=None)]
        out: list[AlertTransition] = []
        if purpose is Purpose.WINDOW_END and REMINDER in self._book:
            out.append(self._book.clear(REMINDER, value=None, threshold=None, at=at))
        # A notice: its own short-lived book, so it never blocks or replaces a reminder.
        once: AlertBook[str] = AlertBook(new_id=self._new_id)
        value = float(window_days) if window_days is not None else None
        raised = once.raise_alert("notice", kind=_WINDOW_KIND[purpose], severity=Severity.LOW,
                                  value=value, unit="d", threshold=None, at=at, device=None)
        out += [raised, once.clear("notice", value=value, threshold=None, at=at)]
        return out

    def observe(self, reading: Reading) -> list[AlertTransition]:
        """A thermometer reading answers an open reminder."""
        if (REMINDER in self._book and reading.vital is Vital.TEMPERATURE
                and reading.spot_check and reading.sensor_contact is not False):
            return [self._book.clear(REMINDER, value=reading.value, threshold=None,
                                     at=reading.observed_at)]
        return []

    def open_alerts(self) -> list[AlertTransition]:
        return self._book.open_alerts()

    def restore(self, open_alerts: Iterable[AlertTransition]) -> None:
        self._book.restore(open_alerts, lambda t: REMINDER
                           if t.kind is AlertKind.SPOT_CHECK_REMINDER else None)
