"""Fencing: the lease and its epoch live in PostgreSQL, and a router whose epoch is over writes nothing."""

import signal
import threading
import time

import pytest
from django.db import connection, transaction

from clinical.actions import offers as offer_actions
from clinical.actions import providers as provider_actions
from clinical.actions import visits as visit_actions
from clinical.models import Offer, Visit, VisitStatus
from clinical.routing import lease
from clinical.routing.lease import Lease
from clinical.routing.models import RouterHealth
from core.audit import Actor
from core.errors import Fenced
from tests.builders import make_provider, make_visit, past_deadline
from tests.clinical.processes import start_router, wait_for

S = VisitStatus


def _expire_lease() -> None:
    """Let the lease run out, as it does when its holder stops renewing (test set-up only)."""
    with connection.cursor() as cursor:
        cursor.execute("UPDATE clinical_routerlease SET expires_at = clock_timestamp() - interval '1 second'")


def _take_over() -> tuple[int, int]:
    """Return (old epoch, new epoch) after router a leads, stalls past its lease and b takes over."""
    a, b = Lease(seconds=5, name="a"), Lease(seconds=5, name="b")
    assert a.hold() and not b.hold()
    old = a.epoch
    _expire_lease()
    assert b.hold()
    return old, b.epoch


def test_it_gives_each_takeover_a_new_epoch_and_lets_only_the_holder_renew(db):
    old, new = _take_over()
    assert new == old + 1
    assert lease.current()["holder"] == "b"
    stale = Lease(seconds=5, name="a")
    stale.epoch = old
    assert stale.hold() is False  # renewing with the old epoch fails, and b's lease is live


def test_it_lets_the_standby_take_over_before_the_crashed_leader_comes_back(db):
    assert Lease(seconds=5, name="router-1").hold()
    _expire_lease()  # router-1 crashed a second ago; its supervisor restarts it under the same name
    restarted = Lease(seconds=5, name="router-1")
    assert restarted.hold() is False  # one more lease period for the standby
    assert Lease(seconds=5, name="router-2").hold()
    assert lease.current()["holder"] == "router-2"


def test_it_lets_a_crashed_leader_lead_again_when_no_standby_came(db):
    assert Lease(seconds=5, name="router-1").hold()
    with connection.cursor() as cursor:
        cursor.execute("UPDATE clinical_routerlease SET expires_at = clock_timestamp() - interval '6 seconds'")
    assert Lease(seconds=5, name="router-1").hold()


def test_it_refuses_every_router_write_from_an_epoch_that_is_over(db):
    provider = make_provider(available=True)
    visit = make_visit()
    old, new = _take_over()
    with pytest.raises(Fenced):
        offer_actions.offer_visits([(visit.pk, provider.pk)], actor=Actor.router(epoch=old))
    assert not Offer.objects.exists()
    offer_actions.offer_visit(visit, provider, actor=Actor.router(epoch=new))
    past_deadline(visit)
    for write in (
        lambda: offer_actions.expire_offer(visit, provider_id=provider.pk, actor=Actor.router(epoch=old)),
        lambda: offer_actions.withdraw_offer(visit, provider_id=provider.pk, actor=Actor.router(epoch=old), reason="x"),
    ):
        with pytest.raises(Fenced):
            write()
    assert Visit.objects.get(pk=visit.pk).status == S.OFFERED
    assert visit.offers.get().router_epoch == new


def test_it_makes_a_takeover_wait_until_the_leaders_write_in_flight_commits(transactional_db):
    leader = Lease(seconds=5, name="a")
    assert leader.hold()
    _expire_lease()
    writing, done = threading.Event(), threading.Event()

    def leader_write():
        try:
            with transaction.atomic():
                visit_actions._fence(Actor.router(epoch=leader.epoch))  # holds the lease row in share mode
                writing.set()
                done.wait(5)
        finally:
            connection.close()

    thread = threading.Thread(target=leader_write)
    thread.start()
    assert writing.wait(5)
    standby = Lease(seconds=5, name="b", lock_timeout_ms=200)
    try:
        assert standby.hold() is False  # waits for the write, gives up after lock_timeout, tries again later
    finally:
        done.set()
        thread.join()
    assert standby.hold() is True
    assert standby.epoch == leader.epoch + 1


def test_it_writes_nothing_from_a_paused_leader_once_the_standby_leads(transactional_db, redis_client):
    leader = start_router("router-a", lease_seconds=2)
    standby = None
    try:
        assert wait_for(lambda: _leader() == "router-a")
        standby = start_router("router-b", lease_seconds=2)
        first_epoch = lease.current()["epoch"]
        leader.send_signal(signal.SIGSTOP)  # a GC pause, a slow disk: it keeps its state and wakes up later
        assert wait_for(lambda: _leader() == "router-b", timeout=10)
        taken = lease.current()
        providers = [make_provider(states=("CA",), available=True) for _ in range(3)]
        visits = [make_visit() for _ in range(3)]
        assert wait_for(lambda: Visit.objects.filter(pk__in=[v.pk for v in visits], status=S.OFFERED).count() == 3)
        leader.send_signal(signal.SIGCONT)
        more = [make_visit() for _ in range(2)]
        provider_actions.set_provider_availability(make_provider(states=("CA",)), available=True, actor=Actor.system())
        time.sleep(3)  # the old leader runs again: its next renewal or write finds its epoch over
        assert wait_for(lambda: not RouterHealth.objects.get(name="router-a").is_leader)
    finally:
        for process in (leader, standby):
            if process and process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.terminate()
                process.wait(timeout=10)
    assert taken["epoch"] > first_epoch
    late = Offer.objects.filter(router_epoch=first_epoch, offered_at__gte=taken["leader_since"])
    assert not late.exists()
    assert set(Offer.objects.filter(visit__in=visits).values_list("router_epoch", flat=True)) == {taken["epoch"]}
    offered = list(Visit.objects.filter(status=S.OFFERED).values_list("provider_id", flat=True))
    assert len(offered) == len(set(offered)) == 4 and len(more) == 2 and len(providers) == 3


def _leader() -> str | None:
    held = lease.current()
    return held["holder"] if held and held["live"] else None
