"""The live queues page: per-state numbers from PostgreSQL, refreshed by its own script."""

import datetime as dt
import re
import time

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from clinical import selectors
from clinical.actions import offers as offer_actions
from clinical.actions import timeouts as timeout_actions
from clinical.actions import visits as visit_actions
from clinical.events import ROUTING_STREAM
from clinical.models import Priority, Visit
from clinical.routing.engine import RouterConfig
from clinical.routing.worker import RoutingWorker
from core.audit import Actor
from tests.builders import make_provider, make_visit

APP = Actor.provider_app()


def _accept_after(visit, provider, seconds):
    Visit.objects.filter(pk=visit.pk).update(requested_at=timezone.now() - dt.timedelta(seconds=seconds))
    offer_actions.offer_visit(visit, provider, actor=Actor.router())
    offer_actions.accept_visit(visit, provider=provider, actor=APP)


def test_it_counts_waiting_available_and_offers_per_state(client, support_agent):
    make_provider(states=("CA", "NV"), available=True)
    busy = make_provider(states=("CA",), available=True)
    offered = make_visit(state="CA")
    offer_actions.offer_visit(offered, busy, actor=Actor.router())
    make_visit(state="CA")
    make_visit(state="TX")
    client.force_login(support_agent)
    data = client.get(reverse("ops:live_queues_data")).json()
    rows = {row["state"]: row for row in data["states"]}
    assert (rows["CA"]["waiting"], rows["CA"]["available"], rows["CA"]["offers"]) == (1, 1, 1)
    assert (rows["NV"]["waiting"], rows["NV"]["available"]) == (0, 1)
    assert (rows["TX"]["waiting"], rows["TX"]["available"]) == (1, 0)
    assert data["totals"] == {"waiting": 2, "available": 2, "offers": 1}


def test_it_reports_median_and_p90_wait_over_the_last_hour(client, engineer):
    for seconds in (60, 120, 180, 240, 600):
        provider = make_provider(states=("CA",), available=True)
        _accept_after(make_visit(), provider, seconds)
    client.force_login(engineer)
    data = client.get(reverse("ops:live_queues_data")).json()
    assert data["accepted"] == 5
    assert 175 <= data["median_wait_s"] <= 185
    assert 450 <= data["p90_wait_s"] <= 462  # interpolated: 240 + 0.6 * (600 - 240)
    assert sum(bucket["n"] for bucket in data["buckets"]) == 5


def test_it_counts_the_waits_of_visits_cancelled_or_expired_not_only_the_accepted(client, engineer):
    _accept_after(make_visit(), make_provider(states=("CA",), available=True), 60)
    cancelled, expired = make_visit(), make_visit()
    for visit, seconds in ((cancelled, 300), (expired, 900)):
        Visit.objects.filter(pk=visit.pk).update(requested_at=timezone.now() - dt.timedelta(seconds=seconds))
    visit_actions.cancel_visit(cancelled, actor=APP, detail="gave up")
    timeout_actions.expire_visit(expired, actor=Actor.router())
    make_visit()  # still waiting: not in the figures
    client.force_login(engineer)
    data = client.get(reverse("ops:live_queues_data")).json()
    assert (data["left"], data["accepted"], data["cancelled"], data["expired"]) == (3, 1, 1, 1)
    assert 295 <= data["median_wait_s"] <= 305
    assert 770 <= data["p90_wait_s"] <= 790  # interpolated: 300 + 0.8 * (900 - 300)
    page = client.get(reverse("ops:live_queues")).content.decode()
    assert "Every visit that left the queue counts" in page


