"""The queue history's writer: each minute, per state and priority, computed from the visit and offer rows.

One process writes at a time (``oversight.worker`` holds a PostgreSQL advisory lock), but the
receipts are what keep the history exact: a minute's rows are written in the transaction that
inserts its ``RecordedMinute``, and only for the minutes whose receipt that transaction inserted.
A writer that takes over after a failover starts after the last receipt, so it fills the gap
from the rows and never counts a minute twice.

A minute is recorded ``OPS_STATS_GRACE_SECONDS`` after it ends: a visit's ``requested_at`` is its
transaction's start, so a request committed just after the minute ended still lands in it.
Provider counts can only be sampled as the minute ends; minutes filled in later have none.
"""

import datetime as dt
import threading
from collections.abc import Callable

from django.conf import settings
from django.db import connection, transaction

from clinical.calendar import license_valid_sql
from clinical.selectors import left_queue_sql
from clinical.sla import sla_targets
from core import dbclock
from oversight.models import WAIT_BANDS
from oversight.selectors import MIN_DECIDED_OFFERS, PERIODS, PROVIDER_RANKING_SQL, PROVIDER_ROWS, window

MINUTE = dt.timedelta(minutes=1)
SAMPLE_WITHIN = dt.timedelta(seconds=90)  # provider counts older than this are not the minute's
BANDS = len(WAIT_BANDS) + 1
COUNTS = (
    "requested", "cancelled", "expired", "offers_made", "offers_accepted", "offers_declined", "offers_expired",
    "left", "within_sla", "wait_sum_s", "wait_max_s", "waiting", "longest_wait_s",
)  # fmt: skip
_ZEROS = {name: "0" for name in COUNTS} | {f"h{i}": "0" for i in range(BANDS)}


def _part(source: str, **columns: str) -> str:
    """One branch of the union: ``minute, state, priority`` and every count (zero unless given)."""
    values = {**_ZEROS, **columns}
    columns = ", ".join(f'{value} AS "{name}"' for name, value in values.items())
    return f"SELECT minute, state, priority, {columns} FROM ({source}) s"  # noqa: S608 (constants only)


def _grouped(time: str, where: str, table: str = "clinical_visit v", *aggregates: str) -> str:
    select = f"SELECT date_trunc('minute', {time}) AS minute, v.located_state AS state, v.priority, "
    return select + f"{', '.join(aggregates)} FROM {table} WHERE {where} GROUP BY 1, 2, 3"  # noqa: S608 (constants)


