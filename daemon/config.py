"""The hub's configuration: one TOML file, validated by pydantic.

Unknown keys are errors (a typo in a medical configuration must not pass silently), and every
problem is reported as ``path.to.field: reason`` so the installer can fix it without a traceback.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from daemon.alerts import Severity
from daemon.annunciator.settings import AnnunciatorSettings
from daemon.profiles import DeviceProfile, ProfileError, load_profiles
from daemon.readings import Vital
from daemon.status_page_settings import StatusPageSettings
from daemon.therapy import TherapySettings
from daemon.thresholds import Thresholds

_PSEUDONYM = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
_MAC = re.compile(r"^[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}$")


def _pseudonym(value: str) -> str:
    # Ids become MQTT topic levels and ACL usernames: '+', '#', '/' would break both.
    if not _PSEUDONYM.match(value):
        raise ValueError(
            "must be 1-64 lowercase letters, digits and '-' (no '+', '#', '/', spaces or names)"
        )
    return value


Pseudonym = Annotated[str, AfterValidator(_pseudonym)]


def _topic_prefix(value: str) -> str:
    levels = value.split("/")
    if not value or any(not level or any(c in level for c in "+#") for level in levels):
        raise ValueError("must be '/'-separated non-empty levels without '+' or '#'")
    return value


class _Section(BaseModel):
    # inf/nan are valid TOML floats: an infinite interval passes "> 0" and then breaks at run time.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class TemperatureUnit(StrEnum):
    CELSIUS = "C"
    FAHRENHEIT = "F"


class HubSettings(_Section):
    id: Pseudonym
    data_dir: Path = Path("/var/lib/crs-hub")
    # Bluetooth adapter; pin it with udev on hubs with several (hciX numbering is not stable).
    adapter: str = Field("hci0", pattern=r"^hci[0-9]+$")


class PatientSettings(_Section):
    id: Pseudonym
    care_team_name: str = Field(min_length=1, max_length=80)
    care_team_phone: str = Field(min_length=3, max_length=32, pattern=r"^[0-9+() .-]+$")
    emergency_number: str = Field("911", min_length=2, max_length=8, pattern=r"^[0-9]+$")
    therapy: str = Field("", max_length=120)
    temperature_unit: TemperatureUnit = TemperatureUnit.CELSIUS


class DeviceSettings(_Section):
    id: Pseudonym
    # None means: find it by the profile's discovery hints while scanning.
    address: str | None = None
    profile: str = Field(min_length=1)
    # Added to the device's temperature to estimate core temperature; None = the profile default.
    temperature_offset_c: float | None = Field(None, ge=-3.0, le=3.0)
    # "part-time": a wearable worn only part of the day (e.g. a chest strap during the day);
    # taking it off is not a technical alarm. The default watches it around the clock.
    wear: Literal["continuous", "part-time"] = "continuous"

    @model_validator(mode="after")
    def _address_format(self) -> DeviceSettings:
        if self.address is not None and not _MAC.match(self.address):
            raise ValueError("address must look like AA:BB:CC:DD:EE:FF")
        return self


class TlsSettings(_Section):
    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None

    @model_validator(mode="after")
    def _pair(self) -> TlsSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class MqttSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    protocol: Literal["5", "3.1.1"] = "5"
    tls: TlsSettings | None = None
    username: str | None = Field(None, pattern=r"^[^+#/]+$")
    # The password is read from a file or an environment variable, never from this file.
    password_file: Path | None = None
    password_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    topic_prefix: Annotated[str, AfterValidator(_topic_prefix)] = "crs/v1"
    keepalive_s: int = Field(30, ge=5, le=600)
    # paho's default grows to 120 s; a fever alert must not wait that long (reliability.md §2).
    reconnect_max_s: float = Field(10.0, gt=0, le=60)

    @model_validator(mode="after")
    def _one_password_source(self) -> MqttSettings:
        if self.password_file is not None and self.password_env is not None:
            raise ValueError("set password_file or password_env, not both")
        return self

    def password(self) -> SecretStr | None:
        if self.password_file is not None:
            return SecretStr(self.password_file.read_text().strip())
        if self.password_env is not None:
            value = os.environ.get(self.password_env)
            return SecretStr(value) if value is not None else None
        return None


class AlertSettings(_Section):
    # MQTT v5 message expiry of alert events: an old alert is not delivered as news.
    event_expiry_s: int = Field(12 * 3600, ge=60)
    # Delivery receipts (docs/delivery.md): the MQTT usernames of the consumers whose receipt
    # counts (e.g. the care-team console). Empty: no receipts are expected, and delivery ends at
    # the home broker's PUBACK.
    receipt_consumers: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]] = Field(
        default_factory=list)
    # An unconfirmed event is published again after receipt_resend_s, doubling to the max.
    receipt_resend_s: float = Field(30.0, gt=0, le=3600)
    receipt_resend_max_s: float = Field(600.0, gt=0, le=6 * 3600)
    # A high-or-worse event unconfirmed this long is the care_team_not_reached alarm: the
    # patient is told to phone. 5 min: a fever should reach the team well within the escalation
    # interval for high (15 min).
    receipt_timeout_s: float = Field(300.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _backoff(self) -> AlertSettings:
        if self.receipt_resend_max_s < self.receipt_resend_s:
            raise ValueError("receipt_resend_max_s must be at least receipt_resend_s")
        return self


_DEFAULT_REPEAT_MIN: dict[Severity, float] = {
    Severity.LOW: 60.0,
    Severity.MEDIUM: 30.0,
    Severity.HIGH: 15.0,
    Severity.CRITICAL: 5.0,
    Severity.EMERGENCY: 2.0,
}


class EscalationSettings(_Section):
    # Re-publish an unacknowledged alert every N minutes, moving up a tier each time
    # (patient -> caregiver -> care team). Per severity; keys are severities (a misspelt one is
    # an error), a severity not given keeps its default, so after validation every severity
    # has a positive interval.
    enabled: bool = True
    repeat_min: dict[Severity, Annotated[float, Field(gt=0)]] = Field(
        default_factory=lambda: dict(_DEFAULT_REPEAT_MIN)
    )

    @field_validator("repeat_min", mode="before")
    @classmethod
    def _merge_defaults(cls, value: object) -> object:
        if isinstance(value, Mapping):
            return {**{k.value: v for k, v in _DEFAULT_REPEAT_MIN.items()}, **value}
        return value


class VitalsSettings(_Section):
    publish: bool = True
    interval_s: float = Field(60.0, ge=5)


class StorageSettings(_Section):
    raw_retention_h: float = Field(48.0, gt=0)
    minute_retention_days: float = Field(35.0, gt=0)


class HomeAssistantSettings(_Section):
    enabled: bool = False
    # Topic levels like mqtt.topic_prefix: a '+' or '#' here would make every discovery publish fail.
    discovery_prefix: Annotated[str, AfterValidator(_topic_prefix)] = "homeassistant"


class Config(_Section):
    hub: HubSettings
    patient: PatientSettings
    thresholds: Thresholds = Thresholds()
    devices: list[DeviceSettings] = Field(default_factory=list)
    mqtt: MqttSettings = MqttSettings()
    alerts: AlertSettings = AlertSettings()
    escalation: EscalationSettings = EscalationSettings()
    vitals: VitalsSettings = VitalsSettings()
    storage: StorageSettings = StorageSettings()
    home_assistant: HomeAssistantSettings = HomeAssistantSettings()
    status_page: StatusPageSettings = StatusPageSettings()
    annunciator: AnnunciatorSettings = AnnunciatorSettings()
    # Doses and monitoring windows (daemon/therapy.py); None: no windows, alerts run anyway.
    therapy: TherapySettings | None = None
    # Where device profiles live; None = the ones shipped with crs-hub.
    device_profiles_dir: Path | None = None

    @model_validator(mode="after")
    def _unique_devices(self) -> Config:
        seen: set[str] = set()
        for device in self.devices:
            if device.id in seen:
                raise ValueError(f"device id {device.id!r} is used twice")
            seen.add(device.id)
        return self


class ConfigError(Exception):
    """A config that cannot be used. ``problems`` are ``path.to.field: reason`` lines."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _format_location(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if item == "[key]":  # pydantic's marker for a bad dict key: the key itself is the path
            continue
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        else:
            parts.append(item)
    return ".".join(parts) or "(top level)"


