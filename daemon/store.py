"""The hub's durable store (stdlib sqlite3, WAL): readings, the alert journal and the outbox.

Why hand-written SQL rather than an ORM: three small tables, and the outbox semantics
(write before publish, delete only on broker acknowledgement) must be visible in one place.

Durability: every alert transition is written to the journal *and* the outbox in one
transaction with ``synchronous=FULL`` (the WAL is fsynced before COMMIT returns) before anything
is published, so a power cut either loses the whole transition before it was accepted or keeps
all of it; so is every other outbox insert. Two kinds of commit are allowed to be lazy
(``synchronous=NORMAL``: in WAL mode the commit is ordered but not fsynced until the next FULL
commit or checkpoint), because losing them in a power cut loses no alert:
  - raw readings, which are buffered and committed in batches, at most every
    ``commit_interval_s`` (60 s) or ``flush_every`` readings: a crash loses at most that batch
    (one raw reading per device, vital and instant: a second one with the very same timestamp
    replaces the first);
  - outbox deletes after a PUBACK: losing one means the message is published again, and
    subscribers drop duplicates by ``event_id``. They are not even committed on their own: an
    acknowledged row leaves ``pending()`` at once and is deleted from disk in the next
    transaction (the next outbox insert, or the next readings batch), which touches the same
    page anyway.

Write budget (the SD card): at four wearables at 1 Hz the old layout (a commit, fsync and
several 4 KiB pages per second) wrote about 1.6 GB a day for 22 MB of data. What each byte
costs here: a commit appends every page it touched to the WAL, and a checkpoint writes each of
them once more into the database file. So pages are 1 KiB (a small outbox commit touches two
or three pages, not two or three 4 KiB ones), readings go in 60 s batches as 24-byte rows, the tiny outbox has
no secondary index and no AUTOINCREMENT (whose sqlite_sequence row is one more page per insert;
sequence numbers still never repeat within a process, see ``_next_seq``), and
``secure_delete=FAST`` (Debian's SQLite defaults to ON, which rewrites
every page a compaction frees): freed pages still get zeroed when they are written anyway, and
freed reading pages are reused within the hour. bench/disk_writes.py measures the result.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from daemon.readings import Reading, Vital

_SCHEMA = """
-- Alert events published and not yet confirmed by a delivery receipt (issue 14), and the
-- receipts that confirmed them.
CREATE TABLE IF NOT EXISTS awaiting_receipt (
    event_id TEXT PRIMARY KEY, severity TEXT NOT NULL, topic TEXT NOT NULL,
    payload BLOB NOT NULL, expires_at REAL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS receipts (
    event_id TEXT NOT NULL, consumer TEXT NOT NULL, at REAL NOT NULL
);
-- One row per (device, vital): raw readings name it by a small integer, not two strings.
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY, device TEXT NOT NULL, vital TEXT NOT NULL, UNIQUE (device, vital)
);
-- Clustered by time (compaction deletes the oldest range), no rowid and no second index:
-- about 24 bytes a reading, against about 63 for (rowid, ts, device, vital, value) + ts index.
CREATE TABLE IF NOT EXISTS raw_readings (
    ts REAL NOT NULL, series INTEGER NOT NULL, value REAL NOT NULL,
    PRIMARY KEY (ts, series)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS readings_minute (
    minute INTEGER NOT NULL, device TEXT NOT NULL, vital TEXT NOT NULL,
    n INTEGER NOT NULL, mean REAL NOT NULL, min REAL NOT NULL, max REAL NOT NULL,
    PRIMARY KEY (minute, device, vital)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id TEXT NOT NULL, event_id TEXT NOT NULL UNIQUE, state TEXT NOT NULL,
    kind TEXT NOT NULL, severity TEXT NOT NULL, at REAL NOT NULL, actor TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS journal_alert ON journal (alert_id);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,
    topic TEXT NOT NULL, payload BLOB NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL,
    created_at REAL NOT NULL, expires_at REAL, correlation BLOB
);
DROP INDEX IF EXISTS outbox_topic;
"""
# A new database gets 1 KiB pages (page_size only applies before the first table exists; an
# older 4 KiB database keeps its pages, and only loses some of the saving).
PAGE_SIZE = 1024
# Checkpoint at about 4 MiB of WAL (as SQLite's default of 1000 x 4 KiB pages did): a page that
# changes often (the outbox's) is written back once per checkpoint, not once per change.
WAL_AUTOCHECKPOINT_PAGES = 4096
# Truncate the WAL back to this after a checkpoint, so the file does not stay at its peak size.
JOURNAL_SIZE_LIMIT = 4 * 1024 * 1024
COMMIT_INTERVAL_S = 60.0
# Page cache of the hub's one connection, in KiB (SQLite's default is 2,000). The hub's hot pages
# are few (the right edge of the readings table, the outbox, the journal's tail: well under a
# hundred 1 KiB pages); a 2 MB cache only fills with pages read once (the hour each compaction
# folds), which took the soak's RSS up by 1.7 MB over its first seven hours.
CACHE_KIB = 512
# The sorter of a compaction's GROUP BY stays in memory (temp_store=MEMORY) rather than spilling
# to a temporary file on the SD card once it outgrows the page cache (about 7 MB a day at 4 x
# 1 Hz with the small cache); each statement folds at most this much of the readings, so that
# the sort stays small even for the backlog after days off (an hour at 4 x 1 Hz sorted ~0.9 MB
# at once, and the heap kept the hole: 10 minutes sort ~0.15 MB). Slices start at multiples of
# it since the epoch, so no minute is split between two of them.
COMPACT_SLICE_S = 600


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False
    # Absolute expiry (epoch seconds) for MQTT v5 message expiry; None never expires.
    expires_at: float | None = None
    # MQTT v5 correlation data (an ack response goes back with the request's).
    correlation_data: bytes | None = None


@dataclass(frozen=True, slots=True)
class OutboxRow:
    seq: int
    message: OutboundMessage
    created_at: float


@dataclass(frozen=True, slots=True)
class JournalEntry:
    seq: int
    alert_id: str
    event_id: str
    state: str
    kind: str
    severity: str
    at: datetime
    actor: str
    record: str


class Store:
    """The hub's database.

    ``commit_interval_s`` and ``flush_every`` bound the batch of raw readings a crash can lose;
    ``monotonic`` is the clock that measures the interval (a wall-clock step must not hold
    readings back or commit them every call).
    """

    def __init__(
        self,
        path: Path,
        *,
        flush_every: int = 2000,
        commit_interval_s: float = COMMIT_INTERVAL_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute(f"PRAGMA page_size={PAGE_SIZE}")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
        self._db.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
        self._db.execute("PRAGMA secure_delete=FAST")
        self._db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        self._db.execute("PRAGMA temp_store=MEMORY")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._migrate_autoincrement_outbox()
        self._db.executescript(_SCHEMA)
        self._series: dict[tuple[str, str], int] = {
            (device, vital): sid
            for sid, device, vital in self._db.execute("SELECT id, device, vital FROM series")
        }
        self._migrate_old_readings()
        # The old shape, for readers of the file (the status page's chart history): no writes.
        self._db.execute(
            "CREATE VIEW IF NOT EXISTS readings AS SELECT r.ts AS ts, s.device AS device,"
            " s.vital AS vital, r.value AS value FROM raw_readings r JOIN series s"
            " ON s.id = r.series")
        # Outbox rows acknowledged by the broker but not yet deleted on disk (see above).
        self._acked: set[int] = set()
        # AUTOINCREMENT's promise without its page: a seq is never handed out twice by this
        # Store, even after the highest row was deleted (the Outbox keys its state by seq).
        self._next_seq = int(self._db.execute(
            "SELECT COALESCE(MAX(seq), 0) FROM outbox").fetchone()[0]) + 1
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(outbox)")}
        if "correlation" not in columns:  # a store written by an older crs-hub
            self._db.execute("ALTER TABLE outbox ADD COLUMN correlation BLOB")
        self._pending_readings: list[tuple[float, str, str, float]] = []
        self._flush_every = flush_every
        self._commit_interval_s = commit_interval_s
        self._monotonic = monotonic
        self._batch_started: float | None = None

    def close(self) -> None:
        self.flush()
        if self._acked:
            with self._transaction(durable=False):
                done = self._delete_acked()
            self._acked -= done
        self._db.close()

    def _migrate_old_readings(self) -> None:
        """Databases made before the write budget kept raw readings as (ts, device, vital,
        value) rows with a ts index; move them into raw_readings once."""
        if self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table'"
                            " AND name = 'readings'").fetchone() is None:
            return
        with self._transaction():
            for device, vital in self._db.execute(
                    "SELECT DISTINCT device, vital FROM readings").fetchall():
                self._series_id(device, vital)
            self._db.execute(
                "INSERT OR REPLACE INTO raw_readings (ts, series, value)"
                " SELECT r.ts, s.id, r.value FROM readings r"
                " JOIN series s ON s.device = r.device AND s.vital = r.vital")
            self._db.execute("DROP TABLE readings")

    def _series_id(self, device: str, vital: str) -> int:
        """Inside a transaction: the id of (device, vital), created on first use."""
        key = (device, vital)
        sid = self._series.get(key)
        if sid is None:
            self._db.execute("INSERT OR IGNORE INTO series (device, vital) VALUES (?, ?)", key)
            sid = int(self._db.execute("SELECT id FROM series WHERE device = ? AND vital = ?",
                                       key).fetchone()[0])
            self._series[key] = sid
        return sid

    def _migrate_autoincrement_outbox(self) -> None:
        """Databases made before the write budget declared the outbox AUTOINCREMENT; rebuild
        it without (same rows, same seqs) so that inserts stop updating sqlite_sequence."""
        row = self._db.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'outbox'").fetchone()
        if row is None or "AUTOINCREMENT" not in row[0].upper():
            return
        columns = {info[1] for info in self._db.execute("PRAGMA table_info(outbox)")}
        with self._transaction():
            self._db.execute("DROP INDEX IF EXISTS outbox_topic")
            self._db.execute("ALTER TABLE outbox RENAME TO outbox_autoincrement")
            self._db.execute(
                "CREATE TABLE outbox (seq INTEGER PRIMARY KEY, topic TEXT NOT NULL,"
                " payload BLOB NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL,"
                " created_at REAL NOT NULL, expires_at REAL, correlation BLOB)")
            correlation = "correlation" if "correlation" in columns else "NULL"
            self._db.execute("INSERT INTO outbox SELECT seq, topic, payload, qos, retain,"
                             f" created_at, expires_at, {correlation} FROM outbox_autoincrement")
            self._db.execute("DROP TABLE outbox_autoincrement")

    # --- readings -------------------------------------------------------------------------
    def add_readings(self, readings: Iterable[Reading]) -> None:
        """Buffer readings; they are committed with the batch (see :meth:`flush_due`)."""
        self._pending_readings.extend(
            (r.observed_at.timestamp(), r.device, r.vital.value, r.value) for r in readings
        )
        if self._pending_readings and self._batch_started is None:
            self._batch_started = self._monotonic()
        self.flush_due()

    @property
    def buffered_readings(self) -> int:
        """Readings taken but not yet committed (what a crash now would lose)."""
        return len(self._pending_readings)

    def flush_due(self) -> None:
        """Commit the buffered readings if the batch is due: ``commit_interval_s`` since the
        first buffered reading, or ``flush_every`` readings. Cheap; the shell's timer calls
        this (every second is fine), so that a batch is committed even when readings stop."""
        if not self._pending_readings:
            return
        started = self._batch_started if self._batch_started is not None else self._monotonic()
        if (len(self._pending_readings) >= self._flush_every
                or self._monotonic() - started >= self._commit_interval_s):
            self.flush()

    def flush(self) -> None:
        """Commit the buffered readings now (one lazy ``synchronous=NORMAL`` transaction).

        Calling this every second undoes the write budget; timers call :meth:`flush_due`.
        """
        if not self._pending_readings:
            return
        rows, self._pending_readings = self._pending_readings, []
        self._batch_started = None
        known = dict(self._series)
        try:
            with self._transaction(durable=False):
                self._db.executemany(
                    "INSERT OR REPLACE INTO raw_readings (ts, series, value) VALUES (?, ?, ?)",
                    [(ts, self._series_id(device, vital), value)
                     for ts, device, vital, value in rows])
                done = self._delete_acked()
        except BaseException:
            self._series = known  # ids made in the rolled-back transaction do not exist
            raise
        self._acked -= done

    def compact_readings(self, now: datetime, raw_retention_s: float, minute_retention_s: float) -> int:
        """Fold raw readings older than the raw retention into per-minute rows; drop old minutes.

        Returns how many raw rows were folded. Losing a compaction in a power cut loses nothing
        (it runs again), so it commits lazily.
        """
        self.flush()
        cutoff = now.timestamp() - raw_retention_s
        with self._transaction(durable=False):
            start = self._db.execute("SELECT MIN(ts) FROM raw_readings").fetchone()[0]
            while start is not None and start < cutoff:
                stop = min(cutoff, (start // COMPACT_SLICE_S + 1) * COMPACT_SLICE_S)
                self._db.execute(
                    """
                    INSERT INTO readings_minute (minute, device, vital, n, mean, min, max)
                    SELECT CAST(r.ts / 60 AS INTEGER) AS m, s.device, s.vital, COUNT(*),
                           AVG(r.value), MIN(r.value), MAX(r.value)
                    FROM raw_readings r JOIN series s ON s.id = r.series
                    WHERE r.ts >= ? AND r.ts < ? GROUP BY m, s.device, s.vital
                    ON CONFLICT (minute, device, vital) DO UPDATE SET
                        mean = (mean * n + excluded.mean * excluded.n) / (n + excluded.n),
                        n = n + excluded.n,
                        min = MIN(min, excluded.min), max = MAX(max, excluded.max)
                    """,
                    (start, stop),
                )
                start = self._db.execute("SELECT MIN(ts) FROM raw_readings WHERE ts >= ?",
                                         (stop,)).fetchone()[0]
            folded = self._db.execute("DELETE FROM raw_readings WHERE ts < ?", (cutoff,)).rowcount
            self._db.execute(
                "DELETE FROM readings_minute WHERE minute < ?",
                (int((now.timestamp() - minute_retention_s) // 60),),
            )
            done = self._delete_acked()
        self._acked -= done
        return folded

    def stored_readings(self, vitals: Iterable[str], since: datetime) -> list[Reading]:
        """Readings of ``vitals`` from ``since`` on, oldest first: the per-minute means of
        compacted history, then the raw readings (for relearning baselines after a restart)."""
        self.flush()
        names = sorted(set(vitals))
        if not names:
            return []
        marks = ",".join("?" * len(names))
        start = since.timestamp()
        rows = self._db.execute(
            f"""
            SELECT minute * 60.0 + 30.0 AS ts, device, vital, mean FROM readings_minute
            WHERE vital IN ({marks}) AND minute * 60 >= ?
            UNION ALL
            SELECT r.ts, s.device, s.vital, r.value FROM raw_readings r
            JOIN series s ON s.id = r.series WHERE s.vital IN ({marks}) AND r.ts >= ?
            ORDER BY ts
            """,
            (*names, start, *names, start),
        ).fetchall()
        return [Reading(device, Vital(vital), float(value), datetime.fromtimestamp(ts, UTC))
                for ts, device, vital, value in rows]

    def last_reading_at(self) -> datetime | None:
        """When the hub last stored a reading (it was running then)."""
        self.flush()
        row = self._db.execute(
            "SELECT MAX(ts) FROM (SELECT MAX(ts) AS ts FROM raw_readings"
            " UNION ALL SELECT MAX(minute) * 60.0 + 59 FROM readings_minute)").fetchone()
        return datetime.fromtimestamp(row[0], UTC) if row and row[0] is not None else None

    def count_readings(self) -> tuple[int, int]:
        self.flush()
        raw = self._db.execute("SELECT COUNT(*) FROM raw_readings").fetchone()[0]
        minutes = self._db.execute("SELECT COUNT(*) FROM readings_minute").fetchone()[0]
        return int(raw), int(minutes)

    # --- alert journal + outbox -------------------------------------------------------------
    def record_transition(
        self, entry: JournalEntry, messages: Sequence[OutboundMessage], *,
        await_receipt: OutboundMessage | None = None,
    ) -> list[int]:
        """Journal one alert transition and queue its messages, atomically.

        Returns the outbox sequence numbers. Retained-state messages replace any older
        pending message for the same topic (only the newest state matters). ``await_receipt``:
        the event message, kept until a delivery receipt confirms it (same transaction, so a
        crash cannot leave an event published but not awaited).
        """
        with self._transaction():
            done = self._delete_acked()
            if await_receipt is not None:
                self._db.execute(
                    "INSERT OR REPLACE INTO awaiting_receipt (event_id, severity, topic, payload,"
                    " expires_at) VALUES (?, ?, ?, ?, ?)",
                    (entry.event_id, entry.severity, await_receipt.topic, await_receipt.payload,
                     await_receipt.expires_at))
            self._db.execute(
                "INSERT INTO journal (alert_id, event_id, state, kind, severity, at, actor, record)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    entry.alert_id,
                    entry.event_id,
                    entry.state,
                    entry.kind,
                    entry.severity,
                    entry.at.timestamp(),
                    entry.actor,
                    entry.record,
                ),
            )
            seqs = [self._enqueue(m, entry.at.timestamp()) for m in messages]
        self._acked -= done
        return seqs

    def awaiting_receipts(self) -> list[tuple[str, str, OutboundMessage]]:
        """(event_id, severity, event message) of every event still awaiting a receipt."""
        return [
            (event_id, severity, OutboundMessage(topic, bytes(payload), 1, False, expires_at))
            for event_id, severity, topic, payload, expires_at in self._db.execute(
                "SELECT event_id, severity, topic, payload, expires_at FROM awaiting_receipt")
        ]

    def confirm_receipt(self, event_id: str, consumer: str, at: datetime) -> None:
        """Journal a receipt; the event no longer awaits one."""
        with self._transaction():
            self._db.execute("INSERT INTO receipts (event_id, consumer, at) VALUES (?, ?, ?)",
                             (event_id, consumer, at.timestamp()))
            self._db.execute("DELETE FROM awaiting_receipt WHERE event_id = ?", (event_id,))

    def receipts(self, event_id: str) -> list[tuple[str, datetime]]:
        return [(consumer, datetime.fromtimestamp(at, UTC)) for consumer, at in self._db.execute(
            "SELECT consumer, at FROM receipts WHERE event_id = ? ORDER BY rowid", (event_id,))]

    def drop_awaiting(self, event_id: str) -> None:
        """An event that expired unconfirmed stops awaiting (the alarm already said so)."""
        with self._transaction():
            self._db.execute("DELETE FROM awaiting_receipt WHERE event_id = ?", (event_id,))

    def enqueue(self, message: OutboundMessage, now: datetime, *, exclude: Iterable[int] = ()) -> int:
        with self._transaction():
            done = self._delete_acked()
            seq = self._enqueue(message, now.timestamp(), exclude)
        self._acked -= done
        return seq

    def enqueue_many(self, messages: Sequence[OutboundMessage], now: datetime, *,
                     exclude: Iterable[int] = ()) -> list[int]:
        """Several messages in one durable commit (e.g. a heartbeat's device statuses): one
        fsync and one WAL page run instead of one per message."""
        skip = tuple(exclude)
        with self._transaction():
            done = self._delete_acked()
            seqs = [self._enqueue(m, now.timestamp(), skip) for m in messages]
        self._acked -= done
        return seqs

    def _delete_acked(self) -> set[int]:
        """Inside a transaction: delete the acknowledged rows; the caller forgets them only
        once the transaction has committed."""
        done = set(self._acked)
        if done:
            self._db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in done])
        return done

    def _enqueue(self, message: OutboundMessage, now: float, exclude: Iterable[int] = ()) -> int:
        if message.retain:
            skip = tuple(exclude)
            marks = ",".join("?" * len(skip))
            clause = f" AND seq NOT IN ({marks})" if skip else ""
            self._db.execute(
                f"DELETE FROM outbox WHERE topic = ? AND retain = 1{clause}",
                (message.topic, *skip),
            )
        seq = self._next_seq
        self._db.execute(
            "INSERT INTO outbox (seq, topic, payload, qos, retain, created_at, expires_at,"
            " correlation) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (seq, message.topic, message.payload, message.qos, int(message.retain), now,
             message.expires_at, message.correlation_data),
        )
        # Only advanced once the row is in: a failed insert rolls back and reuses nothing.
        self._next_seq = seq + 1
        return seq

    def pending(self, limit: int = 1000, *, after: int = 0) -> list[OutboxRow]:
        rows = self._db.execute(
            "SELECT seq, topic, payload, qos, retain, created_at, expires_at, correlation"
            " FROM outbox"
            " WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, limit + len(self._acked)),
        ).fetchall()
        rows = [r for r in rows if r[0] not in self._acked][:limit]
        return [
            OutboxRow(
                seq=seq,
                message=OutboundMessage(topic, bytes(payload), qos, bool(retain), expires_at,
                                        None if correlation is None else bytes(correlation)),
                created_at=created_at,
            )
            for seq, topic, payload, qos, retain, created_at, expires_at, correlation in rows
        ]

    def delete_outbox(self, seq: int) -> None:
        """The broker acknowledged row ``seq``: it leaves ``pending()`` now and the disk with
        the next transaction (a crash before that re-publishes it once, never loses it)."""
        if self._db.execute("SELECT 1 FROM outbox WHERE seq = ?", (seq,)).fetchone():
            self._acked.add(seq)

    def outbox_seqs(self, seqs: Iterable[int]) -> set[int]:
        """Which of ``seqs`` are still pending in the outbox."""
        wanted = set(seqs) - self._acked
        if not wanted:
            return set()
        marks = ",".join("?" * len(wanted))
        return {int(seq) for (seq,) in self._db.execute(
            f"SELECT seq FROM outbox WHERE seq IN ({marks})", tuple(wanted))}

    def restore_outbox(self, rows: Sequence[OutboxRow]) -> int:
        """Put acknowledged rows back under their own seq (so they keep their place, oldest
        first), durably; rows still in the outbox are left as they are. Returns how many."""
        restored = 0
        with self._transaction():
            done = self._delete_acked()
            for row in rows:
                m = row.message
                cursor = self._db.execute(
                    "INSERT OR IGNORE INTO outbox (seq, topic, payload, qos, retain, created_at,"
                    " expires_at, correlation) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (row.seq, m.topic, m.payload, m.qos, int(m.retain), row.created_at,
                     m.expires_at, m.correlation_data))
                restored += cursor.rowcount
        self._acked -= done
        return restored

    def outbox_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]) - len(self._acked)

    def journal(self, alert_id: str | None = None) -> list[JournalEntry]:
        query = "SELECT seq, alert_id, event_id, state, kind, severity, at, actor, record FROM journal"
        params: tuple[str, ...] = ()
        if alert_id is not None:
            query += " WHERE alert_id = ?"
            params = (alert_id,)
        return [
            JournalEntry(seq, a, e, st, k, sev, datetime.fromtimestamp(at, UTC), actor, rec)
            for seq, a, e, st, k, sev, at, actor, rec in self._db.execute(query + " ORDER BY seq", params)
        ]

    def open_alert_records(self) -> list[JournalEntry]:
        """The latest journal entry of every alert that has not been cleared."""
        rows = self._db.execute(
            """
            SELECT j.seq, j.alert_id, j.event_id, j.state, j.kind, j.severity, j.at, j.actor,
                   j.record
            FROM journal j
            JOIN (SELECT alert_id, MAX(seq) AS seq FROM journal GROUP BY alert_id) last
              ON last.seq = j.seq
            WHERE j.alert_id NOT IN (SELECT alert_id FROM journal WHERE state = 'cleared')
            ORDER BY j.seq
            """
        ).fetchall()
        return [
            JournalEntry(seq, a, e, st, k, sev, datetime.fromtimestamp(at, UTC), actor, rec)
            for seq, a, e, st, k, sev, at, actor, rec in rows
        ]

    def _transaction(self, *, durable: bool = True) -> _Transaction:
        return _Transaction(self._db, durable)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT; ``durable`` commits with synchronous=FULL (fsync before
    COMMIT returns), otherwise NORMAL. The pragma is per connection and cannot change inside a
    transaction, so it is set before each BEGIN."""

    def __init__(self, db: sqlite3.Connection, durable: bool) -> None:
        self._db = db
        self._durable = durable

    def __enter__(self) -> None:
        self._db.execute(f"PRAGMA synchronous={'FULL' if self._durable else 'NORMAL'}")
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
