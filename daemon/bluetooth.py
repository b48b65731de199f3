"""The hub's Bluetooth layer: one bleak session per configured wearable.

Lifecycle of a :class:`WearableSession` (modelled on Home Assistant's habluetooth and
bleak-retry-connector), repeated forever until cancelled:

    find (shared scanner, or a leftover BlueZ connection) -> connect with the BLEDevice
    -> subscribe notify/indicate, read 'read' characteristics once and on their poll timer
    -> wait for the disconnect callback (or a silence watchdog) -> release the client
    -> capped exponential backoff with jitter -> find again

The session only moves bytes: it reports raw payloads, connection changes and adapter
problems to a :class:`BluetoothListener` (the hub), which decodes and timestamps them.
The MAC address never appears in log lines above DEBUG: logs use the pseudonymous device id,
and text from bleak/BlueZ errors is passed through :func:`redact` first.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.util
import logging
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from bleak import BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import (
    BleakBluetoothNotAvailableError,
    BleakCharacteristicNotFoundError,
    BleakDBusError,
    BleakDeviceNotFoundError,
    BleakError,
    BleakGATTProtocolError,
)
from bleak_retry_connector import (
    BleakAbortedError,
    BleakClientWithServiceCache,
    BleakNotFoundError,
    BleakOutOfConnectionSlotsError,
    establish_connection,
    get_connected_devices,
)
from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus

if TYPE_CHECKING:
    from daemon.profiles import DeviceProfile

log = logging.getLogger(__name__)

Mode = Literal["notify", "indicate", "read"]

# ---------------------------------------------------------------------------------------------
# Contracts with the hub


class BluetoothListener(Protocol):
    """What a session reports to. Called on the event loop; must not block."""

    def on_payload(self, device_id: str, characteristic_uuid: str, data: bytes) -> None: ...

    def on_connection_change(self, device_id: str, connected: bool) -> None: ...

    def on_adapter_problem(self, reason: str | None) -> None:
        """``reason`` describes the problem; None means the adapter works again."""
        ...


def _uuid(value: str) -> str:
    """16-bit ("2A37", "0x2a37") or 128-bit UUID -> lower-case 128-bit form (as bleak uses)."""
    text = value.strip().lower().removeprefix("0x")
    if len(text) == 4:
        return f"0000{text}-0000-1000-8000-00805f9b34fb"
    return text


@dataclass(frozen=True, slots=True)
class Subscription:
    """One characteristic of a device profile, as the session uses it."""

    uuid: str
    mode: Mode
    poll_interval_s: float | None = None  # 'read' only: re-read this often (first read on connect)
    required: bool = True  # False: carry on without it (e.g. a battery service BlueZ claims)

    def __post_init__(self) -> None:
        object.__setattr__(self, "uuid", _uuid(self.uuid))


@dataclass(frozen=True, slots=True)
class SessionSpec:
    """Everything a session needs about one configured device (built by the hub from config)."""

    device_id: str  # pseudonymous id from the config; the only name used in logs
    address: str | None  # None: take the first unclaimed device matching the discovery hints
    characteristics: tuple[Subscription, ...]
    name_patterns: tuple[str, ...] = ()  # shell-style globs, case-insensitive (as profiles)
    service_uuids: tuple[str, ...] = ()
    adapter: str | None = "hci0"
    # Connected but nothing received for this long: drop and reconnect (re-enables the CCCDs,
    # the usual cure for a link that stopped notifying). None: never.
    silence_timeout_s: float | None = None

    def __post_init__(self) -> None:
        if self.address is None and not (self.name_patterns or self.service_uuids):
            raise ValueError(f"{self.device_id}: give an address or discovery hints")
        if self.address is not None:
            object.__setattr__(self, "address", self.address.upper())
        object.__setattr__(self, "service_uuids", tuple(_uuid(u) for u in self.service_uuids))

    @classmethod
    def from_profile(
        cls,
        device_id: str,
        address: str | None,
        profile: DeviceProfile,
        *,
        adapter: str | None = "hci0",
        silence_timeout_s: float | None = None,
    ) -> SessionSpec:
        """From a :class:`daemon.profiles.DeviceProfile`. Without an explicit silence timeout,
        ten expected sample intervals (at least a minute) are allowed before reconnecting."""
        if silence_timeout_s is None and profile.expected_sample_interval_s is not None:
            silence_timeout_s = max(60.0, 10 * profile.expected_sample_interval_s)
        return cls(
            device_id=device_id,
            address=address,
            characteristics=tuple(
                Subscription(c.uuid, c.mode, c.poll_interval_s, c.required)
                for c in profile.characteristics
            ),
            name_patterns=tuple(profile.discovery.name_patterns),
            service_uuids=tuple(profile.discovery.service_uuids),
            adapter=adapter,
            silence_timeout_s=silence_timeout_s,
        )

    def matches(self, address: str, name: str | None, service_uuids: Iterable[str]) -> bool:
        """Is this advertisement our device? By address when configured, else by the hints
        (any advertised service or any name pattern, like the profile matcher)."""
        if self.address is not None:
            return address.upper() == self.address
        if self.service_uuids and set(self.service_uuids) & {_uuid(u) for u in service_uuids}:
            return True
        folded = (name or "").casefold()
        return bool(name) and any(fnmatchcase(folded, p.casefold()) for p in self.name_patterns)


@dataclass
class DeviceState:
    """Observable state of one session (copies are handed out)."""

    device_id: str
    connected: bool = False
    connect_count: int = 0
    payload_count: int = 0
    last_payload_at: float | None = None  # time.monotonic() of the latest payload
    last_error: str | None = None  # redacted


@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped exponential backoff with +/- jitter; resets after a connection that held."""

    initial_s: float = 1.0
    max_s: float = 30.0
    factor: float = 2.0
    jitter: float = 0.2  # fraction of the delay, both ways, so devices do not retry in step
    stable_after_s: float = 30.0  # a connection this long resets the backoff

    def delay(self, attempt: int, rng: random.Random) -> float:
        base = min(self.max_s, self.initial_s * self.factor ** min(attempt, 64))
        return max(0.0, base * (1 + rng.uniform(-self.jitter, self.jitter)))


