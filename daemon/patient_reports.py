"""What the patient tells the hub by hand: a thermometer reading and the symptoms they feel.

Pure code: parsing and validating what was typed, and the plain words for each documented
symptom name (the names are what goes into a ``SymptomReport`` and a replay row ``symptom``).
The symptoms are the seed's severe-symptom list (clinical.md §6, patient education).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Symptom:
    name: str  # the documented name, as sent to the monitor
    words: str  # what the patient reads on the button
    emergency: bool  # tell the patient to call the emergency number now


SYMPTOMS: tuple[Symptom, ...] = (
    Symptom("trouble_breathing", "Trouble breathing", True),
    Symptom("dizziness_fainting", "Dizzy or faint, or I fainted", True),
    Symptom("confusion", "Confused, or trouble speaking", True),
    Symptom("chills", "Chills or shaking", False),
    Symptom("severe_headache", "A severe headache", False),
    Symptom("nausea_vomiting", "Feeling sick or vomiting", False),
    Symptom("rash", "A new rash", False),
)
SYMPTOM_BY_NAME = {s.name: s for s in SYMPTOMS}

# A thermometer reading outside this is a typing mistake or a broken thermometer, not a body
# temperature; either way the patient must be told rather than the value silently used.
PLAUSIBLE_C = (32.0, 44.0)


class ReportError(ValueError):
    """Input the patient must correct; the message is shown to them as it is."""


def to_celsius(value: float, unit: str) -> float:
    return (value - 32) * 5 / 9 if unit == "F" else value


def parse_temperature(text: str, unit: str) -> float:
    """The typed reading in °C, or ReportError with a sentence the patient can act on.

    Accepts a decimal comma ("38,6") and a trailing unit sign ("101.3 °F", "38.6C").
    """
    if unit not in ("C", "F"):
        raise ReportError("Choose °C or °F.")
    cleaned = text.strip().replace(",", ".").rstrip("CcFf").rstrip().rstrip("°").strip()
    if not cleaned:
        raise ReportError("Type the number the thermometer shows, for example 37.2.")
    if len(cleaned) > 8:
        raise ReportError("That is not a temperature. Type just the number, for example 37.2.")
    try:
        value = float(cleaned)
    except ValueError:
        raise ReportError("That is not a number. Type the number the thermometer shows, for "
                          "example 37.2.") from None
    if not math.isfinite(value):
        raise ReportError("That is not a number. Type the number the thermometer shows.")
    celsius = to_celsius(value, unit)
    lo, hi = PLAUSIBLE_C
    if lo <= celsius <= hi:
        return round(celsius, 2)
    shown = f"{value:g} °{unit}"
    other = "F" if unit == "C" else "C"
    if lo <= to_celsius(value, other) <= hi:
        raise ReportError(f"{shown} cannot be right. Did you mean °{other}? Choose °{other} "
                          "and send it again.")
    lo_u, hi_u = (lo, hi) if unit == "C" else (lo * 9 / 5 + 32, hi * 9 / 5 + 32)
    raise ReportError(f"{shown} cannot be right: a body temperature is between {lo_u:.0f} and "
                      f"{hi_u:.0f} °{unit}. Take it again, and if the thermometer seems broken "
                      "call your care team.")
