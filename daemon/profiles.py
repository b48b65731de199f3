"""Device profiles: which GATT characteristics a kind of wearable exposes and how to read them.

Profiles are TOML files in ``device_profiles/`` (one profile per file, ``name`` = file stem),
validated by pydantic with unknown keys rejected, so a typo fails at start-up rather than
silently dropping a characteristic. :func:`parse_profile` is pure; :func:`load_profiles` only
adds reading the directory.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from daemon.decoding import CHARACTERISTIC_NAMES, VITALS_BY_CHARACTERISTIC, normalize_uuid
from daemon.readings import Vital

DecoderName = Literal[
    "heart_rate_measurement",
    "temperature_measurement",
    "intermediate_temperature",
    "battery_level",
    "plx_spot_check",
    "plx_continuous",
    "blood_pressure_measurement",
]
MeasurementSite = Literal[
    "axillary", "chest", "oral", "tympanic", "temporal", "rectal", "finger", "wrist", "upper_arm"
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Discovery(_Strict):
    """How ``crs-hub scan`` recognises the device in advertisements.

    ``service_uuids``: any of these advertised services matches (short hex allowed).
    ``name_patterns``: shell-style globs (``fnmatch``: ``*``, ``?``, ``[...]``), matched against
    the advertised local name case-insensitively. Not regular expressions.
    """

    service_uuids: tuple[str, ...] = ()
    name_patterns: tuple[str, ...] = ()

    @field_validator("service_uuids", mode="before")
    @classmethod
    def _normalize(cls, value: object) -> object:
        if isinstance(value, list | tuple):
            return tuple(normalize_uuid(v) if isinstance(v, str) else v for v in value)
        return value

    @field_validator("name_patterns")
    @classmethod
    def _non_empty(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not p.strip() for p in value):
            raise ValueError("name patterns must not be empty")
        return value

    @model_validator(mode="after")
    def _something_to_match(self) -> Discovery:
        if not self.service_uuids and not self.name_patterns:
            raise ValueError("give at least one of service_uuids or name_patterns")
        return self


class CharacteristicSpec(_Strict):
    """One characteristic to subscribe to (notify/indicate) or poll (read)."""

    uuid: str
    decoder: DecoderName
    mode: Literal["notify", "indicate", "read"]
    poll_interval_s: float | None = Field(None, gt=0)
    # False: the session carries on without it (e.g. a battery service BlueZ may claim itself).
    required: bool = True

    @field_validator("uuid", mode="before")
    @classmethod
    def _normalize(cls, value: object) -> object:
        return normalize_uuid(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> CharacteristicSpec:
        standard = CHARACTERISTIC_NAMES.get(self.uuid)
        # A vendor UUID may carry a standard layout, but a standard UUID has exactly one.
        if standard is not None and standard != self.decoder:
            raise ValueError(f"uuid {self.uuid} is {standard}, not {self.decoder}")
        if self.mode == "read" and self.poll_interval_s is None:
            raise ValueError("mode 'read' needs poll_interval_s")
        if self.mode != "read" and self.poll_interval_s is not None:
            raise ValueError(f"poll_interval_s only applies to mode 'read', not {self.mode!r}")
        return self


class DeviceProfile(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)
    description: str = Field(min_length=1)
    discovery: Discovery
    characteristics: tuple[CharacteristicSpec, ...] = Field(min_length=1)
    measurement_site: MeasurementSite
    # Added to the device's temperature to estimate core temperature. A device's own setting
    # in the hub config overrides it.
    default_temperature_offset_c: float = Field(0.0, ge=-3.0, le=3.0)
    # None: spot readings with no regular cadence (a thermometer the patient uses by hand).
    expected_sample_interval_s: float | None = Field(None, gt=0)
    vitals: tuple[Vital, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> DeviceProfile:
        uuids = [c.uuid for c in self.characteristics]
        if len(set(uuids)) != len(uuids):
            raise ValueError("a characteristic uuid is listed twice")
        if len(set(self.vitals)) != len(self.vitals):
            raise ValueError("a vital is listed twice")
        producible = set().union(
            *(VITALS_BY_CHARACTERISTIC[c.decoder] for c in self.characteristics)
        )
        missing = [v.value for v in self.vitals if v not in producible]
        if missing:
            raise ValueError(f"vitals {missing} are not produced by any listed decoder")
        if self.default_temperature_offset_c and Vital.TEMPERATURE not in self.vitals:
            raise ValueError(
                "default_temperature_offset_c is set but the profile has no temperature"
            )
        return self


class ProfileError(ValueError):
    """An unreadable or invalid profile. ``str()`` has one ``<file>: <field>: <reason>`` line per
    problem; ``field`` and ``reason`` are those of the first problem."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        self.field, self.reason = problems[0]
        super().__init__("\n".join(f"{source}: {f}: {r}" for f, r in problems))


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(profile)"


