"""Therapy settings -> monitoring windows, "day N of M", spot-check reminders, scheduler jobs."""

from __future__ import annotations

import itertools
import tomllib
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from daemon.therapy import (
    MonitoringWindow,
    Purpose,
    TherapySettings,
    due_between,
    due_items,
    monitoring_windows,
    scheduler_jobs,
    spot_check_times,
    status_at,
)
from daemon.therapy_schedule import fire_times, schedule_therapy

NY = ZoneInfo("America/New_York")

# Teclistamab's US step-up schedule (clinical.md §2.3): days 1, 4 and 7, 48 h after each.
TECLISTAMAB = """
[therapy]
product_class = "bispecific"
product = "teclistamab"
timezone = "America/New_York"

[[therapy.doses]]
at = 2026-12-01T09:00:00
label = "step-up 1"
kind = "step_up"

[[therapy.doses]]
at = 2026-12-04T09:00:00
label = "step-up 2"
kind = "step_up"

[[therapy.doses]]
at = 2026-12-07T09:00:00
label = "first treatment dose"
kind = "target"

[[therapy.doses]]
at = 2026-12-14T09:00:00
label = "week 2 dose"
kind = "treatment"
"""


def load(text: str) -> TherapySettings:
    return TherapySettings.model_validate(tomllib.loads(text)["therapy"])


def ny(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=NY).astimezone(UTC)


def test_step_up_doses_give_48_hour_windows_and_none_for_later_doses() -> None:
    windows = monitoring_windows(load(TECLISTAMAB))
    assert windows == [
        MonitoringWindow(ny(1, 9), ny(3, 9), ("step-up 1",)),
        MonitoringWindow(ny(4, 9), ny(6, 9), ("step-up 2",)),
        MonitoringWindow(ny(7, 9), ny(9, 9), ("first treatment dose",)),
    ]
    assert all(w.days == 2 for w in windows)


def test_day_n_of_m() -> None:
    therapy = load(TECLISTAMAB)
    assert status_at(therapy, ny(1, 9)).text == "monitoring day 1 of 2 (after step-up 1)"
    assert (status_at(therapy, ny(2, 8, 59)).day, status_at(therapy, ny(2, 9)).day) == (1, 2)
    last = status_at(therapy, ny(3, 8, 59))
    assert (last.day, last.of_days, last.in_window) == (2, 2, True)
    between = status_at(therapy, ny(3, 9))
    assert not between.in_window and between.day is None
    assert between.next_window is not None and between.next_window.start == ny(4, 9)
    payload = status_at(therapy, ny(5, 12)).as_payload()
    assert payload["day"] == 2 and payload["of_days"] == 2 and payload["after"] == ["step-up 2"]
    assert status_at(therapy, ny(20, 9)).text == "no monitoring window now or scheduled"


def test_spot_check_reminders_every_8_hours_within_each_window() -> None:
    therapy = load(TECLISTAMAB)
    first = monitoring_windows(therapy)[0]  # 1 Dec 09:00 to 3 Dec 09:00 New York time
    assert spot_check_times(therapy, first) == [
        ny(1, 14), ny(1, 22), ny(2, 6), ny(2, 14), ny(2, 22), ny(3, 6)
    ]
    gaps = {b - a for a, b in itertools.pairwise(spot_check_times(therapy, first))}
    assert gaps == {timedelta(hours=8)}


def test_elranatamab_second_step_up_is_24_hours_by_dose_override() -> None:
    therapy = load("""
[therapy]
product_class = "bispecific"
product = "elranatamab"
[[therapy.doses]]
at = 2026-12-01T08:00:00Z
label = "step-up 1"
kind = "step_up"
[[therapy.doses]]
at = 2026-12-04T08:00:00Z
label = "step-up 2"
kind = "step_up"
monitor_h = 24
""")
    assert [(w.end - w.start, w.days) for w in monitoring_windows(therapy)] == [
        (timedelta(hours=48), 2), (timedelta(hours=24), 1)
    ]


