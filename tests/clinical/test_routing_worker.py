"""The routing worker as a process: events in, offers out, and a standby that takes over."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.db import connection

from clinical import actions
from clinical.models import Visit, VisitStatus
from clinical.routing.lease import LEASE_KEY
from clinical.routing.worker import RoutingWorker
from ops_console.audit import Actor
from tests.builders import make_patient, make_provider, make_visit

BASE_DIR = Path(__file__).resolve().parents[2]
S = VisitStatus


def _wait_for(predicate, timeout=15.0, every=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return False


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


def _start_router(name: str) -> subprocess.Popen:
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "ROUTING_LEASE_SECONDS": "3",
        "DJANGO_DEBUG": "0",
    }
    return subprocess.Popen(  # noqa: S603 - our own manage.py with fixed arguments
        [sys.executable, "manage.py", "run_router", "--name", name],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_it_fails_over_to_the_standby_when_the_leader_is_killed(transactional_db, redis_client):
    patient = make_patient()
    providers = [make_provider(states=("CA",), available=True) for _ in range(4)]
    leader = _start_router("router-a")
    standby = None
    try:
        assert _wait_for(lambda: redis_client.get(LEASE_KEY) == "router-a")
        standby = _start_router("router-b")
        first = [make_visit(patient=patient) for _ in range(2)]
        assert _wait_for(lambda: Visit.objects.filter(pk__in=[v.pk for v in first], status=S.OFFERED).count() == 2)
        assert redis_client.get(LEASE_KEY) == "router-a"  # the standby waited

        leader.send_signal(signal.SIGKILL)
        leader.wait()
        killed_at = time.monotonic()
        assert _wait_for(lambda: redis_client.get(LEASE_KEY) == "router-b", timeout=10)
        took_over = time.monotonic() - killed_at
        later = [make_visit(patient=patient) for _ in range(2)]
        assert _wait_for(lambda: Visit.objects.filter(pk__in=[v.pk for v in later], status=S.OFFERED).count() == 2)
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
    router = _start_router("router-clean")
    try:
        assert _wait_for(lambda: redis_client.get(LEASE_KEY) == "router-clean")
    finally:
        router.send_signal(signal.SIGTERM)
        router.wait(timeout=10)
    assert redis_client.get(LEASE_KEY) is None


def test_it_keeps_routing_after_an_offer_is_accepted_and_completed(transactional_db, redis_client):
    worker = RoutingWorker(redis_client, name="test-router")
    worker.step()
    provider = make_provider(states=("FL",), available=True)
    first, second = make_visit(state="FL"), make_visit(state="FL")
    worker.step()
    offered = Visit.objects.get(status=S.OFFERED)
    app = Actor.provider_app()
    actions.accept_visit(offered, actor=app)
    actions.mark_connected(offered, actor=app)
    actions.complete_visit(offered, actor=app)
    worker.step()
    worker.step()
    assert set(Visit.objects.values_list("status", flat=True)) == {S.COMPLETED, S.OFFERED}
    assert Visit.objects.get(status=S.OFFERED).provider_id == provider.pk
    assert {first.pk, second.pk} == set(Visit.objects.values_list("pk", flat=True))
