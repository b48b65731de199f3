"""Replay speed: a patient-week recording through `crs-hub replay`'s code path, on one core.

What runs: bench/patient_week.py writes a seeded week (a patch once a minute, a strap at 1 Hz:
614,880 rows, a febrile episode on day 5) and ``daemon.replay.replay_file`` runs it exactly as the
CLI does: parse and check every row, then the monitor with the daemon's once-a-second ticks
(604,800 of them) and escalation. The figure is the wall time for the whole week.

Floor, in the same process: reading the same CSV with the standard library's csv module and
nothing else (the least any replay must do). Goal (issue 9): the week in <= 10 s here.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import emit_rows
from bench.patient_week import write
from bench.report import Row
from daemon.config import Config, parse_config
from daemon.replay import replay_file

GOAL_S = 10.0


def _config(data_dir: Path) -> Config:
    return parse_config({
        "hub": {"id": "hub-bench", "data_dir": str(data_dir)},
        "patient": {"id": "p-bench", "care_team_name": "the team", "care_team_phone": "+1 555 0100"},
        "devices": [{"id": "chest-strap", "profile": "heart_rate_strap"},
                    {"id": "temp-patch", "profile": "temperature_patch"}],
    })


def _floor(path: Path) -> float:
    started = time.perf_counter()
    with path.open(newline="", encoding="utf-8") as source:
        for _ in csv.reader(source):
            pass
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.replay")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    logging.disable(logging.WARNING)  # the monitor logs each alert; not what is measured
    rounds = 1 if args.quick else 3
    with tempfile.TemporaryDirectory(prefix="crs-bench-replay-") as tmp:
        recording = Path(tmp) / "week.csv"
        rows = write(recording)
        config = _config(Path(tmp) / "data")
        hub_s, floor_s, events = [], [], 0
        for _ in range(rounds):
            floor_s.append(_floor(recording))
            started = time.perf_counter()
            result = replay_file(config, recording, seed=1)
            hub_s.append(time.perf_counter() - started)
            events = len(result.events)
    figure, floor = statistics.median(hub_s), statistics.median(floor_s)
    emit_rows([Row(
        key="replay_week", name=f"Replay of a patient-week ({rows:,} rows)", unit="s",
        figure=figure, floor=floor, goal=f"<= {GOAL_S:g} s", passed=figure <= GOAL_S,
        floor_label="csv.reader over the same file, nothing else",
        note=f"{rows / figure:,.0f} rows/s through parse + monitor + 604,800 ticks; "
             f"{events} alert events; median of {rounds} round(s), one core",
        detail={"rows": rows, "rows_per_s": rows / figure, "rounds_s": hub_s,
                "floor_rounds_s": floor_s, "events": events},
    )])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
