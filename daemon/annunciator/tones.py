"""The alarm tones and the spoken text, as pure functions (samples and strings, no files).

Tones are synthesised here with the standard library rather than a DSP library: four short
patterns of summed sines need no numpy on the Pi, and sox is not assumed there at runtime
(only espeak-ng and aplay are). Samples match espeak-ng's output (22 050 Hz, 16-bit, mono) so an
announcement is one WAV: tone, a short pause, then the speech.

Pulse counts per priority follow IEC 60601-1-8 as quoted in reliability.md (high: 10-pulse
burst, medium: 3 pulses, low: 1 pulse). The pitches and timings below are our own choice in that
style; the standard's normative timing table was not available to check them against.
"""

from __future__ import annotations

import math
import re
from array import array
from dataclasses import dataclass

from daemon.annunciator.planner import Pattern

SAMPLE_RATE = 22050
SAMPLE_WIDTH = 2  # bytes: 16-bit signed PCM
CHANNELS = 1
PAUSE_BEFORE_SPEECH_S = 0.4

# Harmonics make a pulse easier to hear over noise and to locate than a pure sine.
_HARMONICS = ((1, 1.0), (2, 0.5), (3, 0.33), (4, 0.25))
_RAMP_S = 0.015  # attack and release: no clicks
# The summed harmonics' own peak, so that a pulse reaches the requested level.
_HARMONIC_PEAK = max(
    abs(sum(w * math.sin(h * 2 * math.pi * k / 4096) for h, w in _HARMONICS)) for k in range(4096)
)


@dataclass(frozen=True, slots=True)
class Pulse:
    frequency_hz: float
    duration_s: float
    gap_after_s: float


def _burst(pitch: float, second: float) -> tuple[Pulse, ...]:
    # 3 + 2 pulses, twice: the urgent high-priority rhythm (10 pulses).
    half = (
        Pulse(pitch, 0.15, 0.08), Pulse(pitch, 0.15, 0.08), Pulse(pitch, 0.15, 0.30),
        Pulse(second, 0.15, 0.08), Pulse(second, 0.15, 0.70),
    )
    return half + half


PATTERNS: dict[Pattern, tuple[Pulse, ...]] = {
    Pattern.HIGH: _burst(880.0, 988.0),
    Pattern.MEDIUM: (Pulse(660.0, 0.2, 0.25), Pulse(660.0, 0.2, 0.25), Pulse(660.0, 0.2, 0.2)),
    Pattern.LOW: (Pulse(523.0, 0.25, 0.2),),
    Pattern.TECHNICAL: (Pulse(587.0, 0.25, 0.2), Pulse(440.0, 0.25, 0.2)),
}


def pattern_duration_s(pattern: Pattern) -> float:
    return sum(p.duration_s + p.gap_after_s for p in PATTERNS[pattern])


def render(pattern: Pattern, volume_percent: int) -> bytes:
    """16-bit little-endian mono PCM of ``pattern`` at ``volume_percent`` of full scale."""
    peak = 32767 * 0.9 * volume_percent / 100
    norm = _HARMONIC_PEAK
    samples = array("h")
    for pulse in PATTERNS[pattern]:
        n = round(pulse.duration_s * SAMPLE_RATE)
        ramp = max(1, round(_RAMP_S * SAMPLE_RATE))
        step = 2 * math.pi * pulse.frequency_hz / SAMPLE_RATE
        for i in range(n):
            envelope = min(1.0, i / ramp, (n - 1 - i) / ramp)
            value = sum(w * math.sin(h * step * i) for h, w in _HARMONICS) / norm
            samples.append(round(peak * envelope * value))
        samples.extend([0] * round(pulse.gap_after_s * SAMPLE_RATE))
    if samples.itemsize != SAMPLE_WIDTH:  # pragma: no cover - every CPython platform has 2
        raise RuntimeError("array('h') is not 16-bit here")
    return _little_endian(samples)


def silence(seconds: float) -> bytes:
    return bytes(SAMPLE_WIDTH * round(seconds * SAMPLE_RATE))


def _little_endian(samples: array[int]) -> bytes:
    import sys

    if sys.byteorder == "big":  # pragma: no cover - the Pi and CI are little-endian
        samples.byteswap()
    return samples.tobytes()


# --- speech ---------------------------------------------------------------------------------
_UNITS = ((re.compile(r"\s*°C"), " degrees Celsius"), (re.compile(r"\s*°F"), " degrees Fahrenheit"))
# A phone-like run: at least five digits with spaces, dashes, dots or brackets between them.
_PHONE_LIKE = re.compile(r"\+?\(?\d[\d ().-]{3,}\d")


def _digits_spoken(number: str) -> str:
    # "+1 555-0100" -> "plus, 1, 5 5 5, 0 1 0 0": espeak would say "five hundred fifty-five".
    groups = re.findall(r"\d+", number)
    lead = "plus, " if number.strip().startswith("+") else ""
    return lead + ", ".join(" ".join(group) for group in groups)


def spoken_text(message: str, numbers: tuple[str, ...] = ()) -> str:
    """``message`` as espeak-ng should say it: units in words, phone numbers digit by digit.

    ``numbers`` are the phone numbers the messages quote (care team, emergency), read digit by
    digit wherever they appear; other phone-like runs of five or more digits are read the same way.
    """
    text = message
    for symbol, words in _UNITS:
        text = symbol.sub(words, text)
    for number in sorted(numbers, key=len, reverse=True):
        if number.strip():
            text = re.sub(rf"(?<![\d.]){re.escape(number.strip())}(?![\d])",
                          _digits_spoken(number), text)

    def phone(match: re.Match[str]) -> str:
        run = match.group(0)
        if sum(c.isdigit() for c in run) < 5 or re.fullmatch(r"\d+\.\d+", run):
            return run
        return _digits_spoken(run)

    return _PHONE_LIKE.sub(phone, text)
