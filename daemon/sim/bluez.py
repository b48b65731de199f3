"""A BlueZ look-alike on dbus-fast, good enough for the real bleak to scan, connect and subscribe.

It owns ``org.bluez`` on a (private) bus and serves the same object tree bluetoothd does::

    /                                   org.freedesktop.DBus.ObjectManager (dbus-fast built-in)
    /org/bluez/hci0                     org.bluez.Adapter1
    /org/bluez/hci0/dev_AA_BB_..        org.bluez.Device1
    .../service000c                     org.bluez.GattService1
    .../service000c/char000d            org.bluez.GattCharacteristic1
    .../service000c/char000d/desc000f   org.bluez.GattDescriptor1 (CCCD)

Behaviours copied from bluetoothd because bleak (and our reconnect logic) depend on them:

* Discovery is one session per D-Bus client (sender). A second ``StartDiscovery`` from the
  same connection fails with ``org.bluez.Error.InProgress``; a client's sessions end when it
  leaves the bus. bleak uses one bus per event loop for scanning, so two concurrent
  ``BleakScanner``s in one process collide exactly as they do on a Pi.
* A device object appears (``InterfacesAdded``) the first time it is seen while discovering;
  afterwards each advertisement is an ``RSSI`` ``PropertiesChanged``. Only those signals make
  bleak report an advertisement. A connected peripheral does not advertise.
* Unpaired devices that are neither connected nor seen for ``temporary_timeout_s`` are removed,
  so a stale ``BLEDevice`` fails to connect and the caller must scan again.
* ``Connect`` sets ``Connected``, exports the GATT tree (first time only: bluetoothd caches it),
  then sets ``ServicesResolved`` and replies; to an absent device it fails after
  ``connect_timeout_s``. ``Disconnect``/link loss clear both; ``Disconnect`` cancels a pending
  ``Connect`` ("Cancelled") and succeeds when not connected, as in bluetoothd's device.c.
* Notify sessions are per sender too; they vanish when the client leaves the bus (bleak opens
  a fresh bus per connection), so a reconnecting client must subscribe again.
* Every notification/indication is a ``PropertiesChanged`` on ``Value``, even when repeated;
  a ``ReadValue`` only signals when the value changed.
* ``AcquireNotify``/``AcquireWrite`` are refused with ``NotSupported`` and ``NotifyAcquired``
  is not exposed, so bleak (3.x defaults to ``StartNotify`` anyway) never tries the fd path.
"""

# No ``from __future__ import annotations`` here: dbus-fast reads the method annotations at
# class creation and mis-parses a postponed ``-> None``.
import asyncio
import contextlib
import logging
import random
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated

from dbus_fast import DBusError, Message, MessageType, RequestNameReply, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.annotations import (
    DBusBool,
    DBusBytes,
    DBusDict,
    DBusInt16,
    DBusObjectPath,
    DBusSignature,
    DBusStr,
    DBusUInt16,
    DBusUInt32,
)
from dbus_fast.constants import PropertyAccess
from dbus_fast.service import ServiceInterface, dbus_method, dbus_property

log = logging.getLogger(__name__)

BLUEZ_SERVICE = "org.bluez"
ADAPTER_INTERFACE = "org.bluez.Adapter1"
DEVICE_INTERFACE = "org.bluez.Device1"
GATT_SERVICE_INTERFACE = "org.bluez.GattService1"
GATT_CHARACTERISTIC_INTERFACE = "org.bluez.GattCharacteristic1"
GATT_DESCRIPTOR_INTERFACE = "org.bluez.GattDescriptor1"

ERR_FAILED = "org.bluez.Error.Failed"
ERR_IN_PROGRESS = "org.bluez.Error.InProgress"
ERR_NOT_READY = "org.bluez.Error.NotReady"
ERR_NOT_SUPPORTED = "org.bluez.Error.NotSupported"
ERR_NOT_PERMITTED = "org.bluez.Error.NotPermitted"
ERR_DOES_NOT_EXIST = "org.bluez.Error.DoesNotExist"
ERR_INVALID_ARGS = "org.bluez.Error.InvalidArguments"

CCCD_UUID = "00002902-0000-1000-8000-00805f9b34fb"

DBusStrList = Annotated[list[str], DBusSignature("as")]
DBusManufacturerData = Annotated[dict[int, Variant], DBusSignature("a{qv}")]


def uuid16(short: int) -> str:
    """Expand a 16-bit SIG UUID to the 128-bit lower-case form BlueZ uses."""
    return f"0000{short:04x}-0000-1000-8000-00805f9b34fb"


def normalize_uuid(value: str | int) -> str:
    if isinstance(value, int):
        return uuid16(value)
    text = value.strip().lower()
    if text.startswith("0x"):
        return uuid16(int(text, 16))
    if len(text) == 4:
        return uuid16(int(text, 16))
    return text