# ---------------------------------------------------------------------------------------------
# Keeping MACs out of logs

_MAC = re.compile(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{2}(?:[:_-][0-9A-Fa-f]{2}){5}(?![0-9A-Fa-f])")


def redact(text: str) -> str:
    """Replace anything shaped like a MAC (AA:BB:.. or BlueZ's dev_AA_BB_..) with ``<mac>``."""
    return _MAC.sub("<mac>", text)


class MacRedactingFilter(logging.Filter):
    """Redacts MACs from records above DEBUG. Attach to handlers (catches every logger) or, as
    :func:`install_mac_redaction` does, to the third-party loggers that print addresses."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.DEBUG:
            message = record.getMessage()
            cleaned = redact(message)
            if cleaned != message:
                record.msg, record.args = cleaned, None
        return True


_REDACTED_PACKAGES = ("bleak", "bleak_retry_connector", "dbus_fast", "bluetooth_adapters")


def _module_names(package: str) -> list[str]:
    """Every module name of an installed package, found on disk without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None:
        return []
    names = [package]
    for location in spec.submodule_search_locations or ():
        root = Path(location)
        for path in root.rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            names.append(".".join((package, *parts)))
    return names


def install_mac_redaction() -> None:
    """bleak and bleak-retry-connector log device paths/addresses at WARNING; filter them.

    A logger's filters only see records of that exact logger (not of its children), and bleak
    imports its BlueZ client lazily, so the filter goes on every module's logger up front
    (``getLogger(__name__)`` later returns the same, filtered object)."""
    names = {n for package in _REDACTED_PACKAGES for n in _module_names(package)}
    names |= {n for n in logging.root.manager.loggerDict if n.startswith(_REDACTED_PACKAGES)}
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, MacRedactingFilter) for f in logger.filters):
            logger.addFilter(MacRedactingFilter())


