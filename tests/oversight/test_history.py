"""Queue history: each minute recorded once from the rows, agreeing with a recount, across a failover."""

import datetime as dt
import importlib
import random
import threading

import pytest
from django.core.management import call_command
from django.db import connection

from clinical.models import Offer, Visit, VisitStatus
from core import dbclock
from oversight import history, recompute
from oversight.models import ProviderAcceptance, QueueDay, QueueHour, QueueHourTotal, QueueMinute, RecordedMinute
from oversight.worker import OversightWorker
from tests.builders import make_patient, make_provider

pytestmark = pytest.mark.django_db
T0 = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)  # a fixed past hour: nothing else of the test is there


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def visit(
    patient, *, state="CA", priority=0, status, requested, accepted=None, cancelled=None, ended=None, provider=None
):
    return Visit.objects.create(
        patient=patient, located_state=state, priority=priority, status=status, requested_at=requested,
        accepted_at=accepted, cancelled_at=cancelled, ended_at=ended, provider=provider,
        offered_at=accepted and accepted - dt.timedelta(seconds=5), started_at=accepted, reason="Cough",
    )  # fmt: skip


def offer(v, provider, *, offered, outcome, decided):
    return Offer.objects.create(
        visit=v, provider=provider, offered_at=offered, expires_at=offered + dt.timedelta(seconds=30),
        outcome=outcome, decided_at=decided,
    )  # fmt: skip


def row(minute: float, state="CA", priority=0) -> QueueMinute:
    return QueueMinute.objects.get(minute=at(minute), state=state, priority=priority)


def test_it_records_each_minute_from_the_rows():
    provider = make_provider(states=("CA",))
    patient = make_patient()
    # Requested 09:00:30, offered and declined, offered again and accepted at 09:02:10 (a 100 s wait).
    accepted = visit(patient, status=VisitStatus.COMPLETED, requested=at(0.5), accepted=at(2 + 1 / 6),
                     ended=at(20), provider=provider)  # fmt: skip
    offer(accepted, provider, offered=at(1), outcome="declined", decided=at(1.2))
    offer(accepted, provider, offered=at(2), outcome="accepted", decided=at(2 + 1 / 6))
    # An urgent visit cancelled at 09:03:30 after a 3 min wait (past no target; not accepted, so it missed it).
    visit(make_patient(), priority=2, status=VisitStatus.CANCELLED, requested=at(0.5), cancelled=at(3.5))

    assert history.record_range(at(0), at(5), writer="test") == 5

    first = row(0)
    assert (first.requested, first.waiting, first.longest_wait_s) == (1, 1, 30)
    assert (row(1).offers_made, row(1).offers_declined, row(1).waiting, row(1).longest_wait_s) == (1, 1, 1, 90)
    leaving = row(2)
    assert (leaving.offers_made, leaving.offers_accepted, leaving.left, leaving.within_sla) == (1, 1, 1, 1)
    assert leaving.waiting == 0 and leaving.wait_sum_s == pytest.approx(100)
    assert leaving.wait_hist[5] == 1  # 100 s: the band 90-120 s
    urgent = row(3, priority=2)
    assert (urgent.cancelled, urgent.left, urgent.within_sla, urgent.wait_hist[7]) == (1, 1, 0, 1)  # 180 s: 180-240
    assert [row(m, priority=2).waiting for m in range(3)] == [1, 1, 1]
    assert not QueueMinute.objects.filter(minute=at(4)).exists()  # nothing happened, nobody waited
    assert RecordedMinute.objects.filter(minute__gte=at(0), minute__lt=at(5)).count() == 5


def test_it_never_records_a_minute_twice():
    visit(make_patient(), status=VisitStatus.CANCELLED, requested=at(1), cancelled=at(2))
    assert history.record_range(at(0), at(3), writer="a") == 3
    assert history.record_range(at(0), at(6), writer="b") == 3  # only 09:03-09:05 were new
    assert history.record_range(at(0), at(6), writer="c") == 0
    assert sum(QueueMinute.objects.values_list("requested", flat=True)) == 1
    assert set(RecordedMinute.objects.values_list("writer", flat=True)) == {"a", "b"}