# ---------------------------------------------------------------------------------------------
# Static description of a peripheral (what it advertises and its GATT table)


@dataclass(frozen=True, slots=True)
class CharacteristicSpec:
    uuid: str
    flags: tuple[str, ...]  # BlueZ flag names: "read", "notify", "indicate", "write", ...
    initial_value: bytes = b""


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    uuid: str
    characteristics: tuple[CharacteristicSpec, ...]
    primary: bool = True


@dataclass(frozen=True, slots=True)
class PeripheralSpec:
    address: str  # "AA:BB:CC:DD:EE:FF"
    name: str
    services: tuple[ServiceSpec, ...]
    advertised_uuids: tuple[str, ...] = ()
    address_type: str = "public"
    appearance: int | None = None
    manufacturer_data: tuple[tuple[int, bytes], ...] = ()
    service_data: tuple[tuple[str, bytes], ...] = ()
    tx_power: int | None = None
    rssi: int = -60
    paired: bool = False  # bonded devices are loaded by bluetoothd at start and never expire


# ---------------------------------------------------------------------------------------------
# Mutable model


@dataclass
class SimDescriptor:
    path: str
    uuid: str
    characteristic: "SimCharacteristic"
    iface: "DescriptorInterface | None" = None


@dataclass
class SimCharacteristic:
    path: str
    uuid: str
    flags: tuple[str, ...]
    service: "SimService"
    value: bytes = b""
    notify_clients: set[str] = field(default_factory=set)
    descriptors: list[SimDescriptor] = field(default_factory=list)
    iface: "CharacteristicInterface | None" = None

    @property
    def notifying(self) -> bool:
        return bool(self.notify_clients)

    @property
    def can_subscribe(self) -> bool:
        return "notify" in self.flags or "indicate" in self.flags


@dataclass
class SimService:
    path: str
    uuid: str
    primary: bool
    device: "SimDevice"
    characteristics: list[SimCharacteristic] = field(default_factory=list)
    iface: "GattServiceInterface | None" = None


@dataclass
class DeviceCounters:
    connect_calls: int = 0
    connects: int = 0
    failed_connects: int = 0
    disconnects: int = 0
    notifications_sent: int = 0
    indications_sent: int = 0
    reads: int = 0
    start_notify_calls: int = 0


class SimDevice:
    """One remote peripheral as bluetoothd sees it."""

    def __init__(self, spec: PeripheralSpec, adapter: "SimAdapter") -> None:
        self.spec = spec
        self.adapter = adapter
        self.address = spec.address.upper()
        self.path = f"{adapter.path}/dev_{self.address.replace(':', '_')}"
        self.name = spec.name
        self.alias = spec.name
        self.paired = spec.paired
        self.bonded = spec.paired
        self.trusted = spec.paired
        self.blocked = False
        self.rssi = spec.rssi
        self.connected = False
        self.services_resolved = False
        # radio state driven by the scenario: advertising (in range, not connected) or not
        self.in_range = True
        self.connecting = False
        self.exported = False
        self.gatt_exported = False
        self.last_seen = time.monotonic()
        self.counters = DeviceCounters()
        self.services: list[SimService] = []
        self.iface: DeviceInterface | None = None
        self._rng = random.Random(zlib.crc32(self.address.encode()))
        self._cancel_connect: asyncio.Event | None = None
        self._build_gatt()

    def _build_gatt(self) -> None:
        # Handles are laid out like a real GATT table: service, then per characteristic its
        # declaration, value and (for notify/indicate) its CCCD.
        handle = 0x000C
        for sspec in self.spec.services:
            svc = SimService(
                f"{self.path}/service{handle:04x}", normalize_uuid(sspec.uuid), sspec.primary, self
            )
            handle += 1
            for cspec in sspec.characteristics:
                char = SimCharacteristic(
                    f"{svc.path}/char{handle:04x}",
                    normalize_uuid(cspec.uuid),
                    tuple(cspec.flags),
                    svc,
                    value=cspec.initial_value,
                )
                handle += 2
                if char.can_subscribe:
                    char.descriptors.append(
                        SimDescriptor(f"{char.path}/desc{handle:04x}", CCCD_UUID, char)
                    )
                    handle += 1
                svc.characteristics.append(char)
            self.services.append(svc)

    @property
    def advertising(self) -> bool:
        return self.in_range and not self.connected and not self.connecting

    def characteristic(self, uuid: str) -> SimCharacteristic:
        wanted = normalize_uuid(uuid)
        for svc in self.services:
            for char in svc.characteristics:
                if char.uuid == wanted:
                    return char
        raise KeyError(f"{self.address} has no characteristic {wanted}")

    def next_rssi(self) -> int:
        return max(-100, min(-30, self.spec.rssi + self._rng.randint(-4, 4)))


