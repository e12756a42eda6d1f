"""Reads of the queue history for the statistics pages: a period's numbers per time bucket, priority,
state and provider.

Periods of a day or more read the rollups for the hours rolled up (``QueueHourTotal`` for the
charts; ``QueueDay`` for the whole days and ``QueueHour`` for the hours either side for the tables)
and ``QueueMinute`` for the minutes after; the hour period reads ``QueueMinute`` alone. Raw rows are read only for the
acceptance per provider (offers in the period, by ``clinical_offer_offered_idx``), and for the
periods of a day or more only when the oversight worker's ranking (``ProviderAcceptance``) is stale. Wait
percentiles are estimated from the summed wait bands (``WAIT_BANDS``), linearly inside a band.
"""

import dataclasses
import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from clinical.models import OfferOutcome, Priority
from clinical.sla import sla_targets
from core.replica import read_cursor
from oversight.models import WAIT_BANDS, Alert, QueueMinute, no_waits


@dataclass(frozen=True)
class Period:
    """A period the statistics pages offer: its length, chart bucket and time axis."""

    key: str
    label: str
    length: dt.timedelta
    bucket: dt.timedelta
    tick_every: dt.timedelta  # a labelled time on the chart's axis at each multiple of this (local time)
    time_format: str  # strftime of those labels
    hourly: bool  # read the hours' rollups (QueueHour) for the hours rolled up
    # The providers' acceptance is ranked by the oversight worker (ProviderAcceptance), not per page.
    ranked_by_worker: bool = False


_MINUTE, _HOUR, _DAY = dt.timedelta(minutes=1), dt.timedelta(hours=1), dt.timedelta(days=1)
PERIODS = {
    period.key: period
    for period in (
        Period("1h", "1 hour", _HOUR, 5 * _MINUTE, 10 * _MINUTE, "%H:%M", hourly=False),
        Period("24h", "24 hours", 24 * _HOUR, _HOUR, 4 * _HOUR, "%a %H:%M", hourly=True, ranked_by_worker=True),
        Period("7d", "7 days", 7 * _DAY, 6 * _HOUR, _DAY, "%a %d %b", hourly=True, ranked_by_worker=True),
        Period("30d", "30 days", 30 * _DAY, 12 * _HOUR, 5 * _DAY, "%d %b", hourly=True, ranked_by_worker=True),
    )
}
DEFAULT_PERIOD = "1h"
MIN_DECIDED_OFFERS = 5  # a provider's acceptance rate ranks only past this many answered or timed-out offers
PROVIDER_ROWS = 25
_DECIDED = (OfferOutcome.ACCEPTED, OfferOutcome.DECLINED, OfferOutcome.EXPIRED)


def wait_quantile(hist: Sequence[int], q: float, *, max_wait_s: float) -> float | None:
    """Return the ``q`` quantile of the waits counted in ``hist`` (bands of ``WAIT_BANDS``), or None.

    Estimated: the rank's band is found exactly, the value inside it interpolated linearly; the
    open last band ends at the longest wait seen, and no estimate passes that longest wait.
    """
    total = sum(hist)
    if not total:
        return None
    rank, below = q * total, 0
    for band, count in enumerate(hist):
        if count and below + count >= rank:
            low = WAIT_BANDS[band - 1] if band else 0
            high = WAIT_BANDS[band] if band < len(WAIT_BANDS) else max(max_wait_s, low)
            estimate = low + (rank - below) / count * (high - low)
            return round(min(estimate, max_wait_s) if max_wait_s else estimate, 1)
        below += count
    return None