def test_car_t_infusion_gives_14_days() -> None:
    therapy = load("""
[therapy]
product_class = "car_t"
timezone = "Europe/London"
spot_check = { times = ["08:00", "20:00"] }
[[therapy.doses]]
at = 2026-12-01T11:00:00Z
label = "CAR-T infusion"
kind = "infusion"
""")
    (window,) = monitoring_windows(therapy)
    assert window.end - window.start == timedelta(days=14)
    start = datetime(2026, 12, 1, 11, tzinfo=UTC)
    assert status_at(therapy, start).text == "monitoring day 1 of 14 (after CAR-T infusion)"
    assert status_at(therapy, start + timedelta(days=13, hours=23)).day == 14
    assert len(spot_check_times(therapy, window)) == 28  # twice a day for 14 days


def test_span_mode_monitors_from_first_dose_to_48_h_after_the_target_dose() -> None:
    text = TECLISTAMAB.replace('timezone = "America/New_York"',
                               'timezone = "America/New_York"\nwindow_mode = "span"')
    (window,) = monitoring_windows(load(text))  # Scott 2025
    assert (window.start, window.end, window.days) == (ny(1, 9), ny(9, 9), 8)
    assert window.labels == ("step-up 1", "step-up 2", "first treatment dose")


def test_overlapping_windows_merge() -> None:
    text = TECLISTAMAB.replace("2026-12-04T09:00:00", "2026-12-02T21:00:00")
    windows = monitoring_windows(load(text))
    assert windows[0] == MonitoringWindow(ny(1, 9), ny(4, 21), ("step-up 1", "step-up 2"))
    assert windows[0].days == 4