_LEFT = left_queue_sql("v")
_OFFERS = "clinical_offer o JOIN clinical_visit v ON v.id = o.visit_id"
# A visit is in the queue at a minute's end E when requested_at <= E < left (or it has not left).
# Its ends run from the first minute boundary at or after the request to the last one before it left.
_CEIL = "date_trunc('minute', {t}) + CASE WHEN {t} > date_trunc('minute', {t}) THEN interval '1 minute' ELSE '0' END"
_QUEUED = f"""
SELECT e - interval '1 minute' AS minute, q.located_state AS state, q.priority, count(*) AS waiting,
       max(extract(epoch FROM e - q.requested_at))::int AS longest
FROM (
    SELECT v.located_state, v.priority, v.requested_at, {_LEFT} AS left_at FROM clinical_visit v
    WHERE {_LEFT} > %(a)s AND v.requested_at <= %(b)s
    UNION ALL
    SELECT v.located_state, v.priority, v.requested_at, NULL FROM clinical_visit v
    WHERE v.status IN ('waiting', 'offered') AND {_LEFT} IS NULL AND v.requested_at <= %(b)s
) q
CROSS JOIN LATERAL generate_series(
    greatest({_CEIL.format(t="q.requested_at")}, %(a)s + interval '1 minute'),
    least({_CEIL.format(t="q.left_at")} - interval '1 minute', %(b)s),
    interval '1 minute'
) AS e
GROUP BY 1, 2, 3
"""  # noqa: S608 (constants only: every value is a parameter)
_GONE = f"""
SELECT date_trunc('minute', left_at) AS minute, state, priority, count(*) AS n,
       count(*) FILTER (WHERE accepted_at <= requested_at + make_interval(secs => t.seconds)) AS within,
       sum(wait) AS wait_sum, max(wait) AS wait_max,
       {", ".join(f"count(*) FILTER (WHERE band = {i}) AS h{i}" for i in range(BANDS))}
FROM (
    SELECT v.located_state AS state, v.priority, v.requested_at, v.accepted_at, {_LEFT} AS left_at,
           extract(epoch FROM {_LEFT} - v.requested_at) AS wait,
           width_bucket(extract(epoch FROM {_LEFT} - v.requested_at), %(bands)s::numeric[]) AS band
    FROM clinical_visit v WHERE {_LEFT} >= %(a)s AND {_LEFT} < %(b)s
) g JOIN unnest(%(priorities)s::int[], %(seconds)s::int[]) AS t(priority, seconds) USING (priority)
GROUP BY 1, 2, 3
"""  # noqa: S608
_PARTS = " UNION ALL ".join(
    [
        _part(_grouped("v.requested_at", "v.requested_at >= %(a)s AND v.requested_at < %(b)s", "clinical_visit v",
                       "count(*) AS n"), requested="n"),
        _part(_grouped("v.cancelled_at", "v.cancelled_at >= %(a)s AND v.cancelled_at < %(b)s", "clinical_visit v",
                       "count(*) AS n"), cancelled="n"),
        _part(_grouped("v.ended_at", "v.status = 'expired' AND v.ended_at >= %(a)s AND v.ended_at < %(b)s",
                       "clinical_visit v", "count(*) AS n"), expired="n"),
        _part(_grouped("o.offered_at", "o.offered_at >= %(a)s AND o.offered_at < %(b)s", _OFFERS, "count(*) AS n"),
              offers_made="n"),
        _part(_grouped("o.decided_at", "o.decided_at >= %(a)s AND o.decided_at < %(b)s", _OFFERS,
                       "count(*) FILTER (WHERE o.outcome = 'accepted') AS acc",
                       "count(*) FILTER (WHERE o.outcome = 'declined') AS dec",
                       "count(*) FILTER (WHERE o.outcome = 'expired') AS exp"),
              offers_accepted="acc", offers_declined="dec", offers_expired="exp"),
        _part(_GONE, left="n", within_sla="within", wait_sum_s="wait_sum", wait_max_s="wait_max",
              **{f"h{i}": f"h{i}" for i in range(BANDS)}),
        _part(_QUEUED, waiting="waiting", longest_wait_s="longest"),
    ]
)  # fmt: skip

_VALID = license_valid_sql("l", "statement_timestamp()")
# Eligible providers per state as the minute ends: active, licensed there now by the state's calendar.
_COVERAGE = f"""
SELECT l.state, count(DISTINCT p.id) FILTER (WHERE p.availability = 'available') AS available,
       count(DISTINCT p.id) FILTER (WHERE p.availability = 'offline') AS offline
FROM clinical_provider p JOIN clinical_providerlicense l ON l.provider_id = p.id AND {_VALID}
WHERE p.is_active GROUP BY l.state
"""  # noqa: S608

_HIST = ", ".join(f"sum(h{i})" for i in range(BANDS))
_INSERT_MINUTES = f"""
WITH parts AS ({_PARTS}), coverage AS ({_COVERAGE})
INSERT INTO oversight_queueminute (minute, state, priority, {", ".join(f'"{name}"' for name in COUNTS)}, wait_hist,
    available, offline)
SELECT p.minute, p.state, p.priority,
       sum(requested), sum(cancelled), sum(expired), sum(offers_made), sum(offers_accepted), sum(offers_declined),
       sum(offers_expired), sum("left"), sum(within_sla), sum(wait_sum_s), max(wait_max_s), sum(waiting),
       max(longest_wait_s), ARRAY[{_HIST}]::int[],
       CASE WHEN p.minute = %(sampled)s THEN coalesce(max(c.available), 0) END,
       CASE WHEN p.minute = %(sampled)s THEN coalesce(max(c.offline), 0) END
FROM parts p LEFT JOIN coverage c ON c.state = p.state AND p.minute = %(sampled)s
WHERE p.minute = ANY(%(minutes)s::timestamptz[])
GROUP BY 1, 2, 3
ON CONFLICT (minute, state, priority) DO NOTHING
"""  # noqa: S608