def _generated(rng: random.Random, count: int, *, after: float = 0) -> None:
    """Visits and offers with random times over two hours (from ``after`` minutes past 09:00), in every final and
    open status."""
    providers = [make_provider(states=("CA", "TX")) for _ in range(3)]
    for n in range(count):
        patient = make_patient()
        requested = at(after + rng.uniform(-20, 110))
        wait = dt.timedelta(seconds=rng.choice([5, 20, 50, 100, 400, 1000, 2000, 4000]) * rng.uniform(0.8, 1.2))
        state, priority = rng.choice(["CA", "TX"]), rng.choice([0, 0, 1, 2])
        kind = rng.random()
        provider = providers[n % 3]
        if kind < 0.6:
            v = visit(patient, state=state, priority=priority, status=VisitStatus.COMPLETED, requested=requested,
                      accepted=requested + wait, ended=requested + wait * 3, provider=provider)  # fmt: skip
            if rng.random() < 0.4:
                offer(v, provider, offered=requested + wait / 3, outcome="expired", decided=requested + wait / 2)
            offer(v, provider, offered=requested + wait * 0.9, outcome="accepted", decided=requested + wait)
        elif kind < 0.8:
            visit(patient, state=state, priority=priority, status=VisitStatus.CANCELLED, requested=requested,
                  cancelled=requested + wait)  # fmt: skip
        elif kind < 0.9:
            visit(patient, state=state, priority=priority, status=VisitStatus.EXPIRED, requested=requested,
                  ended=requested + dt.timedelta(minutes=30))  # fmt: skip
        else:
            visit(patient, state=state, priority=priority, status=VisitStatus.WAITING, requested=requested)


def test_it_agrees_with_a_recount_from_the_rows_on_generated_data():
    _generated(random.Random(16), 150)
    for start in range(0, 120, 17):  # in uneven batches, as a writer catching up would
        history.record_range(at(start), at(min(start + 17, 120)), writer="test")

    for start, end in ((at(0), at(120)), (at(13), at(77))):
        for measure in recompute.compare(recompute.from_rows(start, end), recompute.stored(start, end)):
            assert measure["relative_diff"] == pytest.approx(0, abs=1e-9), measure
            assert measure["cells_differing"] == 0, measure
    hours = recompute.compare(recompute.from_rows(at(0), at(120)), recompute.stored(at(0), at(120), rows="hours"))
    assert all(m["relative_diff"] == pytest.approx(0, abs=1e-9) for m in hours), hours
    assert QueueHour.objects.filter(hour__in=[at(0), at(60)]).exists()
    assert recompute.unrecorded_minutes(at(0), at(120)) == 0


def test_it_rolls_each_utc_day_up_after_its_last_hour_agreeing_with_a_recount(settings):
    midnight = dt.datetime(2026, 11, 21, tzinfo=dt.UTC)
    before = (midnight - T0) / dt.timedelta(minutes=1) - 60  # minutes from 09:00 to 23:00 the day before
    _generated(random.Random(21), 120, after=before)
    start, end = midnight - dt.timedelta(hours=2), midnight + dt.timedelta(hours=2)
    for batch in range(0, 240, 37):  # in uneven batches, as a writer catching up would
        history.record_range(start + dt.timedelta(minutes=batch), min(end, start + dt.timedelta(minutes=batch + 37)),
                             writer="test")  # fmt: skip

    day = midnight - dt.timedelta(days=1)
    assert set(QueueDay.objects.values_list("day", flat=True)) == {day}  # the 21st is not over
    expected = recompute.from_rows(day, midnight)
    for measure in recompute.compare(expected, recompute.stored(day, midnight, rows="days")):
        assert measure["relative_diff"] == pytest.approx(0, abs=1e-9) and measure["cells_differing"] == 0, measure
    by_hour = recompute.all_queues(recompute.from_rows(start, end))
    assert QueueHourTotal.objects.count() == QueueHour.objects.values("hour").distinct().count() > 2
    for measure in recompute.compare(by_hour, recompute.stored(start, end, rows="hour totals")):
        assert measure["relative_diff"] == pytest.approx(0, abs=1e-9), measure

    # Pruned with the cutoff at 23:00: the hours before it go, the day keeps its row (periods from that day read it).
    settings.OPS_STATS_DAYS = 1
    history.prune(now=midnight + dt.timedelta(hours=23))
    assert not QueueHour.objects.filter(hour__lt=midnight - dt.timedelta(hours=1)).exists()
    assert not QueueHourTotal.objects.filter(hour__lt=midnight - dt.timedelta(hours=1)).exists()
    kept = {row.pk: row.requested for row in QueueDay.objects.all()}
    assert kept and sum(kept.values()) == sum(c["requested"] for c in expected.cells.values())


