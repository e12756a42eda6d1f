"""The statistics on the live queues page: a period's history, per bucket, priority, state and provider."""

import bisect
import dataclasses
import datetime as dt
import random
import re

import pytest
from django.db import connection, transaction
from django.urls import reverse

from clinical.models import Offer, Priority
from core import dbclock
from core.models import AccessLog
from oversight import history, selectors
from oversight.models import WAIT_BANDS, QueueDay, QueueHour, QueueHourTotal, QueueMinute, RecordedMinute, no_waits
from oversight.selectors import PERIODS, period_statistics, wait_quantile
from tests.builders import make_provider, make_visit

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 12, 10, 12, 30, 20, tzinfo=dt.UTC)  # a fixed time for the selector's own tests
HOUR = dt.timedelta(hours=1)
URGENT, ROUTINE = Priority.URGENT, Priority.ROUTINE


def at(hours: float = 0, minutes: float = 0) -> dt.datetime:
    """Return a time ``hours`` and ``minutes`` after today's 12:00 (``NOW`` is 12:30:20)."""
    return NOW.replace(minute=0, second=0) + dt.timedelta(hours=hours, minutes=minutes)


def counts(waits=(), *, within=0, **values) -> dict:
    """Return a history row's counts with the waits of those who left (their sum, maximum and bands)."""
    hist = no_waits()
    for wait in waits:
        hist[bisect.bisect_right(WAIT_BANDS, wait)] += 1
    return {"left": len(waits), "within_sla": within, "wait_sum_s": sum(waits),
            "wait_max_s": max(waits, default=0), "wait_hist": hist, **values}  # fmt: skip


def minute(t, state="CA", priority=ROUTINE, waits=(), **values) -> QueueMinute:
    return QueueMinute.objects.create(minute=t, state=state, priority=priority, **counts(waits, **values))


def hour(t, state="CA", priority=ROUTINE, waits=(), **values) -> QueueHour:
    """Write an hour's row of one queue and that hour's total (and its day's, after 23:00 UTC) as the writer would."""
    row = QueueHour.objects.create(hour=t, state=state, priority=priority, **counts(waits, **values))
    QueueHourTotal.objects.filter(hour=t).delete()
    if t.hour == 23:  # rolled up again with this hour
        QueueDay.objects.filter(day=t.replace(hour=0)).delete()
    with connection.cursor() as cursor:
        history.roll_up_hour(cursor, t)
    return row


def record(start: dt.datetime, end: dt.datetime) -> None:
    """Write the receipts of the minutes from ``start`` up to ``end``."""
    count = int((end - start) / dt.timedelta(minutes=1))
    RecordedMinute.objects.bulk_create(
        RecordedMinute(minute=start + dt.timedelta(minutes=i), recorded_at=end, writer="test", sampled=True)
        for i in range(count)
    )


def live(*states, at_time=NOW) -> dict:
    """Return live numbers as ``clinical.selectors.live_queues`` does: ``(state, waiting, longest s, available)``."""
    rows = [{"state": s, "waiting": w, "longest_wait_s": longest, "available": a, "offers": 0}
            for s, w, longest, a in states]  # fmt: skip
    return {"at": at_time.isoformat(), "states": rows}


@pytest.fixture
def day_of_history():
    """Hours 10:00 and 11:00 rolled up; the minutes of 11:00 (already in their hour) and of 12:00 after."""
    record(at(-25), at(minutes=30))
    hour(at(-2), waits=(20, 50, 70, 700), within=3, requested=5, waiting_sum=120, waiting_max=3)
    hour(at(-2), state="TX", priority=URGENT, waits=(100,), within=1, waiting_sum=60, waiting_max=2)
    hour(at(-1), waits=(40, 80), within=2, requested=2, offers_made=4, offers_accepted=2, offers_declined=1,
         offers_expired=1)  # fmt: skip
    minute(at(-1, 10), waits=(40,), within=1)  # counted in the 11:00 hour already
    minute(at(0, 5), waits=(100,), within=1, waiting=3, requested=1)
    minute(at(0, 5), state="TX", priority=URGENT, waiting=2, longest_wait_s=90)
    minute(at(0, 6), waiting=1)
    minute(at(0, 20), state="TX", priority=URGENT, waits=(300,), within=0)


