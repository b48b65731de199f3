"""Device profiles: the shipped TOML files, validation errors, and advertisement matching."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.decoding import normalize_uuid
from daemon.profiles import (
    DeviceProfile,
    ProfileError,
    default_profiles_dir,
    load_profiles,
    match_profile,
    parse_profile,
    rank_profiles,
)
from daemon.readings import Vital

REPO_PROFILES = Path(__file__).resolve().parents[1] / "device_profiles"

VALID = """
name = "demo"
description = "A test profile"
measurement_site = "chest"
vitals = ["heart_rate"]

[discovery]
service_uuids = ["180d"]

[[characteristics]]
uuid = "2a37"
decoder = "heart_rate_measurement"
mode = "notify"
"""


def profile(text: str = VALID, **replace: str) -> DeviceProfile:
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    return parse_profile(text, "demo.toml")


def profile_error(text: str) -> ProfileError:
    with pytest.raises(ProfileError) as info:
        parse_profile(text, "demo.toml")
    return info.value


# --------------------------------------------------------------------------- shipped profiles


@pytest.fixture(scope="module")
def shipped() -> dict[str, DeviceProfile]:
    return load_profiles()


def test_default_directory_is_the_repository_copy_in_a_checkout() -> None:
    assert not (Path(__file__).resolve().parents[1] / "daemon" / "device_profiles").exists()
    assert default_profiles_dir().resolve() == REPO_PROFILES


def test_shipped_profiles_are_the_expected_ones(shipped: dict[str, DeviceProfile]) -> None:
    assert sorted(shipped) == [
        "blood_pressure_cuff",
        "health_thermometer",
        "heart_rate_strap",
        "pulse_oximeter",
        "pulse_oximeter_spot_check",
        "temperature_patch",
    ]
    assert load_profiles(REPO_PROFILES) == shipped


def test_heart_rate_strap(shipped: dict[str, DeviceProfile]) -> None:
    strap = shipped["heart_rate_strap"]
    assert strap.measurement_site == "chest"
    assert strap.discovery.service_uuids == (normalize_uuid("180d"),)
    for pattern in ("Polar H10*", "TICKR*", "H808S*"):
        assert pattern in strap.discovery.name_patterns
    hr, battery = strap.characteristics
    assert (hr.uuid, hr.decoder, hr.mode, hr.required) == (
        normalize_uuid("2a37"),
        "heart_rate_measurement",
        "notify",
        True,
    )
    assert (battery.uuid, battery.decoder, battery.mode) == (
        normalize_uuid("2a19"),
        "battery_level",
        "read",
    )
    assert battery.poll_interval_s is not None and battery.poll_interval_s > 0
    assert battery.required is False
    assert strap.vitals == (Vital.HEART_RATE, Vital.BATTERY)
    assert strap.default_temperature_offset_c == 0.0
    assert strap.expected_sample_interval_s == 1.0


def test_health_thermometer(shipped: dict[str, DeviceProfile]) -> None:
    thermometer = shipped["health_thermometer"]
    assert thermometer.measurement_site == "oral"
    assert thermometer.default_temperature_offset_c == 0.0
    assert thermometer.expected_sample_interval_s is None  # spot readings
    assert thermometer.discovery.service_uuids == (normalize_uuid("1809"),)
    first = thermometer.characteristics[0]
    assert (first.uuid, first.decoder, first.mode) == (
        normalize_uuid("2a1c"),
        "temperature_measurement",
        "indicate",
    )
    assert Vital.TEMPERATURE in thermometer.vitals


def test_temperature_patch(shipped: dict[str, DeviceProfile]) -> None:
    patch = shipped["temperature_patch"]
    assert patch.measurement_site == "axillary"
    assert patch.default_temperature_offset_c == 0.5
    assert patch.expected_sample_interval_s == 60.0
    modes = {c.decoder: (c.uuid, c.mode) for c in patch.characteristics}
    assert modes == {
        "temperature_measurement": (normalize_uuid("2a1c"), "indicate"),
        "intermediate_temperature": (normalize_uuid("2a1e"), "notify"),
        "battery_level": (normalize_uuid("2a19"), "read"),
    }
    assert set(patch.vitals) == {Vital.TEMPERATURE, Vital.BATTERY}


def test_pulse_oximeters(shipped: dict[str, DeviceProfile]) -> None:
    continuous, spot = shipped["pulse_oximeter"], shipped["pulse_oximeter_spot_check"]
    for oximeter in (continuous, spot):
        assert oximeter.discovery.service_uuids == (normalize_uuid("1822"),)
        assert oximeter.measurement_site == "finger"
        assert set(oximeter.vitals) == {Vital.SPO2, Vital.PULSE_RATE, Vital.BATTERY}
    modes = {c.decoder: (c.uuid, c.mode, c.required) for c in continuous.characteristics}
    assert modes == {
        "plx_continuous": (normalize_uuid("2a5f"), "notify", True),
        "plx_spot_check": (normalize_uuid("2a5e"), "indicate", False),
        "battery_level": (normalize_uuid("2a19"), "read", False),
    }
    assert continuous.expected_sample_interval_s == 1.0
    first = spot.characteristics[0]
    assert (first.uuid, first.decoder, first.mode, first.required) == (
        normalize_uuid("2a5e"), "plx_spot_check", "indicate", True)
    assert spot.expected_sample_interval_s is None  # the patient takes readings by hand
    # the same service: scanning must not guess which kind it is
    assert match_profile("Oximeter", ["1822"], shipped) is None


def test_blood_pressure_cuff(shipped: dict[str, DeviceProfile]) -> None:
    cuff = shipped["blood_pressure_cuff"]
    assert cuff.measurement_site == "upper_arm"
    assert cuff.expected_sample_interval_s is None
    bp = cuff.characteristics[0]
    assert (bp.uuid, bp.decoder, bp.mode, bp.required) == (
        normalize_uuid("2a35"), "blood_pressure_measurement", "indicate", True)
    assert Vital.SYSTOLIC in cuff.vitals
    assert match_profile("BP cuff", ["1810"], shipped) == cuff
    text = (REPO_PROFILES / "blood_pressure_cuff.toml").read_text(encoding="utf-8")
    assert "BONDING" in text and "docs/" in text


def test_patch_offset_comment_cites_the_source_and_the_care_team() -> None:
    text = (REPO_PROFILES / "temperature_patch.toml").read_text(encoding="utf-8")
    assert "clinical.md §2.2" in text and "+0.45" in text
    assert "care team must" in text


# --------------------------------------------------------------------------- validation


def test_valid_profile_normalizes_uuids() -> None:
    demo = profile()
    assert demo.discovery.service_uuids == (normalize_uuid("180d"),)
    assert demo.characteristics[0].uuid == normalize_uuid("2a37")
    assert demo.expected_sample_interval_s is None
    assert demo.characteristics[0].required is True


def test_vendor_uuid_may_carry_a_standard_layout() -> None:
    vendor = "49535343-fe7d-4ae5-8fa9-9fafd205e455"
    assert profile(**{'uuid = "2a37"': f'uuid = "{vendor}"'}).characteristics[0].uuid == vendor


@pytest.mark.parametrize(
    ("old", "new", "field", "reason"),
    [
        (
            'decoder = "heart_rate_measurement"',
            'decoder = "heart_rate"',
            "characteristics[0].decoder",
            "Input should be 'heart_rate_measurement'",
        ),
        ('mode = "notify"', 'mode = "stream"', "characteristics[0].mode", "Input should be"),
        (
            'mode = "notify"',
            'mode = "read"',
            "characteristics[0]",
            "mode 'read' needs poll_interval_s",
        ),
        (
            'mode = "notify"',
            'mode = "notify"\npoll_interval_s = 5',
            "characteristics[0]",
            "poll_interval_s only applies to mode 'read'",
        ),
        (
            'uuid = "2a37"',
            'uuid = "2a1c"',
            "characteristics[0]",
            "is temperature_measurement, not heart_rate_measurement",
        ),
        ('uuid = "2a37"', 'uuid = "nope"', "characteristics[0].uuid", "not a Bluetooth UUID"),
        ('["180d"]', '["18 0d"]', "discovery.service_uuids", "not a Bluetooth UUID"),
        (
            'service_uuids = ["180d"]',
            "service_uuids = []",
            "discovery",
            "give at least one of service_uuids or name_patterns",
        ),
        ('vitals = ["heart_rate"]', 'vitals = ["pulse"]', "vitals[0]", "Input should be"),
        (
            'vitals = ["heart_rate"]',
            'vitals = ["heart_rate", "temperature"]',
            "(profile)",
            "vitals ['temperature'] are not produced by any listed decoder",
        ),
        (
            'vitals = ["heart_rate"]',
            'vitals = ["heart_rate"]\ndefault_temperature_offset_c = 0.5',
            "(profile)",
            "default_temperature_offset_c is set but the profile has no temperature",
        ),
        ('vitals = ["heart_rate"]', "vitals = []", "vitals", "at least 1 item"),
        ('"chest"', '"elbow"', "measurement_site", "Input should be"),
        ('name = "demo"', 'name = "Demo Strap"', "name", "should match pattern"),
        (
            'mode = "notify"',
            'mode = "notify"\nsubscribe = true',
            "characteristics[0].subscribe",
            "Extra inputs are not permitted",
        ),
        ('description = "A test profile"', "", "description", "Field required"),
    ],
)
def test_invalid_profiles_name_file_field_and_reason(
    old: str, new: str, field: str, reason: str
) -> None:
    assert old in VALID
    error = profile_error(VALID.replace(old, new))
    assert error.source == "demo.toml"
    assert error.field == field
    assert reason in error.reason
    assert str(error).startswith(f"demo.toml: {field}: ")


def test_several_problems_are_all_listed() -> None:
    text = VALID.replace('"chest"', '"elbow"').replace('mode = "notify"', 'mode = "x"')
    error = profile_error(text)
    fields = [f for f, _ in error.problems]
    assert fields == ["characteristics[0].mode", "measurement_site"]
    assert len(str(error).splitlines()) == 2


def test_toml_syntax_error() -> None:
    error = profile_error("name = ")
    assert error.field == "(toml)"
    assert "demo.toml: (toml): " in str(error)


def test_duplicate_characteristic_rejected() -> None:
    doubled = VALID + VALID[VALID.index("[[characteristics]]") :]
    assert "listed twice" in profile_error(doubled).reason


# --------------------------------------------------------------------------- loading


def test_load_profiles_reports_the_bad_file(tmp_path: Path) -> None:
    (tmp_path / "demo.toml").write_text(VALID, encoding="utf-8")
    (tmp_path / "broken.toml").write_text(
        VALID.replace('name = "demo"', 'name = "broken"').replace("notify", "sometimes"),
        encoding="utf-8",
    )
    with pytest.raises(ProfileError) as info:
        load_profiles(tmp_path)
    assert info.value.source == str(tmp_path / "broken.toml")
    assert info.value.field == "characteristics[0].mode"
    assert str(info.value).startswith(f"{tmp_path / 'broken.toml'}: characteristics[0].mode: ")


def test_load_profiles_requires_name_to_match_file(tmp_path: Path) -> None:
    (tmp_path / "strap.toml").write_text(VALID, encoding="utf-8")
    with pytest.raises(ProfileError) as info:
        load_profiles(tmp_path)
    assert info.value.field == "name"
    assert info.value.reason == "'demo' must match the file name 'strap'"


def test_load_profiles_from_custom_directory(tmp_path: Path) -> None:
    (tmp_path / "demo.toml").write_text(VALID, encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not a profile", encoding="utf-8")
    assert load_profiles(tmp_path) == {"demo": profile()}


def test_load_profiles_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ProfileError) as info:
        load_profiles(tmp_path / "absent")
    assert info.value.reason == "not a directory"


# --------------------------------------------------------------------------- matching


def test_match_by_service_and_name(shipped: dict[str, DeviceProfile]) -> None:
    assert match_profile("Polar H10 8C4F2A1B", ["180d"], shipped) == shipped["heart_rate_strap"]


def test_match_by_service_only(shipped: dict[str, DeviceProfile]) -> None:
    assert (
        match_profile("Unknown strap", ["0000180d-0000-1000-8000-00805f9b34fb"], shipped)
        == (shipped["heart_rate_strap"])
    )


def test_match_by_name_only_is_case_insensitive(shipped: dict[str, DeviceProfile]) -> None:
    assert match_profile("tickr 1234", [], shipped) == shipped["heart_rate_strap"]


def test_no_match(shipped: dict[str, DeviceProfile]) -> None:
    assert match_profile("Kettle", ["181d"], shipped) is None  # Weight Scale: no profile
    assert match_profile(None, [], shipped) is None


def test_equal_matches_are_ambiguous_not_guessed(shipped: dict[str, DeviceProfile]) -> None:
    # Both the oral thermometer and the axillary patch use the Health Thermometer service and
    # need different offsets: refuse to pick, but rank them deterministically.
    assert match_profile("Thermo", ["1809"], shipped) is None
    assert [p.name for p in rank_profiles("Thermo", ["1809"], shipped)] == [
        "health_thermometer",
        "temperature_patch",
    ]


def test_service_match_beats_name_match() -> None:
    by_name = profile(
        **{
            'name = "demo"': 'name = "a_by_name"',
            'service_uuids = ["180d"]': 'name_patterns = ["Acme*"]',
        }
    )
    by_service = profile(**{'name = "demo"': 'name = "z_by_service"'})
    profiles = {p.name: p for p in (by_name, by_service)}
    assert match_profile("Acme 1", ["180d"], profiles) == by_service
    assert [p.name for p in rank_profiles("Acme 1", ["180d"], profiles)] == [
        "z_by_service",
        "a_by_name",
    ]


def test_service_and_name_beats_service_only() -> None:
    generic = profile(**{'name = "demo"': 'name = "a_generic"'})
    named = profile(
        **{
            'name = "demo"': 'name = "z_named"',
            'service_uuids = ["180d"]': 'service_uuids = ["180d"]\nname_patterns = ["Acme ?"]',
        }
    )
    profiles = {"a_generic": generic, "z_named": named}
    assert match_profile("Acme 1", ["180D"], profiles) == named
    assert match_profile("Acme 12", ["180D"], profiles) is None  # '?' is one character: a tie


def test_garbage_advertised_uuids_are_ignored(shipped: dict[str, DeviceProfile]) -> None:
    assert match_profile(None, ["not-a-uuid", "0x180D"], shipped) == shipped["heart_rate_strap"]
