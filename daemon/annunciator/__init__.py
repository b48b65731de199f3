"""The hub's own audible alarm: a pure planner (what to sound, when: ``planner``), its settings
(``settings``), the tones and spoken text (``tones``), and the shell that plays them with
espeak-ng and aplay (``player``). See docs/sounds.md for what each sound means to the patient.

Only the pure parts are re-exported here: ``daemon.config`` imports the settings, and the core
must not load the player (asyncio, subprocesses). Import the sink from ``daemon.annunciator.player``.
"""

from daemon.annunciator.planner import (
    Announcement,
    AnnunciatorPlanner,
    Decision,
    Pattern,
    pattern_for,
    quietable,
)
from daemon.annunciator.settings import AnnunciatorSettings, QuietPeriod, RepeatIntervals

__all__ = [
    "Announcement",
    "AnnunciatorPlanner",
    "AnnunciatorSettings",
    "Decision",
    "Pattern",
    "QuietPeriod",
    "RepeatIntervals",
    "pattern_for",
    "quietable",
]
