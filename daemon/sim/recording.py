"""A scenario as a `crs-hub replay` recording: what the hub would have received, as CSV rows.

Each wearable's timeline becomes rows in scenario time from ``start``: notifications as their
characteristic and payload hex (decoded by the replay exactly as the daemon decodes them), battery
changes as Battery Level (0x2A19) payloads, link losses as ``disconnected``/``connected`` events.
Silence is simply the absence of rows. Used to check that a replay of the demo's story gives the
alerts the live demo gave.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta

from daemon.sim.scenarios import Scenario
from daemon.sim.wearables import BATTERY_LEVEL, Action, Battery, Disconnect, Emit, LeaveRange

HEADER = "time,device,kind,value"


def scenario_rows(scenario: Scenario, device_ids: Mapping[str, str], start: datetime,
                  *, until_s: float) -> Iterator[str]:
    """CSV lines (header first) for ``scenario`` up to ``until_s``; ``device_ids`` maps each
    wearable's address to its device id in the hub config."""
    yield HEADER
    streams: list[Iterator[tuple[float, int, str, Action]]] = [
        ((ev.at_s, ev.order, device_ids[w.address], ev.action) for ev in w.timeline())
        for w in scenario.wearables
    ]
    for at_s, _order, device, action in heapq.merge(*streams, key=lambda e: (e[0], e[1])):
        if at_s > until_s:
            return
        stamp = (start + timedelta(seconds=at_s)).isoformat()
        match action:
            case Emit():
                yield f"{stamp},{device},{_short(action.char_uuid)},{action.data.hex()}"
            case Battery():
                yield f"{stamp},{device},{_short(BATTERY_LEVEL)},{action.percent:02x}"
            case Disconnect() | LeaveRange():
                yield f"{stamp},{device},disconnected,"
            case _:
                pass


def _short(uuid: str) -> str:
    return uuid[4:8] if uuid.endswith("-0000-1000-8000-00805f9b34fb") else uuid

