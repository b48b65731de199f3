"""Plain-language text for the patient, one per alert kind.

Wording follows the patient education in clinical.md §6: any fever, call your care team right
away; call emergency services for trouble breathing, fainting or new confusion; never let missing
data look normal (tell the patient to take their temperature with a thermometer).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from daemon.alerts import AlertKind, AlertState


@dataclass(frozen=True, slots=True)
class CareContact:
    team_name: str
    phone: str
    emergency_number: str
    fahrenheit_first: bool


def format_temperature(celsius: float, fahrenheit_first: bool) -> str:
    fahrenheit = celsius * 9 / 5 + 32
    c, f = f"{celsius:.1f} °C", f"{fahrenheit:.1f} °F"
    return f"{f} ({c})" if fahrenheit_first else f"{c} ({f})"


def _emergency(contact: CareContact) -> str:
    return (
        f"Call {contact.emergency_number} instead if you have trouble breathing, feel faint or "
        "dizzy when you stand, become confused, or cannot reach your care team."
    )


def _call(contact: CareContact) -> str:
    return f"Call {contact.team_name} now at {contact.phone}."


_SYMPTOMS = (
    "This can be an early sign of cytokine release syndrome (CRS), a known side effect of your "
    "treatment."
)


def patient_message(
    kind: AlertKind,
    state: AlertState,
    value: float | None,
    contact: CareContact,
    *,
    heart_rate_threshold_bpm: float = 100.0,
    symptoms: Sequence[tuple[str, bool]] = (),
    spot_check: bool = False,
) -> str:
    """The sentence(s) shown to the patient for one alert transition. ``symptoms``: what the
    patient reported, as (plain words, is an emergency sign), for a symptom alert.

    Each text claims only what the hub measured. ``spot_check``: the value is a thermometer
    reading (a spot-check device or one typed in), which the fever text then names as such;
    the shell knows this from the alert's device.
    """
    if (protocol_text := _protocol_message(kind, state, value, contact)) is not None:
        return protocol_text
    if kind is AlertKind.SYMPTOM_REPORTED and state is not AlertState.CLEARED:
        return _symptom_message(symptoms, contact)
    if state is AlertState.CLEARED:
        return _cleared(kind, value, contact, spot_check=spot_check)
    if state is AlertState.ACKNOWLEDGED:
        return f"{contact.team_name} has seen this alert. Follow their advice. {_emergency(contact)}"
    temp = format_temperature(value, contact.fahrenheit_first) if value is not None else None
    match kind:
        case AlertKind.FEVER | AlertKind.HIGH_FEVER:
            high = " This is a high fever." if kind is AlertKind.HIGH_FEVER else ""
            measured = (f"Your thermometer reading is {temp}" if spot_check
                        else f"Your temperature is {temp}")
            return (
                f"{measured}: you have a fever.{high} {_SYMPTOMS} "
                f"{_call(contact)} {_emergency(contact)}"
            )
        case AlertKind.FEVER_TACHYCARDIA:
            # The threshold, not the latest value: the message is re-sent on escalation, when the
            # latest heart rate may already be lower than what raised the alert.
            rate = (f" and your heart rate has stayed above {heart_rate_threshold_bpm:.0f} beats "
                    "per minute")
            return (
                f"Your temperature is {temp}{rate}. {_SYMPTOMS} "
                f"{_call(contact)} {_emergency(contact)}"
            )
        case AlertKind.TACHYCARDIA:
            # Only what the strap measured: the hub cannot tell rest from exercise.
            rate_text = f", about {value:.0f} beats per minute" if value is not None else ""
            return (
                f"Your heart rate has stayed above {heart_rate_threshold_bpm:.0f} beats per "
                f"minute for a while{rate_text}. {_SYMPTOMS} Take your temperature with a "
                "thermometer. "
                f"{_call(contact)} {_emergency(contact)}"
            )
        case AlertKind.NO_DATA:
            return (
                "No reading has arrived from your monitor for a while. Check that the patch or "
                "strap is on your skin and charged. Take your temperature with a thermometer now, "
                f"and call {contact.team_name} at {contact.phone} if it is 38.0 °C (100.4 °F) or "
                "higher or you feel unwell."
            )
        case AlertKind.IMPLAUSIBLE_FALL:
            return (
                "Your patch's temperature dropped faster than a fever can go down, so the patch "
                "may have come loose or got wet. Check that it sits firmly on dry skin. Take "
                "your temperature by mouth with a thermometer now, and call "
                f"{contact.team_name} at {contact.phone} if it is 38.0 °C (100.4 °F) or higher "
                "or you feel unwell."
            )
        case AlertKind.SENSOR_CONTACT_LOST:
            return (
                "Your monitor is not touching your skin properly. Put it back in place as shown "
                "by your care team. Until it works, take your temperature with a thermometer and "
                f"call {contact.team_name} at {contact.phone} if you feel unwell."
            )
        case AlertKind.DEVICE_DISCONNECTED:
            return (
                "Your monitor has lost its connection to the home hub. Stay within a few metres "
                "of the hub and check the monitor is charged. Take your temperature with a "
                f"thermometer and call {contact.team_name} at {contact.phone} if you feel unwell."
            )
        case AlertKind.BATTERY_LOW:
            return (
                "Your monitor's battery is low. Charge or replace it today as your care team "
                "showed you, so that monitoring does not stop."
            )
        case AlertKind.ADAPTER_UNAVAILABLE:
            return (
                "The home hub cannot use Bluetooth, so it cannot read your monitor. Restart the "
                "hub. Until it works, take your temperature with a thermometer every few hours and "
                f"call {contact.team_name} at {contact.phone} if you feel unwell."
            )
        case AlertKind.OUTBOX_BACKLOG | AlertKind.BROKER_UNREACHABLE:
            return (
                "The home hub cannot reach your care team's system. Check your home internet. "
                f"If you feel unwell, call {contact.team_name} at {contact.phone} directly."
            )
        case AlertKind.HUB_FAULT:
            return (
                "The home hub has an internal fault and may not be watching your readings. "
                "Restart the hub. Until it works, take your temperature with a thermometer every "
                f"few hours and call {contact.team_name} at {contact.phone} if you feel unwell."
            )
        case AlertKind.CARE_TEAM_NOT_REACHED:
            return (
                "The home hub sent an alert but cannot confirm that your care team received it. "
                f"Phone {contact.team_name} now at {contact.phone} and tell them about your "
                f"alert. {_emergency(contact)}"
            )
        case AlertKind.PUBLISH_REFUSED:
            return (
                "The home hub's alerts are being refused by its message system, so your care team "
                f"may not see them. Please tell {contact.team_name} at {contact.phone}; if you "
                "feel unwell, call them directly."
            )
        case AlertKind.ANNUNCIATOR_UNAVAILABLE:
            return (
                "The home hub cannot play its alarm sound, so you would not hear an alert. Check "
                "the speaker and its cable, and keep this page or your phone close. If you feel "
                f"unwell, call {contact.team_name} at {contact.phone}."
            )
        case AlertKind.DISK_LOW:
            return (
                "The home hub is running out of storage. Please tell your care team at "
                f"{contact.phone} so they can fix it; monitoring continues for now."
            )
    raise AssertionError(f"no patient message for {kind}")  # pragma: no cover


def _symptom_message(symptoms: Sequence[tuple[str, bool]], contact: CareContact) -> str:
    words = ", ".join(w for w, _ in symptoms) or "feeling unwell"
    if any(emergency for _, emergency in symptoms):
        return (f"You reported: {words}. Call {contact.emergency_number} now. "
                f"The hub has also told {contact.team_name}.")
    return (f"You reported: {words}. The hub has told {contact.team_name}. {_call(contact)} "
            f"{_emergency(contact)}")


def _cleared(kind: AlertKind, value: float | None, contact: CareContact, *,
             spot_check: bool) -> str:
    if kind is AlertKind.SYMPTOM_REPORTED:
        return (f"The symptom report has been closed. If you feel unwell again, report it or call "
                f"{contact.team_name} at {contact.phone}.")
    if kind.is_technical:
        return "Your monitor is working normally again."
    if kind is AlertKind.TACHYCARDIA and value is None:
        # Closed because the strap stopped sending (taken off, out of range): say so.
        return (
            "The heart-rate alert is closed because your strap stopped sending readings, so "
            "the hub no longer knows your heart rate. If your heart is still racing or you feel "
            f"unwell, take your temperature and call {contact.team_name} at {contact.phone}."
        )
    if spot_check:
        return (
            "Your thermometer reading is below the alert level. Keep wearing your monitor. If "
            f"you feel unwell, call {contact.team_name} at {contact.phone}."
        )
    return (
        "Your readings are back below the alert level. Keep wearing your monitor. If you feel "
        f"unwell, call {contact.team_name} at {contact.phone}."
    )


# --------------------------------------------------------------------------- issue 13 kinds
# The emergency tier and the care-team-only trend notice (daemon/emergency_rules.py,
# daemon/temperature_baseline.py), kept together so their every state is decided in one place.

_EMERGENCY_KINDS = frozenset(
    {AlertKind.HYPOXIA, AlertKind.HYPOTENSION, AlertKind.FEVER_HYPOXIA, AlertKind.FEVER_HYPOTENSION}
)

# Should a sink show a care-team-only notice anyway, it must not alarm: nothing in it is a
# finding for the patient.
_NEUTRAL = "Your readings have been shared with your care team. Keep wearing your monitor."


def _protocol_message(
    kind: AlertKind, state: AlertState, value: float | None, contact: CareContact
) -> str | None:
    """Texts for the issue-13 kinds in every state; None for every other kind."""
    if kind.is_care_team_only:
        return _NEUTRAL  # never shown: the hub routes these to the care team only
    if kind is AlertKind.SPOT_CHECK_REMINDER:
        if state is AlertState.CLEARED:
            return "Thank you: your thermometer reading is recorded."
        # Scott et al. 2025: a temperature every 8 h within the monitoring window.
        return ("Please take your temperature with a thermometer now and enter it on the "
                f"hub's page. If you feel unwell, call {contact.team_name} at {contact.phone}.")
    if kind not in _EMERGENCY_KINDS:
        return None
    if state is AlertState.CLEARED:
        # Not "all clear": an episode like this needs the care team even once it has passed.
        return (
            "Your readings are back in the expected range. If you have not already, still call "
            f"{contact.team_name} at {contact.phone} about this episode."
        )
    if state is AlertState.ACKNOWLEDGED:
        return (
            f"{contact.team_name} has seen this alert. If you have not reached emergency care, "
            f"call {contact.emergency_number} now."
        )
    # clinical.md §6: get emergency help now; tell the provider about the treatment.
    after = (
        "Tell them you are being treated with immunotherapy and show your wallet card. "
        f"Then let {contact.team_name} know at {contact.phone}."
    )
    fever = " and you have a fever" if kind in (
        AlertKind.FEVER_HYPOXIA, AlertKind.FEVER_HYPOTENSION) else ""
    if kind in (AlertKind.HYPOXIA, AlertKind.FEVER_HYPOXIA):
        level = f" ({value:.0f} %)" if value is not None else ""
        return (
            f"Your oxygen level has stayed below 90 %{level}{fever}. "
            f"Call {contact.emergency_number} now. {after}"
        )
    level = f" ({value:.0f} mmHg)" if value is not None else ""
    return (
        f"Your blood pressure is low{level}, well below your usual level{fever}. "
        f"Call {contact.emergency_number} now. {after}"
    )
