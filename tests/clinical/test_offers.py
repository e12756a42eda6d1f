"""Offers are records: answered only by the provider they were made to, before their deadline, while licensed."""

import datetime as dt
import threading
import time

import pytest
from django.db import connection

from clinical.actions import licenses as license_actions
from clinical.actions import offers as offer_actions
from clinical.actions import visits as visit_actions
from clinical.models import Availability, LicenseStatus, Offer, OfferOutcome, Visit, VisitStatus
from core import dbclock
from core.audit import Actor
from core.errors import ActionError, IllegalTransition
from tests.builders import make_provider, make_visit, past_deadline

S = VisitStatus
ROUTER = Actor.router()
APP = Actor.provider_app()


def _offer(visit, provider):
    return offer_actions.offer_visit(visit, provider, actor=ROUTER)


def _refusal(action, *args, **kwargs) -> str:
    with pytest.raises(IllegalTransition) as refused:
        action(*args, **kwargs)
    return refused.value.code


def test_it_records_every_offer_with_its_deadline_from_the_database_clock(db, settings):
    settings.ROUTING_OFFER_TIMEOUT = 90
    provider = make_provider(available=True)
    before = dbclock.now()
    visit = _offer(make_visit(), provider)
    offer = visit.offers.get()
    assert (offer.provider_id, offer.outcome, offer.decided_at) == (provider.pk, None, None)
    assert before < offer.offered_at == visit.offered_at < dbclock.now()
    assert (offer.expires_at - offer.offered_at).total_seconds() == 90
    assert offer.license_id == provider.licenses.get().pk


def test_it_books_the_provider_who_holds_the_offer_not_the_one_whose_offer_expired(db):
    first, second = make_provider(available=True), make_provider(available=True)
    visit = _offer(make_visit(), first)
    past_deadline(visit)
    offer_actions.expire_offer(visit, provider_id=first.pk, actor=ROUTER)  # the router, just before first taps accept
    _offer(visit, second)
    assert _refusal(offer_actions.accept_visit, visit, provider=first, actor=APP) == "offer_expired"
    offer_actions.accept_visit(visit, provider=second, actor=APP)
    visit.refresh_from_db()
    assert (visit.status, visit.provider_id) == (S.ACCEPTED, second.pk)
    assert list(visit.offers.values_list("provider_id", "outcome")) == [
        (first.pk, OfferOutcome.EXPIRED),
        (second.pk, OfferOutcome.ACCEPTED),
    ]


def test_it_refuses_an_accept_past_the_deadline_with_no_router_running(db):
    provider = make_provider(available=True)
    visit = _offer(make_visit(), provider)
    past_deadline(visit, seconds=12)
    assert _refusal(offer_actions.accept_visit, visit, provider=provider, actor=APP) == "offer_expired"
    visit.refresh_from_db()
    assert (visit.status, visit.offers.get().outcome) == (S.OFFERED, None)  # the router will time it out


def test_it_refuses_an_accept_once_the_license_is_suspended(db):
    provider = make_provider(available=True)
    visit = _offer(make_visit(), provider)
    license = provider.licenses.get()
    license_actions.change_license_status(license, LicenseStatus.SUSPENDED, actor=Actor.system(), reason="board action")
    assert _refusal(offer_actions.accept_visit, visit, provider=provider, actor=APP) == "not_licensed"
    provider.refresh_from_db()
    assert provider.availability == Availability.RESERVED  # the router's sweep withdraws the offer


def test_it_refuses_an_accept_from_a_provider_who_was_never_offered_the_visit(db):
    visit = _offer(make_visit(), make_provider(available=True))
    stranger = make_provider(available=True)
    assert _refusal(offer_actions.accept_visit, visit, provider=stranger, actor=APP) == "not_your_offer"
    assert _refusal(offer_actions.decline_offer, visit, provider=stranger, actor=APP) == "not_your_offer"


def test_it_refuses_a_decline_past_the_deadline(db):
    provider = make_provider(available=True)
    visit = _offer(make_visit(), provider)
    past_deadline(visit)
    assert _refusal(offer_actions.decline_offer, visit, provider=provider, actor=APP) == "offer_expired"


def test_it_records_a_rejection_and_keeps_the_provider_available(db):
    provider = make_provider(available=True)
    visit = _offer(make_visit(), provider)
    offer_actions.decline_offer(visit, provider=provider, actor=APP)
    offer = visit.offers.get()
    assert offer.outcome == OfferOutcome.DECLINED and offer.decided_at < offer.expires_at
    provider.refresh_from_db()
    assert provider.availability == Availability.AVAILABLE


def test_it_closes_the_offer_when_the_patient_cancels_and_when_it_is_withdrawn(db):
    provider = make_provider(available=True)
    cancelled = _offer(make_visit(), provider)
    visit_actions.cancel_visit(cancelled, actor=Actor.patient_app())
    withdrawn = _offer(make_visit(), provider)
    offer_actions.withdraw_offer(
        withdrawn, provider_id=provider.pk, actor=ROUTER, reason="license no longer valid in CA"
    )
    assert cancelled.offers.get().outcome == OfferOutcome.CANCELLED
    assert withdrawn.offers.get().outcome == OfferOutcome.WITHDRAWN
    assert not Offer.objects.filter(outcome__isnull=True).exists()


def test_it_does_not_offer_a_visit_again_to_who_declined_it_within_the_reoffer_period(db, settings):
    settings.ROUTING_REOFFER_AFTER = 600
    provider = make_provider(available=True)
    visit = _offer(make_visit(), provider)
    offer_actions.decline_offer(visit, provider=provider, actor=APP)
    with pytest.raises(IllegalTransition) as refused:
        _offer(visit, provider)
    assert refused.value.code == "recently_declined"
    Offer.objects.filter(visit=visit).update(decided_at=dbclock.now() - dt.timedelta(minutes=11))
    assert _offer(visit, provider).status == S.OFFERED


def test_it_lets_exactly_one_of_an_accept_and_a_timeout_racing_win(transactional_db):
    provider = make_provider(available=True)
    visit = _offer(make_visit(), provider)
    past_deadline(visit, seconds=-1)  # the deadline passes a second from now: both may try at once
    barrier, results = threading.Barrier(2), {}

    def attempt(name, action):
        try:
            barrier.wait()
            time.sleep(1.05)
            action()
            results[name] = "done"
        except ActionError as error:
            results[name] = error.code
        finally:
            connection.close()

    def accept():
        offer_actions.accept_visit(visit, provider=provider, actor=APP)

    def expire():
        offer_actions.expire_offer(visit, provider_id=provider.pk, actor=ROUTER)

    threads = [threading.Thread(target=attempt, args=pair) for pair in (("accept", accept), ("expire", expire))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    visit = Visit.objects.get(pk=visit.pk)
    offer = visit.offers.get()
    assert list(results.values()).count("done") == 1
    assert (visit.status, offer.outcome) in [(S.ACCEPTED, "accepted"), (S.WAITING, "expired")]
    if offer.outcome == "accepted":
        assert offer.decided_at < offer.expires_at
