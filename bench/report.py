"""Benchmark rows, the printed table and ``bench/results/latest.json``.

Every row carries its figure, a floor measured in the same run on the same machine (the cost of
the same work done without crs-hub, or the best the machine can do), the ratio of the two, the
goal in words and whether the figure met it.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass
class Row:
    key: str  # stable id, e.g. "latency_p99"
    name: str  # what the table shows
    unit: str  # "ms", "s", "MB", "readings/s", "alerts", ...
    figure: float | None
    floor: float | None
    goal: str
    passed: bool | None  # None: reported, no goal
    # How the ratio reads: "figure/floor" (smaller figure is better: time, memory) or
    # "floor/figure" (bigger figure is better: throughput, i.e. how many times slower).
    ratio_kind: str = "figure/floor"
    floor_label: str = ""  # what the floor is, one short phrase
    note: str = ""  # one line shown under the table
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.figure is None or self.floor is None:
            return None
        num, den = ((self.figure, self.floor) if self.ratio_kind == "figure/floor"
                    else (self.floor, self.figure))
        if den <= 0 or math.isnan(num) or math.isnan(den):
            return None
        return num / den

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ratio"] = self.ratio
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Row:
        data = dict(data)
        data.pop("ratio", None)
        return cls(**data)


def failed_row(key: str, name: str, goal: str, error: str) -> Row:
    """A row whose measurement could not be made: shown, and counted as a miss."""
    return Row(key=key, name=name, unit="", figure=None, floor=None, goal=goal, passed=False,
               note=f"not measured: {error}")


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "readings/s":
        return f"{value:,.0f}/s"
    if unit in ("alerts", "messages", "count"):
        return f"{value:,.0f}"
    if unit == "%":
        return f"{value:.1f} %"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}"


def _verdict(row: Row) -> str:
    if row.passed is None:
        return "info"
    return "PASS" if row.passed else "FAIL"


def table(rows: list[Row]) -> str:
    header = ("row", "figure", "floor", "ratio", "goal", "result")
    body = [
        (
            row.name,
            fmt(row.figure, row.unit),
            fmt(row.floor, row.unit),
            "-" if row.ratio is None else f"{row.ratio:.2f}x",
            row.goal,
            _verdict(row),
        )
        for row in rows
    ]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    right = {1, 2, 3}

    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if i in right else "-" * (w + 2)
                         for i, w in enumerate(widths)) + "|"
    out = [line(header), sep, *(line(b) for b in body)]
    floors = [f"- {row.name}: floor = {row.floor_label}" for row in rows if row.floor_label]
    notes = [f"- {row.name}: {row.note}" for row in rows if row.note]
    if floors:
        out += ["", "Floors:", *floors]
    if notes:
        out += ["", "Notes:", *notes]
    return "\n".join(out)


def uncommitted_code() -> list[str]:
    """Files under daemon/ and bench/ that differ from the commit: the run measured those."""
    if os.environ.get("CRS_BENCH_COMMIT"):
        return []  # an exported snapshot is the commit, by construction
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--", "daemon", "bench"],
                             capture_output=True, text=True, check=False,
                             cwd=Path(__file__).resolve().parent.parent).stdout
    except OSError:
        return []
    return [line[3:] for line in out.splitlines()
            if line[3:].endswith(".py") or line[3:].endswith(".toml")]


def machine() -> dict[str, Any]:
    # CRS_BENCH_COMMIT: set when running from an exported snapshot (git archive) of a commit.
    commit = os.environ.get("CRS_BENCH_COMMIT", "")
    if not commit:
        try:
            commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"],
                                    capture_output=True, text=True, check=False,
                                    cwd=Path(__file__).parent).stdout.strip()
        except OSError:
            commit = ""
    cpu = ""
    try:
        for text in Path("/proc/cpuinfo").read_text().splitlines():
            if text.startswith("model name"):
                cpu = text.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "uncommitted": uncommitted_code(),
        "nproc": os.cpu_count(),
        "machine": platform.machine(),
        "cpu": cpu,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "commit": commit,
    }


def write_results(rows: list[Row], *, quick: bool, elapsed_s: float, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "quick": quick,
        "elapsed_s": round(elapsed_s, 1),
        "machine": machine(),
        "passed": all(row.passed is not False for row in rows),
        "rows": [row.to_json() for row in rows],
    }
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
