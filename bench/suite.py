"""The benchmark suite: one command, one table.

    python -m bench              # full run (about 5 minutes on 2 cores), writes latest.json
    python -m bench --quick      # every row at reduced size, under a minute
    python -m bench run [--quick] [--only latency,ingest,...]

Each row module runs in a fresh worker process (``python -m bench.<module>``), one after the
other, so that no measurement shares a heap or a CPU with another. Every row shows its figure,
a floor measured in the same run on the same machine, the ratio of the two, the goal and
PASS/FAIL. The exit status is 1 when any row misses its goal (or could not be measured).
The module docstrings (bench/latency.py, ingest.py, memory.py, startup.py, soak.py, fleet.py,
disk_writes.py, broker_persistence.py, console.py)
say exactly what each row measures.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bench.common import rows_from, run_worker
from bench.report import RESULTS_DIR, Row, failed_row, table, uncommitted_code, write_results

# (module, keys/names it produces if it fails, goal text for a failed row)
SUITE: tuple[tuple[str, str, str], ...] = (
    ("latency", "Alert latency p99", "<= 10 ms and <= 1.25x durable floor"),
    ("ingest", "Ingest, one core", ">= 20,000/s and <= 2x floor"),
    ("memory", "Daemon RSS after warm-up", "<= 60 MB"),
    ("soak", "Soak 24 h", "RSS growth <= 2 MB, DB within bound, all alerts"),
    ("startup", "Start-up to READY=1", "<= 1 s"),
    ("fleet", "Fleet of 1,000 hubs", "0 lost alerts"),
    ("replay", "Replay of a patient-week", "<= 10 s"),
    ("disk_writes", "Disk writes, 4 wearables at 1 Hz", "<= 150 MB/day"),
    ("broker_persistence", "Broker PUBACK p99, save on change", "<= 10 ms"),
    ("console", "Console, 1,000 hubs", "RSS <= 150 MB, ward page p50 <= 500 ms"),
    # Issue 13 (docs/protocols.md): emergency-tier detection and the baseline notice's lead
    # time and false notices, each row with its own goal.
    ("protocols", "Clinical protocols (issue 13)", "see rows"),
)
TIMEOUT_S = {"quick": 120.0, "full": 900.0}


def run(quick: bool, only: set[str] | None) -> list[Row]:
    rows: list[Row] = []
    for module, name, goal in SUITE:
        if only and module not in only:
            continue
        started = time.monotonic()
        print(f"bench: {module} ...", file=sys.stderr, flush=True)
        try:
            result = run_worker(f"bench.{module}", ["--quick"] if quick else [],
                                timeout=TIMEOUT_S["quick" if quick else "full"])
            produced = rows_from(result.data)
        except Exception as exc:
            message = " ".join(str(exc).split())[-300:]
            produced = [failed_row(module, name, goal, message)]
        took = time.monotonic() - started
        for row in produced:
            row.detail.setdefault("row_seconds", round(took, 1))
            verdict = "info" if row.passed is None else ("PASS" if row.passed else "FAIL")
            print(f"bench: {module}: {row.name}: {verdict}", file=sys.stderr, flush=True)
        print(f"bench: {module} done in {took:.0f} s", file=sys.stderr, flush=True)
        rows += produced
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="crs-hub benchmarks: alert latency, ingest, memory, 24 h soak, start-up, "
        "fleet, console. Prints a table; writes bench/results/latest.json (quick.json with --quick).")
    parser.add_argument("--quick", action="store_true",
                        help="every row at reduced size (under a minute)")
    parser.add_argument("--only", default="",
                        help="comma-separated subset: " + ",".join(m for m, _, _ in SUITE))
    parser.add_argument("--json", type=Path, default=None, help="where to write the results")
    args = parser.parse_args(argv)
    only = {m.strip() for m in args.only.split(",") if m.strip()} or None
    unknown = (only or set()) - {m for m, _, _ in SUITE}
    if unknown:
        parser.error(f"unknown rows: {', '.join(sorted(unknown))}")
    dirty_before = uncommitted_code()
    started = time.monotonic()
    rows = run(args.quick, only)
    dirty = sorted(set(dirty_before) | set(uncommitted_code()))
    elapsed = time.monotonic() - started
    path = args.json or RESULTS_DIR / ("quick.json" if args.quick else "latest.json")
    write_results(rows, quick=args.quick, elapsed_s=elapsed, path=path)
    print(table(rows))
    print(f"\n{'quick' if args.quick else 'full'} run, {elapsed:.0f} s; results in {path}")
    if dirty:
        print(f"warning: measured with uncommitted changes in {', '.join(dirty)}")
    return 0 if all(row.passed is not False for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