@dataclass
class Tally:
    """What the history counts over some rows: visits, offers, waits and queue depth."""

    requested: int = 0
    cancelled: int = 0
    expired: int = 0
    offers_made: int = 0
    offers_accepted: int = 0
    offers_declined: int = 0
    offers_expired: int = 0
    left: int = 0
    within_sla: int = 0
    wait_sum_s: float = 0
    wait_max_s: float = 0
    waiting_sum: int = 0  # over the minutes, those waiting at each minute's end
    waiting_peak: int = 0  # most waiting at once in one queue (state and priority)
    total_peak: int = 0  # most waiting at once in all the rows' queues (an upper bound from hours)
    longest_wait_s: int = 0  # longest wait of one still waiting at a minute's end
    available: int | None = None  # fewest eligible providers available (when sampled)
    offline: int | None = None
    wait_hist: list[int] = field(default_factory=no_waits)

    def merge(self, other: "Tally") -> "Tally":
        """Return the tally of both: counts added, maxima kept, the fewest available."""
        return Tally(
            **{name: getattr(self, name) + getattr(other, name) for name in _ADDED},
            **{name: max(getattr(self, name), getattr(other, name)) for name in _MAXIMA},
            available=_known(min, self.available, other.available),
            offline=_known(max, self.offline, other.offline),
            wait_hist=[a + b for a, b in zip(self.wait_hist, other.wait_hist, strict=True)],
        )

    @property
    def offers_decided(self) -> int:
        """Offers answered or timed out (withdrawn and cancelled ones were nobody's choice)."""
        return self.offers_accepted + self.offers_declined + self.offers_expired

    @property
    def acceptance_pct(self) -> float | None:
        return _pct(self.offers_accepted, self.offers_decided)

    @property
    def attainment_pct(self) -> float | None:
        return _pct(self.within_sla, self.left)

    @property
    def mean_wait_s(self) -> float | None:
        return round(self.wait_sum_s / self.left, 1) if self.left else None

    @property
    def p50_wait_s(self) -> float | None:
        return wait_quantile(self.wait_hist, 0.5, max_wait_s=self.wait_max_s)

    @property
    def p90_wait_s(self) -> float | None:
        return wait_quantile(self.wait_hist, 0.9, max_wait_s=self.wait_max_s)

    @property
    def longest_s(self) -> float:
        """Return the longest wait seen: of a visit that left, or of one still waiting at a minute's end."""
        return max(self.wait_max_s, self.longest_wait_s)


_MAXIMA = ("wait_max_s", "waiting_peak", "total_peak", "longest_wait_s")
_ADDED = tuple(
    f.name for f in dataclasses.fields(Tally) if f.name not in (*_MAXIMA, "available", "offline", "wait_hist")
)
_SCALARS = tuple(f.name for f in dataclasses.fields(Tally))[:-1]  # the history statement's columns, in order


def _known(pick, *values):
    known = [v for v in values if v is not None]
    return pick(known) if known else None


def _pct(part: int, whole: int) -> float | None:
    return round(100 * part / whole, 1) if whole else None


@dataclass
class Bucket:
    """A chart's point: the rows of a bucket of time and how many of its minutes were recorded."""

    start: dt.datetime
    recorded_minutes: int = 0
    tally: Tally = field(default_factory=Tally)

    @property
    def depth_avg(self) -> float | None:
        """Return the average of those waiting in all queues, per recorded minute (None: nothing recorded)."""
        return round(self.tally.waiting_sum / self.recorded_minutes, 1) if self.recorded_minutes else None

    @property
    def depth_max(self) -> int | None:
        """Return the most waiting at once in all queues (from hours: each queue's peak added up)."""
        return self.tally.total_peak if self.recorded_minutes else None


@dataclass
class QueueRow:
    """A priority's or a state's line: the period's tally, the live numbers (states), why it needs attention."""

    key: str
    tally: Tally
    wait_vs_target: float | None = None  # the longest wait seen over the priority's target (worst priority)
    target_s: int | None = None
    live: dict | None = None

    @property
    def no_provider(self) -> bool:
        return bool(self.live and self.live["waiting"] and not self.live["available"])