def test_it_estimates_percentiles_from_the_wait_bands():
    in_one_band = no_waits()
    in_one_band[4] = 10  # ten waits in [60 s, 90 s)
    assert wait_quantile(in_one_band, 0.5, max_wait_s=89) == 75.0  # 60 + 5/10 of 30
    assert wait_quantile(in_one_band, 0.9, max_wait_s=89) == 87.0
    quick = no_waits()
    quick[0] = 4
    assert wait_quantile(quick, 0.9, max_wait_s=5) == 5.0  # never past the longest wait seen
    open_ended = no_waits()
    open_ended[0], open_ended[-1] = 1, 1
    assert wait_quantile(open_ended, 0.9, max_wait_s=5400) == 5040.0  # 3600 + 0.8 of (5400 - 3600)
    assert wait_quantile(no_waits(), 0.5, max_wait_s=0) is None


def test_it_reads_the_rolled_up_hours_and_the_minutes_after_them_counting_each_once(day_of_history):
    stats = period_statistics(PERIODS["24h"], live=live())
    assert (stats.start, stats.end) == (at(-24), at(minutes=30))
    assert stats.recorded_minutes == 24 * 60 + 30
    # 10:00 (4 + 1), 11:00 (2; its 11:10 minute not again), 12:05 (1) and 12:20 (1).
    assert (stats.total.left, stats.total.within_sla, stats.total.requested) == (9, 7, 8)
    assert stats.total.attainment_pct == 77.8
    assert stats.total.acceptance_pct == 50.0  # 2 accepted of 4 decided
    assert stats.total.wait_max_s == 700


def test_it_reads_the_minutes_of_an_hour_not_yet_rolled_up(day_of_history):
    QueueHour.objects.filter(hour=at(-1)).delete()
    QueueHourTotal.objects.filter(hour=at(-1)).delete()
    stats = period_statistics(PERIODS["24h"], live=live())
    assert stats.total.left == 5 + 1 + 2  # 10:00, 11:10 from its minute, 12:00's two


def test_it_reads_the_hour_period_from_minutes_alone(day_of_history):
    stats = period_statistics(PERIODS["1h"], live=live())
    assert (stats.start, stats.end, stats.recorded_minutes) == (at(-1, 30), at(0, 30), 60)
    assert stats.total.left == 2 and stats.total.wait_sum_s == 400
    bucket = next(b for b in stats.buckets if b.start == at(0, 5))
    assert (bucket.recorded_minutes, bucket.depth_avg, bucket.depth_max) == (5, 1.2, 5)  # (3 + 2 + 1) / 5 minutes
    empty = next(b for b in stats.buckets if b.start == at(0, 10))
    assert (empty.depth_avg, empty.depth_max, empty.tally.p50_wait_s) == (0, 0, None)


def test_it_averages_depth_over_recorded_minutes_and_bounds_the_hourly_peak(day_of_history):
    stats = period_statistics(PERIODS["24h"], live=live())
    ten = next(b for b in stats.buckets if b.start == at(-2))
    assert (ten.depth_avg, ten.depth_max) == (3.0, 5)  # (120 + 60) / 60; the two queues' peaks added up
    assert stats.peaks_from_hours
    assert ten.tally.p50_wait_s == 75.0  # five waits, 20 50 70 100 700: rank 2.5 is half into [60, 90)


