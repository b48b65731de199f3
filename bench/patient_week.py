"""A synthetic patient-week recording in the `crs-hub replay` format (seeded, deterministic).

A temperature patch reporting once a minute and a chest strap at 1 Hz for seven days (about
615,000 rows), with a febrile episode with a fast heart rate on day 5. Used by the replay speed
bench row and the replay tests; the clinical benchmark has its own, richer generator.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

START = datetime(2026, 11, 2, 0, 0, tzinfo=UTC)
DAYS = 7
ONSET_S = 4 * 86400 + 10 * 3600  # day 5, 10:00
PEAK_C = 39.2


def _core(t: float) -> float:
    circadian = 0.35 * math.sin(2 * math.pi * ((t % 86400) / 86400 - 0.375))
    base = 36.9 + circadian
    if t >= ONSET_S:
        rise = min(1.0, (t - ONSET_S) / 7200)
        fall = max(0.0, 1.0 - max(0.0, t - ONSET_S - 10 * 3600) / 7200)
        base += (PEAK_C - 37.0) * rise * fall
    return base


def rows(seed: int = 1, days: int = DAYS) -> Iterator[str]:
    rng = random.Random(seed)
    t0 = START.timestamp()
    yield "time,device,kind,value,sensor_contact"
    for s in range(days * 86400):
        t = t0 + s
        core = _core(s)
        fever = core - 37.2
        hr = 72 + 8 * math.sin(2 * math.pi * s / 86400) + max(0.0, fever) * 22 + rng.gauss(0, 3)
        yield f"{t:.0f},chest-strap,heart_rate,{hr:.0f},true"
        if s % 60 == 0:
            # the patch reads skin, about 0.5 °C below core (the profile's offset adds it back)
            yield f"{t:.0f},temp-patch,temperature,{core - 0.5 + rng.gauss(0, 0.05):.2f},"


def write(path: Path, seed: int = 1, days: int = DAYS) -> int:
    n = 0
    with path.open("w", encoding="utf-8") as out:
        for line in rows(seed, days):
            out.write(line + "\n")
            n += 1
    return n - 1