def parse_profile(text: str, source: str, expected_name: str | None = None) -> DeviceProfile:
    """Validate one profile's TOML text. ``source`` names it in errors; ``expected_name``, when
    given, must equal the profile's ``name`` (the loader passes the file stem)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(source, [("(toml)", str(exc))]) from None
    try:
        profile = DeviceProfile.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        locs = [tuple(err["loc"]) for err in errors]
        problems = [
            (_location(err["loc"]), err["msg"].removeprefix("Value error, "))
            for err, loc in zip(errors, locs, strict=True)
            # An invalid item also makes its container "too short": report only the cause.
            if not loc or not any(o[: len(loc)] == loc and len(o) > len(loc) for o in locs)
        ]
        raise ProfileError(source, problems) from None
    if expected_name is not None and profile.name != expected_name:
        raise ProfileError(
            source, [("name", f"{profile.name!r} must match the file name {expected_name!r}")]
        )
    return profile


def default_profiles_dir() -> Path:
    """The wheel's bundled copy (pyproject force-includes it as ``daemon/device_profiles``), or
    the repository's top-level ``device_profiles/`` when running from a checkout."""
    bundled = Path(__file__).parent / "device_profiles"
    return bundled if bundled.is_dir() else Path(__file__).parent.parent / "device_profiles"


def load_profiles(directory: Path | None = None) -> dict[str, DeviceProfile]:
    """Load every ``*.toml`` profile in ``directory`` (default: :func:`default_profiles_dir`),
    keyed by name. Raises :class:`ProfileError` for a missing directory or any invalid file."""
    directory = default_profiles_dir() if directory is None else directory
    if not directory.is_dir():
        raise ProfileError(str(directory), [("(directory)", "not a directory")])
    profiles: dict[str, DeviceProfile] = {}
    for path in sorted(directory.glob("*.toml")):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ProfileError(str(path), [("(file)", str(exc))]) from None
        profile = parse_profile(text, str(path), expected_name=path.stem)
        profiles[profile.name] = profile
    return profiles


def _advertised(service_uuids: Iterable[str]) -> set[str]:
    services: set[str] = set()
    for uuid in service_uuids:
        try:
            services.add(normalize_uuid(uuid))
        except ValueError:
            continue  # adverts are untrusted input; one odd UUID must not stop a scan
    return services


def _scored(
    name: str | None, service_uuids: Iterable[str], profiles: Mapping[str, DeviceProfile]
) -> list[tuple[tuple[bool, bool], DeviceProfile]]:
    services = _advertised(service_uuids)
    folded = None if name is None else name.casefold()
    scored = []
    for profile in profiles.values():
        by_service = bool(services.intersection(profile.discovery.service_uuids))
        by_name = folded is not None and any(
            fnmatchcase(folded, p.casefold()) for p in profile.discovery.name_patterns
        )
        if by_service or by_name:
            scored.append(((by_service, by_name), profile))
    # Best first: service and name, service only, name only; ties in profile-name order.
    scored.sort(key=lambda item: (not item[0][0], not item[0][1], item[1].name))
    return scored


def rank_profiles(
    name: str | None, service_uuids: Iterable[str], profiles: Mapping[str, DeviceProfile]
) -> list[DeviceProfile]:
    """Every profile matching an advertisement, best first (see :func:`match_profile`).
    Unparseable advertised UUIDs are ignored."""
    return [profile for _, profile in _scored(name, service_uuids, profiles)]


def match_profile(
    name: str | None, service_uuids: Iterable[str], profiles: Mapping[str, DeviceProfile]
) -> DeviceProfile | None:
    """The single best profile for an advertisement, or None.

    A service match beats a name match, and service plus name beats either. When the two best
    candidates match equally well (two profiles on the Health Thermometer service, neither name
    pattern matching) this returns None rather than pick one: an oral thermometer and an
    axillary patch need different temperature offsets, so the user must choose in the config.
    """
    scored = _scored(name, service_uuids, profiles)
    if not scored or (len(scored) > 1 and scored[0][0] == scored[1][0]):
        return None
    return scored[0][1]
