"""The shell's own duties that need no broker: failing jobs, stale vitals."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from daemon.alerts import AlertKind
from daemon.hub import JOB_FAILURES_FOR_FAULT, Hub, vitals_sample
from daemon.readings import Reading, Vital
from daemon.service import status_line
from tests.support.hubs import T0, FakeClock, hub_config


def test_a_job_that_keeps_failing_raises_hub_fault_and_its_recovery_clears_it(
        tmp_path: Path) -> None:
    hub = Hub(hub_config(tmp_path, 1), clock=FakeClock())
    broken = {"yes": True}

    def compact() -> None:
        if broken["yes"]:
            raise RuntimeError("database is locked")

    job = hub._on_loop(compact)
    for _ in range(JOB_FAILURES_FOR_FAULT - 1):
        asyncio.run(job())
    assert AlertKind.HUB_FAULT not in hub.open_alert_kinds()  # one failure is not a fault
    asyncio.run(job())
    assert hub.failing_jobs == ["compact"]
    assert AlertKind.HUB_FAULT in hub.open_alert_kinds()
    assert "HUB FAULT (failing: compact)" in status_line(hub, None)
    asyncio.run(job())  # still failing: still one alarm
    assert hub.open_alert_kinds().count(AlertKind.HUB_FAULT) == 1
    broken["yes"] = False
    asyncio.run(job())
    assert hub.failing_jobs == [] and AlertKind.HUB_FAULT not in hub.open_alert_kinds()
    journal = [(e.kind, e.state) for e in hub.store.journal()]
    assert journal.count(("hub_fault", "raised")) == 1
    assert journal.count(("hub_fault", "cleared")) == 1
    hub.store.close()


def test_a_tick_that_raises_does_not_feed_the_watchdog(tmp_path: Path) -> None:
    hub = Hub(hub_config(tmp_path, 1), clock=FakeClock())
    before = hub.last_tick_monotonic

    def submit(*_: object) -> None:
        raise RuntimeError("the monitor is broken")

    hub.submit = submit  # type: ignore[method-assign,assignment]
    job = hub._on_loop(hub.tick)
    asyncio.run(job())
    assert hub.last_tick_monotonic == before
    assert hub.job_failures == {"tick": 1}
    hub.store.close()


def test_a_vital_older_than_its_stale_window_is_sent_as_null() -> None:
    now = T0 + timedelta(hours=3)
    latest = {
        Vital.TEMPERATURE: Reading("temp-patch", Vital.TEMPERATURE, 38.4, T0),  # 3 h old
        Vital.HEART_RATE: Reading("chest-strap", Vital.HEART_RATE, 88, now - timedelta(seconds=20)),
    }
    stale = {Vital.TEMPERATURE: 600.0, Vital.HEART_RATE: 300.0}
    sample = vitals_sample(latest, now, stale)
    assert sample is not None
    assert sample.temperature_c is None and sample.heart_rate_bpm == 88
    assert sample.observed_at == now - timedelta(seconds=20)
    assert vitals_sample({Vital.TEMPERATURE: latest[Vital.TEMPERATURE]}, now, stale) is None
