"""Home Assistant MQTT discovery payloads against HA's documented schema and the hub's payloads."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from daemon.alerts import AlertKind, Severity
from daemon.homeassistant import discovery_messages, is_ha_online, removal_messages
from daemon.payloads import (
    AlertStateSnapshot,
    DeviceStatus,
    HubStatus,
    OpenAlert,
    Tier,
    VitalsSample,
)

HUB, PATIENT = "hub-7f3a", "p-4821"
DEVICES = [("chest-strap", {"heart_rate", "battery"}), ("temp-patch", {"temperature"})]
NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)

# From home-assistant/core homeassistant/components/mqtt/abbreviations.py (the ones we may use).
ABBREVIATIONS = {
    "avty": "availability", "avty_mode": "availability_mode", "avty_t": "availability_topic",
    "avty_tpl": "availability_template", "dev": "device", "dev_cla": "device_class",
    "en": "enabled_by_default", "ent_cat": "entity_category", "exp_aft": "expire_after",
    "frc_upd": "force_update", "ic": "icon", "json_attr_t": "json_attributes_topic",
    "json_attr_tpl": "json_attributes_template", "name": "name", "obj_id": "object_id",
    "pl_avail": "payload_available", "pl_not_avail": "payload_not_available",
    "pl_off": "payload_off", "pl_on": "payload_on", "stat_cla": "state_class",
    "stat_t": "state_topic", "t": "topic", "uniq_id": "unique_id",
    "unit_of_meas": "unit_of_measurement", "val_tpl": "value_template",
}
DEVICE_ABBREVIATIONS = {
    "cns": "connections", "cu": "configuration_url", "ids": "identifiers", "name": "name",
    "mf": "manufacturer", "mdl": "model", "sw": "sw_version", "sa": "suggested_area",
}
COMMON_OPTIONS = {
    "availability", "availability_mode", "availability_template", "availability_topic",
    "device", "device_class", "enabled_by_default", "encoding", "entity_category",
    "expire_after", "force_update", "icon", "json_attributes_template", "json_attributes_topic",
    "name", "object_id", "payload_available", "payload_not_available", "qos", "state_topic",
    "unique_id", "value_template",
}
# Options per platform from the HA docs (sensor.mqtt / binary_sensor.mqtt).
OPTIONS = {
    "sensor": COMMON_OPTIONS | {"state_class", "unit_of_measurement",
                                "last_reset_value_template", "suggested_display_precision"},
    "binary_sensor": COMMON_OPTIONS | {"payload_on", "payload_off", "off_delay"},
}
AVAILABILITY_OPTIONS = {"topic", "value_template", "payload_available", "payload_not_available"}
DEVICE_OPTIONS = {"configuration_url", "connections", "hw_version", "identifiers", "manufacturer",
                  "model", "name", "suggested_area", "sw_version", "via_device"}
SENSOR_DEVICE_CLASSES = {"temperature", "battery"}
BINARY_DEVICE_CLASSES = {"problem", "connectivity", "battery"}
MAC = re.compile(r"(?i)\b[0-9a-f]{2}([:-])(?:[0-9a-f]{2}\1){4}[0-9a-f]{2}\b")


def expand(config: dict[str, Any]) -> dict[str, Any]:
    """What HA does on discovery: abbreviations -> full names, also in availability and device."""
    out = {ABBREVIATIONS.get(k, k): v for k, v in config.items()}
    if "availability" in out:
        out["availability"] = [
            {ABBREVIATIONS.get(k, k): v for k, v in entry.items()} for entry in out["availability"]
        ]
    if "device" in out:
        out["device"] = {DEVICE_ABBREVIATIONS.get(k, k): v for k, v in out["device"].items()}
    return out


def entities(**kwargs: Any) -> dict[str, tuple[str, dict[str, Any]]]:
    """object_id -> (component, expanded config)."""
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for topic, payload in discovery_messages(HUB, PATIENT, DEVICES, **kwargs):
        match = re.fullmatch(r"homeassistant/(sensor|binary_sensor)/([a-z0-9-]+)/([\w-]+)/config",
                             topic)
        assert match, topic
        assert match.group(2) == HUB
        assert match.group(3) not in found
        found[match.group(3)] = (match.group(1), expand(json.loads(payload)))
    return found


def test_announces_the_expected_entities() -> None:
    assert set(entities()) == {
        "hub",
        f"{PATIENT}_alert",
        f"{PATIENT}_temperature",
        f"{PATIENT}_heart_rate",
        f"{PATIENT}_chest-strap_connectivity",
        f"{PATIENT}_chest-strap_battery",
        f"{PATIENT}_temp-patch_connectivity",
        f"{PATIENT}_temp-patch_battery",
    }


def test_every_key_is_a_documented_option_or_abbreviation() -> None:
    for topic, payload in discovery_messages(HUB, PATIENT, DEVICES):
        component = topic.split("/")[1]
        raw = json.loads(payload)
        # Abbreviated keys must be real abbreviations (an unknown short key is silently ignored).
        for key in raw:
            assert key in ABBREVIATIONS or key in OPTIONS[component], (topic, key)
        config = expand(raw)
        assert set(config) <= OPTIONS[component], (topic, set(config) - OPTIONS[component])
        assert set(config["device"]) <= DEVICE_OPTIONS
        assert "connections" not in config["device"]  # would be the MAC address
        for entry in config.get("availability", []):
            assert set(entry) <= AVAILABILITY_OPTIONS
        assert config["unique_id"]
        assert config["name"]


def test_unique_ids_are_unique_and_stable() -> None:
    first = [json.loads(p)["uniq_id"] for _, p in discovery_messages(HUB, PATIENT, DEVICES)]
    second = [json.loads(p)["uniq_id"] for _, p in discovery_messages(HUB, PATIENT, DEVICES)]
    assert len(set(first)) == len(first)
    assert first == second
    assert f"crs_{HUB}_{PATIENT}_heart_rate" in first


def test_heart_rate_has_no_device_class_unit_bpm_measurement_and_expiry() -> None:
    component, hr = entities(expire_after_s=900)[f"{PATIENT}_heart_rate"]
    assert component == "sensor"
    assert "device_class" not in hr  # HA has no heart-rate device class
    assert hr["unit_of_measurement"] == "bpm"
    assert hr["state_class"] == "measurement"
    assert hr["expire_after"] == 900
    assert hr["state_topic"] == f"crs/v1/{HUB}/{PATIENT}/vitals"


def test_temperature_sensor() -> None:
    component, temp = entities()[f"{PATIENT}_temperature"]
    assert component == "sensor"
    assert temp["device_class"] == "temperature"
    assert temp["unit_of_measurement"] == "°C"
    assert temp["state_class"] == "measurement"
    assert temp["expire_after"] == 600
    assert temp["state_topic"] == f"crs/v1/{HUB}/{PATIENT}/vitals"


def test_alert_is_a_problem_binary_sensor_on_the_retained_state_topic() -> None:
    component, alert = entities()[f"{PATIENT}_alert"]
    assert component == "binary_sensor"
    assert alert["device_class"] == "problem"
    assert alert["state_topic"] == f"crs/v1/{HUB}/{PATIENT}/alert/state"
    assert alert["qos"] == 1
    # Retained state changes only on transitions: an expiry would blank a standing alert.
    assert "expire_after" not in alert


def test_wearables_get_connectivity_and_battery_on_their_status_topic() -> None:
    found = entities()
    for device in ("chest-strap", "temp-patch"):
        topic = f"crs/v1/{HUB}/{PATIENT}/device/{device}/status"
        kind, link = found[f"{PATIENT}_{device}_connectivity"]
        assert (kind, link["device_class"], link["state_topic"]) == (
            "binary_sensor", "connectivity", topic)
        kind, battery = found[f"{PATIENT}_{device}_battery"]
        assert (kind, battery["device_class"], battery["state_topic"]) == ("sensor", "battery", topic)
        assert battery["unit_of_measurement"] == "%"
        assert link["device"]["identifiers"] == battery["device"]["identifiers"]
        assert link["device"]["via_device"] == f"crs_{HUB}_{PATIENT}"


def test_availability_follows_the_hub_status_topic() -> None:
    for object_id, (_, config) in entities().items():
        if object_id == "hub":
            assert "availability" not in config  # it *is* the availability signal
            assert config["state_topic"] == f"crs/v1/{HUB}/status"
            continue
        assert config["availability"] == [{
            "topic": f"crs/v1/{HUB}/status",
            "value_template": "{{ value_json.state }}",
            "payload_available": "online",
            "payload_not_available": "offline",
        }], object_id


def test_only_vitals_some_wearable_provides_are_announced() -> None:
    only_hr = discovery_messages(HUB, PATIENT, [("chest-strap", {"heart_rate"})])
    ids = {json.loads(p)["uniq_id"] for _, p in only_hr}
    assert f"crs_{HUB}_{PATIENT}_heart_rate" in ids
    assert f"crs_{HUB}_{PATIENT}_temperature" not in ids
    with_spo2 = entities()  # no oximeter in DEVICES
    assert f"{PATIENT}_spo2" not in with_spo2


def test_custom_prefixes() -> None:
    messages = discovery_messages(HUB, PATIENT, DEVICES, prefix="clinic/crs",
                                  discovery_prefix="ha")
    assert all(t.startswith("ha/") and t.endswith("/config") for t, _ in messages)
    for _, payload in messages:
        assert json.loads(payload)["stat_t"].startswith(f"clinic/crs/{HUB}/")


def test_no_mac_address_anywhere_and_macs_are_refused_as_ids() -> None:
    for topic, payload in discovery_messages(HUB, PATIENT, DEVICES):
        assert not MAC.search(topic)
        assert not MAC.search(payload)
    for bad in ("aa-bb-cc-dd-ee-01", "AA:BB:CC:DD:EE:01", "Chest Strap", "a/b", "x+", ""):
        with pytest.raises(ValueError):
            discovery_messages(HUB, PATIENT, [(bad, {"heart_rate"})])
    with pytest.raises(ValueError, match="MAC"):
        discovery_messages("aa-bb-cc-dd-ee-ff", PATIENT, [])
    with pytest.raises(ValueError):
        discovery_messages(HUB, "P 4821", [])
    with pytest.raises(ValueError, match="twice"):
        discovery_messages(HUB, PATIENT, [("strap", set()), ("strap", set())])
    with pytest.raises(ValueError, match="expire"):
        discovery_messages(HUB, PATIENT, DEVICES, expire_after_s=0)


def test_payloads_are_compact_utf8_json() -> None:
    for _, payload in discovery_messages(HUB, PATIENT, DEVICES):
        assert json.loads(payload)
        assert "\n" not in payload
    temp = dict(discovery_messages(HUB, PATIENT, DEVICES))[
        f"homeassistant/sensor/{HUB}/{PATIENT}_temperature/config"]
    assert '"unit_of_meas":"°C"' in temp


def test_removal_deletes_the_same_topics() -> None:
    removal = removal_messages(HUB, PATIENT, DEVICES)
    assert [t for t, _ in removal] == [t for t, _ in discovery_messages(HUB, PATIENT, DEVICES)]
    assert {p for _, p in removal} == {""}


@pytest.mark.parametrize(
    ("topic", "payload", "expected"),
    [
        ("homeassistant/status", b"online", True),
        ("homeassistant/status", "online", True),
        ("homeassistant/status", b"online\n", True),
        ("homeassistant/status", b"offline", False),
        ("homeassistant/status", b"", False),
        ("homeassistant/sensor/x/config", b"online", False),
        ("crs/v1/hub-7f3a/status", b"online", False),
    ],
)
def test_is_ha_online(topic: str, payload: bytes | str, expected: bool) -> None:
    assert is_ha_online(topic, payload) is expected


def test_is_ha_online_with_custom_discovery_prefix() -> None:
    assert is_ha_online("ha/status", b"online", discovery_prefix="ha")
    assert not is_ha_online("homeassistant/status", b"online", discovery_prefix="ha")


# --- The templates, rendered the way Home Assistant does (sandboxed Jinja2, value_json = dict) ---

def render(template: str, payload: bytes) -> str:
    jinja2_sandbox = pytest.importorskip("jinja2.sandbox")
    env = jinja2_sandbox.ImmutableSandboxedEnvironment()
    return str(env.from_string(template).render(value_json=json.loads(payload), value=payload))


def _alert(kind: AlertKind, severity: Severity) -> OpenAlert:
    return OpenAlert(alert_id=f"a-{kind}", kind=kind, severity=severity, tier=Tier.PATIENT,
                     value=38.4, unit="°C", raised_at=NOW, updated_at=NOW, device="temp-patch",
                     patient_message="…")


def test_templates_render_the_hub_payloads() -> None:
    found = entities()
    alert = found[f"{PATIENT}_alert"][1]
    clear = AlertStateSnapshot(hub_id=HUB, patient_id=PATIENT, open=[], updated_at=NOW).to_json()
    fever = AlertStateSnapshot(hub_id=HUB, patient_id=PATIENT, updated_at=NOW,
                               open=[_alert(AlertKind.FEVER, Severity.HIGH)]).to_json()
    assert render(alert["value_template"], clear) == "OFF"
    assert render(alert["value_template"], fever) == "ON"
    attributes = json.loads(render(alert["json_attributes_template"], fever))
    assert attributes == {"open_alerts": 1, "kinds": ["fever"], "severities": ["high"],
                          "updated_at": "2025-01-02T03:04:05Z"}

    # issue 13: a care-team-only notice open beside nothing else leaves the patient's sensor off
    trend = AlertStateSnapshot(hub_id=HUB, patient_id=PATIENT, updated_at=NOW,
                               open=[_alert(AlertKind.TEMPERATURE_TREND, Severity.LOW)]).to_json()
    assert render(alert["value_template"], trend) == "OFF"
    assert json.loads(render(alert["json_attributes_template"], trend))["kinds"] == []
    both = AlertStateSnapshot(hub_id=HUB, patient_id=PATIENT, updated_at=NOW,
                              open=[_alert(AlertKind.TEMPERATURE_TREND, Severity.LOW),
                                    _alert(AlertKind.FEVER, Severity.HIGH)]).to_json()
    assert render(alert["value_template"], both) == "ON"
    assert json.loads(render(alert["json_attributes_template"], both))["kinds"] == ["fever"]

    vitals = VitalsSample(observed_at=NOW, temperature_c=37.1, heart_rate_bpm=72).to_json()
    assert render(found[f"{PATIENT}_temperature"][1]["value_template"], vitals) == "37.1"
    assert render(found[f"{PATIENT}_heart_rate"][1]["value_template"], vitals) == "72.0"
    no_temp = VitalsSample(observed_at=NOW, heart_rate_bpm=72).to_json()
    # "None" is Home Assistant's "unknown": a missing vital never shows a stale number.
    assert render(found[f"{PATIENT}_temperature"][1]["value_template"], no_temp) == "None"
    assert render(found[f"{PATIENT}_temperature"][1]["value_template"], b"{}") == "None"

    status = DeviceStatus(device="chest-strap", profile="heart_rate_strap", connected=True,
                          last_reading_at=NOW, battery_percent=81, updated_at=NOW).to_json()
    lost = DeviceStatus(device="chest-strap", profile="heart_rate_strap", connected=False,
                        last_reading_at=None, battery_percent=None, updated_at=NOW).to_json()
    link = found[f"{PATIENT}_chest-strap_connectivity"][1]["value_template"]
    battery = found[f"{PATIENT}_chest-strap_battery"][1]["value_template"]
    assert (render(link, status), render(link, lost)) == ("ON", "OFF")
    assert (render(battery, status), render(battery, lost)) == ("81", "None")

    online = HubStatus(hub_id=HUB, state="online", version="0.1.0").to_json()
    offline = HubStatus(hub_id=HUB, state="offline", version="0.1.0").to_json()
    availability = found[f"{PATIENT}_alert"][1]["availability"][0]["value_template"]
    assert (render(availability, online), render(availability, offline)) == ("online", "offline")
    hub = found["hub"][1]["value_template"]
    assert (render(hub, online), render(hub, offline)) == ("ON", "OFF")


def test_a_device_is_announced_before_anything_that_names_it_as_via_device() -> None:
    """Home Assistant nests a device under its via_device only if that device already exists
    when the config arrives, so within a burst the hub comes first, then the patient, then the
    wearables (the outbox publishes in the order the hub enqueues)."""
    seen: set[str] = set()
    for _topic, payload in discovery_messages(HUB, PATIENT, [("strap-1", {"heart_rate"}),
                                                             ("patch-1", {"temperature"})]):
        device = json.loads(payload)["dev"]
        via = device.get("via_device")
        assert via is None or via in seen, f"{device['ids'][0]} arrives before {via}"
        seen.update(device["ids"])
