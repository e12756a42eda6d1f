"""``python manage.py check_stats``: compare the stored queue history with a recount from the raw rows."""

import datetime as dt
import json

from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_datetime

from oversight import recompute
from oversight.models import RecordedMinute

PERIODS = {"1h": dt.timedelta(hours=1), "24h": dt.timedelta(days=1), "7d": dt.timedelta(days=7),
           "30d": dt.timedelta(days=30)}  # fmt: skip
TOLERANCE = 0.001  # 0.1%


def _instant(value: str, name: str) -> dt.datetime:
    parsed = parse_datetime(value)
    if parsed is None or parsed.tzinfo is None:
        raise CommandError(
            f"--{name}: expected an ISO time with its offset, e.g. 2026-12-01T00:00+00:00, got {value!r}"
        )
    return parsed.astimezone(dt.UTC).replace(second=0, microsecond=0)


def _midnight(at: dt.datetime) -> dt.datetime:
    """Return the start of the UTC day ``at`` falls in."""
    return at.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)


class Command(BaseCommand):
    help = (
        "Recount a period of the queue history from the visit and offer rows and compare, measure by measure "
        "(minute rows; hour rows and hour totals for the whole hours in it; day rows for its whole UTC days). "
        "Exits 1 if any differs by more than 0.1%."
    )

    def add_arguments(self, parser):
        parser.add_argument("--period", choices=PERIODS, default="24h", help="ending at the last recorded minute")
        parser.add_argument("--since", help="start (ISO time with offset); with --until instead of --period")
        parser.add_argument("--until", help="end (ISO time with offset, exclusive)")

    def handle(self, *args, period, since, until, **options):
        last = RecordedMinute.objects.order_by("-minute").values_list("minute", flat=True).first()
        if last is None:
            raise CommandError("no history recorded yet: run `python manage.py run_oversight` first")
        end = _instant(until, "until") if until else last + recompute.MINUTE
        start = _instant(since, "since") if since else end - PERIODS[period]
        if start >= end:
            raise CommandError("--since must be before --until")
        rows = recompute.from_rows(start, end)
        compared = {"minutes": recompute.compare(rows, recompute.stored(start, end))}
        first_hour = start if start.minute == 0 else start.replace(minute=0) + dt.timedelta(hours=1)
        last_hour = end.replace(minute=0)
        if first_hour < last_hour:
            by_hour = recompute.from_rows(first_hour, last_hour)
            compared["hours"] = recompute.compare(by_hour, recompute.stored(first_hour, last_hour, rows="hours"))
            compared["hour totals"] = recompute.compare(
                recompute.all_queues(by_hour), recompute.stored(first_hour, last_hour, rows="hour totals")
            )
        first_day = start if start == _midnight(start) else _midnight(start) + dt.timedelta(days=1)
        last_day = _midnight(end)
        if first_day < last_day:
            compared["days"] = recompute.compare(
                recompute.from_rows(first_day, last_day), recompute.stored(first_day, last_day, rows="days")
            )
        missing = recompute.unrecorded_minutes(start, end)
        self.stdout.write(f"queue history {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC")
        self.stdout.write(f"{'measure':<18} {'rows':>11} {'recomputed':>14} {'stored':>14} {'diff %':>8} {'cells':>6}")
        worst = 0.0
        for kind, table in compared.items():
            for row in table:
                worst = max(worst, row["relative_diff"])
                self.stdout.write(
                    f"{row['measure']:<18} {kind:>11} {row['recomputed']:>14,.0f} {row['stored']:>14,.0f} "
                    f"{100 * row['relative_diff']:>8.3f} {row['cells_differing']:>6}"
                )
        agrees = worst <= TOLERANCE and not missing
        self.stdout.write(
            f"unrecorded minutes: {missing}; worst difference {100 * worst:.3f}% "
            f"({'agrees' if agrees else 'DISAGREES'} within {100 * TOLERANCE:g}%)"
        )
        summary = {"since": start.isoformat(), "until": end.isoformat(), "unrecorded_minutes": missing,
                   "worst_relative_diff": worst, "agrees": agrees, "tables": compared}  # fmt: skip
        self.stdout.write(json.dumps(summary))
        if not agrees:
            raise SystemExit(1)
