"""``crs-hub scan``: list nearby BLE devices and the device profile each one fits.

This is the installer's tool for copying a wearable's address into the hub config, so unlike
the rest of the hub it does print MAC addresses (on the terminal, not in logs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bleak import BleakScanner

from daemon.bluetooth import adapter_problem, describe_error
from daemon.profiles import DeviceProfile, match_profile, rank_profiles

_SIG_SUFFIX = "-0000-1000-8000-00805f9b34fb"


class ScanError(RuntimeError):
    """The scan could not run (adapter missing or off, bluetoothd down); ``str`` says why."""


@dataclass(frozen=True, slots=True)
class ScanResult:
    name: str | None
    address: str
    rssi: int
    service_uuids: tuple[str, ...]
    profile: str | None  # the single best profile (daemon.profiles.match_profile), or None
    candidates: tuple[str, ...] = ()  # every matching profile, best first (shows ambiguity)


def short_uuid(uuid: str) -> str:
    """SIG base UUIDs as their 16-bit form ("180D"); others unchanged."""
    text = uuid.lower()
    if text.startswith("0000") and text.endswith(_SIG_SUFFIX):
        return text[4:8].upper()
    return text


# ``timeout`` is the scan's length and the CLI's contract, not a cancellation deadline
async def scan(
    timeout: float,  # noqa: ASYNC109
    adapter: str | None,
    profiles: Mapping[str, DeviceProfile],
) -> list[ScanResult]:
    """Scan for ``timeout`` seconds. Devices that fit a profile come first, then by signal."""
    try:
        found = await BleakScanner.discover(
            timeout=timeout, return_adv=True, bluez={"adapter": adapter} if adapter else {}
        )
    except Exception as exc:
        problem = adapter_problem(exc, adapter)
        raise ScanError(problem or describe_error(exc)) from exc
    results = []
    for device, adv in found.values():
        name = adv.local_name or device.name
        uuids = tuple(adv.service_uuids)
        best = match_profile(name, uuids, profiles)
        ranked = tuple(p.name for p in rank_profiles(name, uuids, profiles))
        results.append(
            ScanResult(
                name=name,
                address=device.address,
                rssi=adv.rssi,
                service_uuids=uuids,
                profile=best.name if best is not None else None,
                candidates=ranked,
            )
        )
    results.sort(key=lambda r: (not r.candidates, -r.rssi, r.address))
    return results


def _profile_column(result: ScanResult) -> str:
    if result.profile is not None:
        return result.profile
    if result.candidates:
        # tied matches (e.g. an oral thermometer and a patch on 0x1809): the user must choose
        return "? " + " | ".join(result.candidates)
    return "-"


def format_scan(results: Sequence[ScanResult]) -> str:
    """A plain-text table for the terminal."""
    if not results:
        return (
            "No Bluetooth LE devices found. Wake the wearable (put it on, or press its button), "
            "keep it near the hub and scan again."
        )
    headers = ("NAME", "ADDRESS", "RSSI", "PROFILE", "SERVICES")
    rows = [
        (
            r.name or "(no name)",
            r.address,
            str(r.rssi),
            _profile_column(r),
            " ".join(short_uuid(u) for u in r.service_uuids) or "-",
        )
        for r in results
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    out = [line(headers), line(["-" * w for w in widths]), *(line(row) for row in rows)]
    matched = sum(1 for r in results if r.profile is not None)
    out.append("")
    out.append(
        f"{len(results)} device(s), {matched} with a unique profile. Copy the address and "
        "profile into the [[devices]] section of the hub config."
    )
    if any(r.profile is None and r.candidates for r in results):
        out.append(
            "'?' marks devices several profiles fit equally: choose the profile that matches "
            "how the device is worn (it sets the temperature offset)."
        )
    return "\n".join(out)
