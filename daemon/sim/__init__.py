"""Simulated BlueZ (dbus-fast over a private dbus-daemon) and scripted wearables.

Entry points: :class:`SimulatedBluez` for tests and the demo, ``python -m daemon.sim`` to run
one standalone, :func:`build_scenario` for the ready scenarios.
"""

from daemon.sim.bluez import SimTiming
from daemon.sim.scenarios import (
    BP_CUFF_ADDRESS,
    BP_CUFF_NAME,
    HR_STRAP_ADDRESS,
    HR_STRAP_NAME,
    OXIMETER_ADDRESS,
    OXIMETER_NAME,
    SCENARIOS,
    TEMP_PATCH_ADDRESS,
    TEMP_PATCH_NAME,
    Scenario,
    build_scenario,
)
from daemon.sim.simulator import Delivered, SimulatedBluez

__all__ = [
    "BP_CUFF_ADDRESS",
    "BP_CUFF_NAME",
    "HR_STRAP_ADDRESS",
    "HR_STRAP_NAME",
    "OXIMETER_ADDRESS",
    "OXIMETER_NAME",
    "SCENARIOS",
    "TEMP_PATCH_ADDRESS",
    "TEMP_PATCH_NAME",
    "Delivered",
    "Scenario",
    "SimTiming",
    "SimulatedBluez",
    "build_scenario",
]
