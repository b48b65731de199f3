"""Symptom reports: what the patient tells the hub that no wearable can measure (pure).

A report of any documented symptom (daemon/patient_reports.py) raises one ``symptom_reported``
alert for the patient, addressed to the care team at once. Trouble breathing, fainting and
confusion are emergency signs in the patient education (clinical.md §6): severity ``emergency``
and the patient is told to call the emergency number now; the others are ``high`` (call the care
team now, as for a fever). Further reports while the alert is open join it (a worse one raises
its severity, IEC 60601-1-8 latching). Nothing measured can show a symptom has passed, so the
alert clears only ``HOLD_S`` after the last report (acknowledgement stops the re-announcements
long before that).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from daemon.alert_book import AlertBook, IdFactory, uuid4_id
from daemon.alerts import AlertKind, AlertTransition, Severity
from daemon.patient_reports import SYMPTOM_BY_NAME

HOLD_S = 12 * 3600.0
_KEY = "symptoms"


class UnknownSymptom(ValueError):
    pass


class SymptomReports:
    def __init__(self, *, new_id: IdFactory = uuid4_id, hold_s: float = HOLD_S) -> None:
        self._book: AlertBook[str] = AlertBook(new_id=new_id)
        self._hold = timedelta(seconds=hold_s)
        self._last: datetime | None = None
        self._reported: list[str] = []

    def report(self, name: str, at: datetime) -> list[AlertTransition]:
        symptom = SYMPTOM_BY_NAME.get(name)
        if symptom is None:
            raise UnknownSymptom(f"unknown symptom {name!r}")
        severity = Severity.EMERGENCY if symptom.emergency else Severity.HIGH
        self._last = at
        if name not in self._reported:
            self._reported.append(name)
        if _KEY not in self._book:
            return [self._book.raise_alert(_KEY, kind=AlertKind.SYMPTOM_REPORTED,
                                           severity=severity, value=None, unit="", threshold=None,
                                           at=at, device=None)]
        changed = self._book.worsen(_KEY, kind=AlertKind.SYMPTOM_REPORTED, severity=severity,
                                    value=None, threshold=None, at=at)
        return [] if changed is None else [changed]

    def tick(self, now: datetime) -> list[AlertTransition]:
        if _KEY not in self._book or self._last is None or now - self._last < self._hold:
            return []
        self._reported = []
        return [self._book.clear(_KEY, value=None, threshold=None, at=now)]

    def reported(self) -> list[str]:
        """The symptoms reported while the alert has been open, in the order first reported."""
        return list(self._reported)

    def open_alerts(self) -> list[AlertTransition]:
        return self._book.open_alerts()

    def restore(self, transitions: Iterable[AlertTransition]) -> None:
        restored = self._book.restore(
            transitions, lambda t: _KEY if t.kind is AlertKind.SYMPTOM_REPORTED else None)
        if restored:
            latest = self._book.get(_KEY)
            self._last = latest.observed_at if latest is not None else None