@dataclass
class PeriodStatistics:
    """A period's statistics: totals, chart buckets and the priority, state and provider tables."""

    period: Period
    start: dt.datetime
    end: dt.datetime
    recorded_minutes: int
    total: Tally
    buckets: list[Bucket]
    priorities: list[QueueRow]
    states: list[QueueRow]
    providers: list[dict]
    providers_with_offers: int
    # When the oversight worker ranked the providers (periods of a day or more); None: ranked for this page.
    providers_as_of: dt.datetime | None = None

    @property
    def minutes(self) -> int:
        return int((self.end - self.start).total_seconds() // 60)

    @property
    def peaks_from_hours(self) -> bool:
        """Whether a bucket's peak comes from hourly rollups (each queue's peak summed: an upper bound)."""
        return self.period.hourly


def window(period: Period, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """Return the period's ``[start, end)``: from a bucket boundary (local time) to the current minute's start.

    The start goes back to the bucket's boundary, so a period covers at least its length and its
    buckets fall on round times; hourly periods start on an hour, where the rollups start.
    """
    end = now.replace(second=0, microsecond=0)
    since = end - period.length
    midnight = timezone.localtime(since).replace(hour=0, minute=0, second=0, microsecond=0).astimezone(dt.UTC)
    if period.hourly:
        midnight = midnight.replace(minute=0)  # rollups are whole hours (of UTC: a zone may be off by 30 min)
    start = midnight + (since - midnight) // period.bucket * period.bucket
    return start, end


# The history's columns per group, in ``Tally``'s field order, then the wait bands one by one
# (PostgreSQL has no sum of arrays; a sum per subscript is the cheapest).
_AGGREGATES = (
    "sum(requested), sum(cancelled), sum(expired), sum(offers_made), sum(offers_accepted), sum(offers_declined), "
    'sum(offers_expired), sum("left"), sum(within_sla), sum(wait_sum_s), max(wait_max_s), sum(waiting_sum), '
    "max(waiting_peak), sum(total_peak), max(longest_wait_s), min(available), max(offline), "
    + ", ".join(f"sum(wait_hist[{i + 1}])" for i in range(len(WAIT_BANDS) + 1))
)
_COLUMNS = (
    'requested, cancelled, expired, offers_made, offers_accepted, offers_declined, offers_expired, "left", '
    "within_sla, wait_sum_s, wait_max_s, wait_hist, longest_wait_s, available, offline"
)

# The period's rows grouped twice: per hour or minute (the charts) and per state and priority (the
# tables). Rolled-up time comes first, up to ``at``, the first hour not both complete (its last
# minute recorded) and rolled up; minutes from QueueMinute after it. The charts read an hour's
# total over every queue (QueueHourTotal: one row an hour); the tables read each whole UTC day
# rolled up from QueueDay (``first`` up to ``after``: one row a day and queue) and the hours
# either side from QueueHour. Every range is read from its table's unique key
# (oversight_queuehourtotal_hour_key, oversight_queueday_key, oversight_queuehour_key,
# oversight_queueminute_key). A 30-day page at 10M visits reads ~6,000 rows, not the 81,000 rows
# of its hours (each queue's hour with anything in it).
_HISTORY_SQL = """
WITH rolled AS (
    SELECT CASE WHEN %(hourly)s THEN greatest(%(start)s, least(
        date_trunc('hour', (SELECT max(minute) FROM oversight_recordedminute WHERE minute < %(end)s)
                           + interval '1 minute'),
        (SELECT max(hour) FROM oversight_queuehour WHERE hour >= %(start)s AND hour < %(end)s) + interval '1 hour'
    )) ELSE %(start)s END AS at
), first_day AS (
    SELECT date_trunc('day', %(start)s - interval '1 microsecond', 'UTC') + interval '1 day' AS first
), days AS (
    SELECT f.first, greatest(f.first, least(date_trunc('day', r.at, 'UTC'), coalesce(
        (SELECT max(day) FROM oversight_queueday WHERE day >= f.first AND day < r.at) + interval '1 day', f.first
    ))) AS after
    FROM first_day f, rolled r
), per_time AS (
    SELECT hour AS t, {columns}, waiting_sum, waiting_peak, total_peak
    FROM oversight_queuehourtotal WHERE hour >= %(start)s AND hour < (SELECT at FROM rolled)
    UNION ALL
    SELECT minute, {columns}, waiting, waiting, waiting
    FROM oversight_queueminute WHERE minute >= (SELECT at FROM rolled) AND minute < %(end)s
), per_queue AS (
    SELECT state, priority, {columns}, waiting_sum, waiting_max AS waiting_peak
    FROM oversight_queueday WHERE day >= (SELECT first FROM days) AND day < (SELECT after FROM days)
    UNION ALL
    SELECT state, priority, {columns}, waiting_sum, waiting_max
    FROM oversight_queuehour WHERE hour >= %(start)s AND hour < (SELECT least(d.first, r.at) FROM days d, rolled r)
    UNION ALL
    SELECT state, priority, {columns}, waiting_sum, waiting_max
    FROM oversight_queuehour WHERE hour >= (SELECT after FROM days) AND hour < (SELECT at FROM rolled)
    UNION ALL
    SELECT state, priority, {columns}, waiting, waiting
    FROM oversight_queueminute WHERE minute >= (SELECT at FROM rolled) AND minute < %(end)s
)
SELECT 0, t, NULL, NULL, {aggregates} FROM per_time GROUP BY t
UNION ALL
SELECT 1, NULL, state, priority, {aggregates} FROM (SELECT *, waiting_peak AS total_peak FROM per_queue) q
GROUP BY state, priority
""".replace("{columns}", _COLUMNS).replace("{aggregates}", _AGGREGATES)

# Minutes recorded per bucket: a minute recorded without rows had nobody waiting and nothing happening.
_RECORDED_SQL = """
SELECT date_bin(%(bucket)s, minute, %(start)s), count(*) FROM oversight_recordedminute
WHERE minute >= %(start)s AND minute < %(end)s GROUP BY 1
"""

# Acceptance per provider over the period's offers (clinical_offer_offered_idx), ranked: those needing
# attention first, the lowest acceptance rate of those with a few decided offers, then the most left
# unanswered. Ranked per page for the hour; by the oversight worker for the periods of a day or more.
PROVIDER_RANKING_SQL = """
SELECT p.id, p.first_name, p.last_name, p.npi, per.made, per.accepted, per.declined, per.unanswered,
       count(*) OVER () AS providers,
       row_number() OVER (ORDER BY
           CASE WHEN per.accepted + per.declined + per.unanswered >= %(min_decided)s
                THEN per.accepted::float / (per.accepted + per.declined + per.unanswered) END NULLS LAST,
           per.unanswered DESC, per.made DESC, p.last_name, p.first_name, p.id) AS rank
FROM (
    SELECT provider_id, count(*) AS made, count(*) FILTER (WHERE outcome = 'accepted') AS accepted,
           count(*) FILTER (WHERE outcome = 'declined') AS declined,
           count(*) FILTER (WHERE outcome = 'expired') AS unanswered
    FROM clinical_offer WHERE offered_at >= %(start)s AND offered_at < %(end)s GROUP BY provider_id
) per JOIN clinical_provider p ON p.id = per.provider_id
"""

# The worker's ranking while it is fresh (oversight_provideracceptance_key), else the ranking computed
# here: one statement either way (the live branch runs only when no fresh ranking exists).
_PROVIDERS_SQL = f"""
WITH fresh AS (
    SELECT a.rank, a.provider_id, a.made, a.accepted, a.declined, a.unanswered, a.providers, a.computed_at
    FROM oversight_provideracceptance a
    WHERE a.period = %(period)s AND a.computed_at >= %(fresh_after)s AND a.rank <= %(limit)s
)
SELECT p.id, p.first_name, p.last_name, p.npi, f.made, f.accepted, f.declined, f.unanswered, f.providers,
       f.computed_at, f.rank
FROM fresh f JOIN clinical_provider p ON p.id = f.provider_id
UNION ALL
SELECT r.id, r.first_name, r.last_name, r.npi, r.made, r.accepted, r.declined, r.unanswered, r.providers,
       NULL, r.rank
FROM ({PROVIDER_RANKING_SQL}) r
WHERE NOT EXISTS (SELECT 1 FROM fresh) AND r.rank <= %(limit)s
ORDER BY 11
"""  # noqa: S608 (constants only)


def provider_ranking_fresh_after(now: dt.datetime) -> dt.datetime:
    """Return the oldest time a worker's provider ranking may have been computed to be shown.

    Two missed recomputations (a worker stopped or behind): the page ranks the providers itself.
    """
    return now - dt.timedelta(seconds=2 * settings.OPS_STATS_PROVIDERS_SECONDS + 60)


def period_statistics(period: Period, *, live: dict) -> PeriodStatistics:
    """Return the period's statistics up to the live numbers' time (``live``: ``clinical.selectors.live_queues()``).

    Three statements whatever the period: the history, the minutes recorded, the offers per provider.
    """
    now = dt.datetime.fromisoformat(live["at"])
    start, end = window(period, now)
    params = {"start": start, "end": end, "hourly": period.hourly, "bucket": period.bucket}
    ranked = {
        "period": period.key if period.ranked_by_worker else "", "fresh_after": provider_ranking_fresh_after(now),
        "min_decided": MIN_DECIDED_OFFERS, "limit": PROVIDER_ROWS,
    }  # fmt: skip
    with read_cursor(QueueMinute) as cursor:  # the replica's, on a read-only page (core.replica)
        cursor.execute(_HISTORY_SQL, params)
        history = cursor.fetchall()
        cursor.execute(_RECORDED_SQL, params)
        recorded = dict(cursor.fetchall())
        cursor.execute(_PROVIDERS_SQL, {**params, **ranked})
        providers = cursor.fetchall()
    per_time = [(row[1], _tally(row[4:])) for row in history if row[0] == 0]
    per_queue = {(row[2], row[3]): _tally(row[4:]) for row in history if row[0] == 1}
    priorities = _priorities(per_queue)
    return PeriodStatistics(
        period=period, start=start, end=end, recorded_minutes=sum(recorded.values()),
        total=_sum(row.tally for row in priorities), buckets=_buckets(period, start, end, per_time, recorded),
        priorities=priorities, states=_states(per_queue, live["states"]),
        providers=[_provider_row(*row) for row in providers],
        providers_with_offers=providers[0][8] if providers else 0,
        providers_as_of=providers[0][9] if providers else None,
    )  # fmt: skip


def _tally(values: Sequence) -> Tally:
    scalars, bands = values[: -len(WAIT_BANDS) - 1], values[-len(WAIT_BANDS) - 1 :]
    return Tally(**dict(zip(_SCALARS, scalars, strict=True)), wait_hist=[int(n or 0) for n in bands])


def _sum(tallies) -> Tally:
    total = Tally()
    for tally in tallies:
        total = total.merge(tally)
    return total


def _buckets(period: Period, start, end, per_time, recorded: dict) -> list[Bucket]:
    """Return the chart's buckets from ``start``, with their minutes recorded and their rows summed."""
    count = math.ceil((end - start) / period.bucket)
    buckets = [Bucket(start + i * period.bucket) for i in range(count)]
    for bucket_start, minutes in recorded.items():
        buckets[(bucket_start - start) // period.bucket].recorded_minutes = minutes
    for t, tally in per_time:
        bucket = buckets[(t - start) // period.bucket]
        bucket.tally = bucket.tally.merge(tally)
    return buckets


def _priorities(per_queue: dict[tuple[str, int], Tally]) -> list[QueueRow]:
    """Return a row per priority (every priority, most urgent first among equals), lowest SLA attainment first."""
    rows = []
    for priority, target in sla_targets().items():
        tally = _sum(t for (_, p), t in per_queue.items() if p == priority)
        ratio = tally.longest_s / target if tally.longest_s else None
        rows.append(QueueRow(Priority(priority).label, tally, wait_vs_target=ratio, target_s=target))
    return sorted(rows, key=lambda r: (r.tally.attainment_pct is None, r.tally.attainment_pct or 0))


def _states(per_queue: dict[tuple[str, int], Tally], live_states: list[dict]) -> list[QueueRow]:
    """Return a row per state live now or in the history, those needing attention first.

    First the states with patients waiting and no provider available now; then those whose longest
    wait passed its priority's target, furthest past first (the worst priority of the period, or
    now's longest wait over the most lenient target: whatever its priority, the ratio is at least
    that); then by the lowest SLA attainment.
    """
    targets = sla_targets()
    live = {row["state"]: row for row in live_states}
    rows = []
    for state in sorted(live.keys() | {s for s, _ in per_queue}):
        mine = {p: t for (s, p), t in per_queue.items() if s == state}
        ratios = [t.longest_s / targets[p] for p, t in mine.items() if p in targets]
        now = live.get(state) or {"state": state, "waiting": 0, "longest_wait_s": 0, "available": 0, "offers": 0}
        ratios.append(now["longest_wait_s"] / max(targets.values()))
        rows.append(QueueRow(state, _sum(mine.values()), wait_vs_target=max(ratios) or None, live=now))
    return sorted(rows, key=_attention)


def _attention(row: QueueRow) -> tuple:
    """Sort key: no provider for those waiting; then past target, the furthest first; then the lowest attainment."""
    ratio, attainment = row.wait_vs_target or 0, row.tally.attainment_pct
    return (not row.no_provider, ratio < 1, -ratio if ratio >= 1 else 0, attainment is None, attainment or 0, -ratio)


def _provider_row(pk, first_name, last_name, npi, made, accepted, declined, unanswered, *_total_as_of_rank) -> dict:
    decided = accepted + declined + unanswered
    return {
        "id": pk, "name": f"{first_name} {last_name}", "npi": npi, "made": made, "accepted": accepted,
        "declined": declined, "unanswered": unanswered, "open_or_withdrawn": made - decided,
        "acceptance_pct": _pct(accepted, decided), "ranked": decided >= MIN_DECIDED_OFFERS,
    }  # fmt: skip


# --- alerts -----------------------------------------------------------------------------------------


def alerts_for_list() -> QuerySet[Alert]:
    """Return alerts with who acknowledged them joined, newest first (index: oversight_alert_opened_idx)."""
    return Alert.objects.select_related("acknowledged_by").order_by("-opened_at", "-id")


def open_alerts() -> QuerySet[Alert]:
    """Return the open alerts (not resolved), newest first."""
    return Alert.objects.filter(resolved_at__isnull=True).order_by("-opened_at", "-id")
