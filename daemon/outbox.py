"""The outbox pump: messages written to SQLite before publishing, deleted only on PUBACK.

paho keeps unacknowledged messages in memory only (reliability.md §2), so every QoS 1 message
the hub sends sits in the store's outbox table first. This pump hands rows to paho oldest first
when the link is up, remembers mid -> row, and deletes a row only when ``on_publish`` reports a
reason code that is not a failure. A broker that refuses a message (v5 PUBACK >= 0x80) leaves
the row in place and it is retried later; a process that dies loses nothing: the next start
drains the table again. Subscribers drop the resulting duplicates by ``event_id``.

Refusals are a condition of their own (issue 14): ``refused`` maps each row whose latest
PUBACK carried a failure reason code to that reason, until the broker accepts the row or the
row leaves the outbox otherwise (expired, replaced by a newer retained state). The shell turns
a non-empty ``refused`` into the ``publish_refused`` technical alarm.

A PUBACK is not the end of the broker's risk: mosquitto 2.0 answers PUBACK before it saves its
database (at the end of the network-loop pass, with autosave_on_changes), so a broker killed in
those few milliseconds loses a message it acknowledged (measured: tests/test_broker_persistence.py).
So rows acknowledged within ``resend_window_s`` before the link went down are put back in the
outbox, under their own seq, when it comes back up: at worst a duplicate, never a loss.
Retained rows are not put back: the shell re-publishes current retained state on every connect,
and an old state put back would outrank it.
"""

from __future__ import annotations

import logging
import time
from collections import deque
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
    resent_after_link_loss: int = 0


@dataclass
class Outbox:
    store: Store
    link: MqttLink
    # Real (unscaled) wall clock for message expiry, which the broker measures in real seconds.
    wall_clock: Callable[[], float] = time.time
    max_in_flight: int = 100
    retry_refused_s: float = 30.0
    # Rows acknowledged this long before a link loss are sent again (see the module docstring).
    resend_window_s: float = 5.0
    monotonic: Callable[[], float] = time.monotonic
    stats: OutboxStats = field(default_factory=OutboxStats)

    def __post_init__(self) -> None:
        self._in_flight: dict[int, int] = {}  # mid -> outbox seq
        self.seqs_in_flight: set[int] = set()
        self._rows_in_flight: dict[int, OutboxRow] = {}  # seq -> row
        self._refused_until: dict[int, float] = {}  # seq -> retry time
        self._refused: dict[int, str] = {}  # seq -> reason of its latest refusal
        self._recently_acked: deque[tuple[float, OutboxRow]] = deque()

    @property
    def refused(self) -> dict[int, str]:
        """Rows the broker refused (seq -> reason code text), oldest first; empty when none.

        A row leaves when the broker later accepts it, or when it is no longer in the outbox.
        """
        if self._refused:
            gone = set(self._refused) - self.store.outbox_seqs(self._refused)
            for seq in gone:
                self._forget_refusal(seq)
        return dict(sorted(self._refused.items()))

    def _forget_refusal(self, seq: int) -> None:
        self._refused.pop(seq, None)
        self._refused_until.pop(seq, None)

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
                self._forget_refusal(row.seq)
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
        self._rows_in_flight[row.seq] = row
        self.stats.published += 1
        return True

    def on_published(self, mid: int, ok: bool, reason: str) -> None:
        seq = self._in_flight.pop(mid, None)
        if seq is None:
            return
        self.seqs_in_flight.discard(seq)
        row = self._rows_in_flight.pop(seq, None)
        if ok:
            self.store.delete_outbox(seq)
            if seq in self._refused:
                log.warning("broker accepted outbox message seq %d after refusing it", seq)
            self._forget_refusal(seq)
            self.stats.acknowledged += 1
            if row is not None and not row.message.retain:
                self._remember_ack(row)
        else:
            self.stats.refused += 1
            self._refused[seq] = reason
            self._refused_until[seq] = self.wall_clock() + self.retry_refused_s
            log.error("broker refused outbox message seq %d (%s); kept for retry", seq, reason)
        self.kick()

    def _remember_ack(self, row: OutboxRow) -> None:
        now = self.monotonic()
        self._recently_acked.append((now, row))
        # Keep what a link loss from now on could still concern (twice the window: the loss
        # is noticed up to a keepalive later, and is dated when noticed).
        while self._recently_acked and self._recently_acked[0][0] < now - 2 * self.resend_window_s:
            self._recently_acked.popleft()

    def on_connected(self) -> None:
        # paho re-sends what it already had in flight; we add whatever it never saw, and what
        # the broker acknowledged just before the link went down (it may not have saved it).
        lost_at = self.link.disconnected_at
        if lost_at is not None and self._recently_acked:
            resend = [row for acked_at, row in self._recently_acked
                      if acked_at >= lost_at - self.resend_window_s]
            self._recently_acked.clear()
            if resend:
                restored = self.store.restore_outbox(resend)
                self.stats.resent_after_link_loss += restored
                if restored:
                    log.warning("outbox: %d message(s) acknowledged just before the broker link "
                                "was lost are sent again (the broker may not have saved them)",
                                restored)
        self.kick()
