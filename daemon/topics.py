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
        return f"{self._patient}/alert/ack"

    @property
    def vitals(self) -> str:
        return f"{self._patient}/vitals"

    def device_status(self, device_id: str) -> str:
        return f"{self._patient}/device/{device_id}/status"
