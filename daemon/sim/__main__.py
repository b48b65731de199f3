"""Run a simulated BlueZ standalone.

    python -m daemon.sim --scenario crs-onset --time-scale 60

prints ``DBUS_SYSTEM_BUS_ADDRESS=...`` (export it in another shell, then run crs-hub or any
bleak program) and a status line every few seconds until Ctrl-C or the scenario's end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from daemon.sim.scenarios import SCENARIOS, build_scenario
from daemon.sim.simulator import ENV_VAR, SimulatedBluez


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m daemon.sim",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="crs-onset")
    parser.add_argument(
        "--time-scale",
        type=float,
        default=60.0,
        help="scenario seconds per wall second (default 60)",
    )
    parser.add_argument("--seed", type=int, default=None, help="scenario noise seed")
    parser.add_argument(
        "--status-every",
        type=float,
        default=5.0,
        help="wall seconds between status lines (0: none)",
    )
    parser.add_argument(
        "--exit-at-end",
        action="store_true",
        help="stop when the scenario's story ends instead of running on",
    )
    return parser


def _status(sim: SimulatedBluez) -> str:
    parts = [f"t={sim.now_s():7.0f}s"]
    for addr, st in sim.states.items():
        c = st.device.counters
        link = (
            "connected"
            if st.device.connected
            else ("advertising" if st.device.advertising else "away")
        )
        parts.append(
            f"{st.wearable.name} [{addr}] {link} connects={c.connects} "
            f"sent={c.notifications_sent + c.indications_sent} battery={st.battery_percent}%"
        )
    return " | ".join(parts)


async def main_async(args: argparse.Namespace) -> int:
    params = {} if args.seed is None else {"seed": args.seed}
    scenario = build_scenario(args.scenario, **params)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with SimulatedBluez(scenario, time_scale=args.time_scale, set_env=False) as sim:
        print(f"{ENV_VAR}={sim.bus_address}", flush=True)
        print(f"# scenario {scenario.name}: {scenario.description}", flush=True)
        for w in scenario.wearables:
            print(f"# {w.kind}: {w.name} {w.address}", flush=True)
        end_wall = None
        if args.exit_at_end and scenario.duration_s is not None:
            end_wall = loop.time() + scenario.duration_s / args.time_scale
        while not stop.is_set():
            timeout = args.status_every if args.status_every > 0 else 3600.0
            if end_wall is not None:
                timeout = min(timeout, max(0.0, end_wall - loop.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout)
            if args.status_every > 0 and not stop.is_set():
                print(_status(sim), flush=True)
            if end_wall is not None and loop.time() >= end_wall:
                break
    return 0


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(main_async(build_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
