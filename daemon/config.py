"""The hub's configuration: one TOML file, validated by pydantic.

Unknown keys are errors (a typo in a medical configuration must not pass silently), and every
problem is reported as ``path.to.field: reason`` so the installer can fix it without a traceback.
"""

from __future__ import annotations

import os
import re
import tomllib
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
    model_validator,
)

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
    model_config = ConfigDict(extra="forbid", frozen=True)


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


class EscalationSettings(_Section):
    # Re-publish an unacknowledged alert every N minutes, moving up a tier each time
    # (patient -> caregiver -> care team). Per severity.
    enabled: bool = True
    repeat_min: dict[str, float] = Field(
        default_factory=lambda: {"low": 60.0, "medium": 30.0, "high": 15.0, "critical": 5.0,
                                 "emergency": 2.0}
    )


class VitalsSettings(_Section):
    publish: bool = True
    interval_s: float = Field(60.0, ge=5)


class StorageSettings(_Section):
    raw_retention_h: float = Field(48.0, gt=0)
    minute_retention_days: float = Field(35.0, gt=0)


class HomeAssistantSettings(_Section):
    enabled: bool = False
    discovery_prefix: str = "homeassistant"


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
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        else:
            parts.append(item)
    return ".".join(parts) or "(top level)"


def _reason(error_type: str, message: str) -> str:
    if error_type == "extra_forbidden":
        return "unknown key (check the spelling)"
    if error_type == "missing":
        return "required key is missing"
    return message.removeprefix("Value error, ")


def problems_from(error: ValidationError) -> list[str]:
    return [
        f"{_format_location(tuple(e['loc']))}: {_reason(e['type'], e['msg'])}"
        for e in error.errors(include_url=False)
    ]


def parse_config(data: dict[str, object]) -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(problems_from(exc)) from None


def load_config(path: Path) -> Config:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None
    return parse_config(data)


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
