"""The MQTT topic tree. Every level is a pseudonymous id: no names, MACs or dates."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Topics:
    prefix: str
    hub_id: str
    patient_id: str

    @property
    def hub_status(self) -> str:
        return f"{self.prefix}/{self.hub_id}/status"

    @property
    def _patient(self) -> str:
        return f"{self.prefix}/{self.hub_id}/{self.patient_id}"

    @property
    def alert_event(self) -> str:
        return f"{self._patient}/alert/event"

    @property
    def alert_state(self) -> str:
        return f"{self._patient}/alert/state"

    @property
    def alert_ack(self) -> str:
        """The ack topic's stem; an ack is published on ``alert_ack_by(login)``."""
        return f"{self._patient}/alert/ack"

    def alert_ack_by(self, login: str) -> str:
        """Where ``login`` publishes its acks: the broker's ACL ties the last level to the
        authenticated username, so the hub takes the actor from the topic, not the payload."""
        return f"{self.alert_ack}/{login}"

    @property
    def alert_ack_filter(self) -> str:
        return f"{self.alert_ack}/+"

    def ack_login(self, topic: str) -> str | None:
        """The login an ack topic names, or None when ``topic`` is not an ack topic."""
        stem = self.alert_ack + "/"
        if not topic.startswith(stem):
            return None
        login = topic[len(stem):]
        return login if login and "/" not in login and login != "response" else None

    @property
    def alert_receipt(self) -> str:
        """Delivery receipts from the consumers that confirm what they have shown."""
        return f"{self._patient}/alert/receipt"

    @property
    def vitals(self) -> str:
        return f"{self._patient}/vitals"

    def device_status(self, device_id: str) -> str:
        return f"{self._patient}/device/{device_id}/status"