def test_it_reports_sla_attainment_per_priority_with_the_routers_targets(client, engineer, settings):
    settings.ROUTING_SLA_URGENT, settings.ROUTING_SLA_ROUTINE = 120, 600
    for seconds in (60, 300):  # urgent: one within 120 s, one past it
        urgent = make_visit(priority=Priority.URGENT)
        _accept_after(urgent, make_provider(states=("CA",), available=True), seconds)
    _accept_after(make_visit(), make_provider(states=("CA",), available=True), 300)  # routine, within 600 s
    gave_up = make_visit()
    Visit.objects.filter(pk=gave_up.pk).update(requested_at=timezone.now() - dt.timedelta(seconds=30))
    visit_actions.cancel_visit(gave_up, actor=APP, detail="gave up")  # left quickly, but not served: missed
    client.force_login(engineer)
    sla = {row["priority"]: row for row in client.get(reverse("ops:live_queues_data")).json()["sla"]}
    assert list(sla) == ["Urgent", "Elevated", "Routine"]
    assert (sla["Urgent"]["target_s"], sla["Urgent"]["left"], sla["Urgent"]["within"]) == (120, 2, 1)
    assert sla["Urgent"]["attainment_pct"] == 50.0
    assert (sla["Routine"]["left"], sla["Routine"]["within"], sla["Routine"]["attainment_pct"]) == (2, 1, 50.0)
    assert (sla["Elevated"]["left"], sla["Elevated"]["attainment_pct"]) == (0, None)
    assert RouterConfig().targets[Priority.URGENT] == 120  # the router's targets are the same


def test_it_reads_the_waits_window_from_its_index(db):
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        cursor.execute(
            "EXPLAIN " + selectors._LIVE_WAITS_SQL,
            {"since": timezone.now() - dt.timedelta(hours=1), "bucket": dt.timedelta(minutes=5)},
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("RESET enable_seqscan")
    assert "clinical_visit_left_idx" in plan


def test_it_renders_the_page_for_every_role_with_its_own_script(client, personas):
    url = reverse("ops:live_queues")
    for role, user in personas.items():
        client.force_login(user)
        response = client.get(url)
        if role is None:
            assert response.status_code == 403
            assert client.get(reverse("ops:live_queues_data")).status_code == 403
            continue
        assert response.status_code == 200, role
        html = response.content.decode()
        assert "ops_console/js/live_queues.js" in html
        assert "<script>" not in html  # no inline script: the page works under a strict CSP
        assert not re.search(r'(src|href)="(https?:)?//', html)  # every asset is our own


def test_it_answers_the_feed_with_a_constant_number_of_queries(client, lead):
    client.force_login(lead)
    url = reverse("ops:live_queues_data")
    client.get(url)
    with CaptureQueriesContext(connection) as few:
        client.get(url)
    for state in ("CA", "NY", "TX", "FL", "WA"):
        make_provider(states=(state,), available=True)
        make_visit(state=state)
    with CaptureQueriesContext(connection) as more:
        client.get(url)
    assert len(few) == len(more) <= 9  # session, user, permissions (3), the database clock, four statements


def test_it_shows_which_router_leads_with_its_epoch_and_health(transactional_db, client, lead, redis_client):
    leader = RoutingWorker(redis_client, name="router-live-1")
    leader.step()
    standby = RoutingWorker(redis_client, name="router-live-2")
    standby.step()
    client.force_login(lead)
    routers = {r["name"]: r for r in client.get(reverse("ops:live_queues_data")).json()["routers"]}
    assert routers["router-live-1"]["role"] == "leader" and routers["router-live-1"]["epoch"] == leader.lease.epoch
    assert routers["router-live-2"]["role"] == "standby" and routers["router-live-2"]["epoch"] is None
    assert routers["router-live-1"]["events_pending"] == 0 and routers["router-live-1"]["rebuilds"] == 1
    assert routers["router-live-1"]["events_lag_s"] is None
    data = client.get(reverse("ops:live_queues_data")).json()
    assert data["standby_present"] is True
    page = client.get(reverse("ops:live_queues")).content.decode()
    assert 'data-router="router-live-1"' in page and "Standby: <strong" in page


def test_it_shows_how_far_the_leader_is_behind(transactional_db, client, lead, redis_client):
    leader = RoutingWorker(redis_client, name="router-lag-1")
    leader.step()
    redis_client.xadd(ROUTING_STREAM, {"kind": "visit_status", "visit": "0"})  # not yet read by the leader
    time.sleep(0.3)
    leader._report(force=True)
    client.force_login(lead)
    data = client.get(reverse("ops:live_queues_data")).json()
    (router,) = data["routers"]
    assert router["events_pending"] == 1 and 0.3 <= router["events_lag_s"] < 5
    assert data["standby_present"] is False  # nobody to take over
    leader.step()  # reads and applies it
    leader._report(force=True)
    (router,) = client.get(reverse("ops:live_queues_data")).json()["routers"]
    assert (router["events_pending"], router["events_lag_s"]) == (0, None)
