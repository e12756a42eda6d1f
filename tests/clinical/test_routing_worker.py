"""The routing worker as a process: events in, offers out, and a standby that takes over."""

import signal
import time

from django.db import connection

from clinical.actions import offers as offer_actions
from clinical.actions import visits as visit_actions
from clinical.models import Visit, VisitStatus
from clinical.routing import lease
from clinical.routing.worker import RoutingWorker
from core.audit import Actor
from tests.builders import make_provider, make_visit
from tests.clinical.processes import PrivateRedis, start_router, wait_for

S = VisitStatus


def test_it_routes_a_new_visit_from_its_event(transactional_db, redis_client):
    worker = RoutingWorker(redis_client, name="test-router")
    worker.step()  # takes the lease, creates the consumer group, builds the working set
    provider = make_provider(states=("TX",), available=True)
    visit = make_visit(state="TX")
    for _ in range(3):
        worker.step()
    visit.refresh_from_db()
    assert (visit.status, visit.provider_id) == (S.OFFERED, provider.pk)
    assert worker.stats.events >= 2


def test_it_recovers_when_redis_is_flushed_under_a_running_worker(transactional_db, redis_client):
    worker = RoutingWorker(redis_client, name="test-router")
    worker.step()
    visit = make_visit(state="OR")
    redis_client.flushdb()  # what FLUSHALL does to the router, without touching other runs on this machine
    provider = make_provider(states=("OR",), available=True)  # its event is published into the void
    for _ in range(3):
        worker.step()
    visit.refresh_from_db()
    assert (visit.status, visit.provider_id) == (S.OFFERED, provider.pk)


def _leader() -> str | None:
    """Return the name of the router holding a live lease (PostgreSQL's view), or None."""
    held = lease.current()
    return held["holder"] if held and held["live"] else None


def test_it_fails_over_to_the_standby_when_the_leader_is_killed(transactional_db, redis_client):
    providers = [make_provider(states=("CA",), available=True) for _ in range(4)]
    leader = start_router("router-a")
    standby = None
    try:
        assert wait_for(lambda: _leader() == "router-a")
        standby = start_router("router-b")
        first = [make_visit() for _ in range(2)]
        assert wait_for(lambda: Visit.objects.filter(pk__in=[v.pk for v in first], status=S.OFFERED).count() == 2)
        assert _leader() == "router-a"  # the standby waited

        leader.send_signal(signal.SIGKILL)
        leader.wait()
        killed_at = time.monotonic()
        assert wait_for(lambda: _leader() == "router-b", timeout=10)
        took_over = time.monotonic() - killed_at
        later = [make_visit() for _ in range(2)]
        assert wait_for(lambda: Visit.objects.filter(pk__in=[v.pk for v in later], status=S.OFFERED).count() == 2)
    finally:
        for process in (leader, standby):
            if process and process.poll() is None:
                process.terminate()
                process.wait(timeout=10)
    assert took_over < 10
    offered = list(Visit.objects.filter(status=S.OFFERED).values_list("provider_id", flat=True))
    assert sorted(offered) == sorted(p.pk for p in providers)  # four offers, four distinct providers
    assert Visit.objects.count() == 4


def test_it_gives_the_lease_up_on_a_clean_stop(transactional_db, redis_client):
    router = start_router("router-clean")
    try:
        assert wait_for(lambda: _leader() == "router-clean")
    finally:
        router.send_signal(signal.SIGTERM)
        router.wait(timeout=10)
    assert _leader() is None


def test_it_keeps_routing_after_an_offer_is_accepted_and_completed(transactional_db, redis_client):
    worker = RoutingWorker(redis_client, name="test-router")
    worker.step()
    provider = make_provider(states=("FL",), available=True)
    first, second = make_visit(state="FL"), make_visit(state="FL")
    worker.step()
    offered = Visit.objects.get(status=S.OFFERED)
    app = Actor.provider_app()
    offer_actions.accept_visit(offered, provider=provider, actor=app)
    visit_actions.mark_connected(offered, actor=app)
    visit_actions.complete_visit(offered, actor=app)
    worker.step()
    worker.step()
    assert set(Visit.objects.values_list("status", flat=True)) == {S.COMPLETED, S.OFFERED}
    assert Visit.objects.get(status=S.OFFERED).provider_id == provider.pk
    assert {first.pk, second.pk} == set(Visit.objects.values_list("pk", flat=True))


def _router_sessions() -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE application_name = 'router:router-db'")
        return [row[0] for row in cursor.fetchall()]


def test_it_survives_postgresql_dropping_its_connection(transactional_db, redis_client):
    router = start_router("router-db")
    try:
        assert wait_for(lambda: _leader() == "router-db" and _router_sessions())
        with connection.cursor() as cursor:  # what a PostgreSQL restart does to a client
            cursor.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", [_router_sessions()])
        provider = make_provider(states=("NM",), available=True)
        visit = make_visit(state="NM")
        assert wait_for(lambda: Visit.objects.filter(pk=visit.pk, status=S.OFFERED, provider=provider).exists())
        assert router.poll() is None
    finally:
        router.terminate()
        router.wait(timeout=10)
    assert router.returncode == 0


def test_it_waits_out_redis_being_down_and_rebuilds_when_it_is_back(transactional_db):
    redis = PrivateRedis()
    redis.start()
    router = start_router("router-redis", redis_url=redis.url)
    try:
        assert wait_for(lambda: _leader() == "router-redis")
        redis.stop()
        provider = make_provider(states=("ME",), available=True)  # its event goes to the tests' Redis, not this one
        visit = make_visit(state="ME")
        time.sleep(3)
        assert router.poll() is None and Visit.objects.get(pk=visit.pk).status == S.WAITING
        redis.start()  # empty: the router notices and rebuilds from PostgreSQL
        assert wait_for(lambda: Visit.objects.filter(pk=visit.pk, status=S.OFFERED, provider=provider).exists())
        assert _leader() == "router-redis"  # the lease is PostgreSQL's: Redis going away did not cost it
    finally:
        router.terminate()
        router.wait(timeout=10)
        redis.stop()