def describe_error(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return redact(f"{type(exc).__name__}: {text}")


_BLUEZ_GONE = {
    "org.freedesktop.DBus.Error.ServiceUnknown",
    "org.freedesktop.DBus.Error.NameHasNoOwner",
}
_ACCESS_DENIED = "org.freedesktop.DBus.Error.AccessDenied"
# Errors about one wearable (out of range, gone from BlueZ's cache, link aborted, GATT trouble):
# never an adapter problem, whatever they wrap.
_DEVICE_ERRORS = (
    BleakNotFoundError,
    BleakAbortedError,
    BleakDeviceNotFoundError,
    BleakCharacteristicNotFoundError,
    BleakGATTProtocolError,
)


def _causes(exc: BaseException) -> Iterable[BaseException]:
    """``exc`` and what it wraps: bleak-retry-connector re-raises BlueZ's typed D-Bus error
    (NotReady, ...) as the ``__cause__`` of its own BleakConnectionError."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__  # explicit "raise ... from": a wrapper, not a side effect


def adapter_problem(exc: BaseException, adapter: str | None) -> str | None:
    """Classify an error as an adapter/stack problem (vs. a device problem), or None.

    By type only, never by message text: bleak's BleakBluetoothNotAvailableError (with its
    reason), BlueZ's D-Bus error names on BleakDBusError, bleak-retry-connector's
    BleakOutOfConnectionSlotsError, and OSErrors of the system bus, looked for through the
    chain of wrapped causes. bleak raises some adapter conditions as a plain BleakError
    (a named adapter that does not exist); :func:`is_untyped` tells the caller to ask BlueZ
    itself (:func:`probe_adapter`) instead of reading the message.
    """
    name = adapter or "default adapter"
    for cause in _causes(exc):
        if isinstance(cause, _DEVICE_ERRORS):
            return None
        if isinstance(cause, BleakBluetoothNotAvailableError):
            return f"{name}: Bluetooth not available ({cause.reason.name.lower()})"
        if isinstance(cause, BleakDBusError):
            if cause.dbus_error == "org.bluez.Error.NotReady":
                return f"{name}: not ready (powered off or blocked)"
            if cause.dbus_error in _BLUEZ_GONE:
                return "bluetoothd is not running"
            if cause.dbus_error == _ACCESS_DENIED:
                return "access to BlueZ denied (is the service user in the bluetooth group?)"
            return None
        if isinstance(cause, BleakOutOfConnectionSlotsError):
            return f"{name}: no free connection slot"
        if isinstance(cause, FileNotFoundError | ConnectionRefusedError):
            return "system D-Bus is not reachable"
    return None


def is_untyped(exc: BaseException) -> bool:
    """A bare BleakError (not a subclass): bleak's way of saying e.g. "adapter not found"."""
    return type(exc) is BleakError


async def probe_adapter(adapter: str | None, timeout_s: float = 2.0) -> str | None:
    """Ask BlueZ (ObjectManager.GetManagedObjects on the system bus) whether ``adapter`` (or,
    with None, any adapter) exists and is powered; the problem, or None when it looks fine or
    cannot be told."""
    name = adapter or "default adapter"
    try:
        bus = await asyncio.wait_for(MessageBus(bus_type=BusType.SYSTEM).connect(), timeout_s)
    except (OSError, TimeoutError):
        return "system D-Bus is not reachable"
    try:
        reply = await asyncio.wait_for(bus.call(Message(
            destination="org.bluez", path="/", interface="org.freedesktop.DBus.ObjectManager",
            member="GetManagedObjects")), timeout_s)
    except TimeoutError:
        return None
    finally:
        bus.disconnect()
    if reply is None:
        return None
    if reply.message_type is MessageType.ERROR:
        return "bluetoothd is not running" if reply.error_name in _BLUEZ_GONE else None
    adapters = {path.rsplit("/", 1)[-1]: interfaces["org.bluez.Adapter1"]
                for path, interfaces in reply.body[0].items()
                if "org.bluez.Adapter1" in interfaces}
    wanted = {adapter: adapters[adapter]} if adapter in adapters else (
        {} if adapter else adapters)
    if not wanted:
        return f"{name}: adapter not found"
    if not any(props["Powered"].value for props in wanted.values() if "Powered" in props):
        return f"{name}: not ready (powered off or blocked)"
    return None


