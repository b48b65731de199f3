"""Sound check: play each alarm sound once through the configured output, for the installer
and the patient to hear what each one is like (``crs-hub sound-check`` when wired)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

from daemon.alerts import AlertKind, AlertState, Severity
from daemon.annunciator.planner import Pattern
from daemon.annunciator.player import Annunciator
from daemon.annunciator.settings import AnnunciatorSettings
from daemon.payloads import AlertEvent, AlertStateSnapshot, OpenAlert, Tier

# One example per sound, spoken after its tone.
SAMPLES: dict[Pattern, tuple[Severity, bool, str]] = {
    Pattern.HIGH: (Severity.HIGH, False,
                   "This is the sound of an urgent alert. When you hear it, call your care team."),
    Pattern.MEDIUM: (Severity.MEDIUM, False,
                     "This is the sound of an alert that needs your attention soon."),
    Pattern.LOW: (Severity.LOW, False, "This is the sound of a reminder."),
    Pattern.TECHNICAL: (Severity.LOW, True,
                        "This is the sound of a problem with the monitor or the hub."),
}


def _event(alert_id: str, state: AlertState, severity: Severity, technical: bool,
           message: str, now: datetime) -> AlertEvent:
    return AlertEvent(
        event_id=f"{alert_id}-{state}", alert_id=alert_id, hub_id="sound-check",
        patient_id="sound-check", kind=AlertKind.NO_DATA if technical else AlertKind.FEVER,
        state=state, severity=severity, value=None, unit="", threshold=None, observed_at=now,
        raised_at=now, event_at=now, device=None, patient_message=message,
        acknowledged_by="sound-check" if state is AlertState.ACKNOWLEDGED else None,
        technical=technical,
    )


class _Output:
    def __init__(self, events: list[AlertEvent]) -> None:
        self.events = events


async def sound_check(settings: AnnunciatorSettings, patterns: list[Pattern], *,
                      work_dir: Path | None = None, timeout_s: float = 90.0) -> list[str]:
    """Play ``patterns`` in order; returns the problems met (empty: every sound was played)."""
    problems: list[str] = []

    def note(reason: str | None) -> None:
        if reason is not None:
            problems.append(reason)

    annunciator = Annunciator(settings.model_copy(update={"quiet_period": None}),
                              on_problem=note, work_dir=work_dir)
    annunciator.start()
    try:
        for pattern in patterns:
            severity, technical, message = SAMPLES[pattern]
            alert_id = f"check-{pattern}"
            now = datetime.now(UTC)
            raised = _event(alert_id, AlertState.RAISED, severity, technical, message, now)
            open_alert = OpenAlert(alert_id=alert_id, kind=raised.kind, severity=severity,
                                   tier=Tier.PATIENT, value=None, unit="", raised_at=now,
                                   updated_at=now, device=None, patient_message=message)
            annunciator.on_output(_Output([raised]), AlertStateSnapshot(
                hub_id="sound-check", patient_id="sound-check", open=[open_alert],
                updated_at=now))
            deadline = time.monotonic() + timeout_s
            while not any(p.alert_id == alert_id for p in annunciator.history):
                if time.monotonic() > deadline:
                    problems.append(f"{pattern}: not played within {timeout_s:.0f} s")
                    break
                await asyncio.sleep(0.05)
            annunciator.on_output(_Output([_event(alert_id, AlertState.CLEARED, severity,
                                                  technical, message, now)]),
                                  AlertStateSnapshot(hub_id="sound-check",
                                                     patient_id="sound-check", open=[],
                                                     updated_at=now))
    finally:
        await annunciator.stop()
    failed = [p for p in annunciator.history if p.outcome != "played"]
    if failed and not problems:
        problems.append(f"{len(failed)} sound(s) not played")
    return problems
