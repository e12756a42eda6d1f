"""No stuck visits, and the database's clock decides every deadline whatever the router's own clock says."""

import datetime as dt
import time

import pytest
from django.utils import timezone

from clinical.actions import offers as offer_actions
from clinical.actions import timeouts as timeout_actions
from clinical.actions import visits as visit_actions
from clinical.models import Availability, Visit, VisitStatus
from clinical.routing.engine import Router, RouterConfig
from core import dbclock
from core.audit import Actor
from core.errors import IllegalTransition
from support.models import SupportCase
from tests.builders import make_provider, make_visit, past_deadline

S = VisitStatus
APP = Actor.provider_app()


def _router(redis_client) -> Router:
    router = Router(redis_client, RouterConfig(policy="longest_idle", offer_timeout=120, max_wait=1800))
    router.rebuild()
    return router


def _accepted():
    provider = make_provider(available=True)
    visit = offer_actions.offer_visit(make_visit(), provider, actor=Actor.router())
    offer_actions.accept_visit(visit, provider=provider, actor=APP)
    return Visit.objects.get(pk=visit.pk), provider


def _back(visit, field: str, seconds: float) -> None:
    """Move one of the visit's milestones into the past (test set-up only)."""
    Visit.objects.filter(pk=visit.pk).update(**{field: dbclock.now() - dt.timedelta(seconds=seconds)})


def _ended_by_timeout(visit, provider) -> tuple:
    visit.refresh_from_db()
    provider.refresh_from_db()
    case = SupportCase.objects.filter(visit=visit).first()
    return visit.status, provider.availability, case is not None and case.category == "routing"


@pytest.mark.parametrize("connecting", [False, True], ids=["accepted", "connecting"])
def test_it_fails_a_visit_that_never_connects_frees_the_provider_and_opens_a_case(db, redis_client, settings,
                                                                                  connecting):  # fmt: skip
    settings.ROUTING_CONNECT_TIMEOUT = 300
    visit, provider = _accepted()
    if connecting:
        visit_actions.start_connecting(visit, actor=APP)
    _back(visit, "accepted_at", 299)
    assert _router(redis_client).run_timeouts()["stuck"] == 0
    _back(visit, "accepted_at", 301)
    assert _router(redis_client).run_timeouts()["stuck"] == 1
    assert _ended_by_timeout(visit, provider) == (S.FAILED, Availability.OFFLINE, True)
    assert "timed out: never connected" in visit.events.last().detail
    assert "ROUTING_CONNECT_TIMEOUT" in provider.history.first().history_change_reason


def test_it_fails_a_visit_running_past_the_longest_visit(db, redis_client, settings):
    settings.ROUTING_MAX_VISIT_MINUTES = 90
    visit, provider = _accepted()
    visit_actions.mark_connected(visit, actor=APP)
    _back(visit, "started_at", 89 * 60)
    assert _router(redis_client).run_timeouts()["stuck"] == 0
    _back(visit, "started_at", 91 * 60)
    assert _router(redis_client).run_timeouts()["stuck"] == 1
    assert _ended_by_timeout(visit, provider) == (S.FAILED, Availability.OFFLINE, True)


def test_it_refuses_to_time_out_a_visit_within_its_timeout(db):
    visit, _ = _accepted()
    with pytest.raises(IllegalTransition, match="within ROUTING_CONNECT_TIMEOUT"):
        timeout_actions.time_out_visit(visit, actor=Actor.router())


def _skew(monkeypatch, seconds: float) -> None:
    """Shift this process's own clock (what a router on a skewed machine sees)."""
    real_time, real_now = time.time, timezone.now
    monkeypatch.setattr(time, "time", lambda: real_time() + seconds)
    monkeypatch.setattr(timezone, "now", lambda: real_now() + dt.timedelta(seconds=seconds))


def test_it_does_not_expire_offers_or_visits_early_when_its_clock_runs_ahead(db, redis_client, monkeypatch):
    provider = make_provider(available=True)
    offered = offer_actions.offer_visit(make_visit(), provider, actor=Actor.router())
    waiting = make_visit(state="WY")
    router = _router(redis_client)
    _skew(monkeypatch, 3600)  # an hour ahead: past every deadline by its own clock
    assert router.run_timeouts() == {"offer": 0, "wait": 0, "stuck": 0}
    assert (Visit.objects.get(pk=offered.pk).status, Visit.objects.get(pk=waiting.pk).status) == (S.OFFERED, S.WAITING)


def test_it_expires_offers_on_time_when_its_clock_runs_behind(db, redis_client, monkeypatch):
    provider = make_provider(available=True)
    visit = offer_actions.offer_visit(make_visit(), provider, actor=Actor.router())
    past_deadline(visit)
    router = _router(redis_client)
    _skew(monkeypatch, -3600)
    assert router.run_timeouts()["offer"] == 1
    assert Visit.objects.get(pk=visit.pk).status == S.WAITING


def test_it_dates_visits_and_offers_by_the_database_clock_when_the_web_server_clock_is_off(db, monkeypatch):
    _skew(monkeypatch, -7200)
    before = dbclock.now()
    provider = make_provider(available=True)
    visit = offer_actions.offer_visit(make_visit(), provider, actor=Actor.router())
    offer = visit.offers.get()
    assert before <= visit.requested_at <= offer.offered_at <= dbclock.now()
    offer_actions.accept_visit(visit, provider=provider, actor=APP)
    visit.refresh_from_db()
    provider.refresh_from_db()
    assert before <= visit.accepted_at and before <= provider.history.first().history_date
