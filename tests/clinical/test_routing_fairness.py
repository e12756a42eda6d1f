"""Fairness without dead ends: aging past the target wait, first offers before second ones, re-offers
when nobody else is free, and declined visits at the head never hiding the ones behind them.
"""

import datetime as dt

from clinical.actions import offers as offer_actions
from clinical.actions import providers as provider_actions
from clinical.models import Offer, Priority, Visit, VisitStatus
from clinical.routing.engine import Candidate, OfferHistory, Router, RouterConfig, decide, place
from core import dbclock
from core.audit import Actor
from tests.builders import make_provider, make_visit

S = VisitStatus
APP = Actor.provider_app()
TARGETS = {Priority.URGENT: 120, Priority.ELEVATED: 600, Priority.ROUTINE: 1800}


def _router(redis_client, **config) -> Router:
    defaults = {"policy": "longest_idle", "offer_timeout": 120, "max_wait": 3600, "reoffer_after": 600,
                "targets": dict(TARGETS)}  # fmt: skip
    router = Router(redis_client, RouterConfig(**{**defaults, **config}))
    router.rebuild()
    return router


def _age(visit, seconds):
    Visit.objects.filter(pk=visit.pk).update(requested_at=dbclock.now() - dt.timedelta(seconds=seconds))
    return visit


def _offered_to(visit):
    visit.refresh_from_db()
    return visit.provider_id if visit.status == S.OFFERED else None


def _decline(visit, provider, *, minutes_ago=0):
    offer_actions.offer_visit(visit, provider, actor=Actor.router())
    offer_actions.decline_offer(visit, provider=provider, actor=APP)
    if minutes_ago:
        Offer.objects.filter(visit=visit, provider=provider).update(
            decided_at=dbclock.now() - dt.timedelta(minutes=minutes_ago)
        )


def test_it_puts_a_routine_visit_past_its_target_ahead_of_a_stream_of_fresh_urgent_ones(db, redis_client):
    routine = _age(make_visit(priority=Priority.ROUTINE), 200)
    urgent = [_age(make_visit(priority=Priority.URGENT), 10 - i) for i in range(3)]
    provider = make_provider(available=True)
    _router(redis_client, targets={**TARGETS, Priority.ROUTINE: 60}).match()
    assert _offered_to(routine) == provider.pk  # level 0 + 200 // 60 = 3 beats urgent's 2
    assert [_offered_to(v) for v in urgent] == [None, None, None]


def test_it_serves_urgent_first_while_the_routine_visit_is_within_its_target(db, redis_client):
    routine = _age(make_visit(priority=Priority.ROUTINE), 200)
    urgent = _age(make_visit(priority=Priority.URGENT), 10)
    provider = make_provider(available=True)
    _router(redis_client).match()
    assert (_offered_to(urgent), _offered_to(routine)) == (provider.pk, None)


def test_it_places_by_level_then_age_and_first_offers_before_second_ones():
    config = RouterConfig(targets=dict(TARGETS))
    now = 10_000.0
    fresh_urgent = Candidate(1, "CA", Priority.URGENT, now - 30)
    overdue_elevated = Candidate(2, "CA", Priority.ELEVATED, now - 700)  # level 1 + 1 = 2, older
    routine = Candidate(3, "CA", Priority.ROUTINE, now - 1000)
    declined_urgent = Candidate(4, "CA", Priority.URGENT, now - 500)
    history = OfferHistory(spurned={4: {99: now - 100}}, turned_down={4})
    candidates = [fresh_urgent, overdue_elevated, routine, declined_urgent]
    order = sorted(candidates, key=lambda c: place(c, now, history, config))
    assert [c.visit for c in order] == [2, 1, 3, 4]


def test_it_offers_everyone_once_before_anyone_twice(db, redis_client):
    first, second = make_provider(available=True), make_provider(available=True)
    declined = _age(make_visit(priority=Priority.URGENT), 60)
    _decline(declined, first)
    fresh = make_visit(priority=Priority.ROUTINE)
    provider_actions.set_provider_availability(first, available=False, actor=APP)
    _router(redis_client).match()
    assert (_offered_to(fresh), _offered_to(declined)) == (second.pk, None)


def test_it_offers_a_visit_again_to_the_only_licensed_provider_after_the_reoffer_period(db, redis_client):
    only = make_provider(states=("WY",), available=True)
    visit = make_visit(state="WY")
    _decline(visit, only)
    router = _router(redis_client)
    assert router.match() == 0  # declined a moment ago
    Offer.objects.filter(visit=visit).update(decided_at=dbclock.now() - dt.timedelta(minutes=11))
    router.rebuild()
    assert router.match() == 1
    assert _offered_to(visit) == only.pk


def test_it_prefers_anyone_who_did_not_decline_over_a_reoffer(db, redis_client):
    declined_by = make_provider(states=("WY",), available=True)
    visit = make_visit(state="WY")
    _decline(visit, declined_by, minutes_ago=30)
    other = make_provider(states=("WY",), available=True)
    _router(redis_client).match()
    assert _offered_to(visit) == other.pk


def test_it_looks_past_declined_visits_at_the_head_of_a_queue(db, redis_client):
    provider = make_provider(states=("VT",), available=True)
    head = [_age(make_visit(state="VT"), 900 - i) for i in range(30)]
    for visit in head:
        _decline(visit, provider)
    behind = make_visit(state="VT")
    router = _router(redis_client)
    assert router.match() == 1  # 30 declined visits before it; only 22 are loaded at first
    assert _offered_to(behind) == provider.pk


def test_it_decides_pairs_without_reusing_a_provider_across_states():
    config = RouterConfig(targets=dict(TARGETS))
    now = 10_000.0
    pools = {"CA": [7, 8], "NV": [7]}
    candidates = [Candidate(1, "NV", Priority.ROUTINE, now - 50), Candidate(2, "CA", Priority.ROUTINE, now - 40),
                  Candidate(3, "CA", Priority.ROUTINE, now - 30)]  # fmt: skip
    assert decide(pools, candidates, OfferHistory(), now=now, config=config) == [(1, 7, "NV"), (2, 8, "CA")]