class SimAdapter:
    def __init__(self, name: str, address: str) -> None:
        self.name = name
        self.path = f"/org/bluez/{name}"
        self.address = address
        self.alias = f"crs-sim-{name}"
        self.powered = True
        self.discoverable = False
        self.pairable = True
        # BlueZ keeps one discovery session and one filter per D-Bus client (sender)
        self.discovery_clients: set[str] = set()
        self.filters: dict[str, dict[str, object]] = {}
        self.devices: dict[str, SimDevice] = {}
        self.iface: AdapterInterface | None = None

    @property
    def discovering(self) -> bool:
        return self.powered and bool(self.discovery_clients)

    def visible_to_discovery(self, device: SimDevice) -> bool:
        """bluetoothd merges the clients' filters; an unfiltered client sees everything."""
        for sender in self.discovery_clients:
            uuids = self.filters.get(sender, {}).get("UUIDs")
            if not uuids:
                return True
            assert isinstance(uuids, list)
            advertised = {normalize_uuid(u) for u in device.spec.advertised_uuids}
            if advertised & {normalize_uuid(str(u)) for u in uuids}:
                return True
        return False


# ---------------------------------------------------------------------------------------------
# D-Bus interfaces (thin: all behaviour lives in SimBluez)


class AdapterInterface(ServiceInterface):
    def __init__(self, bluez: "SimBluez", adapter: SimAdapter) -> None:
        super().__init__(ADAPTER_INTERFACE)
        self._bluez = bluez
        self._a = adapter

    @dbus_method()
    def StartDiscovery(self) -> None:
        self._bluez._start_discovery(self._a, self._bluez.current_sender())

    @dbus_method()
    def StopDiscovery(self) -> None:
        self._bluez._stop_discovery(self._a, self._bluez.current_sender())

    @dbus_method()
    def SetDiscoveryFilter(self, properties: DBusDict) -> None:
        flt: dict[str, object] = {k: v.value for k, v in properties.items()}
        for key in flt:
            if key not in {
                "UUIDs",
                "RSSI",
                "Pathloss",
                "Transport",
                "DuplicateData",
                "Discoverable",
                "Pattern",
            }:
                raise DBusError(ERR_INVALID_ARGS, f"unknown filter {key}")
        sender = self._bluez.current_sender()
        if flt:
            self._a.filters[sender] = flt
        else:
            self._a.filters.pop(sender, None)

    @dbus_method()
    def GetDiscoveryFilters(self) -> DBusStrList:
        return [
            "UUIDs",
            "RSSI",
            "Pathloss",
            "Transport",
            "DuplicateData",
            "Discoverable",
            "Pattern",
        ]

    @dbus_method()
    def RemoveDevice(self, device: DBusObjectPath) -> None:
        self._bluez._remove_device_by_path(self._a, device)

    @dbus_property(access=PropertyAccess.READ)
    def Address(self) -> DBusStr:
        return self._a.address

    @dbus_property(access=PropertyAccess.READ)
    def AddressType(self) -> DBusStr:
        return "public"

    @dbus_property(access=PropertyAccess.READ)
    def Name(self) -> DBusStr:
        return self._a.alias

    @dbus_property()
    def Alias(self) -> DBusStr:
        return self._a.alias

    @Alias.setter  # type: ignore[no-redef]
    def Alias(self, value: DBusStr) -> None:
        self._a.alias = value
        self.emit_properties_changed({"Alias": value})

    @dbus_property(access=PropertyAccess.READ)
    def Class(self) -> DBusUInt32:
        return 0

    @dbus_property()
    def Powered(self) -> DBusBool:
        return self._a.powered

    @Powered.setter  # type: ignore[no-redef]
    def Powered(self, value: DBusBool) -> None:
        self._bluez.set_powered(value, adapter=self._a.name)

    @dbus_property()
    def Discoverable(self) -> DBusBool:
        return self._a.discoverable

    @Discoverable.setter  # type: ignore[no-redef]
    def Discoverable(self, value: DBusBool) -> None:
        self._a.discoverable = value
        self.emit_properties_changed({"Discoverable": value})

    @dbus_property(access=PropertyAccess.READ)
    def DiscoverableTimeout(self) -> DBusUInt32:
        return 180

    @dbus_property(access=PropertyAccess.READ)
    def Pairable(self) -> DBusBool:
        return self._a.pairable

    @dbus_property(access=PropertyAccess.READ)
    def PairableTimeout(self) -> DBusUInt32:
        return 0

    @dbus_property(access=PropertyAccess.READ)
    def Discovering(self) -> DBusBool:
        return self._a.discovering

    @dbus_property(access=PropertyAccess.READ)
    def UUIDs(self) -> DBusStrList:
        return [uuid16(0x1800), uuid16(0x1801)]

    @dbus_property(access=PropertyAccess.READ)
    def Modalias(self) -> DBusStr:
        return "usb:v1D6Bp0246d0540"

    @dbus_property(access=PropertyAccess.READ)
    def Roles(self) -> DBusStrList:
        return ["central", "peripheral"]


