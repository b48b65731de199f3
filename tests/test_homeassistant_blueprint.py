"""The Home Assistant blueprint (deploy/homeassistant) against the documented MQTT contract."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
import yaml

from daemon.payloads import AlertEvent
from daemon.topics import Topics

BLUEPRINT = Path(__file__).resolve().parents[1] / "deploy/homeassistant/crs-alert-notify.yaml"


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("!input", lambda loader, node: {"!input": loader.construct_scalar(node)})


def load() -> dict[str, Any]:
    return yaml.load(BLUEPRINT.read_text(), Loader=_Loader)


def test_the_trigger_topic_is_the_documented_alert_event_topic() -> None:
    blueprint = load()
    inputs = blueprint["blueprint"]["input"]
    assert set(inputs) == {"hub_id", "patient_id", "notify_device", "topic_prefix"}
    assert inputs["topic_prefix"]["default"] == "crs/v1"
    (trigger,) = blueprint["trigger"]
    topic = jinja2.Template(trigger["topic"]).render(topic_prefix="crs/v1", hub_id="hub-7f3a",
                                                     patient_id="p-4821")
    assert topic == Topics("crs/v1", "hub-7f3a", "p-4821").alert_event
    assert trigger["qos"] == 1


def test_the_message_and_tag_use_fields_the_alert_event_has() -> None:
    text = BLUEPRINT.read_text()
    fields = set(AlertEvent.model_fields)
    for used in ("patient_message", "alert_id", "severity", "state", "kind"):
        assert f"event.{used}" in text and used in fields, used
    assert "'cleared'" in text and "clear_notification" in text
