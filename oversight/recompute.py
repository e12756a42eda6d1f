"""The queue history recomputed from the raw visit and offer rows, independently of the writer's SQL.

``check_stats`` compares what ``oversight.history`` stored for a period with these totals: each
measure is recounted here in Python, per state and priority, from the rows themselves.
"""

import bisect
import datetime as dt
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from django.db.models import Q, Sum

from clinical.models import Offer, Visit, VisitStatus
from clinical.sla import sla_targets
from oversight.models import WAIT_BANDS, QueueDay, QueueHour, QueueHourTotal, QueueMinute, RecordedMinute

MINUTE = dt.timedelta(minutes=1)
MEASURES = (
    "requested", "cancelled", "expired", "offers_made", "offers_accepted", "offers_declined", "offers_expired",
    "left", "within_sla", "wait_sum_s", "waiting_minutes",
) + tuple(f"band_{i}" for i in range(len(WAIT_BANDS) + 1))  # fmt: skip
Key = tuple[str, int]


@dataclass
class Totals:
    """Each measure's total per (state, priority) over a period."""

    cells: dict[Key, Counter] = field(default_factory=lambda: defaultdict(Counter))

    def add(self, key: Key, measure: str, amount: float = 1) -> None:
        """Add ``amount`` to one measure of one cell."""
        self.cells[key][measure] += amount

    def total(self, measure: str) -> float:
        """Return a measure summed over every cell."""
        return sum(cell[measure] for cell in self.cells.values())


def _left_at(visit: dict) -> dt.datetime | None:
    if visit["accepted_at"] or visit["cancelled_at"]:
        return visit["accepted_at"] or visit["cancelled_at"]
    return visit["ended_at"] if visit["status"] == VisitStatus.EXPIRED else None


def _minute_ends(start: dt.datetime, end: dt.datetime) -> int:
    """Return how many minute boundaries E satisfy ``start <= E < end``."""
    if end <= start:
        return 0
    epoch = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    first = math.ceil((start - epoch) / MINUTE)
    last = math.ceil((end - epoch) / MINUTE) - 1
    return max(0, last - first + 1)


def from_rows(start: dt.datetime, end: dt.datetime) -> Totals:
    """Recount the period ``start``…``end`` (minute boundaries) from the visit and offer rows."""
    totals = Totals()
    targets = sla_targets()
    columns = ("located_state", "priority", "status", "requested_at", "accepted_at", "cancelled_at", "ended_at")
    touching = Visit.objects.filter(
        Q(requested_at__lt=end)
        & (
            Q(requested_at__gte=start)
            | Q(accepted_at__gte=start)
            | Q(cancelled_at__gte=start)
            | Q(ended_at__gte=start, status=VisitStatus.EXPIRED)
            | Q(status__in=[VisitStatus.WAITING, VisitStatus.OFFERED])
        )
        | Q(cancelled_at__gte=start, cancelled_at__lt=end)
        | Q(status=VisitStatus.EXPIRED, ended_at__gte=start, ended_at__lt=end)
    ).order_by()
    for visit in touching.values(*columns).iterator(chunk_size=5000):
        key = (visit["located_state"], visit["priority"])
        requested, left = visit["requested_at"], _left_at(visit)
        if start <= requested < end:
            totals.add(key, "requested")
        if visit["cancelled_at"] and start <= visit["cancelled_at"] < end:
            totals.add(key, "cancelled")
        if visit["status"] == VisitStatus.EXPIRED and visit["ended_at"] and start <= visit["ended_at"] < end:
            totals.add(key, "expired")
        if left and start <= left < end:
            wait = (left - requested).total_seconds()
            totals.add(key, "left")
            totals.add(key, "wait_sum_s", wait)
            totals.add(key, f"band_{bisect.bisect_right(WAIT_BANDS, wait)}")
            if visit["accepted_at"] and visit["accepted_at"] <= requested + dt.timedelta(seconds=targets[key[1]]):
                totals.add(key, "within_sla")
        if left is None and visit["status"] not in (VisitStatus.WAITING, VisitStatus.OFFERED):
            continue  # never in the queue after its request (not a queue visit)
        # Minute ends E in (start, end] at which it was in the queue: requested <= E < left.
        queued_from = max(requested, start + MINUTE)
        queued_until = min(left, end + dt.timedelta(microseconds=1)) if left else end + dt.timedelta(microseconds=1)
        totals.add(key, "waiting_minutes", _minute_ends(queued_from, queued_until))
    offers = Offer.objects.filter(
        Q(offered_at__gte=start, offered_at__lt=end) | Q(decided_at__gte=start, decided_at__lt=end)
    ).order_by()
    for offer in offers.values("visit__located_state", "visit__priority", "offered_at", "decided_at", "outcome"):
        key = (offer["visit__located_state"], offer["visit__priority"])
        if start <= offer["offered_at"] < end:
            totals.add(key, "offers_made")
        if offer["decided_at"] and start <= offer["decided_at"] < end and offer["outcome"] in (
            "accepted", "declined", "expired",
        ):  # fmt: skip
            totals.add(key, f"offers_{offer['outcome']}")
    return totals


