"""The receipt tracker's own state stays bounded however long the hub runs (the delivery
behaviour itself is tested with a real broker in test_receipts.py)."""

from __future__ import annotations

from pathlib import Path

from daemon.alerts import Severity
from daemon.config import AlertSettings
from daemon.receipts import ReceiptTracker
from daemon.store import OutboundMessage, Store

KEPT = 1000  # daemon.receipts.RECEIPT_TIMES_KEPT


def test_only_the_latest_times_to_receipt_are_kept(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    now = [0.0]
    tracker = ReceiptTracker(store, AlertSettings(receipt_consumers=["team"]),
                             monotonic=lambda: now[0], wall_clock=lambda: 1.8e9 + now[0])
    try:
        for i in range(KEPT + 20):
            tracker.track(f"e{i}", Severity.HIGH, OutboundMessage("t", b"{}"))
            now[0] += 1.0 + (i % 3)
            assert tracker.confirm(f"e{i}", "team")
        assert tracker.confirmed == KEPT + 20
        assert tracker.pending == 0
        times = list(tracker.time_to_receipt_s)
        assert len(times) == KEPT
        # the latest, in order: event i waited 1 + i % 3 s
        assert times[-3:] == [1.0 + (i % 3) for i in range(KEPT + 17,
                                                           KEPT + 20)]
    finally:
        store.close()
