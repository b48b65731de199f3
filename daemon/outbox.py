"""The outbox pump: messages written to SQLite before publishing, deleted only on PUBACK.

paho keeps unacknowledged messages in memory only (reliability.md §2), so every QoS 1 message
the hub sends sits in the store's outbox table first. This pump hands rows to paho oldest first
when the link is up, remembers mid -> row, and deletes a row only when ``on_publish`` reports a
reason code that is not a failure. A broker that refuses a message (v5 PUBACK >= 0x80) leaves
the row in place and it is retried later; a process that dies loses nothing: the next start
drains the table again. Subscribers drop the resulting duplicates by ``event_id``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from daemon.mqtt_link import MqttLink
from daemon.store import OutboxRow, Store

log = logging.getLogger(__name__)


@dataclass
class OutboxStats:
    published: int = 0
    acknowledged: int = 0
    refused: int = 0
    expired: int = 0


@dataclass
class Outbox:
    store: Store
    link: MqttLink
    # Real (unscaled) wall clock for message expiry, which the broker measures in real seconds.
    wall_clock: Callable[[], float] = time.time
    max_in_flight: int = 100
    retry_refused_s: float = 30.0
    stats: OutboxStats = field(default_factory=OutboxStats)

    def __post_init__(self) -> None:
        self._in_flight: dict[int, int] = {}  # mid -> outbox seq
        self.seqs_in_flight: set[int] = set()
        self._refused_until: dict[int, float] = {}  # seq -> retry time

    @property
    def pending(self) -> int:
        return self.store.outbox_count()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def kick(self) -> None:
        """Hand pending rows to paho, oldest first, while the link is up."""
        if not self.link.connected:
            return
        now = self.wall_clock()
        room = self.max_in_flight - len(self._in_flight)
        after = 0
        while room > 0:
            rows = self.store.pending(limit=200, after=after)
            if not rows:
                return
            for row in rows:
                after = row.seq
                if row.seq in self.seqs_in_flight or self._refused_until.get(row.seq, 0) > now:
                    continue
                if not self._send(row, now):
                    continue
                room -= 1
                if room <= 0:
                    return

    def _send(self, row: OutboxRow, now: float) -> bool:
        msg = row.message
        expiry_s: int | None = None
        if msg.expires_at is not None:
            remaining = msg.expires_at - now
            if remaining <= 0:
                # The retained alert-state snapshot still carries the alert; only the stale
                # "news" event is withheld, as MQTT v5 expiry would do at the broker.
                log.warning("outbox: an alert event expired before the broker took it (seq %d)",
                            row.seq)
                self.stats.expired += 1
                self.store.delete_outbox(row.seq)
                return False
            expiry_s = int(remaining) or 1
        mid = self.link.publish(
            msg.topic, msg.payload, qos=msg.qos, retain=msg.retain, expiry_s=expiry_s,
            correlation_data=msg.correlation_data,
        )
        if mid is None:
            return False
        if msg.qos == 0:
            # QoS 0 gets no PUBACK; it is never put in the outbox in the first place.
            self.store.delete_outbox(row.seq)
            return True
        self._in_flight[mid] = row.seq
        self.seqs_in_flight.add(row.seq)
        self.stats.published += 1
        return True

    def on_published(self, mid: int, ok: bool, reason: str) -> None:
        seq = self._in_flight.pop(mid, None)
        if seq is None:
            return
        self.seqs_in_flight.discard(seq)
        if ok:
            self.store.delete_outbox(seq)
            self._refused_until.pop(seq, None)
            self.stats.acknowledged += 1
        else:
            self.stats.refused += 1
            self._refused_until[seq] = self.wall_clock() + self.retry_refused_s
            log.error("broker refused outbox message seq %d (%s); kept for retry", seq, reason)
        self.kick()

    def on_connected(self) -> None:
        # paho re-sends what it already had in flight; we add whatever it never saw.
        self.kick()
