"""The status page's 24-hour chart of temperature and heart rate, drawn on the server as SVG.

Why hand-written SVG rather than a charting library: the chart is two line series, three dashed
threshold lines and a few alert markers. matplotlib would cost tens of MB of RSS on a hub whose
whole daemon must stay under 60 MB; pygal embeds JavaScript and external fonts by default, and
neither gives direct control of the accessible title/description and the AA colours. The SVG is
inline in the page, so the chart works offline with no CDN and no script.

History comes from readings kept in memory at per-minute resolution (bounded to 24 h) and, after
a restart, from the hub's SQLite store (``load_history``, a read-only query).
"""

from __future__ import annotations

import sqlite3
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from html import escape
from pathlib import Path

from daemon.readings import Reading, Vital

WINDOW = timedelta(hours=24)
_WINDOW_MIN = 24 * 60
# A gap in the line longer than this is drawn as a gap: missing data must not look like data.
_GAP_MIN = 10
_MAX_MARKERS = 200
_BIN_MIN = 5

# Colours on white, all at least 7:1 (WCAG AAA for text, far above the 3:1 for graphics).
TEMP_COLOUR = "#a50e0e"
HR_COLOUR = "#0b4f8a"
MARK_COLOUR = "#5b2a86"
LINE_COLOUR = "#333333"