_RECEIPTS = """
INSERT INTO oversight_recordedminute (minute, recorded_at, writer, sampled)
SELECT m, clock_timestamp(), %(writer)s, coalesce(m = %(sampled)s, false)
FROM generate_series(%(a)s::timestamptz, %(b)s::timestamptz - interval '1 minute', interval '1 minute') AS m
ON CONFLICT (minute) DO NOTHING
RETURNING minute
"""

# The measures summed from finer rows: the same in every rollup, in ``oversight.models.Counts``' order.
_MEASURES = (
    'requested, cancelled, expired, offers_made, offers_accepted, offers_declined, offers_expired, "left", '
    "within_sla, wait_sum_s, wait_max_s, wait_hist, available, offline"
)
_SUMMED = (
    "sum(requested), sum(cancelled), sum(expired), sum(offers_made), sum(offers_accepted), sum(offers_declined), "
    'sum(offers_expired), sum("left"), sum(within_sla), sum(wait_sum_s), max(wait_max_s), '
    f"ARRAY[{', '.join(f'sum(wait_hist[{i + 1}])' for i in range(BANDS))}]::int[], min(available), max(offline)"
)

_ROLLUP = f"""
INSERT INTO oversight_queuehour (hour, state, priority, {_MEASURES}, waiting_sum, waiting_max, longest_wait_s)
SELECT date_trunc('hour', minute), state, priority, {_SUMMED}, sum(waiting), max(waiting), max(longest_wait_s)
FROM oversight_queueminute WHERE minute >= %(hour)s AND minute < %(hour)s + interval '1 hour'
GROUP BY 1, 2, 3
ON CONFLICT (hour, state, priority) DO NOTHING
"""  # noqa: S608


def _totals(where: str) -> str:
    """Return the statement summing the hour rows that meet ``where`` over every queue: a row an hour (the charts')."""
    return f"""
INSERT INTO oversight_queuehourtotal (hour, {_MEASURES}, waiting_sum, waiting_peak, total_peak, longest_wait_s)
SELECT h.hour, {_SUMMED}, sum(waiting_sum), max(waiting_max), sum(waiting_max), max(longest_wait_s)
FROM oversight_queuehour h WHERE {where}
GROUP BY h.hour
ON CONFLICT (hour) DO NOTHING
"""  # noqa: S608 (constants only)


def _days(where: str) -> str:
    """Return the statement summing the hour rows that meet ``where`` per UTC day and queue (the tables')."""
    return f"""
INSERT INTO oversight_queueday (day, state, priority, {_MEASURES}, waiting_sum, waiting_max, longest_wait_s)
SELECT date_trunc('day', h.hour, 'UTC'), state, priority, {_SUMMED}, sum(waiting_sum), max(waiting_max),
       max(longest_wait_s)
FROM oversight_queuehour h WHERE {where}
GROUP BY 1, 2, 3
ON CONFLICT (day, state, priority) DO NOTHING
"""  # noqa: S608 (constants only)


# The hour just rolled up, and its UTC day after its last hour, read by oversight_queuehour_key.
_ROLLUP_TOTAL = _totals("h.hour = %(hour)s")
_ROLLUP_DAY = _days("h.hour >= %(day)s AND h.hour < %(day)s + interval '1 day'")

# Every table of the history with its time column, finest first (pruned and rebuilt together).
_TABLES = (
    ("queueminute", "minute"), ("queuehour", "hour"), ("queuehourtotal", "hour"), ("queueday", "day"),
    ("recordedminute", "minute"),
)  # fmt: skip


def roll_up_hour(cursor, hour: dt.datetime) -> None:
    """Roll the hour's minute rows up (per queue, and over all of them); after a UTC day's last hour, the day's."""
    cursor.execute(_ROLLUP, {"hour": hour})
    cursor.execute(_ROLLUP_TOTAL, {"hour": hour})
    if hour.astimezone(dt.UTC).hour == 23:
        cursor.execute(_ROLLUP_DAY, {"day": hour.astimezone(dt.UTC).replace(hour=0)})