class DeviceInterface(ServiceInterface):
    def __init__(self, bluez: "SimBluez", device: SimDevice) -> None:
        super().__init__(DEVICE_INTERFACE)
        self._bluez = bluez
        self._d = device

    @dbus_method()
    async def Connect(self) -> None:
        await self._bluez._connect(self._d)

    @dbus_method()
    async def Disconnect(self) -> None:
        await self._bluez._disconnect_requested(self._d)

    @dbus_method()
    async def Pair(self) -> None:
        if not self._d.connected and not self._d.in_range:
            raise DBusError(ERR_FAILED, "Page Timeout")
        if self._d.paired:
            raise DBusError("org.bluez.Error.AlreadyExists", "Already Exists")
        self._d.paired = self._d.bonded = True
        self.emit_properties_changed({"Paired": True, "Bonded": True})

    @dbus_method()
    def CancelPairing(self) -> None:
        return None

    @dbus_method()
    def ConnectProfile(self, uuid: DBusStr) -> None:
        raise DBusError(ERR_NOT_SUPPORTED, "Not Supported")

    @dbus_method()
    def DisconnectProfile(self, uuid: DBusStr) -> None:
        raise DBusError(ERR_NOT_SUPPORTED, "Not Supported")

    @dbus_property(access=PropertyAccess.READ)
    def Address(self) -> DBusStr:
        return self._d.address

    @dbus_property(access=PropertyAccess.READ)
    def AddressType(self) -> DBusStr:
        return self._d.spec.address_type

    @dbus_property(access=PropertyAccess.READ)
    def Name(self) -> DBusStr:
        return self._d.name

    @dbus_property()
    def Alias(self) -> DBusStr:
        return self._d.alias

    @Alias.setter  # type: ignore[no-redef]
    def Alias(self, value: DBusStr) -> None:
        self._d.alias = value or self._d.name
        self.emit_properties_changed({"Alias": self._d.alias})

    @dbus_property(access=PropertyAccess.READ)
    def Appearance(self) -> DBusUInt16:
        return self._d.spec.appearance or 0

    @dbus_property(access=PropertyAccess.READ)
    def Icon(self) -> DBusStr:
        return "unknown"

    @dbus_property(access=PropertyAccess.READ)
    def Paired(self) -> DBusBool:
        return self._d.paired

    @dbus_property(access=PropertyAccess.READ)
    def Bonded(self) -> DBusBool:
        return self._d.bonded

    @dbus_property()
    def Trusted(self) -> DBusBool:
        return self._d.trusted

    @Trusted.setter  # type: ignore[no-redef]
    def Trusted(self, value: DBusBool) -> None:
        self._d.trusted = value
        self.emit_properties_changed({"Trusted": value})

    @dbus_property()
    def Blocked(self) -> DBusBool:
        return self._d.blocked

    @Blocked.setter  # type: ignore[no-redef]
    def Blocked(self, value: DBusBool) -> None:
        self._d.blocked = value
        self.emit_properties_changed({"Blocked": value})

    @dbus_property(access=PropertyAccess.READ)
    def LegacyPairing(self) -> DBusBool:
        return False

    @dbus_property(access=PropertyAccess.READ)
    def RSSI(self) -> DBusInt16:
        return self._d.rssi

    @dbus_property(access=PropertyAccess.READ)
    def TxPower(self) -> DBusInt16:
        return self._d.spec.tx_power if self._d.spec.tx_power is not None else 0

    @dbus_property(access=PropertyAccess.READ)
    def Connected(self) -> DBusBool:
        return self._d.connected

    @dbus_property(access=PropertyAccess.READ)
    def UUIDs(self) -> DBusStrList:
        uuids = {normalize_uuid(u) for u in self._d.spec.advertised_uuids}
        if self._d.gatt_exported:
            uuids |= {s.uuid for s in self._d.services}
        return sorted(uuids)

    @dbus_property(access=PropertyAccess.READ)
    def Adapter(self) -> DBusObjectPath:
        return self._d.adapter.path

    @dbus_property(access=PropertyAccess.READ)
    def ManufacturerData(self) -> DBusManufacturerData:
        return {cid: Variant("ay", data) for cid, data in self._d.spec.manufacturer_data}

    @dbus_property(access=PropertyAccess.READ)
    def ServiceData(self) -> DBusDict:
        return {normalize_uuid(u): Variant("ay", data) for u, data in self._d.spec.service_data}

    @dbus_property(access=PropertyAccess.READ)
    def ServicesResolved(self) -> DBusBool:
        return self._d.services_resolved

    @dbus_property(access=PropertyAccess.READ)
    def AdvertisingFlags(self) -> DBusBytes:
        return bytes([0x06])  # LE General Discoverable, BR/EDR not supported

    @dbus_property(access=PropertyAccess.READ)
    def WakeAllowed(self) -> DBusBool:
        return False


