"""Therapy jobs -> APScheduler 3.x: the shell side of daemon/therapy.py.

The core computes :class:`daemon.therapy.JobSpec` values; this module turns them into
APScheduler triggers and ``add_job`` arguments, so the pure core never imports APScheduler
(pyproject's import contract). Jobs are recomputed from the config at every start and added with
``replace_existing=True`` under stable ids to an in-memory job store: see daemon/therapy.py for
why that, not a persistent SQLAlchemyJobStore, is how they survive a restart.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger

from daemon.therapy import JobSpec, TherapySettings, scheduler_jobs


def make_trigger(spec: JobSpec) -> BaseTrigger:
    """The APScheduler trigger for a spec: a DateTrigger or a bounded CronTrigger."""
    if spec.trigger == "date":
        return DateTrigger(run_date=spec.run_date, timezone=UTC)
    return CronTrigger(
        **dict(spec.cron),
        start_date=spec.start_date,
        end_date=spec.end_date,
        timezone=ZoneInfo(spec.timezone),
    )


def add_job_kwargs(spec: JobSpec) -> dict[str, Any]:
    """Keyword arguments for ``scheduler.add_job(func, **kwargs)``; ``func`` receives
    ``purpose`` (a :class:`daemon.therapy.Purpose` value) and ``window_start``."""
    return {
        "trigger": make_trigger(spec),
        "id": spec.id,
        "name": spec.name,
        "replace_existing": True,
        "misfire_grace_time": spec.misfire_grace_time_s,
        "coalesce": spec.coalesce,
        "kwargs": {"purpose": spec.purpose.value, "window_start": spec.window.start},
    }


def schedule_therapy(
    scheduler: Any, func: Callable[..., object], settings: TherapySettings, now: datetime
) -> list[str]:
    """Add every therapy job still to come to ``scheduler`` (any APScheduler 3.x scheduler);
    returns their ids. Safe to call again after a config reload: ids are stable."""
    ids = []
    for spec in scheduler_jobs(settings, now):
        scheduler.add_job(func, **add_job_kwargs(spec))
        ids.append(spec.id)
    return ids


def fire_times(spec: JobSpec, after: datetime, limit: int = 1000) -> Sequence[datetime]:
    """The times APScheduler's own trigger would fire a job after ``after`` (UTC), via the
    trigger's ``get_next_fire_time``: for tests and for showing upcoming reminders."""
    trigger = make_trigger(spec)
    out: list[datetime] = []
    previous: datetime | None = None
    now = after
    while len(out) < limit:
        nxt = trigger.get_next_fire_time(previous, now)
        if nxt is None:
            break
        out.append(nxt.astimezone(UTC))
        previous, now = nxt, nxt + timedelta(microseconds=1)
    return out
