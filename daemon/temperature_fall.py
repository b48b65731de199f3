"""Implausible temperature falls: a wearable's temperature dropping faster than a fever can break.

The fastest documented defervescence is about 1.6 °C in an hour (clinical.md §8); a patch that
half-detaches, gets wet in the shower or is pressed against a cold surface falls 2-3 °C within
minutes. Such a fall is a sensor problem, never a fever breaking.

``FallWatch`` follows ONE continuous wearable. Both engines keep their own: ClinicalRules so that
readings after the fall cannot clear a fever, TechnicalAlarms so that the fall is an alarm asking
for an oral reading. Both are fed the same readings, so they agree on when a fall starts and ends.

A fall is judged on a smoothed value (the median of the last three readings), so that one
artifact reading neither starts nor ends a fall. It starts when the smoothed value is below an
earlier smoothed value ``v`` of the last ``horizon_s`` by more than ``allowance_c +
max_c_per_h x hours since v``, and ``v`` was at or above ``armed_from_c`` (the fever clear
band): a shower during a normal day changes nothing the rules decide, so it must not page anyone.
It ends when the smoothed value is back within ``allowance_c`` of the level before the fall
(the patch is back on the skin), or when a spot-check reading arrives (the oral reading the alarm
asked for now speaks for the patient).

Pure. A monotonic deque keeps only the readings that can still start a fall (each higher than
every later one), so a reading costs O(1) amortised plus that short list.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from daemon.thresholds import FeverThresholds


@dataclass
class FallWatch:
    max_c_per_h: float
    allowance_c: float
    horizon_s: float
    armed_from_c: float
    _recent: deque[float] = field(default_factory=lambda: deque(maxlen=3))
    # (time, smoothed value), values strictly decreasing: the candidates a fall is judged from.
    _peaks: deque[tuple[datetime, float]] = field(default_factory=deque)
    before_fall_c: float | None = None  # the level before the current fall, or None
    fell_at: datetime | None = None

    @property
    def falling(self) -> bool:
        return self.before_fall_c is not None

    def observe(self, at: datetime, value: float) -> bool | None:
        """Feed one usable reading (with skin contact). Returns True when a fall starts, False
        when one ends, None otherwise."""
        self._recent.append(value)
        smooth = sorted(self._recent)[(len(self._recent) - 1) // 2]
        peaks = self._peaks
        horizon = at - timedelta(seconds=self.horizon_s)
        while peaks and peaks[0][0] < horizon:
            peaks.popleft()
        if self.before_fall_c is not None:
            if smooth >= self.before_fall_c - self.allowance_c:
                self._end()
                self._push(at, smooth)
                return False
            self._push(at, smooth)
            return None
        for t_peak, v_peak in peaks:
            if v_peak < self.armed_from_c:
                break  # the rest are lower still
            hours = (at - t_peak).total_seconds() / 3600
            if v_peak - smooth > self.allowance_c + self.max_c_per_h * hours:
                self.before_fall_c, self.fell_at = v_peak, at
                break
        self._push(at, smooth)
        return True if self.before_fall_c is not None else None

    def _push(self, at: datetime, smooth: float) -> None:
        peaks = self._peaks
        while peaks and peaks[-1][1] <= smooth:
            peaks.pop()
        peaks.append((at, smooth))

    def spot_check(self) -> bool:
        """A spot-check reading arrived: it ends a fall. True if one was in progress."""
        if self.before_fall_c is None:
            return False
        self._end()
        return True

    def _end(self) -> None:
        self.before_fall_c = self.fell_at = None
        # Start afresh: the pre-fall peak must not start a second fall on the next reading.
        self._peaks.clear()


def fall_watch_for(fever: FeverThresholds, interval_s: float | None) -> FallWatch:
    """The FallWatch both engines build for a device, from the fever thresholds: the horizon
    spans at least two samples of a slow device; armed from the fever clear band."""
    return FallWatch(
        fever.fall_max_c_per_h,
        fever.fall_allowance_c,
        max(fever.fall_horizon_s, 2 * (interval_s or 0.0)),
        fever.threshold_c - fever.clear_margin_c,
    )
