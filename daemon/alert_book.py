"""The book of open alerts: the shared lifecycle behind the clinical rules and technical alarms.

Each open alert is filed under a *key* that names the condition it stands for (``"fever"``,
``(AlertKind.NO_DATA, "patch-1")`` ...), so one condition can never have two open alerts. The
book hands out ``AlertTransition`` values and enforces the lifecycle every subscriber relies on:

- one ``alert_id`` for the whole life of an alert: RAISED → SEVERITY_CHANGED* → CLEARED;
- nothing after CLEARED (the key is free again; a new condition gets a new id);
- while open, severity never goes down and the kind only moves to a worse one
  (IEC 60601-1-8: high-priority alarms latch; a later improvement is reported by CLEARED).

Pure: no clock, no I/O; ids come from the injected ``new_id`` factory.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Hashable, Iterable, Sequence
from datetime import datetime
from typing import Generic, TypeVar

from daemon.alerts import AlertKind, AlertState, AlertTransition, Severity

K = TypeVar("K", bound=Hashable)

IdFactory = Callable[[], str]


def uuid4_id() -> str:
    """The default id factory: a random UUID4 string."""
    return str(uuid.uuid4())


class AlertBook(Generic[K]):
    """Open alerts by condition key.

    ``kind_order`` ranks kinds that one key may move between (worst last), e.g. FEVER <
    HIGH_FEVER < FEVER_TACHYCARDIA. Kinds not listed never replace the current kind.
    """

    def __init__(self, *, new_id: IdFactory = uuid4_id, kind_order: Sequence[AlertKind] = ()):
        self._new_id = new_id
        self._kind_rank = {kind: rank for rank, kind in enumerate(kind_order)}
        self._open: dict[K, AlertTransition] = {}

    def __contains__(self, key: K) -> bool:
        return key in self._open

    def __len__(self) -> int:
        return len(self._open)

    def get(self, key: K) -> AlertTransition | None:
        """The latest transition of the alert open under ``key``, or None."""
        return self._open.get(key)

    def open_alerts(self) -> list[AlertTransition]:
        """The latest transition of each open alert, in the order they were raised/restored."""
        return list(self._open.values())

    def raise_alert(
        self,
        key: K,
        *,
        kind: AlertKind,
        severity: Severity,
        value: float | None,
        unit: str,
        threshold: float | None,
        at: datetime,
        device: str | None,
    ) -> AlertTransition:
        if key in self._open:
            # The engines check first; two open alerts for one condition would break de-dup.
            raise RuntimeError(f"an alert is already open for {key!r}")
        transition = AlertTransition(
            alert_id=self._new_id(),
            kind=kind,
            state=AlertState.RAISED,
            severity=severity,
            value=value,
            unit=unit,
            threshold=threshold,
            observed_at=at,
            raised_at=at,
            device=device,
        )
        self._open[key] = transition
        return transition

    def worsen(
        self,
        key: K,
        *,
        kind: AlertKind,
        severity: Severity,
        value: float | None,
        threshold: float | None,
        at: datetime,
    ) -> AlertTransition | None:
        """SEVERITY_CHANGED if ``kind``/``severity`` is worse than the open alert, else None.

        Kind and severity each keep the worst seen, so a later improvement emits nothing
        (latching). Unit and device stay those of the alert.
        """
        current = self._open[key]
        new_kind = current.kind
        if self._kind_rank.get(kind, -1) > self._kind_rank.get(current.kind, -1):
            new_kind = kind
        new_severity = max(current.severity, severity, key=lambda s: s.rank)
        if new_kind == current.kind and new_severity == current.severity:
            return None
        transition = AlertTransition(
            alert_id=current.alert_id,
            kind=new_kind,
            state=AlertState.SEVERITY_CHANGED,
            severity=new_severity,
            value=value,
            unit=current.unit,
            threshold=threshold,
            observed_at=at,
            raised_at=current.raised_at,
            device=current.device,
        )
        self._open[key] = transition
        return transition

    def clear(
        self, key: K, *, value: float | None, threshold: float | None, at: datetime
    ) -> AlertTransition:
        current = self._open.pop(key)
        return AlertTransition(
            alert_id=current.alert_id,
            kind=current.kind,
            state=AlertState.CLEARED,
            severity=current.severity,
            value=value,
            unit=current.unit,
            threshold=threshold,
            observed_at=at,
            raised_at=current.raised_at,
            device=current.device,
        )

    def restore(
        self, transitions: Iterable[AlertTransition], key_of: Callable[[AlertTransition], K | None]
    ) -> list[K]:
        """Re-open alerts from a journal after a restart; returns the keys restored.

        ``key_of`` names the condition of a transition, or None if it belongs to another engine
        (so the hub can pass every open alert to every engine). CLEARED transitions are ignored.
        Several transitions of one alert: the latest (by observed_at, then input order) wins.
        Two different alerts for one key should not happen; if the journal holds them, the
        worse one is kept (severity, then kind, then the earlier raised) so nothing is
        under-reported. Only valid on an empty book: restoring over live state would hide it.
        """
        if self._open:
            raise RuntimeError("restore() must be called before any alert is open")
        chosen: dict[K, AlertTransition] = {}
        for transition in transitions:
            if transition.state is AlertState.CLEARED:
                continue
            key = key_of(transition)
            if key is None:
                continue
            held = chosen.get(key)
            if held is None or self._supersedes(transition, held):
                chosen[key] = transition
        self._open.update(chosen)
        return list(chosen)

    def _supersedes(self, new: AlertTransition, held: AlertTransition) -> bool:
        if new.alert_id == held.alert_id:
            return new.observed_at >= held.observed_at
        new_rank = (new.severity.rank, self._kind_rank.get(new.kind, -1))
        held_rank = (held.severity.rank, self._kind_rank.get(held.kind, -1))
        if new_rank != held_rank:
            return new_rank > held_rank
        return new.raised_at < held.raised_at
