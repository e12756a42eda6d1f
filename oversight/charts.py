"""Line charts drawn on the server as SVG markup: no script, no inline style, every text escaped.

A chart has a title, a legend, a value axis with round ticks and a labelled time axis in the
console's time zone. Missing values (``None``: nothing recorded) break a line instead of drawing
a zero.
"""

import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

WIDTH, HEIGHT = 760, 260
LEFT, RIGHT, TOP, BOTTOM = 70, 16, 44, 48  # margins: value labels, title and legend, time labels
COLORS = ("#2b7bb9", "#c0392b", "#7d8b26", "#8e44ad")


@dataclass(frozen=True)
class Series:
    label: str
    values: Sequence[float | None]
    color: str = COLORS[0]
    dashed: bool = False


def format_wait(seconds: float) -> str:
    """Return a wait as people read it: ``45 s``, ``5 min``, ``1 h 30 min``."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        minutes, rest = divmod(seconds, 60)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    hours, minutes = divmod(seconds // 60, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def format_count(value: float) -> str:
    return f"{value:g}"


# Round steps for a value axis in seconds (waits) and, scaled by powers of ten, for counts.
WAIT_STEPS = (5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
COUNT_STEPS = (1, 2, 5)


def value_ticks(highest: float, *, steps: Sequence[int] = COUNT_STEPS, most: int = 5) -> list[float]:
    """Return round ticks from 0 past ``highest`` (at least one step), at most ``most`` + 1 of them."""
    highest = max(highest, 1)
    if steps is COUNT_STEPS:
        scale = 10 ** max(0, math.floor(math.log10(highest / most)))
        steps = [s * scale * m for m in (1, 10) for s in COUNT_STEPS]
    step = next((s for s in steps if highest / s <= most), steps[-1] * math.ceil(highest / most / steps[-1]))
    return [i * step for i in range(math.ceil(highest / step) + 1)]


def time_ticks(start: dt.datetime, end: dt.datetime, every: dt.timedelta) -> list[dt.datetime]:
    """Return the times in ``[start, end]`` at a multiple of ``every`` since a local midnight."""
    local = timezone.localtime(start)
    tick = local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(dt.UTC)
    if every >= dt.timedelta(days=1):  # whole days: count them from the first of the month, as calendars do
        tick -= dt.timedelta(days=local.day - 1)
    while tick < start:
        tick += every
    ticks = []
    while tick <= end:
        ticks.append(tick)
        tick += every
    return ticks


def line_chart(
    *,
    title: str,
    times: Sequence[dt.datetime],
    series: Sequence[Series],
    value_label: str,
    tick_every: dt.timedelta,
    time_format: str,
    value_format: Callable[[float], str] = format_count,
    value_steps: Sequence[int] = COUNT_STEPS,
    empty_note: str = "Nothing recorded in this period.",
) -> SafeString:
    """Return an SVG line chart of ``series`` (one value per time of ``times``) with both axes labelled."""
    known = [v for s in series for v in s.values if v is not None]
    ticks = value_ticks(max(known, default=0), steps=value_steps)
    first, last = (times[0], times[-1]) if times else (timezone.now(), timezone.now())
    span = max((last - first).total_seconds(), 1)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(t: dt.datetime) -> float:
        return LEFT + (t - first).total_seconds() / span * plot_w

    def y(v: float) -> float:
        return TOP + plot_h - v / ticks[-1] * plot_h

    parts = [
        format_html('<text class="ops-chart-title" x="{}" y="16">{}</text>', LEFT, title),
        _legend(series),
        _value_axis(ticks, y, value_format, value_label),
        _time_axis(time_ticks(first, last, tick_every), x, time_format),
        *(_line(s, times, x, y) for s in series),
    ]
    if not known:
        middle = (_n(LEFT + plot_w / 2), _n(y(ticks[-1] / 2)))
        parts.append(format_html('<text x="{}" y="{}" text-anchor="middle">{}</text>', *middle, empty_note))
    return format_html(
        '<svg class="ops-stat-chart" viewBox="0 0 {} {}" role="img" aria-label="{}" xmlns="http://www.w3.org/2000/svg">'
        "<title>{}</title>" + "{}" * len(parts) + "</svg>",
        WIDTH, HEIGHT, title, title, *parts,
    )  # fmt: skip


def _n(value: float) -> str:
    """Return a coordinate with one decimal."""
    return f"{value:.1f}"


def _legend(series: Sequence[Series]) -> SafeString:
    """Return a key per series in a row under the title (text about 6.5 units a character wide)."""
    keys, x0 = [], LEFT
    for s in series:
        keys.append((x0, x0 + 18, s.color, _dash(s), x0 + 24, s.label))
        x0 += 24 + round(6.5 * len(s.label)) + 24
    return format_html_join(
        "",
        '<g class="ops-chart-legend"><line x1="{}" y1="30" x2="{}" y2="30" stroke="{}" stroke-width="3"{}/>'
        '<text x="{}" y="34">{}</text></g>',
        keys,
    )


def _dash(s: Series) -> SafeString:
    return SafeString(' stroke-dasharray="6 4"' if s.dashed else "")


def _value_axis(ticks, y, value_format, value_label) -> SafeString:
    lines = format_html_join(
        "",
        '<line class="ops-chart-grid" x1="{}" y1="{}" x2="{}" y2="{}" stroke="#999" stroke-opacity="0.3"/>'
        '<text x="{}" y="{}" text-anchor="end">{}</text>',
        ((LEFT, _n(y(v)), WIDTH - RIGHT, _n(y(v)), LEFT - 6, _n(y(v) + 4), value_format(v)) for v in ticks),
    )
    middle = TOP + (HEIGHT - TOP - BOTTOM) / 2
    label = format_html(
        '<text class="ops-chart-axis-label" x="14" y="{}" text-anchor="middle" transform="rotate(-90 14 {})">{}</text>',
        _n(middle), _n(middle), value_label,
    )  # fmt: skip
    return format_html("{}{}", lines, label)


def _time_axis(ticks: Sequence[dt.datetime], x, time_format: str) -> SafeString:
    base = HEIGHT - BOTTOM
    marks = format_html_join(
        "",
        '<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="#999"/><text x="{}" y="{}" text-anchor="middle">{}</text>',
        (
            (_n(x(t)), base, _n(x(t)), base + 5, _n(x(t)), base + 18, timezone.localtime(t).strftime(time_format))
            for t in ticks
        ),
    )
    zone = timezone.get_current_timezone_name()
    return format_html(
        '<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="#999"/>{}'
        '<text class="ops-chart-axis-label" x="{}" y="{}" text-anchor="middle">Time ({})</text>',
        LEFT, base, WIDTH - RIGHT, base, marks, _n(LEFT + (WIDTH - LEFT - RIGHT) / 2), HEIGHT - 8, zone,
    )  # fmt: skip


def _line(s: Series, times: Sequence[dt.datetime], x, y) -> SafeString:
    """Return the series as polylines, one per run of known values (a lone value is a dot)."""
    runs: list[list[str]] = [[]]
    for t, v in zip(times, s.values, strict=True):
        if v is None:
            runs.append([])
        else:
            runs[-1].append(f"{x(t):.1f},{y(v):.1f}")
    marks = []
    for run in filter(None, runs):
        if len(run) == 1:
            marks.append(format_html('<circle cx="{}" cy="{}" r="2.5" fill="{}"/>', *run[0].split(","), s.color))
        else:
            line = '<polyline points="{}" fill="none" stroke="{}" stroke-width="2"{}/>'
            marks.append(format_html(line, " ".join(run), s.color, _dash(s)))
    return format_html_join("", "{}", ((mark,) for mark in marks))


def depth_chart(stats) -> SafeString:
    """Return the chart of those waiting in all queues per bucket of ``stats`` (``PeriodStatistics``)."""
    buckets = stats.buckets
    return line_chart(
        title=f"Queue depth, all states and priorities, per {_span(stats.period.bucket)}",
        times=[b.start for b in buckets],
        series=[
            Series("Average waiting", [b.depth_avg for b in buckets], COLORS[0]),
            Series(
                "Peak waiting (upper bound)" if stats.peaks_from_hours else "Peak waiting",
                [b.depth_max for b in buckets],
                COLORS[1],
                dashed=True,
            ),  # fmt: skip
        ],
        value_label="Patients waiting",
        tick_every=stats.period.tick_every,
        time_format=stats.period.time_format,
    )


def wait_chart(stats) -> SafeString:
    """Return the chart of the estimated median and p90 wait of those who left the queue per bucket."""
    buckets = stats.buckets
    return line_chart(
        title=f"Wait to leaving the queue (≈ estimated), per {_span(stats.period.bucket)}",
        times=[b.start for b in buckets],
        series=[
            Series("≈ median wait", [b.tally.p50_wait_s for b in buckets], COLORS[0]),
            Series("≈ p90 wait", [b.tally.p90_wait_s for b in buckets], COLORS[1]),
        ],
        value_label="Wait",
        value_format=format_wait,
        value_steps=WAIT_STEPS,
        tick_every=stats.period.tick_every,
        time_format=stats.period.time_format,
        empty_note="Nobody left the queue in this period.",
    )


def _span(length: dt.timedelta) -> str:
    minutes = int(length.total_seconds() // 60)
    return f"{minutes // 60} h" if minutes % 60 == 0 else f"{minutes} min"
