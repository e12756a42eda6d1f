"""Filters for the statistics pages: waits and percentages as people read them."""

from django import template

from oversight.charts import format_wait

register = template.Library()


@register.filter
def wait(seconds: float | None) -> str:
    """Return a wait as ``45 s``, ``5 min 10 s`` or ``1 h 30 min``, or a dash when there is none."""
    return "—" if seconds is None else format_wait(seconds)


@register.filter
def pct(value: float | None) -> str:
    """Return a percentage, or a dash when there is nothing to divide."""
    return "—" if value is None else f"{value:g} %"
