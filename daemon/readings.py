"""A reading: one validated vital-sign value from one wearable, at one time.

Readings are what the decoders hand to the rules. They are plain frozen values with no I/O,
so the rules, the simulator and the benchmarks can all build and compare them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Vital(StrEnum):
    TEMPERATURE = "temperature"  # degrees Celsius, after the device's site offset
    HEART_RATE = "heart_rate"  # beats per minute
    SPO2 = "spo2"  # percent
    PULSE_RATE = "pulse_rate"  # beats per minute, from an oximeter or cuff
    SYSTOLIC = "systolic"  # mmHg
    DIASTOLIC = "diastolic"  # mmHg
    MEAN_ARTERIAL = "mean_arterial"  # mmHg
    BATTERY = "battery"  # percent


UNITS: dict[Vital, str] = {
    Vital.TEMPERATURE: "°C",
    Vital.HEART_RATE: "bpm",
    Vital.SPO2: "%",
    Vital.PULSE_RATE: "bpm",
    Vital.SYSTOLIC: "mmHg",
    Vital.DIASTOLIC: "mmHg",
    Vital.MEAN_ARTERIAL: "mmHg",
    Vital.BATTERY: "%",
}


@dataclass(frozen=True, slots=True)
class Reading:
    """One value of one vital from one configured device.

    ``device`` is the pseudonymous device id from the config, never a MAC address.
    ``observed_at`` is timezone-aware UTC. ``sensor_contact`` is None when the sensor
    does not report contact. ``spot_check`` marks a deliberate single measurement (a
    thermometer used by hand, or a value typed in): one such reading is evidence enough,
    whereas a continuous wearable's readings are confirmed against artifacts.
    """

    device: str
    vital: Vital
    value: float
    observed_at: datetime
    sensor_contact: bool | None = None
    spot_check: bool = False

    @property
    def unit(self) -> str:
        return UNITS[self.vital]