def _reason(error_type: str, message: str, loc: tuple[int | str, ...]) -> str:
    if error_type == "extra_forbidden":
        return "unknown key (check the spelling)"
    if loc and loc[-1] == "[key]":
        return f"unknown key: {message.replace('Input should be', 'must be')}"
    if error_type == "missing":
        return "required key is missing"
    return message.removeprefix("Value error, ")


def problems_from(error: ValidationError) -> list[str]:
    return [
        f"{_format_location(tuple(e['loc']))}: {_reason(e['type'], e['msg'], tuple(e['loc']))}"
        for e in error.errors(include_url=False)
    ]


def semantic_problems(config: Config) -> list[str]:
    """Cross-field rules that need no device profile: settings each valid alone that together
    could never alarm, never clear, or silently misbehave."""
    problems = [f"thresholds.{p}" for p in config.thresholds.problems()]
    seen: dict[str, int] = {}
    for index, device in enumerate(config.devices):
        if device.address is None:
            continue
        # BlueZ addresses are upper case, configs may be either; one wearable can feed one session.
        first = seen.setdefault(device.address.upper(), index)
        if first != index:
            problems.append(
                f"devices[{index}].address: the same Bluetooth address as devices[{first}] "
                f"({config.devices[first].id!r}): one wearable cannot be two devices"
            )
    return problems


