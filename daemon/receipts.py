"""Delivery receipts: an alert event counts as delivered when a consumer that matters says so.

A PUBACK is one hop (hub -> home broker). The care-team console confirms every alert event it has
shown with ``{"event_id", "consumer"}`` on ``.../alert/receipt`` (docs/delivery.md). While
``[alerts] receipt_consumers`` names at least one consumer, the hub keeps every published event
as "sent, not confirmed" (in SQLite, written in the same transaction as the event itself) and
publishes it again, same ``event_id``, with a doubling backoff, until a named consumer's receipt
arrives or the event expires. An event of high severity or worse that stays unconfirmed for
``receipt_timeout_s`` is the ``care_team_not_reached`` technical alarm (the monitor decides; this
module only counts).

Timing runs on the monotonic clock (a wall-clock step must not fire or hide the alarm); after a
restart every event still awaiting starts its timeout afresh (the journal has the original
times).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from daemon.alerts import Severity
from daemon.config import AlertSettings
from daemon.store import OutboundMessage, Store

log = logging.getLogger(__name__)

# Times to receipt kept for figures (benchmarks, tests): the latest ones only, or a hub running
# for months would keep one float per alert event it ever sent.
RECEIPT_TIMES_KEPT = 1000


@dataclass
class _Awaiting:
    message: OutboundMessage
    severity: Severity
    since: float  # monotonic
    next_at: float
    attempts: int = 0


class ReceiptTracker:
    def __init__(self, store: Store, settings: AlertSettings, *,
                 monotonic: Callable[[], float], wall_clock: Callable[[], float]) -> None:
        self._store = store
        self._settings = settings
        self._monotonic = monotonic
        self._wall = wall_clock
        self._awaiting: dict[str, _Awaiting] = {}
        self.confirmed = 0
        self.resent = 0
        self.ignored = 0
        self.time_to_receipt_s: deque[float] = deque(maxlen=RECEIPT_TIMES_KEPT)

    @property
    def enabled(self) -> bool:
        return bool(self._settings.receipt_consumers)

    def load(self) -> int:
        """After a restart: what was awaiting a receipt still is."""
        now = self._monotonic()
        for event_id, severity, message in self._store.awaiting_receipts():
            self._awaiting[event_id] = _Awaiting(message, Severity(severity), now,
                                                 now + self._settings.receipt_resend_s)
        return len(self._awaiting)

    def track(self, event_id: str, severity: Severity, message: OutboundMessage) -> None:
        """An event just journaled with ``await_receipt``."""
        now = self._monotonic()
        self._awaiting[event_id] = _Awaiting(message, severity, now,
                                             now + self._settings.receipt_resend_s)

    def confirm(self, event_id: str, consumer: str) -> bool:
        """A receipt. True when it confirmed an event that was awaiting one."""
        if consumer not in self._settings.receipt_consumers:
            self.ignored += 1
            log.warning("ignored a receipt from %s, which is not a configured consumer", consumer)
            return False
        awaiting = self._awaiting.pop(event_id, None)
        if awaiting is None:
            return False  # a duplicate receipt, or one for an event that expired
        self._store.confirm_receipt(event_id, consumer, datetime.fromtimestamp(self._wall(), UTC))
        self.confirmed += 1
        self.time_to_receipt_s.append(self._monotonic() - awaiting.since)
        return True

    def due(self) -> list[OutboundMessage]:
        """Events to publish again now (same event_id), with their backoff advanced; expired
        ones stop awaiting."""
        now, wall = self._monotonic(), self._wall()
        out: list[OutboundMessage] = []
        for event_id, awaiting in list(self._awaiting.items()):
            expires = awaiting.message.expires_at
            if expires is not None and expires <= wall:
                log.warning("alert event %s expired without a receipt", event_id)
                del self._awaiting[event_id]
                self._store.drop_awaiting(event_id)
                continue
            if awaiting.next_at > now:
                continue
            awaiting.attempts += 1
            delay = min(self._settings.receipt_resend_s * 2 ** awaiting.attempts,
                        self._settings.receipt_resend_max_s)
            awaiting.next_at = now + delay
            out.append(awaiting.message)
        self.resent += len(out)
        return out

    def unreached(self) -> int:
        """High-or-worse events unconfirmed for longer than receipt_timeout_s."""
        now, limit = self._monotonic(), self._settings.receipt_timeout_s
        return sum(1 for a in self._awaiting.values()
                   if a.severity.rank >= Severity.HIGH.rank and now - a.since >= limit)

    @property
    def pending(self) -> int:
        return len(self._awaiting)
