"""A vitals chart drawn server-side as SVG: temperature and heart rate on one time axis, with a
marker at every alert transition.

Hand-written on purpose: two polylines, a threshold line and markers are about a hundred lines of
plain SVG, need no JavaScript and no CDN (pygal's default output loads its tooltips from one),
and render the same for every browser and for print. Values are numbers and fixed labels; the
only text from outside (alert kinds) goes through markupsafe.escape.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from markupsafe import Markup, escape

from daemon.payloads import AlertEvent, VitalsSample

SEVERITY_COLOURS = {"low": "#6b7280", "medium": "#b45309", "high": "#dc2626",
                    "critical": "#7f1d1d", "emergency": "#000000"}
WIDTH, PANEL_H, LEFT, RIGHT, TOP, GAP = 760, 110, 48, 24, 14, 26


@dataclass(frozen=True)
class Panel:
    label: str
    attr: str
    low: float
    high: float
    threshold: float | None
    colour: str


PANELS = (
    Panel("Temperature °C", "temperature_c", 35.0, 41.0, 38.0, "#c2410c"),
    Panel("Heart rate /min", "heart_rate_bpm", 40.0, 160.0, 100.0, "#1d4ed8"),
)


def _bucketed(samples: list[VitalsSample], attr: str, start: datetime,
              bucket: timedelta) -> list[tuple[datetime, float]]:
    """Mean per bucket, so a 7-day chart stays a few hundred points."""
    sums: dict[int, tuple[float, int]] = {}
    for sample in samples:
        value = getattr(sample, attr)
        if value is None:
            continue
        index = int((sample.observed_at - start) / bucket)
        total, count = sums.get(index, (0.0, 0))
        sums[index] = (total + value, count + 1)
    return [(start + bucket * i + bucket / 2, total / count)
            for i, (total, count) in sorted(sums.items())]


def vitals_svg(samples: list[VitalsSample], events: list[AlertEvent], start: datetime,
               end: datetime) -> Markup:
    span = (end - start).total_seconds()
    bucket = timedelta(minutes=5) if span <= 2 * 86400 else timedelta(minutes=30)
    plot_w = WIDTH - LEFT - RIGHT
    height = TOP + len(PANELS) * (PANEL_H + GAP) + 10

    def x(at: datetime) -> float:
        return LEFT + max(0.0, min(1.0, (at - start).total_seconds() / span)) * plot_w

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} '
             f'{height}" role="img" aria-label="vitals chart">']
    ticks = 6 if span <= 2 * 86400 else 7
    for i in range(ticks + 1):
        at = start + (end - start) * i / ticks
        label = at.strftime("%H:%M") if span <= 2 * 86400 else at.strftime("%a %d")
        parts.append(f'<text x="{x(at):.1f}" y="{height - 2}" class="tick" '
                     f'text-anchor="middle">{label}</text>')
    for n, panel in enumerate(PANELS):
        top = TOP + n * (PANEL_H + GAP)

        def y(value: float, panel: Panel = panel, top: float = top) -> float:
            frac = (min(max(value, panel.low), panel.high) - panel.low) / (panel.high - panel.low)
            return top + PANEL_H - frac * PANEL_H

        parts.append(f'<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{PANEL_H}" '
                     'class="panel"/>')
        parts.append(f'<text x="{LEFT}" y="{top - 3}" class="label">{panel.label}</text>')
        for value in (panel.low, (panel.low + panel.high) / 2, panel.high):
            parts.append(f'<text x="{LEFT - 4}" y="{y(value) + 4:.1f}" class="tick" '
                         f'text-anchor="end">{value:g}</text>')
        if panel.threshold is not None:
            parts.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(panel.threshold):.1f}" '
                         f'y2="{y(panel.threshold):.1f}" class="threshold"/>')
        points = _bucketed(samples, panel.attr, start, bucket)
        if points:
            coords = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in points)
            parts.append(f'<polyline points="{coords}" fill="none" stroke="{panel.colour}" '
                         f'stroke-width="1.5" class="series {panel.attr}"/>')
        else:
            parts.append(f'<text x="{LEFT + plot_w / 2}" y="{top + PANEL_H / 2}" class="empty" '
                         'text-anchor="middle">no readings in this period</text>')
    bottom = TOP + len(PANELS) * (PANEL_H + GAP) - GAP
    for event in events:
        if not start <= event.event_at <= end:
            continue
        colour = SEVERITY_COLOURS.get(event.severity.value, "#000")
        pos = x(event.event_at)
        title = escape(f"{event.event_at:%Y-%m-%d %H:%M} {event.kind.value} {event.state.value} "
                       f"({event.severity.value})")
        parts.append(f'<g class="marker {escape(event.state.value)}"><title>{title}</title>'
                     f'<line x1="{pos:.1f}" x2="{pos:.1f}" y1="{TOP}" y2="{bottom}" '
                     f'stroke="{colour}" stroke-dasharray="3 2"/>'
                     f'<circle cx="{pos:.1f}" cy="{TOP}" r="4" fill="{colour}"/></g>')
    parts.append("</svg>")
    return Markup("".join(parts))