async def classify_error(exc: BaseException, adapter: str | None) -> str | None:
    """:func:`adapter_problem`, and for bleak's untyped errors the adapter's actual state."""
    problem = adapter_problem(exc, adapter)
    if problem is None and is_untyped(exc):
        problem = await probe_adapter(adapter)
    return problem


class _AdapterHealth:
    """De-duplicates adapter problem reports: one call per change."""

    def __init__(self, listener: BluetoothListener) -> None:
        self._listener = listener
        self.problem: str | None = None

    def report(self, problem: str | None) -> None:
        if problem == self.problem:
            return
        self.problem = problem
        # INFO: the listener (the hub) raises the technical alarm and logs it as an error
        log.info("Bluetooth adapter: %s", problem or "works again")
        try:
            self._listener.on_adapter_problem(problem)
        except Exception:
            log.exception("listener failed in on_adapter_problem")


# ---------------------------------------------------------------------------------------------
# Finding devices


Matcher = Callable[[BLEDevice, AdvertisementData], bool]


class DeviceFinder:
    """One BleakScanner per adapter, shared by every session on it.

    bluetoothd allows one discovery session per D-Bus connection (a second StartDiscovery
    fails with InProgress) and bleak scans over one connection per event loop, so concurrent
    per-session scanners would collide. The scan runs while anyone is waiting and stops when
    nobody is. Only advertisements heard after a ``find`` starts count: a device seen earlier
    may since have left, and connecting to it would burn a full BlueZ connect timeout.
    """

    def __init__(self, adapter: str | None, health: _AdapterHealth | None = None) -> None:
        self.adapter = adapter
        self._health = health
        self._lock = asyncio.Lock()
        self._scanner: BleakScanner | None = None
        self._waiters: dict[int, tuple[Matcher, str | None, asyncio.Future[BLEDevice]]] = {}
        self._next_id = 0
        self._claims: dict[str, str] = {}  # address -> device_id
        self._last_advert_at = 0.0

    @property
    def scanning(self) -> bool:
        return self._scanner is not None

    def claim(self, address: str, device_id: str) -> None:
        self._claims[address.upper()] = device_id

    def release(self, device_id: str) -> None:
        for address in [a for a, d in self._claims.items() if d == device_id]:
            del self._claims[address]

    def claimed_by_other(self, address: str, device_id: str) -> bool:
        owner = self._claims.get(address.upper())
        return owner is not None and owner != device_id

    async def find(
        self, match: Matcher, within_s: float, claimant: str | None = None
    ) -> BLEDevice | None:
        """Wait for an advertisement ``match`` accepts. With a ``claimant`` the device is claimed
        for it in the same callback that hands it over, so one advertisement seen by two
        sessions' matchers can never go to both."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[BLEDevice] = loop.create_future()
        token = self._next_id
        self._next_id += 1
        self._waiters[token] = (match, claimant, future)
        try:
            await self._ensure_scanning()
            started = time.monotonic()
            try:
                return await asyncio.wait_for(future, within_s)
            except TimeoutError:
                if self._last_advert_at < started:
                    # Nothing at all was heard. After an adapter power cycle or a bluetoothd
                    # restart our discovery session is gone although bleak's scanner still
                    # "runs"; while other sessions keep waiting it would never be restarted.
                    await self._restart()
                return None
        finally:
            del self._waiters[token]
            if not self._waiters:
                await self._stop_if_idle()

    async def close(self) -> None:
        for _, _, future in self._waiters.values():
            future.cancel()
        await self._stop_if_idle(force=True)

    async def _ensure_scanning(self) -> None:
        async with self._lock:
            if self._scanner is not None:
                return
            scanner = BleakScanner(
                detection_callback=self._on_advertisement,
                bluez={"adapter": self.adapter} if self.adapter else {},
            )
            try:
                await scanner.start()
            except Exception as exc:
                if self._health is not None and (
                        problem := await classify_error(exc, self.adapter)):
                    self._health.report(problem)
                raise
            self._scanner = scanner
            if self._health is not None:
                self._health.report(None)

    async def _restart(self) -> None:
        async with self._lock:
            scanner, self._scanner = self._scanner, None
            if scanner is not None:
                with contextlib.suppress(Exception):
                    await scanner.stop()
        if self._waiters:
            with contextlib.suppress(Exception):  # reported through health; callers retry
                await self._ensure_scanning()

    async def _stop_if_idle(self, *, force: bool = False) -> None:
        async with self._lock:
            if self._scanner is None or (self._waiters and not force):
                return
            scanner, self._scanner = self._scanner, None
            try:
                await scanner.stop()
            except Exception as exc:  # the adapter may be gone; the next start reports it
                log.debug("stopping the scan failed: %s", describe_error(exc))

    def _on_advertisement(self, device: BLEDevice, adv: AdvertisementData) -> None:
        self._last_advert_at = time.monotonic()
        for match, claimant, future in list(self._waiters.values()):
            if future.done():
                continue
            if claimant is not None and self.claimed_by_other(device.address, claimant):
                continue
            try:
                matched = match(device, adv)
            except Exception:
                log.exception("device matcher failed")
                continue
            if matched:
                if claimant is not None:
                    self.claim(device.address, claimant)
                future.set_result(device)


# ---------------------------------------------------------------------------------------------
# Sessions


class MissingCharacteristicError(BleakError):
    pass


class WearableSession:
    """Find, connect, subscribe and reconnect one wearable, forever (until cancelled)."""

    def __init__(
        self,
        spec: SessionSpec,
        listener: BluetoothListener,
        *,
        finder: DeviceFinder | None = None,
        health: _AdapterHealth | None = None,
        backoff: Backoff | None = None,
        scan_timeout_s: float = 10.0,
        connect_attempts: int = 3,
        rng: random.Random | None = None,
    ) -> None:
        self.spec = spec
        self._listener = listener
        self._health = health or _AdapterHealth(listener)
        self._finder = finder or DeviceFinder(spec.adapter, self._health)
        self._owns_finder = finder is None
        if spec.address is not None:
            # reserved up front, so a session that goes by discovery hints never takes it
            self._finder.claim(spec.address, spec.device_id)
        self._backoff = backoff or Backoff()
        self._scan_timeout_s = scan_timeout_s
        self._connect_attempts = connect_attempts
        self._rng = rng or random.Random()
        self.state = DeviceState(spec.device_id)
        self._task: asyncio.Task[None] | None = None
        self._not_found_streak = 0

    @property
    def device_id(self) -> str:
        return self.spec.device_id

    def start(self) -> asyncio.Task[None]:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.run(), name=f"ble-{self.device_id}")
        return self._task

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._owns_finder:
            await self._finder.close()

    async def run(self) -> None:
        attempt = 0
        try:
            while True:
                try:
                    device = await self._locate()
                    if device is not None:
                        self._not_found_streak = 0
                        held_s = await self._connected_session(device)
                        if held_s >= self._backoff.stable_after_s:
                            attempt = 0
                    else:
                        self._not_found_streak += 1
                        self.state.last_error = "not found while scanning"
                        # say it once per streak at INFO; the hub's technical alarms do the rest
                        level = logging.INFO if self._not_found_streak == 1 else logging.DEBUG
                        log.log(
                            level,
                            "device %s: not found in %g s of scanning; will keep looking",
                            self.device_id,
                            self._scan_timeout_s,
                        )
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    error = describe_error(exc)
                    problem = await classify_error(exc, self.spec.adapter)
                    if problem:
                        self._health.report(problem)
                    # once per distinct error: a wearable out of range for a night, or a dead
                    # adapter (reported above), must not flood the journal
                    level = (
                        logging.DEBUG
                        if problem or error == self.state.last_error
                        else logging.WARNING
                    )
                    log.log(level, "device %s: %s", self.device_id, error)
                    self.state.last_error = error
                delay = self._backoff.delay(attempt, self._rng)
                attempt += 1
                log.debug("device %s: next attempt in %.2f s", self.device_id, delay)
                await asyncio.sleep(delay)
        finally:
            self._finder.release(self.device_id)

    # ----- finding

    async def _locate(self) -> BLEDevice | None:
        spec = self.spec
        if spec.address is not None:
            # A connection left by a crashed hub keeps the wearable from advertising; BlueZ
            # still has it, so use it instead of scanning in vain.
            leftover = await self._leftover_connection(spec.address)
            if leftover is not None:
                log.info("device %s: reusing a connection BlueZ already holds", self.device_id)
                return leftover

        def match(device: BLEDevice, adv: AdvertisementData) -> bool:
            if self._finder.claimed_by_other(device.address, self.device_id):
                return False
            return spec.matches(device.address, adv.local_name or device.name, adv.service_uuids)

        # The finder claims the device for us as it hands it over (no race with other sessions).
        return await self._finder.find(match, self._scan_timeout_s, claimant=self.device_id)

    async def _leftover_connection(self, address: str) -> BLEDevice | None:
        adapter = self.spec.adapter or "hci0"
        probe = BLEDevice(
            address,
            None,
            {"path": f"/org/bluez/{adapter}/dev_{address.replace(':', '_')}", "props": {}},
        )
        try:
            connected = await get_connected_devices(probe)
        except Exception as exc:  # only an optimisation; scanning will report real problems
            log.debug(
                "device %s: checking for a leftover connection failed: %s",
                self.device_id,
                describe_error(exc),
            )
            return None
        return connected[0] if connected else None

    # ----- one connection

    async def _connected_session(self, device: BLEDevice) -> float:
        """Connect, subscribe, stream until the link drops; returns seconds connected."""
        lost = asyncio.Event()
        # bleak-retry-connector: it works against BlueZ (and the simulator) and brings what a
        # 24/7 link needs: a few quick in-place retries for BlueZ's transient errors, waiting
        # for the old link to be torn down between them, and typed errors. Our loop adds the
        # capped backoff around it. The services cache is off: waiting for ServicesResolved
        # on every connect costs little and never subscribes against a stale GATT table.
        client = await establish_connection(
            BleakClientWithServiceCache,
            device,
            self.device_id,  # its log "name"; the address still appears, hence redaction
            disconnected_callback=lambda _client: lost.set(),
            max_attempts=self._connect_attempts,
            use_services_cache=False,
            bluez={"adapter": self.spec.adapter} if self.spec.adapter else {},
        )
        self._health.report(None)
        started = time.monotonic()
        pollers: list[asyncio.Task[None]] = []
        announced = False
        try:
            await self._subscribe(client, pollers, lost)
            self.state.connected = True
            self.state.connect_count += 1
            self.state.last_error = None
            announced = True
            log.info(
                "device %s: connected and subscribed (connection #%d)",
                self.device_id,
                self.state.connect_count,
            )
            self._notify_connection(True)
            await self._wait_while_alive(lost, started)
        finally:
            for task in pollers:
                task.cancel()
            for task in pollers:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            # Always release the client: after a link loss bleak keeps its D-Bus connection
            # open, which leaks a socket per reconnect and keeps bluetoothd re-enabling our old
            # notify sessions on the next link.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(), 10.0)
            if announced:
                self.state.connected = False
                log.info("device %s: disconnected", self.device_id)
                self._notify_connection(False)
        return time.monotonic() - started

    async def _wait_while_alive(self, lost: asyncio.Event, started: float) -> None:
        timeout = self.spec.silence_timeout_s
        while not lost.is_set():
            if timeout is None:
                await lost.wait()
                return
            last = max(started, self.state.last_payload_at or started)
            remaining = last + timeout - time.monotonic()
            if remaining <= 0:
                log.warning(
                    "device %s: connected but silent for %g s; reconnecting",
                    self.device_id,
                    timeout,
                )
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), remaining)

    async def _subscribe(
        self,
        client: BleakClientWithServiceCache,
        pollers: list[asyncio.Task[None]],
        lost: asyncio.Event,
    ) -> None:
        for sub in self.spec.characteristics:
            char = client.services.get_characteristic(sub.uuid)
            try:
                if char is None:
                    raise MissingCharacteristicError(
                        f"characteristic {sub.uuid} not offered by the device"
                    )
                if sub.mode == "read":
                    await self._read(client, char, sub)
                    if sub.poll_interval_s is not None:
                        pollers.append(asyncio.create_task(self._poll(client, char, sub, lost)))
                else:
                    await client.start_notify(char, self._notify_handler(sub.uuid))
            except Exception as exc:
                if sub.required or lost.is_set():
                    raise
                log.info(
                    "device %s: optional characteristic %s skipped: %s",
                    self.device_id,
                    sub.uuid,
                    describe_error(exc),
                )

    def _notify_handler(self, uuid: str) -> Callable[[BleakGATTCharacteristic, bytearray], None]:
        def handler(_char: BleakGATTCharacteristic, data: bytearray) -> None:
            self._deliver(uuid, bytes(data))

        return handler

    async def _read(
        self, client: BleakClientWithServiceCache, char: BleakGATTCharacteristic, sub: Subscription
    ) -> None:
        data = await client.read_gatt_char(char)
        self._deliver(sub.uuid, bytes(data))

    async def _poll(
        self,
        client: BleakClientWithServiceCache,
        char: BleakGATTCharacteristic,
        sub: Subscription,
        lost: asyncio.Event,
    ) -> None:
        assert sub.poll_interval_s is not None
        while not lost.is_set():
            await asyncio.sleep(sub.poll_interval_s)
            try:
                await self._read(client, char, sub)
            except Exception as exc:  # a failed poll is not worth dropping the link for
                log.info(
                    "device %s: reading %s failed: %s",
                    self.device_id,
                    sub.uuid,
                    describe_error(exc),
                )

    def _deliver(self, uuid: str, data: bytes) -> None:
        self.state.payload_count += 1
        self.state.last_payload_at = time.monotonic()
        try:
            self._listener.on_payload(self.device_id, uuid, data)
        except Exception:
            log.exception("device %s: listener failed in on_payload", self.device_id)

    def _notify_connection(self, connected: bool) -> None:
        try:
            self._listener.on_connection_change(self.device_id, connected)
        except Exception:
            log.exception("device %s: listener failed in on_connection_change", self.device_id)


# ---------------------------------------------------------------------------------------------
# The manager


class BluetoothManager:
    """Runs one :class:`WearableSession` task per spec, sharing a scanner per adapter."""

    def __init__(
        self,
        specs: Iterable[SessionSpec],
        listener: BluetoothListener,
        *,
        backoff: Backoff | None = None,
        scan_timeout_s: float = 10.0,
        connect_attempts: int = 3,
        seed: int | None = None,
    ) -> None:
        self.specs = tuple(specs)
        ids = [s.device_id for s in self.specs]
        if len(set(ids)) != len(ids):
            raise ValueError("device ids must be unique")
        self._listener = listener
        self._health = _AdapterHealth(listener)
        self._finders: dict[str | None, DeviceFinder] = {}
        rng = random.Random(seed)
        self.sessions: dict[str, WearableSession] = {}
        for spec in self.specs:
            finder = self._finders.setdefault(
                spec.adapter, DeviceFinder(spec.adapter, self._health)
            )
            self.sessions[spec.device_id] = WearableSession(
                spec,
                listener,
                finder=finder,
                health=self._health,
                backoff=backoff,
                scan_timeout_s=scan_timeout_s,
                connect_attempts=connect_attempts,
                rng=random.Random(rng.random()),
            )
        self._running = False

    async def start(self) -> None:
        install_mac_redaction()
        for session in self.sessions.values():
            session.start()
        self._running = True

    async def stop(self) -> None:
        # sessions first (they disconnect their clients), then the shared scanners
        await asyncio.gather(*(s.stop() for s in self.sessions.values()), return_exceptions=True)
        for finder in self._finders.values():
            await finder.close()
        self._running = False

    async def __aenter__(self) -> BluetoothManager:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def adapter_problem(self) -> str | None:
        return self._health.problem

    def state(self, device_id: str) -> DeviceState:
        return dataclasses.replace(self.sessions[device_id].state)

    def states(self) -> Mapping[str, DeviceState]:
        return {device_id: self.state(device_id) for device_id in self.sessions}


__all__ = [
    "Backoff",
    "BluetoothListener",
    "BluetoothManager",
    "DeviceFinder",
    "DeviceState",
    "MacRedactingFilter",
    "SessionSpec",
    "Subscription",
    "WearableSession",
    "adapter_problem",
    "install_mac_redaction",
    "redact",
]
