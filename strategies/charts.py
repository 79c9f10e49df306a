"""Server-side SVG line charts for the dashboard: no JavaScript library, no CDN, so a VPS
behind a strict firewall (or a phone on a bad connection) still sees them."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 640, 200
PAD_L, PAD_R, PAD_T, PAD_B = 52, 12, 14, 28


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return value


def line_chart(
    *,
    title: str,
    unit: str,
    series: list[tuple[str, str, list[tuple[datetime, float | None]]]],
    empty_text: str = "No data in this period yet.",
) -> SafeString:
    """`series`: (label, css colour, [(time, value), ...]). Returns an inline <svg>."""
    points = [(t, v) for _, _, pts in series for t, v in pts if v is not None]
    label = escape(title)
    if not points:
        return mark_safe(
            f'<svg class="tv-chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{label}">'
            f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" class="tv-chart-empty">'
            f"{escape(empty_text)}</text></svg>"
        )
    t0 = min(t for t, _ in points).timestamp()
    t1 = max(t for t, _ in points).timestamp()
    if t1 == t0:
        t1 = t0 + 3600
    lo = min(0.0, min(v for _, v in points))
    hi = _nice_max(max(v for _, v in points))
    plot_w, plot_h = WIDTH - PAD_L - PAD_R, HEIGHT - PAD_T - PAD_B

    def x(t: datetime) -> float:
        return PAD_L + (t.timestamp() - t0) / (t1 - t0) * plot_w

    def y(v: float) -> float:
        return PAD_T + (1 - (v - lo) / (hi - lo or 1)) * plot_h

    parts = [f'<svg class="tv-chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{label}">']
    for i in range(5):
        v = lo + (hi - lo) * i / 4
        yy = y(v)
        parts.append(f'<line x1="{PAD_L}" x2="{WIDTH - PAD_R}" y1="{yy:.1f}" y2="{yy:.1f}" class="tv-grid"/>')
        parts.append(f'<text x="{PAD_L - 6}" y="{yy + 4:.1f}" text-anchor="end" class="tv-axis">{v:g}</text>')
    tz = timezone.get_current_timezone()
    for i in range(4):
        ts = t0 + (t1 - t0) * i / 3
        when = datetime.fromtimestamp(ts, tz)
        anchor = ("start", "middle", "middle", "end")[i]
        parts.append(
            f'<text x="{PAD_L + plot_w * i / 3:.1f}" y="{HEIGHT - 8}" text-anchor="{anchor}" class="tv-axis">'
            f"{when:%H:%M}</text>"
        )
    parts.append(f'<text x="4" y="{PAD_T - 2}" class="tv-axis">{escape(unit)}</text>')
    legend_x = PAD_L + 8
    for name, colour, pts in series:
        coords = [(x(t), y(v)) for t, v in pts if v is not None]
        if len(coords) == 1:
            cx, cy = coords[0]
            parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3" fill="{colour}"/>')
        elif coords:
            path = " ".join(f"{cx:.1f},{cy:.1f}" for cx, cy in coords)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        parts.append(f'<rect x="{legend_x}" y="{PAD_T + 2}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{legend_x + 14}" y="{PAD_T + 11}" class="tv-legend">{escape(name)}</text>')
        legend_x += 16 + 7 * len(name) + 14
    parts.append("</svg>")
    return mark_safe("".join(parts))
