"""`crs-hub scan` as the installer runs it, against the simulated BlueZ (real bleak underneath)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from daemon.sim.scenarios import (
    HR_STRAP_ADDRESS,
    HR_STRAP_NAME,
    TEMP_PATCH_ADDRESS,
    TEMP_PATCH_NAME,
)
from daemon.sim.simulator import SimulatedBluez
from tests.support.bluez import run_with_sim

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parent.parent


def test_scan_command_lists_both_wearables_with_their_profiles() -> None:
    async def body(sim: SimulatedBluez) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "daemon.cli", "scan", "--timeout", "1.5", cwd=REPO,
            env={**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": sim.bus_address},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        return proc.returncode or 0, out.decode(), err.decode()

    code, out, err = run_with_sim(body)
    assert code == 0, err
    lines = out.splitlines()
    strap = next(line for line in lines if HR_STRAP_NAME in line)
    patch = next(line for line in lines if TEMP_PATCH_NAME in line)
    assert HR_STRAP_ADDRESS in strap and "heart_rate_strap" in strap
    assert TEMP_PATCH_ADDRESS in patch and "temperature_patch" in patch
    assert "Traceback" not in err