def test_it_rebuilds_a_day_rolled_up_from_a_time_inside_it():
    midnight = dt.datetime(2026, 11, 21, tzinfo=dt.UTC)
    day = midnight - dt.timedelta(days=1)
    _generated(random.Random(22), 60, after=(midnight - T0) / dt.timedelta(minutes=1) - 60)
    history.record_range(midnight - dt.timedelta(hours=3), midnight + dt.timedelta(minutes=30), writer="test")
    requested = sum(QueueDay.objects.filter(day=day).values_list("requested", flat=True))
    # A bulk writer adds a visit at 23:40 and rebuilds from 23:30: the day is rolled up again from all its hours.
    visit(make_patient(), status=VisitStatus.CANCELLED, requested=midnight - dt.timedelta(minutes=20),
          cancelled=midnight - dt.timedelta(minutes=15))  # fmt: skip
    history.rebuild(writer="bulk", since=midnight - dt.timedelta(minutes=30), now=midnight + dt.timedelta(minutes=31))
    assert sum(QueueDay.objects.filter(day=day).values_list("requested", flat=True)) == requested + 1
    for measure in recompute.compare(recompute.from_rows(day, midnight), recompute.stored(day, midnight, rows="days")):
        assert measure["relative_diff"] == pytest.approx(0, abs=1e-9) and measure["cells_differing"] == 0, measure
    assert set(RecordedMinute.objects.filter(minute__gte=midnight - dt.timedelta(hours=1)).values_list(
        "writer", flat=True)) == {"bulk"}  # fmt: skip


def test_it_rebuilds_day_by_day_in_any_order_agreeing_with_a_recount(settings):
    midnight = dt.datetime(2026, 11, 21, tzinfo=dt.UTC)
    _generated(random.Random(23), 120, after=(midnight - T0) / dt.timedelta(minutes=1) - 60)  # 23:00 to 00:50
    settings.OPS_STATS_DAYS = 2
    now = midnight + dt.timedelta(hours=1, minutes=10, seconds=30)
    shared = []

    def backwards(days, record):  # as a writer on other connections may finish them: the last day first
        shared.extend(days)
        for day in reversed(days):
            record(day)

    recorded = history.rebuild(writer="bulk", now=now, share=backwards)

    oldest, due = now.replace(second=0) - dt.timedelta(days=2), now.replace(second=0)
    assert [day for _, day in shared] == [midnight - dt.timedelta(days=1), midnight]  # a part of a day, then a day
    assert shared[0][0] == oldest and recorded == 2 * 24 * 60 == (due - oldest) / dt.timedelta(minutes=1)
    assert recompute.unrecorded_minutes(oldest, due) == 0
    day = midnight - dt.timedelta(days=1)
    for start, end, rows in ((oldest, due, "minutes"), (midnight - dt.timedelta(hours=1), midnight, "hours"),
                             (day, midnight, "days")):  # fmt: skip
        for measure in recompute.compare(recompute.from_rows(start, end), recompute.stored(start, end, rows=rows)):
            assert measure["relative_diff"] == pytest.approx(0, abs=1e-9), (rows, measure)
    assert QueueDay.objects.filter(day=day).exists() and not QueueDay.objects.filter(day=midnight).exists()