# Rollups a writer of the code before them left out (its hours rolled up with no total, its days with
# no row: during a deploy, migrated before the old worker stopped). Written by the worker that takes
# the lock; one anti-join over the hours kept (oversight_queuehourtotal_hour_key, oversight_queueday_key).
# A day only once its last minute is recorded, as ``roll_up_hour`` does.
_MISSING_TOTALS = _totals("NOT EXISTS (SELECT 1 FROM oversight_queuehourtotal t WHERE t.hour = h.hour)")
_MISSING_DAYS = _days(
    "EXISTS (SELECT 1 FROM oversight_recordedminute r"
    " WHERE r.minute = date_trunc('day', h.hour, 'UTC') + interval '1 day' - interval '1 minute')"
    " AND NOT EXISTS (SELECT 1 FROM oversight_queueday d WHERE d.day = date_trunc('day', h.hour, 'UTC'))"
)


def roll_up_missing() -> int:
    """Write the hour totals and day rows missing for hours already rolled up; return how many rows it wrote.

    A day is rolled up only once its last minute is recorded (as ``roll_up_hour`` does).
    """
    written = 0
    with transaction.atomic(), connection.cursor() as cursor:
        for sql in (_MISSING_TOTALS, _MISSING_DAYS):
            cursor.execute(sql)
            written += cursor.rowcount
    return written


def floor_minute(at: dt.datetime) -> dt.datetime:
    """Return the start of the minute ``at`` falls in."""
    return at.replace(second=0, microsecond=0)


def record_range(start: dt.datetime, end: dt.datetime, *, writer: str, sampled: dt.datetime | None = None) -> int:
    """Record the minutes from ``start`` up to ``end`` (minute boundaries) that nobody recorded yet.

    ``sampled`` is the one minute (if any) whose end is now, for which the providers are counted.
    Hours whose last minute is among them are rolled up in the same transaction, and so are the UTC
    days whose last hour is (``roll_up_hour``). Return how many minutes this call recorded.
    """
    targets = sla_targets()
    with transaction.atomic(), connection.cursor() as cursor:
        params = {"a": start, "b": end, "writer": writer, "sampled": sampled}
        cursor.execute(_RECEIPTS, params)
        minutes = sorted(row[0] for row in cursor.fetchall())
        if not minutes:
            return 0
        params |= {
            "minutes": minutes, "bands": list(WAIT_BANDS),
            "priorities": list(targets), "seconds": list(targets.values()),
        }  # fmt: skip
        cursor.execute(_INSERT_MINUTES, params)
        for minute in minutes:
            if minute.minute == 59:
                roll_up_hour(cursor, minute.replace(minute=0))
    return len(minutes)


def record_due(*, writer: str, now: dt.datetime | None = None, batch: dt.timedelta = dt.timedelta(hours=6)) -> int:
    """Record the minutes that ended at least the grace period ago and are not recorded yet.

    Starts after the last recorded minute (or ``OPS_STATS_DAYS`` ago on a first run, filling the
    history in from the rows), at most ``batch`` of minutes per call. Return how many it recorded.
    """
    now = now or dbclock.now()
    start, due = _unrecorded(now)
    if start >= due:
        return 0
    end = min(due, start + batch)
    sampled = end - MINUTE if now - end < SAMPLE_WITHIN else None
    return record_range(start, end, writer=writer, sampled=sampled)


def _unrecorded(now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """Return where recording starts (after the last recorded minute, or ``OPS_STATS_DAYS`` ago) and the due end.

    The due end is the end of the last minute that ended at least the grace period ago.
    """
    due = floor_minute(now - dt.timedelta(seconds=settings.OPS_STATS_GRACE_SECONDS))
    oldest = floor_minute(now - dt.timedelta(days=settings.OPS_STATS_DAYS))
    with connection.cursor() as cursor:
        cursor.execute("SELECT max(minute) FROM oversight_recordedminute")
        last = cursor.fetchone()[0]
    return (max(oldest, last + MINUTE) if last else oldest), due


RANKING_LOCK_KEY = 0x0F5E_0002  # the advisory lock of rank_providers (the worker's own is 0x0F5E_0001)
_RANK_PROVIDERS = f"""
INSERT INTO oversight_provideracceptance (period, rank, provider_id, made, accepted, declined, unanswered, providers,
    start, "end", computed_at)
SELECT %(period)s, r.rank, r.id, r.made, r.accepted, r.declined, r.unanswered, r.providers, %(start)s, %(end)s, %(now)s
FROM ({PROVIDER_RANKING_SQL}) r WHERE r.rank <= %(limit)s
"""  # noqa: S608 (constants only)


def rank_providers(*, now: dt.datetime | None = None) -> int:
    """Rank the providers' acceptance over the periods of a day or more as their pages would; return the rows kept.

    The page shows the first ``PROVIDER_ROWS`` of each; it ranks them itself when this ranking is
    missing or stale (``selectors.provider_ranking_fresh_after``). Each period's rows are replaced
    in one transaction: a page reads the old ranking or the new one, never half of each.
    """
    now = now or dbclock.now()
    kept = 0
    with transaction.atomic(), connection.cursor() as cursor:
        # One ranker at a time (the worker and a bulk writer's rebuild): a second one's DELETE would
        # not see the first one's new rows and its INSERT would collide with them on their rank.
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [RANKING_LOCK_KEY])
        for period in PERIODS.values():
            if not period.ranked_by_worker:
                continue
            start, end = window(period, now)
            cursor.execute("DELETE FROM oversight_provideracceptance WHERE period = %s", [period.key])
            cursor.execute(_RANK_PROVIDERS, {
                "period": period.key, "start": start, "end": end, "now": now, "min_decided": MIN_DECIDED_OFFERS,
                "limit": PROVIDER_ROWS,
            })  # fmt: skip
            kept += cursor.rowcount
    return kept