class GattServiceInterface(ServiceInterface):
    def __init__(self, service: SimService) -> None:
        super().__init__(GATT_SERVICE_INTERFACE)
        self._s = service

    @dbus_property(access=PropertyAccess.READ)
    def UUID(self) -> DBusStr:
        return self._s.uuid

    @dbus_property(access=PropertyAccess.READ)
    def Primary(self) -> DBusBool:
        return self._s.primary

    @dbus_property(access=PropertyAccess.READ)
    def Device(self) -> DBusObjectPath:
        return self._s.device.path

    @dbus_property(access=PropertyAccess.READ)
    def Handle(self) -> DBusUInt16:
        return int(self._s.path[-4:], 16)


class CharacteristicInterface(ServiceInterface):
    def __init__(self, bluez: "SimBluez", char: SimCharacteristic) -> None:
        super().__init__(GATT_CHARACTERISTIC_INTERFACE)
        self._bluez = bluez
        self._c = char

    @dbus_method()
    def ReadValue(self, options: DBusDict) -> DBusBytes:
        return self._bluez._read_value(self._c)

    @dbus_method()
    def WriteValue(self, value: DBusBytes, options: DBusDict) -> None:
        self._bluez._write_value(self._c, value)

    @dbus_method()
    def StartNotify(self) -> None:
        self._bluez._start_notify(self._c, self._bluez.current_sender())

    @dbus_method()
    def StopNotify(self) -> None:
        self._bluez._stop_notify(self._c, self._bluez.current_sender())

    @dbus_method()
    def AcquireNotify(self, options: DBusDict) -> Annotated[tuple[int, int], DBusSignature("hq")]:
        raise DBusError(ERR_NOT_SUPPORTED, "Operation is not supported")

    @dbus_method()
    def AcquireWrite(self, options: DBusDict) -> Annotated[tuple[int, int], DBusSignature("hq")]:
        raise DBusError(ERR_NOT_SUPPORTED, "Operation is not supported")

    @dbus_property(access=PropertyAccess.READ)
    def UUID(self) -> DBusStr:
        return self._c.uuid

    @dbus_property(access=PropertyAccess.READ)
    def Service(self) -> DBusObjectPath:
        return self._c.service.path

    @dbus_property(access=PropertyAccess.READ)
    def Value(self) -> DBusBytes:
        return self._c.value

    @dbus_property(access=PropertyAccess.READ)
    def Notifying(self) -> DBusBool:
        return self._c.notifying

    @dbus_property(access=PropertyAccess.READ)
    def Flags(self) -> DBusStrList:
        return list(self._c.flags)

    @dbus_property(access=PropertyAccess.READ)
    def Handle(self) -> DBusUInt16:
        return int(self._c.path[-4:], 16)

    @dbus_property(access=PropertyAccess.READ)
    def MTU(self) -> DBusUInt16:
        return 247


class DescriptorInterface(ServiceInterface):
    def __init__(self, bluez: "SimBluez", desc: SimDescriptor) -> None:
        super().__init__(GATT_DESCRIPTOR_INTERFACE)
        self._bluez = bluez
        self._d = desc

    def _cccd(self) -> bytes:
        char = self._d.characteristic
        if not char.notifying:
            return b"\x00\x00"
        return b"\x01\x00" if "notify" in char.flags else b"\x02\x00"

    @dbus_method()
    def ReadValue(self, options: DBusDict) -> DBusBytes:
        if not self._d.characteristic.service.device.connected:
            raise DBusError(ERR_FAILED, "Not connected")
        return self._cccd()

    @dbus_method()
    def WriteValue(self, value: DBusBytes, options: DBusDict) -> None:
        # bluetoothd owns the CCCD; clients must use StartNotify
        raise DBusError(ERR_NOT_PERMITTED, "Write not permitted")

    @dbus_property(access=PropertyAccess.READ)
    def UUID(self) -> DBusStr:
        return self._d.uuid

    @dbus_property(access=PropertyAccess.READ)
    def Characteristic(self) -> DBusObjectPath:
        return self._d.characteristic.path

    @dbus_property(access=PropertyAccess.READ)
    def Value(self) -> DBusBytes:
        return self._cccd()

    @dbus_property(access=PropertyAccess.READ)
    def Flags(self) -> DBusStrList:
        return ["read"]

    @dbus_property(access=PropertyAccess.READ)
    def Handle(self) -> DBusUInt16:
        return int(self._d.path[-4:], 16)


# ---------------------------------------------------------------------------------------------
# The service


@dataclass
class SimTiming:
    """Wall-clock behaviour of the fake radio (not scenario time)."""

    advert_interval_s: float = 0.1  # how often an in-range device is "heard" while discovering
    connect_latency_s: float = 0.02  # Connect -> Connected
    resolve_latency_s: float = 0.02  # Connected -> ServicesResolved (GATT discovery)
    connect_timeout_s: float = 2.0  # Connect to an absent device fails after this
    temporary_timeout_s: float = 30.0  # BlueZ TemporaryTimeout for unpaired, unseen devices


