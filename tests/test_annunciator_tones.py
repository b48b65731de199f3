"""The alarm tones (pulse counts per priority) and the text espeak-ng is given."""

from __future__ import annotations

from array import array

import pytest

from daemon.annunciator import Pattern
from daemon.annunciator.tones import SAMPLE_RATE, pattern_duration_s, render, spoken_text


def pulses(pcm: bytes) -> list[tuple[float, float]]:
    """(start_s, length_s) of each sounding stretch, split at 20 ms or more of silence."""
    samples = array("h", pcm)
    found: list[tuple[float, float]] = []
    start = last = None
    gap = int(0.02 * SAMPLE_RATE)
    for i, value in enumerate(samples):
        if value != 0:
            if start is None or (last is not None and i - last > gap):
                if start is not None and last is not None:
                    found.append((start / SAMPLE_RATE, (last - start) / SAMPLE_RATE))
                start = i
            last = i
    if start is not None and last is not None:
        found.append((start / SAMPLE_RATE, (last - start) / SAMPLE_RATE))
    return found


@pytest.mark.parametrize(("pattern", "count"), [
    (Pattern.HIGH, 10), (Pattern.MEDIUM, 3), (Pattern.LOW, 1), (Pattern.TECHNICAL, 2)])
def test_each_priority_has_its_pulse_count(pattern: Pattern, count: int) -> None:
    pcm = render(pattern, 80)
    assert len(pcm) == 2 * round(pattern_duration_s(pattern) * SAMPLE_RATE) or \
        abs(len(pcm) / 2 / SAMPLE_RATE - pattern_duration_s(pattern)) < 0.01
    assert len(pulses(pcm)) == count


def test_high_priority_is_faster_and_longer_than_medium() -> None:
    high, medium = pulses(render(Pattern.HIGH, 80)), pulses(render(Pattern.MEDIUM, 80))
    # Urgency: shorter pulses, closer together, more of them.
    assert max(length for _, length in high) < min(length for _, length in medium)
    assert high[1][0] - high[0][0] < medium[1][0] - medium[0][0]
    assert pattern_duration_s(Pattern.HIGH) > pattern_duration_s(Pattern.MEDIUM)


def test_volume_scales_the_peak_and_never_clips() -> None:
    loud = max(abs(v) for v in array("h", render(Pattern.MEDIUM, 100)))
    quiet = max(abs(v) for v in array("h", render(Pattern.MEDIUM, 40)))
    assert 28000 < loud <= 32767
    assert quiet / loud == pytest.approx(0.4, abs=0.01)


def test_spoken_text_reads_units_in_words_and_phone_numbers_digit_by_digit() -> None:
    message = ("Your temperature is 38.6 °C (101.5 °F): you have a fever. Call the team now at "
               "+1 555-0100. Call 911 instead if you have trouble breathing.")
    text = spoken_text(message, ("+1 555-0100", "911"))
    assert text == ("Your temperature is 38.6 degrees Celsius (101.5 degrees Fahrenheit): you "
                    "have a fever. Call the team now at plus, 1, 5 5 5, 0 1 0 0. Call 9 1 1 "
                    "instead if you have trouble breathing.")


def test_spoken_text_spells_unlisted_phone_like_numbers_but_not_readings() -> None:
    text = spoken_text("Call (020) 7946 0958 now. Heart rate 128 beats per minute, 100.4 °F.")
    assert text == ("Call 0 2 0, 7 9 4 6, 0 9 5 8 now. Heart rate 128 beats per minute, "
                    "100.4 degrees Fahrenheit.")
