"""Server-side SVG line charts for the console: no JavaScript library, no CDN, so a VPS
behind a strict firewall (or a phone on a bad connection) still sees them."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 640, 220
# The top band holds the unit (left) and the legend (right), clear of the top tick label.
PAD_L, PAD_R, PAD_T, PAD_B = 56, 12, 30, 28
TICKS = 5
MAX_POINTS = 400


def nice_step(span: float, ticks: int = TICKS) -> float:
    """A round step (1, 2, 2.5 or 5 times a power of ten) giving about `ticks` intervals."""
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def axis_range(lo: float, hi: float, *, include_zero: bool = True) -> tuple[float, float, float]:
    """(bottom, top, step): the data's own range rounded out to whole steps, zero included
    when the data is all on one side of it (so 40 ms does not look like 400) unless
    `include_zero` is off (an equity of 100,020 is read around its own level)."""
    if include_zero:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi == lo:
        lo, hi = (lo - 1, hi + 1) if not include_zero else (lo, lo + 1)
    step = nice_step(hi - lo)
    return math.floor(lo / step) * step, math.ceil(hi / step) * step, step


def tick_label(value: float, step: float) -> str:
    """As many decimals as the step needs (0, 2.5, 0.25), thousands separated."""
    decimals = 0
    while decimals < 8 and abs(step * 10**decimals - round(step * 10**decimals)) > 1e-9:
        decimals += 1
    text = f"{value:,.{decimals}f}"
    return text[1:] if text.startswith("-") and not text.strip("-0.,") else text


def span_label(span: timedelta) -> str:
    """ "last 24 h", "last 7 days": what a chart's title says about its x axis."""
    hours = span.total_seconds() / 3600
    if hours < 48:
        return f"last {hours:.0f} h"
    return f"last {hours / 24:.0f} days"


def _thin(points: list[tuple[datetime, float]]) -> list[tuple[datetime, float]]:
    if len(points) <= MAX_POINTS:
        return points
    stride = math.ceil(len(points) / MAX_POINTS)
    return points[::stride] + ([points[-1]] if (len(points) - 1) % stride else [])


def line_chart(
    *,
    title: str,
    unit: str,
    series: list[tuple[str, str, list[tuple[datetime, float | None]]]],
    start: datetime | None = None,
    end: datetime | None = None,
    empty_text: str = "No data in this period yet.",
    step_lines: bool = False,
    include_zero: bool = True,
) -> SafeString:
    """`series`: (label, css colour, [(time, value), ...]). The x axis runs from `start` to
    `end` (the period the title names) when given, else over the data. `step_lines` draws a
    value held until the next point (a running total). Returns an inline <svg>."""
    label = escape(title)
    cleaned = [(name, colour, _thin([(t, float(v)) for t, v in pts if v is not None])) for name, colour, pts in series]
    points = [p for _, _, pts in cleaned for p in pts]
    if not points:
        return mark_safe(
            f'<svg class="tv-chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{label}">'
            f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" class="tv-chart-empty">'
            f"{escape(empty_text)}</text></svg>"
        )
    t0 = (start or min(t for t, _ in points)).timestamp()
    t1 = (end or max(t for t, _ in points)).timestamp()
    if t1 <= t0:
        t1 = t0 + 3600
    lo, hi, step = axis_range(min(v for _, v in points), max(v for _, v in points), include_zero=include_zero)
    plot_w, plot_h = WIDTH - PAD_L - PAD_R, HEIGHT - PAD_T - PAD_B

    def x(t: datetime) -> float:
        return PAD_L + (t.timestamp() - t0) / (t1 - t0) * plot_w

    def y(v: float) -> float:
        return PAD_T + (1 - (v - lo) / (hi - lo)) * plot_h

    parts = [
        f'<svg class="tv-chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{label}" '
        f'data-y-max="{hi:g}" data-y-min="{lo:g}" data-x-span-s="{t1 - t0:.0f}">'
    ]
    value = lo
    while value <= hi + step / 2:
        yy = y(value)
        parts.append(f'<line x1="{PAD_L}" x2="{WIDTH - PAD_R}" y1="{yy:.1f}" y2="{yy:.1f}" class="tv-grid"/>')
        parts.append(
            f'<text x="{PAD_L - 6}" y="{yy + 4:.1f}" text-anchor="end" class="tv-axis tv-tick">'
            f"{tick_label(value, step)}</text>"
        )
        value += step
    tz = timezone.get_current_timezone()
    long_span = t1 - t0 > 2 * 86400
    for i in range(4):
        when = datetime.fromtimestamp(t0 + (t1 - t0) * i / 3, tz)
        anchor = ("start", "middle", "middle", "end")[i]
        text = f"{when:%m-%d}" if long_span else f"{when:%H:%M}"
        parts.append(
            f'<text x="{PAD_L + plot_w * i / 3:.1f}" y="{HEIGHT - 8}" text-anchor="{anchor}" class="tv-axis">'
            f"{text}</text>"
        )
    parts.append(f'<text x="4" y="14" class="tv-axis tv-unit">{escape(unit)}</text>')
    legend_x = WIDTH - PAD_R
    for name, colour, _pts in reversed(cleaned):
        legend_x -= 7 * len(name) + 4
        parts.append(f'<text x="{legend_x}" y="14" class="tv-legend">{escape(name)}</text>')
        legend_x -= 14
        parts.append(f'<rect x="{legend_x}" y="5" width="10" height="10" fill="{colour}"/>')
        legend_x -= 12
    for name, colour, pts in cleaned:
        coords = [(x(t), y(v)) for t, v in pts]
        if step_lines and coords:
            stepped = [coords[0]]
            for cx, cy in coords[1:]:
                stepped += [(cx, stepped[-1][1]), (cx, cy)]
            coords = stepped
        if len(coords) == 1:
            cx, cy = coords[0]
            parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3" fill="{colour}"/>')
        else:
            path = " ".join(f"{cx:.1f},{cy:.1f}" for cx, cy in coords)
            parts.append(
                f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2">'
                f"<title>{escape(name)}</title></polyline>"
            )
    parts.append("</svg>")
    return mark_safe("".join(parts))