class SimBluez:
    """The org.bluez service. Create, ``await start()``, add peripherals, drive them."""

    def __init__(
        self,
        bus_address: str,
        *,
        adapters: Iterable[str] = ("hci0",),
        timing: SimTiming | None = None,
    ) -> None:
        self.bus_address = bus_address
        self.timing = timing or SimTiming()
        self.adapters: dict[str, SimAdapter] = {}
        for i, name in enumerate(adapters):
            self.adapters[name] = SimAdapter(name, f"00:1A:7D:DA:71:{i:02X}")
        self._bus: MessageBus | None = None
        self._sender: str = ""
        self._advert_task: asyncio.Task[None] | None = None
        # hooks for the scenario runner
        self.on_connected: list[Callable[[SimDevice], None]] = []
        self.on_disconnected: list[Callable[[SimDevice], None]] = []

    # ----- lifecycle

    async def start(self) -> None:
        bus = MessageBus(bus_address=self.bus_address)
        await bus.connect()
        self._bus = bus
        bus.add_message_handler(self._on_message)
        # learn when clients leave the bus: their discovery and notify sessions end with them
        reply = await bus.call(
            Message(
                destination="org.freedesktop.DBus",
                path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus",
                member="AddMatch",
                signature="s",
                body=[
                    "type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',member='NameOwnerChanged'"
                ],
            )
        )
        assert reply is not None and reply.message_type is MessageType.METHOD_RETURN, reply
        for adapter in self.adapters.values():
            adapter.iface = AdapterInterface(self, adapter)
            bus.export(adapter.path, adapter.iface)
        name_reply = await bus.request_name(BLUEZ_SERVICE)
        if name_reply is not RequestNameReply.PRIMARY_OWNER:
            raise RuntimeError(f"could not own {BLUEZ_SERVICE}: {name_reply}")
        self._advert_task = asyncio.create_task(self._advertise_loop(), name="sim-bluez-adverts")

    async def stop(self) -> None:
        task, self._advert_task = self._advert_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        bus, self._bus = self._bus, None
        if bus is not None:
            bus.disconnect()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(bus.wait_for_disconnect(), 2.0)

    def _on_message(self, msg: Message) -> bool:
        # dbus-fast runs user handlers right before dispatching a method call synchronously,
        # so sync methods can read the caller's unique name from here.
        if msg.message_type is MessageType.METHOD_CALL:
            self._sender = msg.sender or ""
        elif (
            msg.message_type is MessageType.SIGNAL
            and msg.member == "NameOwnerChanged"
            and msg.sender == "org.freedesktop.DBus"
        ):
            name, _old, new = msg.body
            if name.startswith(":") and not new:
                self._client_gone(name)
        return False

    def current_sender(self) -> str:
        return self._sender

    # ----- peripherals

    def add_peripheral(self, spec: PeripheralSpec, *, adapter: str = "hci0") -> SimDevice:
        ad = self.adapters[adapter]
        device = SimDevice(spec, ad)
        ad.devices[device.address] = device
        if spec.paired:
            self._export_device(device)  # bonded devices are known from storage
        return device

    def device(self, address: str) -> SimDevice:
        addr = address.upper()
        for ad in self.adapters.values():
            if addr in ad.devices:
                return ad.devices[addr]
        raise KeyError(address)

    def devices(self) -> list[SimDevice]:
        return [d for ad in self.adapters.values() for d in ad.devices.values()]

    def set_in_range(self, address: str, in_range: bool) -> None:
        device = self.device(address)
        device.in_range = in_range
        if not in_range and device.connected:
            self.drop_link(address)

    def drop_link(self, address: str) -> bool:
        """Remote side went away (supervision timeout / peripheral reset)."""
        device = self.device(address)
        if device._cancel_connect is not None:
            device._cancel_connect.set()
        if not device.connected:
            return False
        self._set_disconnected(device)
        return True

    async def connect_orphan(self, address: str) -> None:
        """Connect with no client behind it: what bluetoothd keeps after a hub crashed while
        connected. The peripheral then no longer advertises."""
        device = self.device(address)
        if not device.exported:
            self._export_device(device)
        await self._connect(device)

    def notify(self, address: str, char_uuid: str, data: bytes) -> bool:
        """The peripheral sends a notification/indication. True if a subscriber got it."""
        device = self.device(address)
        char = device.characteristic(char_uuid)
        char.value = bytes(data)
        if not (device.connected and device.services_resolved and char.notify_clients):
            return False
        assert char.iface is not None
        char.iface.emit_properties_changed({"Value": char.value})
        if "indicate" in char.flags and "notify" not in char.flags:
            device.counters.indications_sent += 1
        else:
            device.counters.notifications_sent += 1
        return True

    def set_value(self, address: str, char_uuid: str, data: bytes) -> None:
        """Change what a read returns, without notifying."""
        self.device(address).characteristic(char_uuid).value = bytes(data)

    def set_powered(self, powered: bool, *, adapter: str = "hci0") -> None:
        ad = self.adapters[adapter]
        if ad.powered == powered:
            return
        if not powered:
            for device in ad.devices.values():
                if device.connected:
                    self._set_disconnected(device)
            ad.discovery_clients.clear()
        ad.powered = powered
        if ad.iface is not None:
            ad.iface.emit_properties_changed({"Powered": powered, "Discovering": ad.discovering})

    # ----- discovery

    def _start_discovery(self, ad: SimAdapter, sender: str) -> None:
        if not ad.powered:
            raise DBusError(ERR_NOT_READY, "Resource Not Ready")
        if sender in ad.discovery_clients:
            raise DBusError(ERR_IN_PROGRESS, "Operation already in progress")
        was = ad.discovering
        ad.discovery_clients.add(sender)
        if not was and ad.iface is not None:
            ad.iface.emit_properties_changed({"Discovering": True})
        # the first adverts arrive "immediately", like a real scan hearing a nearby device
        asyncio.get_running_loop().call_soon(self._advertise_once)

    def _stop_discovery(self, ad: SimAdapter, sender: str) -> None:
        if not ad.powered:
            raise DBusError(ERR_NOT_READY, "Resource Not Ready")
        if sender not in ad.discovery_clients:
            raise DBusError(ERR_FAILED, "No discovery started")
        ad.discovery_clients.discard(sender)
        if not ad.discovering and ad.iface is not None:
            ad.iface.emit_properties_changed({"Discovering": False})

    def _client_gone(self, sender: str) -> None:
        for ad in self.adapters.values():
            ad.filters.pop(sender, None)
            if sender in ad.discovery_clients:
                ad.discovery_clients.discard(sender)
                if not ad.discovering and ad.iface is not None:
                    ad.iface.emit_properties_changed({"Discovering": False})
            for device in ad.devices.values():
                for svc in device.services:
                    for char in svc.characteristics:
                        if sender in char.notify_clients:
                            char.notify_clients.discard(sender)
                            if not char.notifying and char.iface is not None:
                                char.iface.emit_properties_changed({"Notifying": False})

    async def _advertise_loop(self) -> None:
        while True:
            await asyncio.sleep(self.timing.advert_interval_s)
            try:
                self._advertise_once()
                self._expire_temporary()
            except Exception:  # keep the radio alive; a bug here must not stop the simulation
                log.exception("sim advert tick failed")

    def _advertise_once(self) -> None:
        if self._bus is None:
            return
        now = time.monotonic()
        for ad in self.adapters.values():
            if not ad.discovering:
                continue
            for device in ad.devices.values():
                if not device.advertising or device.blocked or not ad.visible_to_discovery(device):
                    continue
                device.last_seen = now
                device.rssi = device.next_rssi()
                if not device.exported:
                    self._export_device(device)
                else:
                    assert device.iface is not None
                    device.iface.emit_properties_changed({"RSSI": device.rssi})

    def _expire_temporary(self) -> None:
        now = time.monotonic()
        for ad in self.adapters.values():
            for device in list(ad.devices.values()):
                if (
                    device.exported
                    and not device.paired
                    and not device.connected
                    and not device.connecting
                    and now - device.last_seen > self.timing.temporary_timeout_s
                ):
                    self._unexport_device(device)

    # ----- object export

    def _export_device(self, device: SimDevice) -> None:
        assert self._bus is not None
        if device.exported:
            return
        device.iface = DeviceInterface(self, device)
        device.last_seen = time.monotonic()
        self._bus.export(device.path, device.iface)
        device.exported = True

    def _export_gatt(self, device: SimDevice) -> None:
        assert self._bus is not None
        if device.gatt_exported:
            return
        for svc in device.services:
            svc.iface = GattServiceInterface(svc)
            self._bus.export(svc.path, svc.iface)
            for char in svc.characteristics:
                char.iface = CharacteristicInterface(self, char)
                self._bus.export(char.path, char.iface)
                for desc in char.descriptors:
                    desc.iface = DescriptorInterface(self, desc)
                    self._bus.export(desc.path, desc.iface)
        device.gatt_exported = True
        assert device.iface is not None
        device.iface.emit_properties_changed({"UUIDs": device.iface.UUIDs})

    def _unexport_device(self, device: SimDevice) -> None:
        assert self._bus is not None
        if device.gatt_exported:
            for svc in device.services:
                for char in svc.characteristics:
                    for desc in char.descriptors:
                        self._bus.unexport(desc.path)
                        desc.iface = None
                    self._bus.unexport(char.path)
                    char.iface = None
                    char.notify_clients.clear()
                self._bus.unexport(svc.path)
                svc.iface = None
            device.gatt_exported = False
        if device.exported:
            self._bus.unexport(device.path)
            device.iface = None
            device.exported = False

    def _remove_device_by_path(self, ad: SimAdapter, path: str) -> None:
        if not ad.powered:
            raise DBusError(ERR_NOT_READY, "Resource Not Ready")
        for device in ad.devices.values():
            if device.path == path and device.exported:
                if device.connected:
                    self._set_disconnected(device)
                device.paired = device.bonded = device.trusted = False
                self._unexport_device(device)
                return
        raise DBusError(ERR_DOES_NOT_EXIST, "Does Not Exist")

    # ----- connections

    async def _connect(self, device: SimDevice) -> None:
        device.counters.connect_calls += 1
        if not device.adapter.powered:
            raise DBusError(ERR_NOT_READY, "Resource Not Ready")
        if device.connected:
            return
        if device.connecting:
            raise DBusError(ERR_FAILED, "Operation already in progress")
        device.connecting = True
        cancel = device._cancel_connect = asyncio.Event()
        try:
            if not await self._wait_reachable(device, cancel):
                device.counters.failed_connects += 1
                raise DBusError(
                    ERR_FAILED,
                    "Cancelled" if cancel.is_set() else "Software caused connection abort",
                )
            await asyncio.sleep(self.timing.connect_latency_s)
            if cancel.is_set():
                device.counters.failed_connects += 1
                raise DBusError(ERR_FAILED, "Cancelled")
            if not device.in_range or not device.adapter.powered:
                device.counters.failed_connects += 1
                raise DBusError(ERR_FAILED, "Software caused connection abort")
            device.connected = True
            assert device.iface is not None
            device.iface.emit_properties_changed({"Connected": True})
            self._export_gatt(device)
            await asyncio.sleep(self.timing.resolve_latency_s)
            if not device.connected:
                device.counters.failed_connects += 1
                raise DBusError(ERR_FAILED, "Software caused connection abort")
            device.services_resolved = True
            device.iface.emit_properties_changed({"ServicesResolved": True})
            device.counters.connects += 1
            for hook in self.on_connected:
                hook(device)
        finally:
            device.connecting = False
            device._cancel_connect = None

    async def _wait_reachable(self, device: SimDevice, cancel: asyncio.Event) -> bool:
        deadline = time.monotonic() + self.timing.connect_timeout_s
        while not (device.in_range and not device.blocked):
            if cancel.is_set() or time.monotonic() >= deadline:
                return False
            await asyncio.sleep(min(0.05, self.timing.connect_timeout_s))
        return True

    async def _disconnect_requested(self, device: SimDevice) -> None:
        # bluetoothd: Disconnect cancels a pending Connect and succeeds even when not connected
        if device._cancel_connect is not None:
            device._cancel_connect.set()
        await asyncio.sleep(0)
        self._set_disconnected(device)

    def _set_disconnected(self, device: SimDevice) -> None:
        if not device.connected:
            return
        device.services_resolved = False
        device.connected = False
        device.counters.disconnects += 1
        device.last_seen = time.monotonic()
        if device.iface is not None:
            device.iface.emit_properties_changed({"ServicesResolved": False})
            device.iface.emit_properties_changed({"Connected": False})
        for hook in self.on_disconnected:
            hook(device)

    # ----- GATT

    def _read_value(self, char: SimCharacteristic) -> bytes:
        device = char.service.device
        if not device.connected:
            raise DBusError(ERR_FAILED, "Not connected")
        if "read" not in char.flags:
            raise DBusError(ERR_NOT_PERMITTED, "Read not permitted")
        device.counters.reads += 1
        return char.value

    def _write_value(self, char: SimCharacteristic, value: bytes) -> None:
        if not char.service.device.connected:
            raise DBusError(ERR_FAILED, "Not connected")
        if "write" not in char.flags and "write-without-response" not in char.flags:
            raise DBusError(ERR_NOT_PERMITTED, "Write not permitted")
        char.value = bytes(value)

    def _start_notify(self, char: SimCharacteristic, sender: str) -> None:
        device = char.service.device
        device.counters.start_notify_calls += 1
        if not device.connected:
            raise DBusError(ERR_FAILED, "Not connected")
        if not char.can_subscribe:
            raise DBusError(ERR_NOT_SUPPORTED, "Operation is not supported")
        if sender in char.notify_clients:
            return
        was = char.notifying
        char.notify_clients.add(sender)
        if not was and char.iface is not None:
            char.iface.emit_properties_changed({"Notifying": True})

    def _stop_notify(self, char: SimCharacteristic, sender: str) -> None:
        if sender not in char.notify_clients:
            raise DBusError(ERR_FAILED, "No notify session started")
        char.notify_clients.discard(sender)
        if not char.notifying and char.iface is not None:
            char.iface.emit_properties_changed({"Notifying": False})