def prune(*, now: dt.datetime | None = None) -> int:
    """Delete history older than ``OPS_STATS_DAYS``; return how many rows went."""
    now = now or dbclock.now()
    cutoff = floor_minute(now - dt.timedelta(days=settings.OPS_STATS_DAYS)).replace(minute=0)
    deleted = 0
    with transaction.atomic(), connection.cursor() as cursor:
        for table, column in _TABLES:
            # The cutoff's day keeps its row (a period starting that day sums the whole day from it).
            before = cutoff.astimezone(dt.UTC).replace(hour=0) if table == "queueday" else cutoff
            cursor.execute(f"DELETE FROM oversight_{table} WHERE {column} < %s", [before])  # noqa: S608
            deleted += cursor.rowcount
    return deleted


def rebuild(
    *,
    writer: str,
    since: dt.datetime | None = None,
    now: dt.datetime | None = None,
    share: Callable[[list, Callable], None] | None = None,
) -> int:
    """Forget the history from ``since`` (default: all of it) and record it again from the rows; rank the providers.

    For bulk writers that put rows into minutes already recorded (``generate_data``'s past
    visits); the worker never needs it. Return how many minutes were recorded.

    Each past UTC day is recorded in a transaction of its own, its hours and the day rolled up
    there: no day reads another's rows, so ``share(days, record)`` may record them in any order
    and on several connections at once (by default one after the other, on this one). The
    minutes after the last midnight that is due follow, as the worker records them.
    """
    with transaction.atomic(), connection.cursor() as cursor:
        start = floor_minute(since).replace(minute=0) if since else dt.datetime.min.replace(tzinfo=dt.UTC)
        for table, column in _TABLES:
            # A day's row goes with any of its hours (rolled up again from all of them after its last).
            at = start.astimezone(dt.UTC).replace(hour=0) if table == "queueday" and since else start
            cursor.execute(f"DELETE FROM oversight_{table} WHERE {column} >= %s", [at])  # noqa: S608
    recorded, lock = [0], threading.Lock()

    def record(day: tuple[dt.datetime, dt.datetime]) -> None:
        minutes = record_range(*day, writer=writer)
        with lock:
            recorded[0] += minutes

    days = _days_due(now=now)
    if share is None:
        for day in days:
            record(day)
    else:
        share(days, record)
    while minutes := record_due(writer=writer, now=now, batch=dt.timedelta(days=1)):
        recorded[0] += minutes
    rank_providers(now=now)  # the offers counted over the long periods changed too
    return recorded[0]


def _days_due(*, now: dt.datetime | None = None) -> list[tuple[dt.datetime, dt.datetime]]:
    """Return the (start, end) of each UTC day not recorded yet that ends before the last due minute does.

    The first starts where ``record_due`` would (``_unrecorded``), so it may be part of a day.
    """
    start, due = _unrecorded(now or dbclock.now())
    days, midnight = [], start.astimezone(dt.UTC).replace(hour=0, minute=0) + dt.timedelta(days=1)
    while midnight <= due:
        days.append((start, midnight))
        start, midnight = midnight, midnight + dt.timedelta(days=1)
    return days