def test_class_defaults_are_configurable() -> None:
    text = TECLISTAMAB.replace('product = "teclistamab"',
                               'product = "teclistamab"\nwindows = { step_up_h = 24 }')
    assert [w.end for w in monitoring_windows(load(text))] == [ny(2, 9), ny(5, 9), ny(9, 9)]
    # 72 h windows touch the next dose: one continuous stretch of monitoring
    text = text.replace("step_up_h = 24", "step_up_h = 72")
    assert [(w.start, w.end) for w in monitoring_windows(load(text))] == [(ny(1, 9), ny(9, 9))]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('kind = "target"', 'kind = "infusion"'), "kind 'infusion' does not fit"),
        (('timezone = "America/New_York"', 'timezone = "Mars/Olympus"'), "unknown time zone"),
        (('product = "teclistamab"', 'product = "x"\nspot_check = { times = ["25:00"] }'),
         "not a 24-hour HH:MM time"),
        (('label = "step-up 1"', 'label = "step-up 1"\ncolour = "red"'), "Extra inputs"),
    ],
)
def test_bad_settings_name_the_problem(change: tuple[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        load(TECLISTAMAB.replace(*change))


def test_local_dose_times_use_the_therapy_timezone() -> None:
    therapy = load(TECLISTAMAB)
    assert therapy.doses[0].at.utcoffset() == timedelta(hours=-5)
    assert therapy.doses[0].at.astimezone(UTC) == datetime(2026, 12, 1, 14, tzinfo=UTC)


# --------------------------------------------------------------------------- scheduling


def test_jobs_are_date_and_cron_triggers_that_fire_exactly_the_documented_times() -> None:
    therapy = load(TECLISTAMAB)
    now = ny(1, 8)
    jobs = scheduler_jobs(therapy, now)
    first_window = monitoring_windows(therapy)[0]
    mine = [j for j in jobs if j.window == first_window]
    assert [(j.purpose, j.trigger) for j in mine] == [
        (Purpose.WINDOW_START, "date"),
        (Purpose.SPOT_CHECK, "cron"), (Purpose.SPOT_CHECK, "cron"), (Purpose.SPOT_CHECK, "cron"),
        (Purpose.WINDOW_END, "date"),
    ]
    # APScheduler's own triggers fire at the computed reminder times, and nowhere else
    fired = sorted(t for j in mine if j.purpose is Purpose.SPOT_CHECK for t in fire_times(j, now))
    assert fired == spot_check_times(therapy, first_window)
    assert fire_times(mine[0], now) == [ny(1, 9)]
    assert fire_times(mine[-1], now) == [ny(3, 9)]
    assert len({j.id for j in jobs}) == len(jobs)


def _next_runs(therapy: TherapySettings, now: datetime) -> dict[str, datetime]:
    """Job id -> the next time APScheduler's trigger fires it after ``now``."""
    return {spec.id: fire_times(spec, now, limit=1)[0] for spec in scheduler_jobs(therapy, now)}


def test_jobs_survive_a_restart_by_recomputation() -> None:
    therapy = load(TECLISTAMAB)
    before = _next_runs(therapy, ny(1, 8))
    after_restart = _next_runs(therapy, ny(2, 10))  # the hub restarted mid-window
    # the same ids, minus the first window's start, which is over
    assert set(after_restart) == set(before) - {"therapy:20261201T140000Z:start"}
    assert after_restart["therapy:20261201T140000Z:spot-check:1400"] == ny(2, 14)
    assert after_restart["therapy:20261201T140000Z:end"] == ny(3, 9)
    for job_id in set(after_restart) - {k for k in after_restart if k.startswith(
            "therapy:20261201T140000Z:spot-check")}:
        assert after_restart[job_id] == before[job_id]  # later runs are unchanged
    # once every window is over nothing is left to schedule
    assert scheduler_jobs(therapy, ny(20, 9)) == []


def _noop(**kwargs: Any) -> None:
    del kwargs


def test_a_real_scheduler_takes_the_jobs_with_the_computed_run_times() -> None:
    # APScheduler computes next run times from the real clock, so the doses are placed
    # around it: one window running now, one to come.
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    therapy = TherapySettings.model_validate({
        "product_class": "bispecific",
        "doses": [
            {"at": now - timedelta(hours=20), "label": "step-up 1", "kind": "step_up"},
            {"at": now + timedelta(days=3), "label": "step-up 2", "kind": "step_up"},
        ],
    })
    specs = scheduler_jobs(therapy, now)
    scheduler = BackgroundScheduler(timezone=UTC)
    scheduler.start(paused=True)
    try:
        ids = schedule_therapy(scheduler, _noop, therapy, now)
        again = schedule_therapy(scheduler, _noop, therapy, now)  # a reload replaces, not adds
        scheduled = {job.id: job.next_run_time.astimezone(UTC) for job in scheduler.get_jobs()}
    finally:
        scheduler.shutdown(wait=False)
    assert ids == again == [spec.id for spec in specs]
    assert set(scheduled) == {spec.id for spec in specs}
    later = datetime.now(UTC)
    expected: dict[str, datetime] = {}
    for item in due_between(therapy, later, later + timedelta(days=10)):
        key = f"therapy:{item.window.key}:" + {
            Purpose.WINDOW_START: "start",
            Purpose.WINDOW_END: "end",
            Purpose.SPOT_CHECK: f"spot-check:{item.at:%H%M}",
        }[item.purpose]
        expected.setdefault(key, item.at)
    assert scheduled == expected


def test_due_between_lists_what_fell_due_while_the_hub_was_down() -> None:
    therapy = load(TECLISTAMAB)
    missed = due_between(therapy, ny(2, 23), ny(4, 10))
    assert [(i.at, i.purpose) for i in missed] == [
        (ny(3, 6), Purpose.SPOT_CHECK),
        (ny(3, 9), Purpose.WINDOW_END),
        (ny(4, 9), Purpose.WINDOW_START),
    ]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 60 * 24 * 30), st.sampled_from(["step_up", "target"]),
                  st.none() | st.integers(1, 96)),
        min_size=1, max_size=6,
    )
)
def test_windows_are_disjoint_ordered_and_cover_every_dose(
    doses: list[tuple[int, str, int | None]]
) -> None:
    base = datetime(2026, 12, 1, tzinfo=UTC)
    therapy = TherapySettings.model_validate({
        "product_class": "bispecific",
        "doses": [
            {"at": base + timedelta(minutes=m), "label": f"d{i}", "kind": k, "monitor_h": h}
            for i, (m, k, h) in enumerate(doses)
        ],
    })
    windows = monitoring_windows(therapy)
    for a, b in itertools.pairwise(windows):
        assert a.end < b.start
    for dose in therapy.doses:
        assert any(w.contains(dose.at) for w in windows)
        hours = dose.monitor_h if dose.monitor_h is not None else 48
        assert any(w.contains(dose.at + timedelta(hours=hours) - timedelta(seconds=1))
                   for w in windows)
    for w in windows:
        assert 1 <= w.day(w.end - timedelta(seconds=1)) == w.days
    assert [i.at for i in due_items(therapy)] == sorted(i.at for i in due_items(therapy))
