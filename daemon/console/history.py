"""The console's own SQLite history: alert events (deduplicated by ``event_id``), vitals samples
for the charts, and the acknowledgements nurses sent from this console."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from daemon.payloads import AlertEvent, VitalsSample

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    event_id TEXT PRIMARY KEY,
    alert_id TEXT NOT NULL,
    hub_id TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    event_at TEXT NOT NULL,
    received_at TEXT NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_patient ON events (hub_id, patient_id, event_at);
CREATE INDEX IF NOT EXISTS events_time ON events (event_at);
CREATE TABLE IF NOT EXISTS vitals (
    hub_id TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    observed_at TEXT NOT NULL,
    temperature_c REAL,
    heart_rate_bpm REAL,
    spo2_percent REAL,
    PRIMARY KEY (hub_id, patient_id, observed_at)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS acks_sent (
    id INTEGER PRIMARY KEY,
    alert_id TEXT NOT NULL,
    hub_id TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    actor TEXT NOT NULL,
    note TEXT,
    sent_at TEXT NOT NULL,
    result TEXT NOT NULL
);
"""


def _iso(value: datetime) -> str:
    # Fixed width UTC text sorts like the time it names.
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


@dataclass(frozen=True)
class AckRecord:
    alert_id: str
    hub_id: str
    patient_id: str
    actor: str
    note: str | None
    sent_at: datetime
    result: str


class History:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a power cut may lose the last commits, never corrupt the file;
        # the hub's outbox, not this history, is the delivery guarantee.
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    def add_event(self, event: AlertEvent, received_at: datetime) -> bool:
        """True when new; False for a duplicate (same event_id: a retry or a restart)."""
        cursor = self.db.execute(
            "INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?, ?, ?)",
            (event.event_id, event.alert_id, event.hub_id, event.patient_id,
             _iso(event.event_at), _iso(received_at), event.model_dump_json()))
        return cursor.rowcount == 1

    def events(self, hub_id: str | None = None, patient_id: str | None = None, *,
               since: datetime | None = None, until: datetime | None = None,
               limit: int = 500) -> list[AlertEvent]:
        """Newest first."""
        clauses, args = [], []
        if hub_id is not None:
            clauses.append("hub_id = ? AND patient_id = ?")
            args += [hub_id, patient_id]
        if since is not None:
            clauses.append("event_at >= ?")
            args.append(_iso(since))
        if until is not None:
            clauses.append("event_at < ?")
            args.append(_iso(until))
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self.db.execute(
            f"SELECT payload FROM events {where} ORDER BY event_at DESC, rowid DESC LIMIT ?",
            (*args, limit)).fetchall()
        return [AlertEvent.model_validate_json(payload) for (payload,) in rows]

    def event_count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM events").fetchone()[0])

    def add_vitals(self, hub_id: str, patient_id: str, sample: VitalsSample) -> None:
        self.db.execute("INSERT OR REPLACE INTO vitals VALUES (?, ?, ?, ?, ?, ?)",
                        (hub_id, patient_id, _iso(sample.observed_at), sample.temperature_c,
                         sample.heart_rate_bpm, sample.spo2_percent))

    def vitals(self, hub_id: str, patient_id: str, since: datetime,
               until: datetime) -> list[VitalsSample]:
        rows = self.db.execute(
            "SELECT observed_at, temperature_c, heart_rate_bpm, spo2_percent FROM vitals "
            "WHERE hub_id = ? AND patient_id = ? AND observed_at >= ? AND observed_at < ? "
            "ORDER BY observed_at", (hub_id, patient_id, _iso(since), _iso(until))).fetchall()
        return [VitalsSample(observed_at=_parse(t), temperature_c=temp, heart_rate_bpm=hr,
                             spo2_percent=spo2) for t, temp, hr, spo2 in rows]

    def prune_vitals(self, now: datetime, keep_days: int) -> int:
        cursor = self.db.execute("DELETE FROM vitals WHERE observed_at < ?",
                                 (_iso(now - timedelta(days=keep_days)),))
        return cursor.rowcount

    def add_ack(self, record: AckRecord) -> None:
        self.db.execute(
            "INSERT INTO acks_sent (alert_id, hub_id, patient_id, actor, note, sent_at, result) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (record.alert_id, record.hub_id, record.patient_id, record.actor, record.note,
             _iso(record.sent_at), record.result))

    def acks(self, *, since: datetime, until: datetime,
             hub_id: str | None = None, patient_id: str | None = None) -> list[AckRecord]:
        clause, args = "", []
        if hub_id is not None:
            clause, args = " AND hub_id = ? AND patient_id = ?", [hub_id, patient_id]
        rows = self.db.execute(
            "SELECT alert_id, hub_id, patient_id, actor, note, sent_at, result FROM acks_sent "
            f"WHERE sent_at >= ? AND sent_at < ?{clause} ORDER BY sent_at",
            (_iso(since), _iso(until), *args)).fetchall()
        return [AckRecord(a, h, p, actor, note, _parse(t), result)
                for a, h, p, actor, note, t, result in rows]