@dataclass
class MinuteSeries:
    """Per-minute means of one vital, oldest first, at most 24 h.

    Three parallel arrays (minute, sum, count): a day is 1,440 minutes, about 35 kB, where a
    dict of tuples took about 310 kB per vital on a hub that must stay under 60 MB."""

    _minute: array[int] = field(default_factory=lambda: array("q"))
    _total: array[float] = field(default_factory=lambda: array("d"))
    _count: array[int] = field(default_factory=lambda: array("q"))

    def add(self, at: datetime, value: float) -> None:
        minute = int(at.timestamp() // 60)
        minutes = self._minute
        if minutes and minutes[-1] == minute:
            self._total[-1] += value
            self._count[-1] += 1
        elif not minutes or minute > minutes[-1]:
            minutes.append(minute)
            self._total.append(value)
            self._count.append(1)
        else:
            # Out of order (a manual reading typed in late, or history loaded after live data).
            i = bisect_left(minutes, minute)
            if minutes[i] == minute:
                self._total[i] += value
                self._count[i] += 1
            else:
                minutes.insert(i, minute)
                self._total.insert(i, value)
                self._count.insert(i, 1)
        self.trim(minute)

    def trim(self, now_minute: int) -> None:
        cut = bisect_right(self._minute, now_minute - _WINDOW_MIN)
        if cut:
            del self._minute[:cut]
            del self._total[:cut]
            del self._count[:cut]

    def points(self, since_minute: int) -> list[tuple[int, float]]:
        start = bisect_right(self._minute, since_minute)
        return [(self._minute[i], self._total[i] / self._count[i])
                for i in range(start, len(self._minute))]

    def __len__(self) -> int:
        return len(self._minute)


@dataclass(frozen=True, slots=True)
class AlertMarker:
    at: datetime
    label: str  # plain words, e.g. "fever"


@dataclass
class VitalsHistory:
    temperature: MinuteSeries = field(default_factory=MinuteSeries)
    heart_rate: MinuteSeries = field(default_factory=MinuteSeries)
    markers: list[AlertMarker] = field(default_factory=list)

    def add_readings(self, readings: Iterable[Reading]) -> None:
        for reading in readings:
            if reading.sensor_contact is False:
                continue  # off the skin: not the patient's temperature or pulse
            if reading.vital is Vital.TEMPERATURE:
                self.temperature.add(reading.observed_at, reading.value)
            elif reading.vital is Vital.HEART_RATE:
                self.heart_rate.add(reading.observed_at, reading.value)

    def add_marker(self, at: datetime, label: str) -> None:
        self.markers.append(AlertMarker(at, label))
        self.markers.sort(key=lambda m: m.at)
        del self.markers[:-_MAX_MARKERS]

    def trim(self, now: datetime) -> None:
        minute = int(now.timestamp() // 60)
        self.temperature.trim(minute)
        self.heart_rate.trim(minute)
        self.markers = [m for m in self.markers if now - m.at < WINDOW]


def load_history(db_path: Path, now: datetime, *, off_body_below_c: float,
                 marker_label: dict[str, str]) -> VitalsHistory:
    """The last 24 h from the hub's store, read-only (the hub keeps writing meanwhile).

    Raw readings and the per-minute table both count (compaction moves old raw rows into
    minutes); alert markers come from the journal's ``raised`` and ``severity_changed`` rows
    of the kinds in ``marker_label``. A missing database gives an empty history.
    """
    history = VitalsHistory()
    if not db_path.exists():
        return history
    since = (now - WINDOW).timestamp()
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        # raw readings are a view over the store's compact table (daemon/store.py)
        tables = {r[0] for r in db.execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
        rows: list[tuple[float, str, float]] = []
        if "readings_minute" in tables:
            rows += db.execute(
                "SELECT minute * 60 + 30, vital, mean FROM readings_minute "
                "WHERE minute >= ? AND vital IN ('temperature', 'heart_rate') ORDER BY minute",
                (int(since // 60),)).fetchall()
        if "readings" in tables:
            rows += db.execute(
                "SELECT ts, vital, value FROM readings "
                "WHERE ts >= ? AND vital IN ('temperature', 'heart_rate') ORDER BY ts",
                (since,)).fetchall()
        for ts, vital, value in sorted(rows):
            at = datetime.fromtimestamp(ts, UTC)
            if vital == Vital.TEMPERATURE:
                if value >= off_body_below_c:
                    history.temperature.add(at, value)
            else:
                history.heart_rate.add(at, value)
        if "journal" in tables:
            for at, kind in db.execute(
                    "SELECT at, kind FROM journal WHERE at >= ? AND state IN "
                    "('raised', 'severity_changed') ORDER BY seq", (since,)):
                if kind in marker_label:
                    history.add_marker(datetime.fromtimestamp(at, UTC), marker_label[kind])
    finally:
        db.close()
    history.trim(now)
    return history


# --- drawing ------------------------------------------------------------------------------------

_W = 400
_LEFT = 44
_RIGHT = 8
_PANEL_H = 120
_PANEL_GAP = 44
_TOP = 30


@dataclass(frozen=True, slots=True)
class ChartScale:
    fever_c: float
    high_fever_c: float
    heart_rate_bpm: float
    fahrenheit: bool
    tz: tzinfo


def _temp(c: float, fahrenheit: bool) -> float:
    return c * 9 / 5 + 32 if fahrenheit else c


def _fmt(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".")


def render_chart(history: VitalsHistory, now: datetime, scale: ChartScale) -> str:
    """An inline ``<svg>`` for the page (safe markup: every text is escaped here)."""
    now_min = int(now.timestamp() // 60)
    since = now_min - _WINDOW_MIN
    plot_w = _W - _LEFT - _RIGHT
    unit = "°F" if scale.fahrenheit else "°C"

    def x_of(minute: float) -> float:
        return _LEFT + (minute - since) / _WINDOW_MIN * plot_w

    temps = [(m, _temp(v, scale.fahrenheit))
             for m, v in _bins(history.temperature.points(since))]
    rates = _bins(history.heart_rate.points(since))
    fever = _temp(scale.fever_c, scale.fahrenheit)
    high = _temp(scale.high_fever_c, scale.fahrenheit)
    t_lo = min([_temp(35.5, scale.fahrenheit)] + [v for _, v in temps])
    t_hi = max([high + (0.8 if scale.fahrenheit else 0.5)] + [v for _, v in temps])
    h_lo = min([50.0] + [v for _, v in rates])
    h_hi = max([scale.heart_rate_bpm + 40] + [v for _, v in rates])

    parts: list[str] = []
    add = parts.append
    markers = [m for m in history.markers if now - m.at < WINDOW]
    title = "Temperature and heart rate, last 24 hours"
    height = _TOP + 2 * _PANEL_H + _PANEL_GAP + 30
    add(f'<svg class="chart" viewBox="0 0 {_W} {height}" role="img" '
        'aria-labelledby="chart-title chart-desc" xmlns="http://www.w3.org/2000/svg">')
    add(f'<title id="chart-title">{escape(title)}</title>')
    add(f'<desc id="chart-desc">{escape(_describe(temps, rates, markers, unit, scale.tz))}</desc>')
    add('<rect x="0" y="0" width="100%" height="100%" fill="#ffffff"/>')

    panels = [
        ("Temperature", unit, temps, t_lo, t_hi, TEMP_COLOUR,
         [(fever, f"fever {_fmt(fever)}"), (high, f"high fever {_fmt(high)}")]),
        ("Heart rate", "bpm", rates, h_lo, h_hi, HR_COLOUR,
         [(scale.heart_rate_bpm, f"fast {scale.heart_rate_bpm:.0f}")]),
    ]
    for index, (name, panel_unit, points, lo, hi, colour, lines) in enumerate(panels):
        top = _TOP + index * (_PANEL_H + _PANEL_GAP)

        def y_of(v: float, top: float = top, lo: float = lo, hi: float = hi) -> float:
            return top + _PANEL_H - (v - lo) / (hi - lo) * _PANEL_H

        add(f'<text x="{_LEFT}" y="{top - 10}" class="chart-label" fill="{colour}">'
            f'{escape(name)} ({escape(panel_unit)})</text>')
        add(f'<rect x="{_LEFT}" y="{top}" width="{plot_w}" height="{_PANEL_H}" fill="none" '
            'stroke="#767676" stroke-width="1"/>')
        for tick in _ticks(lo, hi):
            y = y_of(tick)
            add(f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
                'stroke="#e0e0e0" stroke-width="1"/>')
            add(f'<text x="{_LEFT - 4}" y="{y + 4:.1f}" text-anchor="end" class="chart-tick">'
                f'{tick:.0f}</text>')
        for value, label in lines:
            y = y_of(value)
            add(f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
                f'stroke="{LINE_COLOUR}" stroke-width="1.5" stroke-dasharray="6 4"/>')
            # A white halo keeps the label readable where the data line crosses it.
            add(f'<text x="{_LEFT + 4}" y="{y - 4:.1f}" class="chart-tick" stroke="#ffffff" '
                f'stroke-width="3" paint-order="stroke">{escape(label)}</text>')
        for segment in _segments(points):
            if len(segment) == 1:
                m, v = segment[0]
                add(f'<circle cx="{x_of(m):.1f}" cy="{y_of(v):.1f}" r="2.5" fill="{colour}"/>')
                continue
            coords = " ".join(f"{x_of(m):.1f},{y_of(v):.1f}" for m, v in segment)
            add(f'<polyline points="{coords}" fill="none" stroke="{colour}" '
                'stroke-width="2" stroke-linejoin="round"/>')
        if not points:
            add(f'<text x="{_LEFT + plot_w / 2}" y="{top + _PANEL_H / 2}" text-anchor="middle" '
                'class="chart-tick">no readings in the last 24 hours</text>')

    bottom = _TOP + 2 * _PANEL_H + _PANEL_GAP
    for marker in markers:
        x = x_of(marker.at.timestamp() / 60)
        add(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{_TOP}" y2="{bottom}" stroke="{MARK_COLOUR}" '
            'stroke-width="2" stroke-dasharray="2 3"/>')
        add(f'<path d="M{x - 6:.1f},{_TOP - 9} L{x + 6:.1f},{_TOP - 9} L{x:.1f},{_TOP - 1} Z" '
            f'fill="{MARK_COLOUR}"><title>{escape(_marker_text(marker, scale.tz))}</title></path>')
    for minute, label in _hour_ticks(now, scale.tz):
        x = x_of(minute)
        add(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{bottom}" y2="{bottom + 4}" stroke="#767676"/>')
        add(f'<text x="{x:.1f}" y="{bottom + 17}" text-anchor="middle" class="chart-tick">'
            f'{label}</text>')
    add("</svg>")
    return "".join(parts)


def _bins(points: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """5-minute means: 288 points a day is finer than a phone can show, and keeps the page
    small; a peak still shows (a fever lasts far longer than 5 minutes)."""
    bins: dict[int, list[float]] = {}
    for minute, value in points:
        bins.setdefault(minute - minute % _BIN_MIN, []).append(value)
    return [(m + _BIN_MIN // 2, sum(v) / len(v)) for m, v in sorted(bins.items())]


def _segments(points: list[tuple[int, float]]) -> list[list[tuple[int, float]]]:
    segments: list[list[tuple[int, float]]] = []
    for point in points:
        if segments and point[0] - segments[-1][-1][0] <= _GAP_MIN:
            segments[-1].append(point)
        else:
            segments.append([point])
    return segments


def _ticks(lo: float, hi: float) -> list[float]:
    step = next(s for s in (0.5, 1, 2, 5, 10, 20, 50) if (hi - lo) / s <= 5)
    first = int(lo / step + 0.999) * step
    ticks = []
    value = first
    while value <= hi:
        ticks.append(value)
        value += step
    # Integer labels only: a half-degree grid line keeps no label of its own.
    return [t for t in ticks if float(t).is_integer()]


def _hour_ticks(now: datetime, tz: tzinfo) -> list[tuple[float, str]]:
    local = now.astimezone(tz)
    hour = local.replace(minute=0, second=0, microsecond=0)
    ticks = []
    for back in range(0, 25):
        at = hour - timedelta(hours=back)
        if at.hour % 6 == 0 and now - at < WINDOW:
            ticks.append((at.timestamp() / 60, at.strftime("%H:%M")))
    return sorted(ticks)


def _marker_text(marker: AlertMarker, tz: tzinfo) -> str:
    return f"alert at {marker.at.astimezone(tz):%H:%M}: {marker.label}"


def _describe(temps: list[tuple[int, float]], rates: list[tuple[int, float]],
              markers: list[AlertMarker], unit: str, tz: tzinfo) -> str:
    def part(name: str, points: list[tuple[int, float]], fmt: str, u: str) -> str:
        if not points:
            return f"{name}: no readings in the last 24 hours."
        peak_m, peak = max(points, key=lambda p: p[1])
        at = datetime.fromtimestamp(peak_m * 60, UTC).astimezone(tz)
        return (f"{name}: highest {peak:{fmt}} {u} at {at:%H:%M}, latest {points[-1][1]:{fmt}} "
                f"{u}.")

    text = [part("Temperature", temps, ".1f", unit), part("Heart rate", rates, ".0f", "bpm")]
    if markers:
        text.append("Alerts: " + "; ".join(_marker_text(m, tz) for m in markers) + ".")
    else:
        text.append("No alerts in the last 24 hours.")
    return " ".join(text)
