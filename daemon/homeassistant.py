"""Home Assistant MQTT discovery for the hub's topics (optional; ``[home_assistant] enabled``).

Pure: builds ``(topic, json)`` pairs that the hub publishes *retained* at QoS 1, once at start and
again whenever Home Assistant announces itself on ``homeassistant/status`` (its birth message,
see ``is_ha_online``). No new topics or payloads: every entity reads the documented tree
(docs/architecture.md)::

    <prefix>/<hub>/status                                HubStatus     -> availability, hub online
    <prefix>/<hub>/<patient>/vitals                      VitalsSample  -> temperature, heart rate, SpO2
    <prefix>/<hub>/<patient>/alert/state                 AlertStateSnapshot -> "CRS alert" problem
    <prefix>/<hub>/<patient>/device/<device>/status      DeviceStatus  -> connectivity, battery

Discovery topics are ``<discovery_prefix>/<component>/<hub_id>/<patient_id>_<entity>/config``
(``.../<hub_id>/hub/config`` for the hub's own "online" entity):
pseudonymous ids only, never a MAC (ids that look like one are refused). Abbreviated keys are
the ones in Home Assistant's ``mqtt/abbreviations.py``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from daemon.alerts import AlertKind

ID_PATTERN = re.compile(r"[a-z0-9-]+")
_MAC_LIKE = re.compile(r"(?:[0-9a-f]{2}-){5}[0-9a-f]{2}")
# Home Assistant is the patient's own: a care-team-only notice (temperature_trend) in the
# retained alert state must not turn the patient's "CRS alert" on (issue 13).
_PATIENT_OPEN = ("(value_json.open | rejectattr('kind', 'in', "
                 + json.dumps(sorted(k.value for k in AlertKind if k.is_care_team_only))
                 + ") | list)")

# Vital name (daemon.readings.Vital value) -> (entity key, VitalsSample field, HA entity settings).
_VITAL_SENSORS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "temperature": (
        "temperature", "temperature_c",
        {"name": "Temperature", "dev_cla": "temperature", "unit_of_meas": "°C"},
    ),
    # Home Assistant has no heart-rate device class: unit and state class only.
    "heart_rate": (
        "heart_rate", "heart_rate_bpm",
        {"name": "Heart rate", "unit_of_meas": "bpm", "ic": "mdi:heart-pulse"},
    ),
    "spo2": (
        "spo2", "spo2_percent",
        {"name": "SpO2", "unit_of_meas": "%", "ic": "mdi:lungs"},
    ),
}


def _check_id(kind: str, value: str) -> str:
    if not ID_PATTERN.fullmatch(value):
        raise ValueError(f"{kind} {value!r} is not a pseudonymous id ([a-z0-9-]+)")
    if _MAC_LIKE.fullmatch(value):
        raise ValueError(f"{kind} {value!r} looks like a MAC address; use a pseudonymous id")
    return value


def _value(field: str) -> str:
    # A null or missing field renders "None", which Home Assistant shows as unknown: a vital
    # the hub did not send must not keep showing an old number.
    return f"{{{{ value_json.get('{field}') }}}}"


def is_ha_online(topic: str, payload: bytes | str, discovery_prefix: str = "homeassistant") -> bool:
    """True for Home Assistant's birth message: re-publish discovery when this arrives."""
    if topic != f"{discovery_prefix}/status":
        return False
    text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
    return text.strip() == "online"


