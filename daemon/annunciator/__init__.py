"""The hub's own audible alarm: a pure planner (what to sound, when) and a shell player
(espeak-ng + aplay). See docs/sounds.md for what each sound means to the patient."""

from daemon.annunciator.planner import (
    Announcement,
    AnnunciatorPlanner,
    Decision,
    Pattern,
    pattern_for,
    quietable,
)
from daemon.annunciator.player import Annunciator, Played, ProblemCallback
from daemon.annunciator.settings import AnnunciatorSettings, QuietPeriod, RepeatIntervals

__all__ = [
    "Announcement",
    "Annunciator",
    "AnnunciatorPlanner",
    "AnnunciatorSettings",
    "Decision",
    "Pattern",
    "Played",
    "ProblemCallback",
    "QuietPeriod",
    "RepeatIntervals",
    "pattern_for",
    "quietable",
]