def test_it_backfills_the_rollups_of_history_recorded_before_them_as_the_writer_rolls_them_up():
    midnight = dt.datetime(2026, 11, 21, tzinfo=dt.UTC)
    _generated(random.Random(23), 60, after=(midnight - T0) / dt.timedelta(minutes=1) - 60)
    history.record_range(midnight - dt.timedelta(hours=2), midnight + dt.timedelta(hours=1), writer="test")

    def rollups() -> tuple[list, list]:
        """Every day row and hour total, but their ids, in order."""
        return tuple(
            sorted(model.objects.values_list(*[f.name for f in model._meta.concrete_fields if f.name != "id"]))
            for model in (QueueDay, QueueHourTotal)
        )

    written = rollups()
    assert written[0] and len(written[1]) == 3
    QueueDay.objects.all().delete()
    QueueHourTotal.objects.all().delete()
    migration = importlib.import_module("oversight.migrations.0005_day_and_hour_total_rollups")
    with connection.cursor() as cursor:
        for sql in migration.BACKFILL:
            cursor.execute(sql)
    assert rollups() == written


def test_it_writes_the_rollups_a_writer_of_older_code_left_out_when_it_takes_the_lock():
    midnight = dt.datetime(2026, 11, 21, tzinfo=dt.UTC)
    _generated(random.Random(24), 60, after=(midnight - T0) / dt.timedelta(minutes=1) - 60)
    history.record_range(midnight - dt.timedelta(hours=2), midnight + dt.timedelta(hours=1), writer="old")
    rows = QueueDay.objects.filter(day=midnight - dt.timedelta(days=1)).order_by("state", "priority")
    day = list(rows.values_list("state", "priority", "requested", "left"))
    totals = list(QueueHourTotal.objects.order_by("hour").values_list("hour", "requested", "waiting_sum"))
    # What the code before the rollups wrote: the hours, no totals, no day rows.
    QueueDay.objects.all().delete()
    QueueHourTotal.objects.all().delete()

    try:
        assert OversightWorker(name="new", tick_seconds=0).step()
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock_all()")  # the lock is the session's, not the test's
    assert day and list(rows.values_list("state", "priority", "requested", "left")) == day
    got = QueueHourTotal.objects.filter(hour__lte=midnight).order_by("hour")
    assert list(got.values_list("hour", "requested", "waiting_sum")) == totals
    assert history.roll_up_missing() == 0  # nothing missing any more


def test_it_samples_providers_only_for_the_minute_that_just_ended():
    make_provider(states=("CA",), available=True)
    make_provider(states=("CA",))
    visit(make_patient(), status=VisitStatus.WAITING, requested=at(0))
    history.record_range(at(0), at(3), writer="test", sampled=at(2))
    assert (row(2).available, row(2).offline) == (1, 1)
    assert (row(1).available, row(1).offline) == (None, None)
    assert RecordedMinute.objects.get(minute=at(2)).sampled


def test_it_catches_up_from_the_last_recorded_minute(settings):
    settings.OPS_STATS_GRACE_SECONDS = 5
    now = at(10) + dt.timedelta(seconds=3)
    history.record_range(at(0), at(4), writer="before the failover")
    assert history.record_due(writer="standby", now=now) == 5  # 09:04-09:08; 09:09 ends within the grace
    assert recompute.unrecorded_minutes(at(0), at(9)) == 0
    assert RecordedMinute.objects.get(minute=at(8)).sampled  # it just ended: providers counted


def test_it_prunes_history_past_the_days_kept(settings):
    settings.OPS_STATS_DAYS = 1
    visit(make_patient(), status=VisitStatus.CANCELLED, requested=at(1), cancelled=at(2))
    history.record_range(at(0), at(60), writer="test")
    assert history.prune(now=at(60) + dt.timedelta(days=1, hours=1)) > 0
    assert not RecordedMinute.objects.exists() and not QueueMinute.objects.exists() and not QueueHour.objects.exists()


