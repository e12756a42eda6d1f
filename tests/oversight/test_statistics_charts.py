"""The statistics pages' SVG charts: escaped text, labelled axes in the console's time zone, gaps."""

import datetime as dt
import re

from django.utils import timezone

from oversight.charts import WAIT_STEPS, Series, format_wait, line_chart, time_ticks, value_ticks

T0 = dt.datetime(2026, 12, 10, 14, 0, tzinfo=dt.UTC)
TIMES = [T0 + dt.timedelta(minutes=5 * i) for i in range(13)]


def _chart(values, **kwargs) -> str:
    options = {"title": "Depth", "value_label": "Patients waiting", "tick_every": dt.timedelta(minutes=10),
               "time_format": "%H:%M", **kwargs}  # fmt: skip
    return str(line_chart(times=TIMES, series=[Series("Average", values)], **options))


def test_it_labels_both_axes_with_round_values_and_local_times():
    svg = _chart([1, 2, 3, 4, 5, 6, 7, 6, 5, 4, 3, 2, 1])
    assert svg.startswith('<svg class="ops-stat-chart"') and "<title>Depth</title>" in svg
    assert [label for label in re.findall(r'text-anchor="end">([^<]+)<', svg)] == ["0", "2", "4", "6", "8"]
    assert re.findall(r">(\d\d:\d\d)</text>", svg) == ["14:00", "14:10", "14:20", "14:30", "14:40", "14:50", "15:00"]
    assert ">Patients waiting</text>" in svg and ">Time (UTC)</text>" in svg and ">Average</text>" in svg
    with timezone.override("America/New_York"):
        local = _chart([1] * 13)
    assert ">09:00</text>" in local and ">Time (America/New_York)</text>" in local


def test_it_escapes_every_text():
    svg = str(line_chart(
        title="<script>alert(1)</script>", times=TIMES, series=[Series('"><b>', [1] * 13)],
        value_label="&", tick_every=dt.timedelta(minutes=10), time_format="%H:%M",
    ))  # fmt: skip
    assert "<script>" not in svg and "<b>" not in svg
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in svg and "&quot;&gt;&lt;b&gt;" in svg and ">&amp;</text>" in svg


def test_it_breaks_the_line_where_nothing_was_recorded():
    svg = _chart([1, None, 2, 3, None, None, 4, 4, 4, None, None, None, 5])
    assert svg.count("<polyline") == 2 and svg.count("<circle") == 2  # 2-3, 4-4-4 lines; 1 and 5 dots
    assert "Nothing recorded" not in svg
    assert "Nothing recorded in this period." in _chart([None] * 13)


def test_it_picks_round_ticks_for_counts_and_waits():
    assert value_ticks(7) == [0, 2, 4, 6, 8]
    assert value_ticks(0) == [0, 1]
    assert value_ticks(430) == [0, 100, 200, 300, 400, 500]
    assert value_ticks(430, steps=WAIT_STEPS) == [0, 120, 240, 360, 480]
    assert [format_wait(s) for s in (45, 300, 310, 5400, 7200)] == ["45 s", "5 min", "5 min 10 s", "1 h 30 min", "2 h"]


def test_it_puts_day_ticks_on_local_midnights():
    start = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)
    ticks = time_ticks(start, start + dt.timedelta(days=7), dt.timedelta(days=1))
    assert ticks[0] == dt.datetime(2026, 12, 4, tzinfo=dt.UTC) and len(ticks) == 7