_STORED = {
    "requested": "requested", "cancelled": "cancelled", "expired": "expired", "offers_made": "offers_made",
    "offers_accepted": "offers_accepted", "offers_declined": "offers_declined", "offers_expired": "offers_expired",
    "left": "left", "within_sla": "within_sla", "wait_sum_s": "wait_sum_s",
}  # fmt: skip


# Each resolution of the stored history: its model, time field and the column of those waiting summed.
_RESOLUTIONS = {
    "minutes": (QueueMinute, "minute", "waiting"),
    "hours": (QueueHour, "hour", "waiting_sum"),
    "days": (QueueDay, "day", "waiting_sum"),
    "hour totals": (QueueHourTotal, "hour", "waiting_sum"),
}
ALL_QUEUES: Key = ("*", -1)  # the one cell of the hour totals (every state and priority)


def stored(start: dt.datetime, end: dt.datetime, *, rows: str = "minutes") -> Totals:
    """Sum what the history holds for the period at one resolution (``_RESOLUTIONS``: minute rows by default).

    The hour totals have no state or priority: their sums land in the one cell ``ALL_QUEUES``.
    """
    model, time, waiting = _RESOLUTIONS[rows]
    per_queue = model is not QueueHourTotal
    group = ("state", "priority") if per_queue else ()
    totals = Totals()
    found = model.objects.filter(**{f"{time}__gte": start, f"{time}__lt": end}).order_by()
    sums = {name: Sum(column) for name, column in _STORED.items()} | {"waiting_minutes": Sum(waiting)}
    summed = found.values(*group).annotate(**sums) if per_queue else [found.aggregate(**sums)]
    for row in summed:
        key = (row["state"], row["priority"]) if per_queue else ALL_QUEUES
        for name in sums:
            totals.add(key, name, row[name] or 0)
    for row in found.values(*group, "wait_hist"):
        key = (row["state"], row["priority"]) if per_queue else ALL_QUEUES
        for band, count in enumerate(row["wait_hist"]):
            totals.add(key, f"band_{band}", count)
    return totals


def all_queues(totals: Totals) -> Totals:
    """Return ``totals`` summed into the one cell ``ALL_QUEUES`` (to compare with the hour totals)."""
    merged = Totals()
    for cell in totals.cells.values():
        merged.cells[ALL_QUEUES].update(cell)
    return merged


def unrecorded_minutes(start: dt.datetime, end: dt.datetime) -> int:
    """Return how many minutes of the period have no receipt (not recorded yet, or pruned)."""
    expected = int((end - start) / MINUTE)
    return expected - RecordedMinute.objects.filter(minute__gte=start, minute__lt=end).count()


def compare(expected: Totals, actual: Totals) -> list[dict]:
    """Return, per measure, the recomputed and stored totals, their relative difference and the
    number of (state, priority) cells that differ.
    """
    keys = set(expected.cells) | set(actual.cells)
    rows = []
    for measure in MEASURES:
        want, got = expected.total(measure), actual.total(measure)
        differing = sum(
            1
            for key in keys
            if not math.isclose(expected.cells[key][measure], actual.cells[key][measure], abs_tol=1e-3)
        )
        rows.append(
            {
                "measure": measure,
                "recomputed": round(want, 3),
                "stored": round(got, 3),
                "relative_diff": abs(got - want) / want if want else (0.0 if not got else 1.0),
                "cells_differing": differing,
            }
        )
    return rows
