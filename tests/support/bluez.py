"""Helpers for tests that drive the real bleak against the simulated BlueZ.

There is no pytest-asyncio: a test calls :func:`run_with_sim` (or ``asyncio.run`` with
:class:`daemon.sim.SimulatedBluez`) and gets a fresh event loop, hence a fresh bleak BlueZ
manager, per test. The simulator points ``DBUS_SYSTEM_BUS_ADDRESS`` at its private bus for
the duration and restores it afterwards.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from daemon.sim import SimTiming, SimulatedBluez, build_scenario
from daemon.sim.scenarios import Scenario
from tests.support.requirements import require_binary

T = TypeVar("T")

# Radio timing for tests: adverts every 50 ms, near-instant connects, absent devices fail fast.
FAST_TIMING = SimTiming(
    advert_interval_s=0.05,
    connect_latency_s=0.005,
    resolve_latency_s=0.005,
    connect_timeout_s=0.5,
    temporary_timeout_s=30.0,
)


def require_dbus_daemon() -> str:
    """Skip (or fail under CRS_REQUIRE_INTEGRATION=1) without dbus-daemon."""
    return require_binary("dbus-daemon")


@pytest.fixture
def dbus_daemon() -> str:
    return require_dbus_daemon()


def run_with_sim(
    body: Callable[[SimulatedBluez], Awaitable[T]],
    scenario: str | Scenario = "steady",
    *,
    time_scale: float = 60.0,
    timing: SimTiming = FAST_TIMING,
    timeout_s: float = 30.0,
    **scenario_params: Any,
) -> T:
    """``asyncio.run`` ``body(sim)`` inside a running simulator, with an overall timeout."""
    require_dbus_daemon()
    built = build_scenario(scenario, **scenario_params) if isinstance(scenario, str) else scenario

    async def main() -> T:
        async with SimulatedBluez(built, time_scale=time_scale, timing=timing) as sim:
            return await asyncio.wait_for(body(sim), timeout_s)

    return asyncio.run(main())


async def wait_until(
    predicate: Callable[[], bool],
    timeout_s: float,
    what: str = "condition",
    interval_s: float = 0.01,
) -> None:
    """Poll ``predicate`` until true; fail the test with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        await asyncio.sleep(interval_s)