def discovery_messages(
    hub_id: str,
    patient_id: str,
    devices: list[tuple[str, set[str]]],
    prefix: str = "crs/v1",
    discovery_prefix: str = "homeassistant",
    expire_after_s: int = 600,
) -> list[tuple[str, str]]:
    """Retained discovery ``(topic, payload)`` pairs for one patient's hub.

    ``devices`` is ``(device_id, vitals)`` per wearable, with vitals named as in
    ``daemon.readings.Vital`` ("temperature", "heart_rate", "spo2", ...). A vital sensor is
    announced when any wearable provides it; each wearable gets connectivity and battery.
    """
    _check_id("hub_id", hub_id)
    _check_id("patient_id", patient_id)
    if expire_after_s <= 0:
        raise ValueError("expire_after_s must be positive: a silent sensor must go unavailable")
    base = f"{prefix}/{hub_id}"
    patient_base = f"{base}/{patient_id}"
    hub_status = f"{base}/status"

    # Entities go unavailable whenever the hub is not online (its Last Will sets "offline").
    availability = [{
        "t": hub_status,
        "val_tpl": "{{ value_json.state }}",
        "pl_avail": "online",
        "pl_not_avail": "offline",
    }]
    hub_device = {
        "ids": [f"crs_{hub_id}"],
        "name": f"CRS hub {hub_id}",
        "mf": "crs-hub",
        "mdl": "CRS alert hub",
    }
    patient_device = {
        "ids": [f"crs_{hub_id}_{patient_id}"],
        "name": f"CRS watch {patient_id}",
        "mf": "crs-hub",
        "mdl": "Patient vitals and alerts",
        "via_device": f"crs_{hub_id}",
    }

    messages: list[tuple[str, str]] = []

    def add(component: str, entity: str, config: dict[str, Any], per_patient: bool = True) -> None:
        object_id = f"{patient_id}_{entity}" if per_patient else entity
        config["uniq_id"] = f"crs_{hub_id}_{object_id}"
        topic = f"{discovery_prefix}/{component}/{hub_id}/{object_id}/config"
        messages.append(
            (topic, json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=False))
        )

    # The hub itself: its status topic is the availability of everything else, so no availability.
    add("binary_sensor", "hub", {
        "name": "Hub online",
        "stat_t": hub_status,
        "val_tpl": "{{ 'ON' if value_json.state == 'online' else 'OFF' }}",
        "pl_on": "ON",
        "pl_off": "OFF",
        "dev_cla": "connectivity",
        "ent_cat": "diagnostic",
        "qos": 1,
        "dev": hub_device,
    }, per_patient=False)

    add("binary_sensor", "alert", {
        "name": "CRS alert",
        "stat_t": f"{patient_base}/alert/state",
        "val_tpl": f"{{{{ 'ON' if {_PATIENT_OPEN} | length > 0 else 'OFF' }}}}",
        "pl_on": "ON",
        "pl_off": "OFF",
        "dev_cla": "problem",
        "json_attr_t": f"{patient_base}/alert/state",
        "json_attr_tpl": (
            f"{{{{ {{'open_alerts': {_PATIENT_OPEN} | length,"
            f" 'kinds': {_PATIENT_OPEN} | map(attribute='kind') | list,"
            f" 'severities': {_PATIENT_OPEN} | map(attribute='severity') | list,"
            " 'updated_at': value_json.updated_at} | tojson }}"
        ),
        "qos": 1,
        "avty": availability,
        "dev": patient_device,
    })

    provided: set[str] = set()
    for _, vitals in devices:
        provided |= vitals
    for vital, (entity, field, settings) in _VITAL_SENSORS.items():
        if vital not in provided:
            continue
        add("sensor", entity, {
            **settings,
            "stat_t": f"{patient_base}/vitals",
            "val_tpl": _value(field),
            "stat_cla": "measurement",
            # Vitals are not retained and come at a low rate: silence must read as unavailable.
            "exp_aft": expire_after_s,
            "avty": availability,
            "dev": patient_device,
        })

    seen: set[str] = set()
    for device_id, _vitals in devices:
        _check_id("device_id", device_id)
        if device_id in seen:
            raise ValueError(f"device_id {device_id!r} is listed twice")
        seen.add(device_id)
        status_topic = f"{patient_base}/device/{device_id}/status"
        wearable = {
            "ids": [f"crs_{hub_id}_{patient_id}_{device_id}"],
            "name": f"Wearable {device_id}",
            "mf": "crs-hub",
            "mdl": "BLE wearable",
            "via_device": f"crs_{hub_id}_{patient_id}",
        }
        add("binary_sensor", f"{device_id}_connectivity", {
            "name": "Connected",
            "stat_t": status_topic,
            "val_tpl": "{{ 'ON' if value_json.connected else 'OFF' }}",
            "pl_on": "ON",
            "pl_off": "OFF",
            "dev_cla": "connectivity",
            "qos": 1,
            "avty": availability,
            "dev": wearable,
        })
        add("sensor", f"{device_id}_battery", {
            "name": "Battery",
            "stat_t": status_topic,
            "val_tpl": _value("battery_percent"),
            "dev_cla": "battery",
            "unit_of_meas": "%",
            "stat_cla": "measurement",
            "ent_cat": "diagnostic",
            "qos": 1,
            "avty": availability,
            "dev": wearable,
        })
    return messages


def removal_messages(
    hub_id: str,
    patient_id: str,
    devices: list[tuple[str, set[str]]],
    prefix: str = "crs/v1",
    discovery_prefix: str = "homeassistant",
) -> list[tuple[str, str]]:
    """Empty retained payloads that delete the entities again (when the option is turned off)."""
    return [
        (topic, "")
        for topic, _ in discovery_messages(hub_id, patient_id, devices, prefix, discovery_prefix)
    ]
