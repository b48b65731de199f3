"""The hub's durable store (stdlib sqlite3, WAL): readings, the alert journal and the outbox.

Why hand-written SQL rather than an ORM: three small tables, and the outbox semantics
(write before publish, delete only on broker acknowledgement) must be visible in one place.

Durability: the connection runs with ``synchronous=FULL``, and every alert transition is
written to the journal *and* the outbox in one transaction before anything is published, so a
power cut either loses the whole transition before it was accepted or keeps all of it. Readings
are buffered and committed in batches (at most ``flush_every`` readings or one flush call);
a crash can lose that last batch of raw readings, never an alert.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from daemon.readings import Reading

_SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    ts REAL NOT NULL, device TEXT NOT NULL, vital TEXT NOT NULL, value REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS readings_ts ON readings (ts);
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
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL, payload BLOB NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL,
    created_at REAL NOT NULL, expires_at REAL, correlation BLOB
);
CREATE INDEX IF NOT EXISTS outbox_topic ON outbox (topic);
"""


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
    def __init__(self, path: Path, *, flush_every: int = 500) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(outbox)")}
        if "correlation" not in columns:  # a store written by an older crs-hub
            self._db.execute("ALTER TABLE outbox ADD COLUMN correlation BLOB")
        self._pending_readings: list[tuple[float, str, str, float]] = []
        self._flush_every = flush_every

    def close(self) -> None:
        self.flush()
        self._db.close()

    # --- readings -------------------------------------------------------------------------
    def add_readings(self, readings: Iterable[Reading]) -> None:
        self._pending_readings.extend(
            (r.observed_at.timestamp(), r.device, r.vital.value, r.value) for r in readings
        )
        if len(self._pending_readings) >= self._flush_every:
            self.flush()

    def flush(self) -> None:
        if not self._pending_readings:
            return
        rows, self._pending_readings = self._pending_readings, []
        with self._transaction():
            self._db.executemany("INSERT INTO readings VALUES (?, ?, ?, ?)", rows)

    def compact_readings(self, now: datetime, raw_retention_s: float, minute_retention_s: float) -> int:
        """Fold raw readings older than the raw retention into per-minute rows; drop old minutes.

        Returns how many raw rows were folded.
        """
        self.flush()
        cutoff = now.timestamp() - raw_retention_s
        with self._transaction():
            self._db.execute(
                """
                INSERT INTO readings_minute (minute, device, vital, n, mean, min, max)
                SELECT CAST(ts / 60 AS INTEGER) AS m, device, vital, COUNT(*), AVG(value),
                       MIN(value), MAX(value)
                FROM readings WHERE ts < ? GROUP BY m, device, vital
                ON CONFLICT (minute, device, vital) DO UPDATE SET
                    mean = (mean * n + excluded.mean * excluded.n) / (n + excluded.n),
                    n = n + excluded.n,
                    min = MIN(min, excluded.min), max = MAX(max, excluded.max)
                """,
                (cutoff,),
            )
            folded = self._db.execute("DELETE FROM readings WHERE ts < ?", (cutoff,)).rowcount
            self._db.execute(
                "DELETE FROM readings_minute WHERE minute < ?",
                (int((now.timestamp() - minute_retention_s) // 60),),
            )
        return folded

    def count_readings(self) -> tuple[int, int]:
        self.flush()
        raw = self._db.execute("SELECT COUNT(*) FROM readings").fetchone()[0]
        minutes = self._db.execute("SELECT COUNT(*) FROM readings_minute").fetchone()[0]
        return int(raw), int(minutes)

    # --- alert journal + outbox -------------------------------------------------------------
    def record_transition(
        self, entry: JournalEntry, messages: Sequence[OutboundMessage]
    ) -> list[int]:
        """Journal one alert transition and queue its messages, atomically.

        Returns the outbox sequence numbers. Retained-state messages replace any older
        pending message for the same topic (only the newest state matters).
        """
        with self._transaction():
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
            return [self._enqueue(m, entry.at.timestamp()) for m in messages]

    def enqueue(self, message: OutboundMessage, now: datetime, *, exclude: Iterable[int] = ()) -> int:
        with self._transaction():
            return self._enqueue(message, now.timestamp(), exclude)

    def _enqueue(self, message: OutboundMessage, now: float, exclude: Iterable[int] = ()) -> int:
        if message.retain:
            skip = tuple(exclude)
            marks = ",".join("?" * len(skip))
            clause = f" AND seq NOT IN ({marks})" if skip else ""
            self._db.execute(
                f"DELETE FROM outbox WHERE topic = ? AND retain = 1{clause}",
                (message.topic, *skip),
            )
        cursor = self._db.execute(
            "INSERT INTO outbox (topic, payload, qos, retain, created_at, expires_at, correlation)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (message.topic, message.payload, message.qos, int(message.retain), now,
             message.expires_at, message.correlation_data),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def pending(self, limit: int = 1000, *, after: int = 0) -> list[OutboxRow]:
        rows = self._db.execute(
            "SELECT seq, topic, payload, qos, retain, created_at, expires_at, correlation"
            " FROM outbox"
            " WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, limit),
        ).fetchall()
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
        with self._transaction():
            self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))

    def outbox_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

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

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
