"""Reading policy: what a device's own value means for the patient (pure).

A wearable reports what its sensor sees; the rules need an estimate of the patient. Between the
two sit three decisions, made in one place so the daemon, ``crs-hub replay`` and the benchmarks
decide alike:

- the site offset (skin or axilla to core, clinical.md §2.2): the device's setting in the config,
  else its profile's default;
- plausibility: values that cannot be physiology are dropped (decoding.PLAUSIBLE_RANGES);
- off the body: a temperature below ``off_body_below_c`` (after the offset) is a patch reading
  room air, so it is marked as without sensor contact: it can neither clear a fever nor count as
  normal data.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime

from daemon.config import DeviceSettings
from daemon.decoding import Measurement, plausibility, to_readings
from daemon.profiles import DeviceProfile
from daemon.readings import Reading, Vital


def site_offset_c(settings: DeviceSettings, profile: DeviceProfile) -> float:
    """The temperature offset to core for one configured device."""
    if settings.temperature_offset_c is not None:
        return settings.temperature_offset_c
    return profile.default_temperature_offset_c


def flag_off_body(readings: Iterable[Reading], below_c: float) -> list[Reading]:
    """Mark temperatures below ``below_c`` as without sensor contact."""
    return [
        replace(r, sensor_contact=False)
        if r.vital is Vital.TEMPERATURE and r.value < below_c
        else r
        for r in readings
    ]


def measurement_readings(
    measurement: Measurement, device: str, at: datetime, offset_c: float, off_body_below_c: float
) -> list[Reading]:
    """Readings from a decoded GATT measurement, with the policy applied."""
    readings = to_readings(measurement, device, at, offset_c)
    return flag_off_body(readings, off_body_below_c)


def device_value_readings(
    device: str,
    vital: Vital,
    value: float,
    sensor_contact: bool | None,
    at: datetime,
    offset_c: float,
    off_body_below_c: float,
) -> list[Reading]:
    """Readings from a value in the device's own unit (before the site offset), e.g. a recorded
    ``temperature`` row: the same offset, plausibility and off-body checks as a payload."""
    if vital is Vital.TEMPERATURE:
        value += offset_c
    if plausibility(vital, value) is not None:
        return []
    return flag_off_body([Reading(device, vital, float(value), at, sensor_contact)],
                         off_body_below_c)
