"""Configuration of the hub's own audible alarm (the ``[annunciator]`` table of the hub config)."""

from __future__ import annotations

import re
from datetime import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# aplay's ALSA device names (``default``, ``plughw:CARD=Headphones,DEV=0``, ``hdmi:0``, ...).
_ALSA_DEVICE = re.compile(r"^[A-Za-z0-9_:=,.-]{1,80}$")
# The WAV directory goes into an ALSA ``file:`` device argument, where ',' quotes and braces
# have meaning: only plain path characters are accepted.
_SAFE_PATH = re.compile(r"^[A-Za-z0-9_./+-]+$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class QuietPeriod(_Section):
    """Local clock times between which low-priority and technical alarms stay silent.

    ``start`` after ``end`` (the usual night, 22:00-07:00) spans midnight. High, critical and
    emergency alarms ignore it: they are never muted.
    """

    start: time = time(22, 0)
    end: time = time(7, 0)

    @model_validator(mode="after")
    def _not_empty(self) -> QuietPeriod:
        if self.start == self.end:
            raise ValueError("start and end must differ")
        return self

    def contains(self, local: time) -> bool:
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def seconds_until_end(self, local: time) -> float:
        def seconds(t: time) -> float:
            return t.hour * 3600 + t.minute * 60 + t.second + t.microsecond / 1e6

        return (seconds(self.end) - seconds(local)) % 86400.0


class RepeatIntervals(_Section):
    """Seconds of silence between the end of one announcement and the start of the next.

    Upper bounds keep a high-priority alarm from being configured into silence by a long
    interval: high and above repeat at least every minute.
    """

    emergency: float = Field(5.0, gt=0, le=60)
    critical: float = Field(10.0, gt=0, le=60)
    high: float = Field(15.0, gt=0, le=60)
    medium: float = Field(60.0, gt=0, le=600)
    low: float = Field(300.0, gt=0, le=3600)
    # Technical alarms below high priority (no data, contact lost, broker unreachable, ...).
    technical: float = Field(300.0, gt=0, le=3600)


class AnnunciatorSettings(_Section):
    # Off only by a deliberate choice (a hub without any speaker): a hub that should sound but
    # cannot is reported as a problem instead.
    enabled: bool = True
    # Tones and speech. The floor keeps a high-priority alarm from being configured inaudible;
    # it is applied on top of the ALSA mixer level (set that with alsamixer once).
    volume_percent: int = Field(80, ge=20, le=100)
    repeat_s: RepeatIntervals = RepeatIntervals()
    quiet_period: QuietPeriod | None = None
    # Speak the patient message after the tone (espeak-ng voice name and speed).
    speak: bool = True
    voice: str = Field("en", pattern=r"^[a-z]{2,3}(?:-[a-z0-9]{1,8})*$")
    words_per_minute: int = Field(150, ge=80, le=260)
    # aplay -D; None = ALSA's default output (audio jack, HDMI or USB, as the system chose).
    alsa_device: str | None = None
    # Instead of a sound card, write every announcement as a WAV file here, through the same
    # aplay command line with ALSA's ``file`` device (tests, a demo without speakers).
    wav_dir: Path | None = None

    @field_validator("alsa_device")
    @classmethod
    def _device(cls, value: str | None) -> str | None:
        if value is not None and not _ALSA_DEVICE.match(value):
            raise ValueError("must be an ALSA device name such as 'default' or 'plughw:1,0'")
        return value

    @field_validator("wav_dir")
    @classmethod
    def _wav_dir(cls, value: Path | None) -> Path | None:
        if value is not None and not _SAFE_PATH.match(str(value)):
            raise ValueError("may contain only letters, digits and _ . / + -")
        return value

    @model_validator(mode="after")
    def _one_output(self) -> AnnunciatorSettings:
        if self.wav_dir is not None and self.alsa_device is not None:
            raise ValueError("set alsa_device or wav_dir, not both")
        return self

    @property
    def espeak_amplitude(self) -> int:
        # espeak-ng -a runs 0..200 with 100 as its normal level.
        return round(self.volume_percent * 2)
