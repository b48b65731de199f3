from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from daemon.readings import Reading, Vital
from daemon.store import JournalEntry, OutboundMessage, Store

T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def entry(alert_id: str, event_id: str, state: str, at: datetime) -> JournalEntry:
    return JournalEntry(0, alert_id, event_id, state, "fever", "high", at, "hub", "{}")


def test_store_uses_wal_and_full_sync(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_transition_and_its_messages_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    store = Store(path)
    seqs = store.record_transition(entry("a1", "e1", "raised", T0), [
        OutboundMessage("t/event", b"event", 1, False, 123.0),
        OutboundMessage("t/state", b"state", 1, True),
    ])
    assert seqs == [1, 2]
    store._db.close()  # no clean shutdown
    reopened = Store(path)
    rows = reopened.pending()
    assert [(r.seq, r.message.topic, r.message.payload, r.message.retain, r.message.expires_at)
            for r in rows] == [(1, "t/event", b"event", False, 123.0),
                               (2, "t/state", b"state", True, None)]
    assert [e.alert_id for e in reopened.open_alert_records()] == ["a1"]


def test_retained_state_coalesces_but_events_never_do(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    for i in range(3):
        store.record_transition(entry("a1", f"e{i}", "raised", T0), [
            OutboundMessage("t/event", f"event{i}".encode()),
            OutboundMessage("t/state", f"state{i}".encode(), 1, True),
        ])
    payloads = [r.message.payload for r in store.pending()]
    assert payloads == [b"event0", b"event1", b"event2", b"state2"]


def test_coalescing_spares_messages_already_in_flight(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    first = store.enqueue(OutboundMessage("t/state", b"old", 1, True), T0)
    store.enqueue(OutboundMessage("t/state", b"new", 1, True), T0, exclude=[first])
    assert [r.message.payload for r in store.pending()] == [b"old", b"new"]


def test_open_alerts_exclude_cleared_ones_and_give_the_latest_entry(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    store.record_transition(entry("a1", "e1", "raised", T0), [])
    store.record_transition(entry("a2", "e2", "raised", T0), [])
    store.record_transition(entry("a1", "e3", "severity_changed", T0 + timedelta(minutes=1)), [])
    store.record_transition(entry("a2", "e4", "cleared", T0 + timedelta(minutes=2)), [])
    open_ = store.open_alert_records()
    assert [(e.alert_id, e.event_id, e.state) for e in open_] == [("a1", "e3", "severity_changed")]
    assert [e.state for e in store.journal("a2")] == ["raised", "cleared"]


def test_readings_are_batched_and_compacted_into_minutes(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite3", flush_every=10_000)
    readings = [Reading("strap", Vital.HEART_RATE, 60.0 + (i % 2), T0 + timedelta(seconds=i))
                for i in range(600)]
    store.add_readings(readings)
    assert store.count_readings() == (600, 0)
    folded = store.compact_readings(T0 + timedelta(hours=49), raw_retention_s=48 * 3600,
                                    minute_retention_s=35 * 86400)
    assert folded == 600
    assert store.count_readings() == (0, 10)
    mean, lo, hi, n = store._db.execute(
        "SELECT mean, min, max, n FROM readings_minute ORDER BY minute LIMIT 1").fetchone()
    assert (mean, lo, hi, n) == (60.5, 60.0, 61.0, 60)
    store.compact_readings(T0 + timedelta(days=40), 48 * 3600, 35 * 86400)
    assert store.count_readings() == (0, 0)