def parse_config(data: dict[str, object]) -> Config:
    """Validate a config without device profiles (pure; see :func:`load_config` for the full
    check). Field problems are reported first; the cross-field rules run on a config whose
    fields are each valid."""
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(problems_from(exc)) from None
    problems = semantic_problems(config)
    if problems:
        raise ConfigError(problems)
    return config


def _continuous(profile: DeviceProfile, vital: Vital) -> float | None:
    """The sample interval when ``profile`` sends ``vital`` on a schedule, else None."""
    if vital in profile.vitals:
        return profile.expected_sample_interval_s
    return None


def validate_with_profiles(config: Config, profiles: Mapping[str, DeviceProfile]) -> list[str]:
    """The rules that depend on the configured devices' profiles, as ``path: reason`` lines.

    Each threshold is checked against the configured continuous device with the longest sample
    interval for that vital (the binding one), so one line per setting names that device.
    """
    problems: list[str] = []
    known = [(i, d, profiles[d.profile]) for i, d in enumerate(config.devices)
             if d.profile in profiles]
    for index, device in enumerate(config.devices):
        profile = profiles.get(device.profile)
        if profile is None:
            names = ", ".join(sorted(profiles)) or "none"
            problems.append(f"devices[{index}].profile: unknown profile {device.profile!r} "
                            f"(known: {names})")
        elif device.temperature_offset_c is not None and Vital.TEMPERATURE not in profile.vitals:
            problems.append(
                f"devices[{index}].temperature_offset_c: profile {profile.name!r} measures no "
                "temperature, so the offset would be ignored"
            )

    def slowest(vital: Vital) -> tuple[float, str] | None:
        timed = [(interval, f"devices[{i}] ({d.id!r}, profile {p.name!r})")
                 for i, d, p in known if (interval := _continuous(p, vital)) is not None]
        return max(timed, key=lambda t: t[0]) if timed else None

    t = config.thresholds
    temperature = slowest(Vital.TEMPERATURE)
    if temperature is not None:
        every, who = temperature
        f = t.fever
        # The rules stretch both the missing-data window (stale.missed_intervals) and the fever
        # window (fever.confirm_window_intervals) to the device's interval, so neither can be
        # shorter than the time between readings; what can still fail is the confirmation.
        window = max(f.confirm_window_s, f.confirm_window_intervals * every)
        # Readings every `every` seconds: at most floor(window / every) + 1 fit in the window,
        # spanning at most floor(window / every) * every (1e-9: float division of round values).
        steps = math.floor(window / every + 1e-9)
        if f.confirm_min_samples > steps + 1:
            problems.append(
                f"thresholds.fever.confirm_min_samples: {f.confirm_min_samples} readings never "
                f"fit in the confirmation window ({window:g} s) at one per {every:g} s from "
                f"{who}: at most {steps + 1} do, so no fever could ever be confirmed"
            )
        if steps * every < f.confirm_min_span_s <= window:
            problems.append(
                f"thresholds.fever.confirm_min_span_s: {f.confirm_min_span_s:g} s is longer than "
                f"the {steps * every:g} s that readings one per {every:g} s from {who} can span "
                f"within the confirmation window ({window:g} s), so no fever could ever be "
                "confirmed"
            )
    heart = slowest(Vital.HEART_RATE)
    if heart is not None:
        every, who = heart
        if t.tachycardia.max_gap_s < every:
            problems.append(
                f"thresholds.tachycardia.max_gap_s: {t.tachycardia.max_gap_s:g} s is shorter "
                f"than the {every:g} s between readings of {who}: every reading would restart "
                "the window, so tachycardia could never be confirmed"
            )

    oximeter = slowest(Vital.SPO2)
    if oximeter is not None:
        every, who = oximeter
        em = t.emergency
        if em.spo2_max_gap_s < every:
            problems.append(
                f"thresholds.emergency.spo2_max_gap_s: {em.spo2_max_gap_s:g} s is shorter than "
                f"the {every:g} s between readings of {who}: every reading would break the run, "
                "so low oxygen could never be confirmed"
            )
        steps = math.floor(em.spo2_window_s / every + 1e-9)
        if em.spo2_min_samples > steps + 1:
            problems.append(
                f"thresholds.emergency.spo2_min_samples: {em.spo2_min_samples} readings never "
                f"fit in spo2_window_s ({em.spo2_window_s:g} s) at one per {every:g} s from "
                f"{who}: at most {steps + 1} do, so low oxygen could never be confirmed"
            )

    continuous_temperature = [(i, d) for i, d, p in known
                              if _continuous(p, Vital.TEMPERATURE) is not None]
    if continuous_temperature and all(d.wear == "part-time" for _, d in continuous_temperature):
        index, device = continuous_temperature[0]
        problems.append(
            f"devices[{index}].wear: part-time leaves no temperature wearable worn around the "
            "clock, but fever is the primary CRS sign and a temperature source taken off must "
            "always alarm: wear it continuously, or add one that is"
        )

    # A device without an address takes the first unclaimed wearable matching its profile's
    # advertised services (daemon.bluetooth.SessionSpec.matches), which may be another configured
    # device's: harmless only between interchangeable devices (same profile and settings).
    for later, (j, b, pb) in enumerate(known):
        for i, a, pa in known[:later]:
            if a.address is not None and b.address is not None:
                continue
            shared = set(pa.discovery.service_uuids) & set(pb.discovery.service_uuids)
            same = (a.profile, a.temperature_offset_c, a.wear) == (b.profile,
                                                                 b.temperature_offset_c, b.wear)
            if shared and not same:
                index, device, other, other_index = (j, b, a, i) if b.address is None else (i, a, b, j)
                problems.append(
                    f"devices[{index}].address: required: without it {device.id!r} may connect "
                    f"to devices[{other_index}] ({other.id!r}), whose profile advertises the same "
                    "Bluetooth service"
                )
    return problems


