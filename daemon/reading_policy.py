"""Reading policy: what a device's own value means for the patient (pure).

A wearable reports what its sensor sees; the rules need an estimate of the patient. Between the
two sit three decisions, made in one place so the daemon, ``crs-hub replay`` and the benchmarks
decide alike:

- the site offset (skin or axilla to core, clinical.md §2.2): the device's setting in the config,
  else its profile's default;
- plausibility: values that cannot be physiology are dropped (decoding.PLAUSIBLE_RANGES);
- off the body: a temperature the SENSOR reports below ``off_body_below_c`` (before the offset) is
  a patch reading room air, so it is marked as without sensor contact: it can neither clear a
  fever nor count as normal data. Judged on the raw value because the offset is an estimate of
  core temperature: it lifted a raw 33.6 °C off-body value to a believable 34.1 °C (issue 10);
- spot checks: readings of a device whose profile has no sample interval (an oral thermometer
  used by hand), and a temperature typed in by hand (``manual_reading``), are marked
  ``spot_check``: one such reading at or above the fever threshold raises the fever at once, and
  a spot-check device never starts a missing-data alarm.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime

from daemon.config import DeviceSettings
from daemon.decoding import Measurement, TemperatureMeasurement, plausibility, to_readings
from daemon.profiles import DeviceProfile
from daemon.readings import Reading, Vital


def site_offset_c(settings: DeviceSettings, profile: DeviceProfile) -> float:
    """The temperature offset to core for one configured device."""
    if settings.temperature_offset_c is not None:
        return settings.temperature_offset_c
    return profile.default_temperature_offset_c


# The pseudonymous device id under which a temperature typed in by hand is recorded.
MANUAL_DEVICE = "manual"


def is_spot_check(profile: DeviceProfile) -> bool:
    """A device not expected to report on a schedule (a thermometer used by hand)."""
    return profile.expected_sample_interval_s is None


def flag_off_body(readings: Iterable[Reading], below_c: float) -> list[Reading]:
    """Mark temperatures below ``below_c`` as without sensor contact (pass raw values)."""
    return [
        replace(r, sensor_contact=False)
        if r.vital is Vital.TEMPERATURE and r.value < below_c
        else r
        for r in readings
    ]


def _apply(raw: Iterable[Reading], offset_c: float, off_body_below_c: float,
           spot_check: bool) -> list[Reading]:
    """Off-body on the raw value, then the site offset, plausibility and the spot-check mark.
    An off-body reading is kept even if its value is no body temperature (room air at 21 °C):
    it carries the news that the patch is off, and no rule uses a value without contact."""
    out: list[Reading] = []
    for r in flag_off_body(raw, off_body_below_c):
        if r.vital is not Vital.TEMPERATURE:
            out.append(r)
            continue
        value = r.value + offset_c
        off_body = r.sensor_contact is False and math.isfinite(value)
        if not off_body and plausibility(Vital.TEMPERATURE, value) is not None:
            continue
        out.append(replace(r, value=value, spot_check=spot_check or r.spot_check))
    return out


def measurement_readings(
    measurement: Measurement, device: str, at: datetime, offset_c: float, off_body_below_c: float,
    *, spot_check: bool = False,
) -> list[Reading]:
    """Readings from a decoded GATT measurement, with the policy applied. ``spot_check``: the
    device is a spot-check device (``is_spot_check(profile)``)."""
    if isinstance(measurement, TemperatureMeasurement):
        # Built here rather than by to_readings, whose plausibility check would drop a raw
        # off-body value (room air) instead of marking it.
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError("at must be timezone-aware")
        raw = [Reading(device, Vital.TEMPERATURE, float(measurement.temperature_c),
                       at.astimezone(UTC))]
    else:
        raw = to_readings(measurement, device, at)
    return _apply(raw, offset_c, off_body_below_c, spot_check)


def manual_reading(temperature_c: float, at: datetime) -> Reading | None:
    """A thermometer reading typed in by hand (°C, as read): a spot check, no offset (oral is
    the reference site). None if it cannot be a body temperature."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("at must be timezone-aware")
    if plausibility(Vital.TEMPERATURE, temperature_c) is not None:
        return None
    return Reading(MANUAL_DEVICE, Vital.TEMPERATURE, float(temperature_c), at.astimezone(UTC),
                   None, spot_check=True)


def device_value_readings(
    device: str,
    vital: Vital,
    value: float,
    sensor_contact: bool | None,
    at: datetime,
    offset_c: float,
    off_body_below_c: float,
    *,
    spot_check: bool = False,
) -> list[Reading]:
    """Readings from a value in the device's own unit (before the site offset), e.g. a recorded
    ``temperature`` row: the same offset, plausibility and off-body checks as a payload."""
    if vital is not Vital.TEMPERATURE and plausibility(vital, value) is not None:
        return []
    raw = Reading(device, vital, float(value), at.astimezone(UTC), sensor_contact)
    return _apply([raw], offset_c, off_body_below_c, spot_check)
