"""``SimulatedBluez``: private dbus-daemon + simulated bluetoothd + scripted wearables.

    async with SimulatedBluez(build_scenario("crs-onset"), time_scale=60) as sim:
        # DBUS_SYSTEM_BUS_ADDRESS now points at the private bus (restored on exit), so bleak
        # in this process talks to the simulator.
        device = await BleakScanner.find_device_by_address(sim.address_of("Polar H10 SIM"))
        ...

Scenario time runs ``time_scale`` times faster than wall time (60 = one scenario minute per
real second). The radio itself (advert interval, connect latency) runs in wall time.

How bleak finds the bus: dbus-fast reads ``DBUS_SYSTEM_BUS_ADDRESS`` whenever a system-bus
``MessageBus`` is created. bleak creates one per event loop for its BlueZ manager (on first use)
and a fresh one per ``BleakClient.connect``. So the variable must be set before bleak's first
call in a loop and stay set while clients connect; ``set_env=True`` does both (for another
process, pass ``sim.bus_address`` in its environment).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import deque
from dataclasses import dataclass, field
from types import TracebackType

from daemon.encoding import encode_battery
from daemon.sim.bluez import DeviceCounters, SimBluez, SimDevice, SimTiming
from daemon.sim.dbus_daemon import PrivateDbusDaemon
from daemon.sim.scenarios import Scenario
from daemon.sim.wearables import (
    BATTERY_LEVEL,
    Battery,
    Disconnect,
    Emit,
    LeaveRange,
    Silence,
    SimWearable,
)

log = logging.getLogger(__name__)

ENV_VAR = "DBUS_SYSTEM_BUS_ADDRESS"


@dataclass(frozen=True, slots=True)
class Delivered:
    """One payload that reached a subscriber (scenario time, characteristic, bytes)."""

    at_s: float
    char_uuid: str
    data: bytes


@dataclass
class WearableState:
    wearable: SimWearable
    device: SimDevice
    silent: bool = False  # set by the control API; stays until cleared
    silent_until_s: float = 0.0  # set by timeline Silence events
    away_until_s: float | None = 0.0  # unreachable until then; None = gone for good
    emitted: int = 0  # timeline payloads due (whether or not anyone was listening)
    suppressed: int = 0  # due while silent
    undelivered: int = 0  # due while not connected/subscribed
    delivered: deque[Delivered] = field(default_factory=lambda: deque(maxlen=20_000))
    battery_percent: int = 100


class SimulatedBluez:
    """Async context manager running the whole simulated Bluetooth stack for a scenario."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        time_scale: float = 60.0,
        timing: SimTiming | None = None,
        set_env: bool = True,
        adapters: tuple[str, ...] = ("hci0",),
        start_at_s: float = 0.0,
    ) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.scenario = scenario
        self.time_scale = time_scale
        self.timing = timing or SimTiming()
        self._set_env = set_env
        self._adapters = adapters
        self._start_at_s = start_at_s
        self._dbus = PrivateDbusDaemon()
        self.bluez: SimBluez | None = None
        self.bus_address: str = ""
        self._old_env: str | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._timers: list[asyncio.TimerHandle] = []
        self._t0 = 0.0
        self.states: dict[str, WearableState] = {}

    # ----- lifecycle

    async def start(self) -> SimulatedBluez:
        self.bus_address = await self._dbus.start()
        try:
            self.bluez = SimBluez(self.bus_address, adapters=self._adapters, timing=self.timing)
            await self.bluez.start()
            for w in self.scenario.wearables:
                device = self.bluez.add_peripheral(w.peripheral_spec())
                self.states[device.address] = WearableState(
                    w, device, battery_percent=w.battery_percent
                )
        except BaseException:
            await self._dbus.stop()
            raise
        if self._set_env:
            self._old_env = os.environ.get(ENV_VAR)
            os.environ[ENV_VAR] = self.bus_address
        loop = asyncio.get_running_loop()
        self._t0 = loop.time() - self._start_at_s / self.time_scale
        for state in self.states.values():
            self._tasks.append(
                asyncio.create_task(self._run(state), name=f"sim-{state.wearable.name}")
            )
        return self

    async def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self.bluez is not None:
            await self.bluez.stop()
            self.bluez = None
        await self._dbus.stop()
        if self._set_env:
            if self._old_env is None:
                os.environ.pop(ENV_VAR, None)
            else:
                os.environ[ENV_VAR] = self._old_env

    async def __aenter__(self) -> SimulatedBluez:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # ----- clock

    def now_s(self) -> float:
        """Current scenario time in seconds."""
        return (asyncio.get_running_loop().time() - self._t0) * self.time_scale

    def _wall_delay(self, scenario_s: float) -> float:
        return max(0.0, scenario_s / self.time_scale)

    # ----- lookups

    @property
    def addresses(self) -> list[str]:
        return [w.address.upper() for w in self.scenario.wearables]

    def address_of(self, name_or_kind: str) -> str:
        return self.scenario.wearable(name_or_kind).address.upper()

    def state(self, address: str) -> WearableState:
        return self.states[address.upper()]

    def counters(self, address: str) -> DeviceCounters:
        return self.state(address).device.counters

    def delivered(self, address: str, char_uuid: str | None = None) -> list[Delivered]:
        items = list(self.state(address).delivered)
        if char_uuid is not None:
            items = [d for d in items if d.char_uuid == char_uuid.lower()]
        return items

    @property
    def notifications_sent(self) -> int:
        return sum(
            s.device.counters.notifications_sent + s.device.counters.indications_sent
            for s in self.states.values()
        )

    def is_connected(self, address: str) -> bool:
        return self.state(address).device.connected

    # ----- controls (scenario seconds where a duration is given)

    def disconnect(self, address: str, *, come_back_after_s: float = 0.0) -> bool:
        """Drop the link now. True if it was connected."""
        state = self.state(address)
        was = self._bluez().drop_link(state.device.address)
        if come_back_after_s > 0:
            self._go_away(state, come_back_after_s)
        return was

    def set_silent(self, address: str, silent: bool) -> None:
        """A hung sensor: stays connected, sends nothing, until cleared."""
        self.state(address).silent = silent

    def leave_range(self, address: str, *, return_after_s: float | None = None) -> None:
        """Stop advertising and drop the link; come back after ``return_after_s`` (None: never)."""
        self._go_away(self.state(address), return_after_s)

    def return_to_range(self, address: str) -> None:
        state = self.state(address)
        state.away_until_s = 0.0
        self._bluez().set_in_range(state.device.address, True)

    def inject(self, address: str, char_uuid: str, raw: bytes) -> bool:
        """Send arbitrary bytes now (malformed payloads...). True if a subscriber got them."""
        return self._deliver(self.state(address), char_uuid, raw, force=True)

    async def connect_orphan(self, address: str) -> None:
        """Leave the wearable connected in BlueZ with no client, as after a hub crash."""
        await self._bluez().connect_orphan(self.state(address).device.address)

    def set_powered(self, powered: bool, *, adapter: str = "hci0") -> None:
        """Adapter power (rfkill, USB reset): off drops every link and stops discovery."""
        self._bluez().set_powered(powered, adapter=adapter)

    # ----- timeline execution

    def _bluez(self) -> SimBluez:
        if self.bluez is None:
            raise RuntimeError("simulator is not running")
        return self.bluez

    async def _run(self, state: WearableState) -> None:
        loop = asyncio.get_running_loop()
        for event in state.wearable.events():
            if event.at_s < self._start_at_s:
                if isinstance(event.action, Battery):  # start with the battery already drained
                    state.battery_percent = event.action.percent
                    self._bluez().set_value(
                        state.device.address, BATTERY_LEVEL, encode_battery(event.action.percent)
                    )
                continue
            delay = self._t0 + event.at_s / self.time_scale - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                self._apply(state, event.at_s, event.action)
            except Exception:  # a broken event must not kill the wearable
                log.exception("sim: %s failed to apply %r", state.wearable.name, event.action)

    def _apply(self, state: WearableState, at_s: float, action: object) -> None:
        if isinstance(action, Emit):
            state.emitted += 1
            if state.silent or at_s < state.silent_until_s:
                state.suppressed += 1
                return
            self._deliver(state, action.char_uuid, action.data, at_s=at_s)
        elif isinstance(action, Battery):
            state.battery_percent = action.percent
            self._deliver(state, BATTERY_LEVEL, encode_battery(action.percent), at_s=at_s)
        elif isinstance(action, Silence):
            state.silent_until_s = max(state.silent_until_s, at_s + action.duration_s)
        elif isinstance(action, Disconnect):
            self._bluez().drop_link(state.device.address)
            if action.reconnect_after_s > 0:
                self._go_away(state, action.reconnect_after_s)
        elif isinstance(action, LeaveRange):
            self._go_away(state, action.return_after_s)
        else:
            raise TypeError(f"unknown action {action!r}")

    def _deliver(
        self,
        state: WearableState,
        char_uuid: str,
        data: bytes,
        *,
        at_s: float | None = None,
        force: bool = False,
    ) -> bool:
        sent = self._bluez().notify(state.device.address, char_uuid, data)
        if sent:
            when = self.now_s() if at_s is None else at_s
            state.delivered.append(Delivered(when, char_uuid.lower(), bytes(data)))
        elif not force:
            state.undelivered += 1
        return sent

    def _go_away(self, state: WearableState, for_s: float | None) -> None:
        now = self.now_s()
        until = None if for_s is None else now + for_s
        if state.away_until_s is None or (until is not None and state.away_until_s > until):
            until = state.away_until_s  # already away for longer
        state.away_until_s = until
        self._bluez().set_in_range(state.device.address, False)
        if until is not None:
            loop = asyncio.get_running_loop()
            self._timers = [t for t in self._timers if t.when() > loop.time() and not t.cancelled()]
            self._timers.append(
                loop.call_later(self._wall_delay(until - now), self._maybe_return, state)
            )

    def _maybe_return(self, state: WearableState) -> None:
        if self.bluez is None or state.away_until_s is None:
            return
        if self.now_s() + 1e-6 >= state.away_until_s:
            state.away_until_s = 0.0
            self.bluez.set_in_range(state.device.address, True)