def profile_warnings(config: Config, profiles: Mapping[str, DeviceProfile]) -> list[str]:
    """Legal but worth a second look (check-config prints them; they do not stop the hub)."""
    warnings = []
    if config.devices and not any(
        Vital.TEMPERATURE in profiles[d.profile].vitals
        for d in config.devices if d.profile in profiles
    ):
        # Not an error: temperatures may be typed in by hand on the hub's page.
        warnings.append(
            "devices: no configured device measures temperature; fever, the primary CRS sign, "
            "is seen only in readings entered by hand"
        )
    trend = config.thresholds.temperature_trend
    patches = [(profiles[d.profile].expected_sample_interval_s, d.id) for d in config.devices
               if d.profile in profiles
               and _continuous(profiles[d.profile], Vital.TEMPERATURE) is not None]
    slow = [(every, name) for every, name in patches if every is not None
            and math.floor(trend.sustain_window_s / every) + 1 < trend.sustain_min_samples]
    if trend.enabled and slow:
        every, name = max(slow)
        # Not an error: the fever rule still works; only the care-team notice never can.
        warnings.append(
            f"thresholds.temperature_trend.sustain_min_samples: {trend.sustain_min_samples} "
            f"readings never fit in {trend.sustain_window_s:g} s at one per {every:g} s from "
            f"{name!r}: the temperature-trend notice can never be raised (lower "
            "sustain_min_samples and trend_min_samples)"
        )
    return warnings


def read_toml(path: Path) -> dict[str, object]:
    """A TOML file as data, or a ConfigError naming the file and what is wrong with it."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None


def load_config(path: Path) -> Config:
    """Read, parse and fully validate a config file, including the rules that depend on the
    configured devices' profiles (what both ``check-config`` and ``run`` use)."""
    config = parse_config(read_toml(path))
    try:
        profiles = load_profiles(config.device_profiles_dir)
    except ProfileError as exc:
        raise ConfigError([f"device_profiles_dir: {line}" for line in str(exc).splitlines()]) from None
    problems = validate_with_profiles(config, profiles)
    if problems:
        raise ConfigError(problems)
    return config


def permission_warnings(path: Path, config: Config) -> list[str]:
    """Warn when a file holding secrets can be read by other users."""
    warnings = []
    candidates = [("config", path)]
    if config.mqtt.password_file is not None:
        candidates.append(("mqtt.password_file", config.mqtt.password_file))
    if config.mqtt.tls is not None and config.mqtt.tls.key_file is not None:
        candidates.append(("mqtt.tls.key_file", config.mqtt.tls.key_file))
    for label, candidate in candidates:
        try:
            mode = candidate.stat().st_mode
        except OSError:
            if label != "config":
                warnings.append(f"{label}: {candidate} does not exist or cannot be read")
            continue
        if mode & 0o004:
            warnings.append(f"{label}: {candidate} is readable by every user; chmod o-r it")
    return warnings
