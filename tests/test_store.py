from __future__ import annotations

import ctypes
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from daemon.readings import Reading, Vital
from daemon.store import JournalEntry, OutboundMessage, Store

T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def entry(alert_id: str, event_id: str, state: str, at: datetime) -> JournalEntry:
    return JournalEntry(0, alert_id, event_id, state, "fever", "high", at, "hub", "{}")


def test_store_uses_wal_and_full_sync(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert store._db.execute("PRAGMA page_size").fetchone()[0] == 1024
    assert store._db.execute("PRAGMA secure_delete").fetchone()[0] == 2  # FAST


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def synchronous_of_each_commit(store: Store) -> list[tuple[str, set[str]]]:
    """Trace (synchronous level, tables written) of every transaction from now on."""
    seen: list[tuple[str, set[str]]] = []
    state: dict[str, Any] = {"sync": "", "tables": set()}

    def trace(sql: str) -> None:
        words = sql.replace("(", " ").split()
        text = " ".join(words).upper()
        if text.startswith("PRAGMA SYNCHRONOUS="):
            state["sync"] = text.split("=", 1)[1]
        elif text.startswith(("INSERT", "DELETE")):
            upper = [w.upper() for w in words]
            key = "INTO" if "INTO" in upper else "FROM"
            state["tables"].add(words[upper.index(key) + 1])
        elif text == "COMMIT":
            seen.append((state["sync"], state["tables"]))
            state["tables"] = set()

    store._db.set_trace_callback(trace)
    return seen


def test_alerts_and_outbox_inserts_commit_with_full_sync_readings_lazily(tmp_path: Path) -> None:
    clock = Clock()
    store = Store(tmp_path / "s.sqlite3", monotonic=clock)
    commits = synchronous_of_each_commit(store)
    store.record_transition(entry("a1", "e1", "raised", T0), [OutboundMessage("t/e", b"e")])
    store.enqueue(OutboundMessage("t/s", b"s", 1, True), T0)
    store.add_readings([Reading("strap", Vital.HEART_RATE, 70.0, T0)])
    clock.t = 60.0
    store.flush_due()
    assert commits == [("FULL", {"journal", "outbox"}), ("FULL", {"outbox"}),
                       ("NORMAL", {"series", "raw_readings"})]


def test_readings_commit_in_batches_on_the_monotonic_clock(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    clock = Clock()
    store = Store(path, monotonic=clock)
    on_disk = sqlite3.connect(path)

    def committed() -> int:
        return int(on_disk.execute("SELECT COUNT(*) FROM raw_readings").fetchone()[0])

    for i in range(59):
        clock.t = float(i)
        store.add_readings([Reading("strap", Vital.HEART_RATE, 70.0, T0 + timedelta(seconds=i))])
        store.flush_due()
    assert committed() == 0 and store.buffered_readings == 59
    clock.t = 60.0
    store.flush_due()
    assert committed() == 59 and store.buffered_readings == 0
    store.add_readings([Reading("strap", Vital.HEART_RATE, 71.0, T0 + timedelta(seconds=60))])
    assert committed() == 59
    store.flush()
    assert committed() == 60


def test_a_crash_loses_at_most_the_uncommitted_batch_never_an_alert(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    clock = Clock()
    store = Store(path, monotonic=clock)
    store.add_readings([Reading("strap", Vital.HEART_RATE, 70.0, T0)])
    clock.t = 61.0
    store.add_readings([Reading("strap", Vital.HEART_RATE, 71.0, T0 + timedelta(seconds=61))])
    store.add_readings([Reading("strap", Vital.HEART_RATE, 72.0, T0 + timedelta(seconds=62))])
    store.record_transition(entry("a1", "e1", "raised", T0), [OutboundMessage("t/e", b"e")])
    store._db.close()  # no clean shutdown
    reopened = Store(path)
    # The first add_readings after 60 s committed the batch it completed; the last is lost.
    assert reopened.count_readings() == (2, 0)
    assert [r.message.payload for r in reopened.pending()] == [b"e"]


def test_acknowledged_rows_leave_pending_at_once_and_disk_with_the_next_commit(
        tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    store = Store(path)
    first = store.enqueue(OutboundMessage("t/e", b"one"), T0)
    store.delete_outbox(first)
    assert store.pending() == [] and store.outbox_count() == 0
    on_disk = sqlite3.connect(path)
    assert on_disk.execute("SELECT seq FROM outbox").fetchall() == [(first,)]
    second = store.enqueue(OutboundMessage("t/e", b"two"), T0)
    assert second > first  # never reused, although the highest row is gone
    assert on_disk.execute("SELECT seq FROM outbox").fetchall() == [(second,)]
    store.delete_outbox(second)
    store.close()
    assert on_disk.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0


def test_an_acknowledged_row_not_yet_deleted_is_republished_after_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    store = Store(path)
    seq = store.enqueue(OutboundMessage("t/e", b"one"), T0)
    store.delete_outbox(seq)
    store._db.close()  # crash: the delete never reached the disk
    assert [r.message.payload for r in Store(path).pending()] == [b"one"]  # a duplicate, not a loss


def test_a_database_from_before_the_write_budget_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE readings (ts REAL NOT NULL, device TEXT NOT NULL, vital TEXT NOT NULL,
                               value REAL NOT NULL);
        CREATE INDEX readings_ts ON readings (ts);
        CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL,
            payload BLOB NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL,
            created_at REAL NOT NULL, expires_at REAL);
        CREATE INDEX outbox_topic ON outbox (topic);
    """)
    old.executemany("INSERT INTO readings VALUES (?, ?, ?, ?)",
                    [(T0.timestamp() + i, "strap", "heart_rate", 70.0 + i) for i in range(5)])
    old.execute("INSERT INTO outbox VALUES (7, 't/e', x'65', 1, 0, 0, NULL)")
    old.commit()
    old.close()
    store = Store(path)
    assert store.count_readings() == (5, 0)
    assert [(r.seq, r.message.payload) for r in store.pending()] == [(7, b"e")]
    assert store.enqueue(OutboundMessage("t/e", b"f"), T0) == 8
    kinds = dict(store._db.execute("SELECT name, type FROM sqlite_master").fetchall())
    assert kinds["readings"] == "view" and "outbox_topic" not in kinds
    # Readers of the old shape (the status page's chart history) still find the rows.
    assert store._db.execute("SELECT COUNT(*), MIN(value) FROM readings WHERE vital ="
                             " 'heart_rate' AND device = 'strap'").fetchone() == (5, 70.0)
    tables = set(kinds)
    assert "sqlite_sequence" not in tables or store._db.execute(
        "SELECT COUNT(*) FROM sqlite_sequence WHERE name = 'outbox'").fetchone()[0] == 0


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


def test_enqueue_many_is_one_durable_commit_with_the_same_coalescing(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    old = store.enqueue(OutboundMessage("t/a", b"old", 1, True), T0)
    commits = synchronous_of_each_commit(store)
    seqs = store.enqueue_many([OutboundMessage("t/a", b"a", 1, True),
                               OutboundMessage("t/b", b"b", 1, True),
                               OutboundMessage("t/e", b"e")], T0)
    assert commits == [("FULL", {"outbox"})]
    assert seqs == [old + 1, old + 2, old + 3]
    assert [r.message.payload for r in store.pending()] == [b"a", b"b", b"e"]


def test_the_status_pages_chart_history_reads_the_stores_readings(tmp_path: Path) -> None:
    from daemon.vitals_chart import load_history

    path = tmp_path / "s.sqlite3"
    store = Store(path)
    store.add_readings([Reading("patch", Vital.TEMPERATURE, 37.0 + i / 100,
                                T0 + timedelta(minutes=i)) for i in range(10)]
                       + [Reading("strap", Vital.HEART_RATE, 80.0, T0 + timedelta(minutes=3))])
    store.flush()
    history = load_history(path, T0 + timedelta(hours=1), off_body_below_c=34.0, marker_label={})
    assert len(history.temperature) == 10 and len(history.heart_rate) == 1


def _sqlite_library() -> ctypes.CDLL:
    """The libsqlite3 this process's sqlite3 module uses (dlopen returns the loaded one), for
    its memory counters, which Python does not expose."""
    maps = Path("/proc/self/maps").read_text().splitlines()
    path = next(line.split()[-1] for line in maps if "/libsqlite3.so" in line)
    lib = ctypes.CDLL(path)
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    lib.sqlite3_memory_highwater.restype = ctypes.c_int64
    lib.sqlite3_memory_highwater.argtypes = [ctypes.c_int]
    return lib


def hours_of_readings(store: Store, start_h: int, hours: int, devices: int = 4) -> None:
    """``hours`` of ``devices`` wearables at 1 Hz, committed an hour at a time."""
    for hour in range(start_h, start_h + hours):
        store.add_readings(
            Reading(f"dev-{d}", Vital.TEMPERATURE, 36.5 + (s % 7) / 10,
                    T0 + timedelta(seconds=hour * 3600 + s))
            for s in range(3600) for d in range(devices))
        store.flush()


def test_the_page_cache_stays_small_as_the_database_grows(tmp_path: Path) -> None:
    """SQLite's default cache (2,000 KiB) filled with pages the hub reads once: +1.7 MB of RSS
    over the soak's first hours."""
    lib = _sqlite_library()
    before = lib.sqlite3_memory_used()
    store = Store(tmp_path / "s.sqlite3")
    hours_of_readings(store, 0, 6)  # ~2.5 MB of pages written through the cache
    store.compact_readings(T0 + timedelta(hours=6), 3 * 3600, 35 * 86400)  # reads 3 h back
    try:
        assert lib.sqlite3_memory_used() - before <= 1_000_000
    finally:
        store.close()


def test_a_backlog_of_readings_is_compacted_without_one_large_sort(tmp_path: Path) -> None:
    """After days off, a whole retention's worth of readings is due at once: folded ten minutes
    at a time, the in-memory sort of the GROUP BY stays small (~0.15 MB a slice at 4 x 1 Hz;
    12 h in one statement sorted 11 MB)."""
    lib = _sqlite_library()
    store = Store(tmp_path / "s.sqlite3")
    hours_of_readings(store, 0, 12)
    before = lib.sqlite3_memory_used()
    lib.sqlite3_memory_highwater(1)
    try:
        folded = store.compact_readings(T0 + timedelta(hours=12), 0, 35 * 86400)
        assert folded == 12 * 3600 * 4
        assert lib.sqlite3_memory_highwater(0) - before <= 600_000
        assert store.count_readings() == (0, 12 * 60 * 4)
        means = store._db.execute("SELECT DISTINCT n, round(mean, 9), min, max"
                                  " FROM readings_minute").fetchall()
        # 60 readings a minute each; s % 7 over a minute starting at a multiple of 60
        assert all(n == 60 for n, *_ in means) and {(lo, hi) for *_, lo, hi in means} == {
            (36.5, 37.1)}
    finally:
        store.close()