def test_it_checks_stats_and_fails_when_a_row_was_changed(capsys):
    _generated(random.Random(3), 40)
    history.record_range(at(0), at(120), writer="test")
    call_command("check_stats", since=at(0).isoformat(), until=at(120).isoformat())
    assert "agrees within 0.1%" in capsys.readouterr().out
    QueueMinute.objects.filter(minute__gte=at(30), minute__lt=at(60)).update(requested=50)
    with pytest.raises(SystemExit):
        call_command("check_stats", since=at(0).isoformat(), until=at(120).isoformat())
    assert "DISAGREES" in capsys.readouterr().out


@pytest.mark.django_db(transaction=True)
def test_it_hands_the_work_to_the_standby_when_the_worker_dies():
    from django.db import connections

    first = OversightWorker(name="first", tick_seconds=0.1)
    assert first.step()
    seen, checked, died = {}, threading.Event(), threading.Event()

    def standby():
        try:
            worker = OversightWorker(name="second", tick_seconds=0.1)
            seen["while_the_first_works"] = worker.step()
            checked.set()
            died.wait(10)
            seen["after_it_died"] = worker.step()
        finally:
            connections.close_all()

    thread = threading.Thread(target=standby)
    thread.start()
    assert checked.wait(10)
    connection.close()  # the working process dies: its session, and the lock, end with it
    died.set()
    thread.join(20)
    assert seen == {"while_the_first_works": False, "after_it_died": True}
    assert set(RecordedMinute.objects.values_list("writer", flat=True)) == {"first", "second"}
    last = RecordedMinute.objects.order_by("-minute").values_list("minute", flat=True).first()
    first_minute = RecordedMinute.objects.order_by("minute").values_list("minute", flat=True).first()
    assert recompute.unrecorded_minutes(first_minute, last + recompute.MINUTE) == 0  # no gap at the handover


def test_it_ranks_the_providers_on_its_first_tick_then_once_per_interval(settings):
    settings.OPS_STATS_PROVIDERS_SECONDS = 300
    now = dbclock.now()
    provider = make_provider()
    v = visit(make_patient(), status=VisitStatus.CANCELLED, requested=now - dt.timedelta(hours=2),
              cancelled=now - dt.timedelta(hours=1))  # fmt: skip
    offer(v, provider, offered=now - dt.timedelta(hours=2), outcome="declined", decided=now - dt.timedelta(hours=2))
    worker = OversightWorker(name="ranker", tick_seconds=0.1)

    def ranked_at():
        return sorted(ProviderAcceptance.objects.values_list("period", "provider_id", "computed_at"))

    assert worker.step()
    first = ranked_at()
    assert [(period, pk) for period, pk, _ in first] == [
        ("24h", provider.pk),
        ("30d", provider.pk),
        ("7d", provider.pk),
    ]
    assert worker.step() and ranked_at() == first  # not again within the interval
    worker._last_ranked -= 300
    assert worker.step() and ranked_at() != first


@pytest.mark.django_db(transaction=True)
def test_it_ranks_the_providers_one_ranker_at_a_time():
    from django.db import connections, transaction

    now = dbclock.now()
    v = visit(make_patient(), status=VisitStatus.CANCELLED, requested=now - dt.timedelta(hours=2),
              cancelled=now - dt.timedelta(hours=1))  # fmt: skip
    offer(v, make_provider(), offered=now - dt.timedelta(hours=2), outcome="declined", decided=now)
    ranked, release, errors = threading.Event(), threading.Event(), []

    def first():  # a bulk writer's rebuild, its transaction still open
        try:
            with transaction.atomic():
                history.rank_providers(now=now)
                ranked.set()
                release.wait(10)
        finally:
            connections.close_all()

    thread = threading.Thread(target=first)
    thread.start()
    assert ranked.wait(10)
    threading.Timer(0.5, release.set).start()  # the second ranker waits for the first to commit
    try:
        history.rank_providers(now=now)
    except Exception as error:  # noqa: BLE001 - the collision this test is about
        errors.append(error)
    thread.join(10)
    assert errors == []
    assert ProviderAcceptance.objects.count() == 3  # one provider in each of 24 h, 7 d, 30 d
