"""Issue 14, "Tests with real faults", counted at the subscriber: mosquitto with the shipped
home-broker config is killed with -9 at seeded random moments during alert traffic, the
persistent v5 subscriber goes offline at times, and it confirms every alert event with a
delivery receipt. Every event the hub journaled must reach the subscriber, the hub must have
re-sent while the subscriber was away, and nothing may await a receipt after the drain.

The long version (30 kills) is ``python -m bench faults``; tests/support/receipt_faults.py has the
scenario."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.broker_conf import shipped_settings
from tests.support.receipt_faults import ReceiptFaultRun
from tests.support.requirements import require_binary

pytestmark = pytest.mark.integration


def test_broker_kill_9_with_an_offline_at_times_subscriber_loses_no_event(tmp_path: Path) -> None:
    run = ReceiptFaultRun(tmp_path, require_binary("mosquitto"), kills=6, seed=1414)
    outcome = run.run()

    # The broker ran the shipped persistence settings.
    config = (tmp_path / "receipts-mosquitto" / "mosquitto.conf").read_text().splitlines()
    assert set(shipped_settings()) <= set(config) and "autosave_on_changes true" in config
    assert outcome.kills == 6 and outcome.offline_periods >= 1
    assert len(outcome.journaled) >= 30, "too little alert traffic to mean anything"
    assert outcome.lost == set(), f"{len(outcome.lost)} journaled events never arrived"
    # Re-sends happened while the subscriber was away, and every event was confirmed once.
    assert outcome.resent_while_away > 0
    assert outcome.awaiting_end == 0
    assert outcome.confirmed == len(outcome.journaled) == len(outcome.time_to_receipt_s)
    assert outcome.ignored == 0