def _random_history(rng: random.Random, since: dt.datetime, now: dt.datetime) -> None:
    """Write random hours of three states at two priorities from ``since`` up to ``now``'s hour, rolled up as the
    writer does (each hour's total; each UTC day after its last hour), then random minutes up to ``now``."""
    top = now.replace(minute=0, second=0)
    record(since, now.replace(second=0))
    queues = [(state, priority) for state in ("CA", "TX", "NY") for priority in (ROUTINE, URGENT)]

    def values() -> dict:
        return {
            "requested": rng.randint(0, 9), "left": rng.randint(0, 9), "within_sla": rng.randint(0, 5),
            "wait_sum_s": rng.randint(0, 900), "wait_max_s": rng.randint(0, 900), "offers_made": rng.randint(0, 9),
            "offers_accepted": rng.randint(0, 3), "longest_wait_s": rng.randint(0, 999),
            "wait_hist": [rng.randint(0, 3) for _ in range(len(WAIT_BANDS) + 1)],
        }  # fmt: skip

    rows = []
    for hours in range(int((top - since) / HOUR)):
        for state, priority in rng.sample(queues, rng.randint(0, len(queues))):
            peak = rng.randint(0, 6)
            rows.append(QueueHour(hour=since + hours * HOUR, state=state, priority=priority, waiting_max=peak,
                                  waiting_sum=peak * rng.randint(0, 60), **values()))  # fmt: skip
    QueueHour.objects.bulk_create(rows)
    with connection.cursor() as cursor:
        for hours in range(int((top - since) / HOUR)):
            history.roll_up_hour(cursor, since + hours * HOUR)
    for minutes in range(int((now - top).total_seconds() // 60)):
        for state, priority in rng.sample(queues, 2):
            QueueMinute.objects.create(minute=top + dt.timedelta(minutes=minutes), state=state, priority=priority,
                                       waiting=rng.randint(0, 4), **values())  # fmt: skip


def _tallies(stats) -> dict:
    """Return every table line's tally of ``stats`` but its sum of peaks (a bound: by hours, or by days)."""
    lines = [("total", stats.total)] + [(r.key, r.tally) for r in stats.priorities + stats.states]
    return {key: dataclasses.replace(tally, total_peak=0) for key, tally in lines}


def _expected_bucket(start: dt.datetime, end: dt.datetime, rolled: dt.datetime) -> tuple:
    """Return a chart bucket's numbers from the hour rows in it up to ``rolled``, then its minute rows."""
    hours = list(QueueHour.objects.filter(hour__gte=start, hour__lt=min(end, rolled)))
    minutes = list(QueueMinute.objects.filter(minute__gte=max(start, rolled), minute__lt=end))
    rows = hours + minutes
    # The most waiting at once in all queues: each hour's queue peaks added up, each minute's waiting added up.
    peaks = [sum(r.waiting_max for r in hours if r.hour == t) for t in {r.hour for r in hours}]
    peaks += [sum(r.waiting for r in minutes if r.minute == t) for t in {r.minute for r in minutes}]
    waiting = sum(r.waiting_sum for r in hours) + sum(r.waiting for r in minutes)
    bands = [sum(r.wait_hist[band] for r in rows) for band in range(len(WAIT_BANDS) + 1)]
    return sum(r.requested for r in rows), waiting, max(peaks, default=0), bands


@pytest.mark.parametrize(
    "now",
    [
        NOW,  # mid-day: whole days in each period with hours either side, and minutes after
        dt.datetime(2026, 12, 10, 0, 0, 20, tzinfo=dt.UTC),  # just after midnight: the day before just rolled up
        dt.datetime(2026, 12, 9, 23, 59, 50, tzinfo=dt.UTC),  # that day's last hour not rolled up: its minutes
        dt.datetime(2026, 12, 8, 1, 10, tzinfo=dt.UTC),
    ],
)
def test_it_sums_whole_days_from_their_rollup_as_their_hours_add_up(now):
    _random_history(random.Random(now.toordinal()), NOW - dt.timedelta(days=9, hours=7), now)
    rolled = now.replace(minute=0, second=0)
    assert QueueDay.objects.filter(day__lte=rolled - dt.timedelta(days=1)).exists()
    assert not QueueDay.objects.filter(day__gt=rolled - dt.timedelta(days=1)).exists()  # only whole days rolled up
    for period in ("24h", "7d", "30d"):
        from_days = period_statistics(PERIODS[period], live=live(at_time=now))
        with transaction.atomic():
            QueueDay.objects.all().delete()  # the tables then sum every hour (the charts read the hour totals)
            from_hours = period_statistics(PERIODS[period], live=live(at_time=now))
            transaction.set_rollback(True)
        assert from_days.total.requested > 0
        assert _tallies(from_days) == _tallies(from_hours), period
        for bucket in from_days.buckets:
            got = bucket.tally
            expected = _expected_bucket(bucket.start, bucket.start + PERIODS[period].bucket, rolled)
            assert (got.requested, got.waiting_sum, got.total_peak, got.wait_hist) == expected, (period, bucket.start)


def test_it_shows_no_bucket_as_zero_before_anything_was_recorded():
    stats = period_statistics(PERIODS["7d"], live=live())
    assert stats.recorded_minutes == 0 and stats.total.left == 0
    assert {b.depth_avg for b in stats.buckets} == {None}
    assert (stats.start, len(stats.buckets)) == (at(-7 * 24), 7 * 4 + 1)  # from 12:00 seven days ago, per 6 h


def test_it_sorts_the_states_by_what_needs_attention(settings):
    settings.ROUTING_SLA_URGENT, settings.ROUTING_SLA_ROUTINE = 120, 1800
    record(at(0), at(minutes=30))
    minute(at(0, 1), state="TX", priority=URGENT, waits=(600,), within=0)  # 5x its target
    minute(at(0, 2), state="CA", waits=(60, 60), within=1)  # 50 %
    minute(at(0, 3), state="NY", waits=(60, 60), within=2)  # 100 %
    minute(at(0, 4), state="WA", waits=(60,), within=0, longest_wait_s=2400)  # one waited past 1800 s
    now = live(("NV", 2, 30, 0), ("FL", 0, 0, 3), ("OR", 1, 3600, 2))  # OR's longest now: 2x the longest target
    states = period_statistics(PERIODS["1h"], live=now).states
    assert [row.key for row in states] == ["NV", "TX", "OR", "WA", "CA", "NY", "FL"]
    assert states[0].no_provider and not states[2].no_provider
    assert states[1].wait_vs_target == 5.0 and states[2].wait_vs_target == 2.0


def test_it_sorts_the_priorities_by_sla_attainment_and_counts_every_wait(settings):
    settings.ROUTING_SLA_URGENT, settings.ROUTING_SLA_ELEVATED = 120, 600
    record(at(0), at(minutes=30))
    minute(at(0, 1), priority=URGENT, waits=(60, 200, 300), within=1, cancelled=1, expired=1)
    minute(at(0, 2), priority=Priority.ELEVATED, waits=(60,), within=1)
    priorities = period_statistics(PERIODS["1h"], live=live()).priorities
    assert [row.key for row in priorities] == ["Urgent", "Elevated", "Routine"]
    urgent = priorities[0]
    assert (urgent.target_s, urgent.tally.left, urgent.tally.within_sla) == (120, 3, 1)
    assert (urgent.tally.attainment_pct, urgent.wait_vs_target) == (33.3, 2.5)


def _offers(provider, visit, when, **outcomes) -> None:
    for outcome, n in outcomes.items():
        for _ in range(n):
            Offer.objects.create(
                visit=visit, provider=provider, offered_at=when, expires_at=when + dt.timedelta(seconds=30),
                outcome=outcome, decided_at=when + dt.timedelta(seconds=10),
            )  # fmt: skip


def test_it_ranks_providers_by_acceptance_then_unanswered_offers():
    now = dbclock.now()
    visit = make_visit()
    recent, old = now - dt.timedelta(minutes=20), now - dt.timedelta(days=2)
    names = ("Declines", "Accepts", "Ignores", "Mixed", "New")
    a, b, c, d, e = (make_provider(states=("CA",), last_name=name) for name in names)
    _offers(a, visit, recent, accepted=2, declined=8)
    _offers(b, visit, recent, accepted=6)
    _offers(c, visit, recent, expired=3)  # too few to rank by rate
    _offers(d, visit, recent, accepted=1, declined=1, expired=3, withdrawn=1)  # 20 % too, more unanswered
    _offers(e, visit, recent, accepted=2)
    _offers(b, visit, old, declined=20)  # before the hour
    stats = period_statistics(PERIODS["1h"], live=live(at_time=now))
    assert [row["name"].split()[-1] for row in stats.providers] == ["Mixed", "Declines", "Accepts", "Ignores", "New"]
    mixed = stats.providers[0]
    assert (mixed["made"], mixed["acceptance_pct"], mixed["unanswered"], mixed["open_or_withdrawn"]) == (6, 20.0, 3, 1)
    assert mixed["npi"] == d.npi and stats.providers_with_offers == 5
    assert period_statistics(PERIODS["7d"], live=live(at_time=now)).providers[2]["made"] == 26


def test_it_reads_each_period_from_the_history_keys_and_the_offers_by_time():
    start, end = selectors.window(PERIODS["30d"], NOW)
    params = {
        "start": start,
        "end": end,
        "hourly": True,
        "bucket": PERIODS["30d"].bucket,
        "min_decided": 5,
        "limit": 25,
        "period": "30d",
        "fresh_after": NOW - dt.timedelta(minutes=11),
    }
    plans = []
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        for sql in (selectors._HISTORY_SQL, selectors._PROVIDERS_SQL):
            cursor.execute("EXPLAIN " + sql, params)
            plans.append("\n".join(row[0] for row in cursor.fetchall()))
        cursor.execute("RESET enable_seqscan")
    for key in ("queuehourtotal_hour_key", "queueday_key", "queuehour_key", "queueminute_key"):
        assert f"oversight_{key}" in plans[0], key
    # The worker's ranking by its key; the page's own ranking, when that one is stale, by the offers' time.
    assert "oversight_provideracceptance_key" in plans[1] and "clinical_offer_offered_idx" in plans[1]


def _page(client, period=None):
    return client.get(reverse("ops:live_queues"), {"period": period} if period else {})


def _recent_history(now: dt.datetime) -> None:
    """Write history for the hour before ``now``: rolled-up hours and minutes, away from any period's edge."""
    end = now.replace(second=0, microsecond=0)
    record(end - dt.timedelta(hours=3), end)
    top = end.replace(minute=0)
    hour(top - 2 * HOUR, waits=(50, 70), within=2, requested=2, waiting_sum=60, waiting_max=1)
    minute(end - dt.timedelta(minutes=40), waits=(100, 700), within=1, requested=2, waiting=2)


@pytest.mark.parametrize("period, left", [("1h", 2), ("24h", 4), ("7d", 4), ("30d", 4)])
def test_it_renders_each_period_with_its_numbers(client, support_agent, period, left):
    _recent_history(dbclock.now())
    client.force_login(support_agent)
    html = _page(client, period).content.decode()
    assert f'data-stat="left">{left}<' in html
    assert f'<strong aria-current="page">{PERIODS[period].label}</strong>' in html
    assert "Waits count <strong>every</strong> visit that left the queue (accepted, cancelled or expired)" in html
    assert "≈ p90" in html and "estimated from wait bands" in html
    assert html.count('<svg class="ops-stat-chart"') == 2


def test_it_renders_the_hour_by_default_and_refuses_an_unknown_period(client, support_agent):
    client.force_login(support_agent)
    assert '<strong aria-current="page">1 hour</strong>' in _page(client).content.decode()
    refused = _page(client, "<b>2y")
    assert refused.status_code == 400
    assert refused.content.decode() == "period: choose one of 1h, 24h, 7d, 30d."


def test_it_draws_the_charts_with_a_title_a_legend_and_labelled_axes(client, support_agent):
    _recent_history(dbclock.now())
    client.force_login(support_agent)
    html = _page(client, "24h").content.decode()
    charts = re.findall(r'<svg class="ops-stat-chart".*?</svg>', html, flags=re.S)
    depth, waits = charts
    assert "<title>Queue depth, all states and priorities, per 1 h</title>" in depth
    assert ">Patients waiting</text>" in depth and ">Time (UTC)</text>" in depth
    assert ">Average waiting</text>" in depth and ">Peak waiting (upper bound)</text>" in depth
    assert ">≈ median wait</text>" in waits and ">≈ p90 wait</text>" in waits and ">Wait</text>" in waits
    assert re.search(r">\w{3} \d\d:00</text>", waits)  # a time on the time axis
    assert "style=" not in html and "<script>" not in html  # the page's CSP allows neither


def test_it_answers_every_period_with_the_same_few_queries(client, lead, django_assert_num_queries):
    client.force_login(lead)
    _page(client)  # the session's first request may touch more
    # Session, user, permissions (2), the live numbers (the clock, 4 statements), the statistics (3).
    for period in PERIODS:
        with django_assert_num_queries(12):
            assert _page(client, period).status_code == 200
    _recent_history(dbclock.now())
    _offers(make_provider(), make_visit(), dbclock.now() - dt.timedelta(minutes=5), accepted=2, declined=1)
    for period in PERIODS:
        with django_assert_num_queries(12):
            assert _page(client, period).status_code == 200


def test_it_shows_the_statistics_to_a_support_agent_not_to_an_outsider(client, support_agent, outsider):
    client.force_login(support_agent)
    assert _page(client, "7d").status_code == 200
    client.force_login(outsider)
    assert _page(client, "7d").status_code == 403


def test_it_records_nothing_in_the_access_log(client, lead):
    _recent_history(dbclock.now())
    _offers(make_provider(last_name="Shown"), make_visit(), dbclock.now() - dt.timedelta(minutes=5), accepted=1)
    client.force_login(lead)
    html = _page(client, "24h").content.decode()
    assert "Shown" in html  # provider names are not patient data
    assert not AccessLog.objects.exists()


def test_it_says_when_nothing_was_recorded_yet(client, support_agent):
    client.force_login(support_agent)
    html = _page(client, "30d").content.decode()
    assert "recorded for 0 of" in html and "nothing recorded yet for this period" in html
    assert "Nothing recorded in this period." in html and "No offers were made in this period." in html


def test_it_offers_every_period_as_a_link(client, support_agent):
    client.force_login(support_agent)
    html = _page(client, "24h").content.decode()
    for key in ("1h", "7d", "30d"):
        assert f'href="?period={key}#statistics"' in html
    assert selectors.DEFAULT_PERIOD == "1h"


def _providers_offered(now: dt.datetime) -> None:
    visit = make_visit()
    recent = now - dt.timedelta(days=2)
    for name, outcomes in (("Declines", {"accepted": 2, "declined": 8}), ("Accepts", {"accepted": 6}),
                           ("Ignores", {"expired": 3})):  # fmt: skip
        _offers(make_provider(states=("CA",), last_name=name), visit, recent, **outcomes)


def _names(stats) -> list[str]:
    return [row["name"].split()[-1] for row in stats.providers]


def test_it_reads_the_long_periods_provider_ranking_the_worker_made_as_the_page_would_make_it():
    now = dbclock.now()
    _providers_offered(now)
    ranked_here = period_statistics(PERIODS["7d"], live=live(at_time=now))
    assert ranked_here.providers_as_of is None
    assert history.rank_providers(now=now) == 6  # three providers in 7 d and in 30 d (none in 24 h: 2 days ago)
    from_worker = period_statistics(PERIODS["7d"], live=live(at_time=now))
    assert from_worker.providers_as_of == now
    assert from_worker.providers == ranked_here.providers and from_worker.providers_with_offers == 3
    assert _names(from_worker) == ["Declines", "Accepts", "Ignores"]
    # The hour always ranks for itself (an hour's offers are few).
    assert period_statistics(PERIODS["1h"], live=live(at_time=now)).providers_as_of is None


def test_it_ranks_the_providers_itself_when_the_workers_ranking_is_stale(settings):
    settings.OPS_STATS_PROVIDERS_SECONDS = 300
    now = dbclock.now()
    _providers_offered(now)
    history.rank_providers(now=now - dt.timedelta(seconds=2 * 300 + 61))  # two rounds missed
    _offers(make_provider(last_name="Later"), make_visit(), now - dt.timedelta(hours=1), declined=6)
    stats = period_statistics(PERIODS["30d"], live=live(at_time=now))
    assert stats.providers_as_of is None and _names(stats) == ["Later", "Declines", "Accepts", "Ignores"]
    history.rank_providers(now=now)
    assert _names(period_statistics(PERIODS["30d"], live=live(at_time=now)))[0] == "Later"


def test_it_says_when_the_worker_ranked_the_providers(client, support_agent, settings):
    settings.OPS_STATS_PROVIDERS_SECONDS = 300
    _providers_offered(dbclock.now())
    history.rank_providers()
    client.force_login(support_agent)
    html = _page(client, "30d").content.decode()
    assert "Ranked by the oversight worker at" in html and "(every 5 minutes)" in html
    assert "Ranked by the oversight worker" not in _page(client, "1h").content.decode()
