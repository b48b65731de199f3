"""Alert events and snapshots as the monitor emits them, for the annunciator's tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from daemon.alerts import AlertKind, AlertState, Severity
from daemon.payloads import AlertEvent, AlertStateSnapshot, OpenAlert, Tier

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def alert_event(alert_id: str, state: AlertState, severity: Severity = Severity.HIGH, *,
                technical: bool = False, message: str = "Call your care team.",
                acknowledged_by: str | None = None) -> AlertEvent:
    kind = AlertKind.NO_DATA if technical else AlertKind.FEVER
    return AlertEvent(
        event_id=f"{alert_id}-{state}", alert_id=alert_id, hub_id="hub-1", patient_id="p-1",
        kind=kind, state=state, severity=severity, value=None, unit="", threshold=None,
        observed_at=T0, raised_at=T0, event_at=T0, device=None, patient_message=message,
        acknowledged_by=acknowledged_by, technical=technical,
    )


@dataclass
class Output:
    """The part of a MonitorOutput the annunciator reads."""

    events: list[AlertEvent]


@dataclass
class AlertFeed:
    """Keeps the open alerts like the monitor does, so each output comes with its snapshot."""

    open: dict[str, AlertEvent] = field(default_factory=dict)

    def output(self, *events: AlertEvent) -> tuple[Output, AlertStateSnapshot]:
        for e in events:
            if e.state is AlertState.CLEARED:
                self.open.pop(e.alert_id, None)
            else:
                self.open[e.alert_id] = e
        snapshot = AlertStateSnapshot(
            hub_id="hub-1", patient_id="p-1", updated_at=T0,
            open=[OpenAlert(alert_id=e.alert_id, kind=e.kind, severity=e.severity, tier=Tier.PATIENT,
                            value=e.value, unit=e.unit, raised_at=e.raised_at, updated_at=T0,
                            device=None, acknowledged_by=e.acknowledged_by,
                            patient_message=e.patient_message) for e in self.open.values()],
        )
        return Output(list(events)), snapshot
