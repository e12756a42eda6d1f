"""The router against the real PostgreSQL and Redis: licensed, ordered, fair, and never loses a visit."""

import datetime as dt
import threading

from django.db import connection
from django.utils import timezone

from clinical.actions import licenses as license_actions
from clinical.actions import offers as offer_actions
from clinical.actions import visits as visit_actions
from clinical.models import Availability, LicenseStatus, Priority, Visit, VisitEvent, VisitStatus
from clinical.routing import workingset as ws
from clinical.routing.engine import Router, RouterConfig
from core.audit import Actor
from support.models import SupportCase
from tests.builders import make_license, make_provider, make_visit, past_deadline, state_today

S = VisitStatus
PROVIDER_APP = Actor.provider_app()


def _router(redis_client, **config) -> Router:
    router = Router(redis_client, RouterConfig(**{"policy": "longest_idle", "offer_timeout": 120, "max_wait": 1800,
                                                  "batch_size": 50, **config}))  # fmt: skip
    router.rebuild()
    return router


def _age(visit, minutes):
    """Move a visit's request time into the past (test set-up only)."""
    Visit.objects.filter(pk=visit.pk).update(requested_at=timezone.now() - dt.timedelta(minutes=minutes))
    visit.refresh_from_db()
    return visit


def _status(visit):
    visit.refresh_from_db()
    return visit.status, visit.provider_id


def _idle_since(provider, minutes):
    type(provider).objects.filter(pk=provider.pk).update(available_since=timezone.now() - dt.timedelta(minutes=minutes))


def test_it_offers_only_to_a_provider_licensed_today_in_the_visit_state(db, redis_client):
    make_provider(states=("NV",), available=True)
    suspended = make_provider(states=(), available=True)
    make_license(suspended, "CA", status=LicenseStatus.SUSPENDED)
    lapsed = make_provider(states=(), available=True)
    make_license(lapsed, "CA", issued_days_ago=400, expires_in_days=-1)
    licensed = make_provider(states=("CA",), available=True)
    visit = make_visit(state="CA")
    assert _router(redis_client).match() == 1
    assert _status(visit) == (S.OFFERED, licensed.pk)


def test_it_leaves_a_visit_waiting_when_nobody_is_licensed_there(db, redis_client):
    make_provider(states=("NV",), available=True)
    visit = make_visit(state="CA")
    assert _router(redis_client).match() == 0
    assert _status(visit) == (S.WAITING, None)


def test_it_orders_visits_by_priority_then_age(db, redis_client):
    old_routine = _age(make_visit(priority=Priority.ROUTINE), 20)
    new_urgent = _age(make_visit(priority=Priority.URGENT), 1)
    newer_routine = _age(make_visit(priority=Priority.ROUTINE), 5)
    provider = make_provider(states=("CA",), available=True)
    router = _router(redis_client)
    served = []
    for _ in range(3):
        router.match()
        visit = Visit.objects.get(provider=provider, status=S.OFFERED)
        served.append(visit.pk)
        offer_actions.accept_visit(visit, provider=provider, actor=PROVIDER_APP)
        visit_actions.mark_connected(visit, actor=PROVIDER_APP)
        visit_actions.complete_visit(visit, actor=PROVIDER_APP)
        router.handle({"kind": "provider_availability", "actor": "provider", "provider": str(provider.pk)})
    assert served == [new_urgent.pk, old_routine.pk, newer_routine.pk]


def test_it_offers_to_the_longest_idle_provider(db, redis_client):
    recent = make_provider(states=("CA",), available=True)
    idle = make_provider(states=("CA",), available=True)
    _idle_since(recent, 1)
    _idle_since(idle, 30)
    visit = make_visit()
    _router(redis_client).match()
    assert _status(visit) == (S.OFFERED, idle.pk)


def _scarcity_setup():
    multi = make_provider(states=("CA", "NV"), available=True)
    single = make_provider(states=("CA",), available=True)
    _idle_since(multi, 30)  # longest idle
    _idle_since(single, 5)
    ca = _age(make_visit(state="CA"), 10)  # oldest: decided first
    nv = _age(make_visit(state="NV"), 5)
    return multi, single, ca, nv


def test_it_can_spend_a_multi_state_provider_on_a_common_state_when_longest_idle(db, redis_client):
    multi, single, ca, nv = _scarcity_setup()
    _router(redis_client, policy="longest_idle").match()
    assert _status(ca) == (S.OFFERED, multi.pk)
    assert _status(nv) == (S.WAITING, None)


def test_it_keeps_multi_state_providers_for_scarce_states_when_scarcity_aware(db, redis_client):
    multi, single, ca, nv = _scarcity_setup()
    _router(redis_client, policy="scarcity_aware").match()
    assert _status(ca) == (S.OFFERED, single.pk)
    assert _status(nv) == (S.OFFERED, multi.pk)


def test_it_requeues_a_rejected_visit_and_does_not_reoffer_it_to_the_same_provider(db, redis_client):
    first = _age(make_visit(), 10)
    second = _age(make_visit(), 5)
    provider = make_provider(states=("CA",), available=True)
    router = _router(redis_client)
    router.match()
    assert _status(first) == (S.OFFERED, provider.pk)
    offer_actions.decline_offer(first, provider=provider, actor=PROVIDER_APP)
    router.handle({"kind": "visit_status", "actor": "provider", "visit": str(first.pk), "provider": str(provider.pk)})
    assert redis_client.zrange(ws.queue_key("CA", 0), 0, 0) == [str(first.pk)]  # back in line, by request time
    router.match()
    assert _status(first) == (S.WAITING, None)
    assert _status(second) == (S.OFFERED, provider.pk)
    other = make_provider(states=("CA",), available=True)
    router.handle({"kind": "provider_availability", "actor": "provider", "provider": str(other.pk)})
    router.match()
    assert _status(first) == (S.OFFERED, other.pk)
    assert Visit.objects.get(pk=first.pk).offer_count == 2


def test_it_remembers_who_declined_a_visit_in_postgresql_when_redis_loses_everything(db, redis_client):
    visit = make_visit()
    provider = make_provider(states=("CA",), available=True)
    router = _router(redis_client)
    router.match()
    offer_actions.decline_offer(visit, provider=provider, actor=PROVIDER_APP)
    redis_client.flushdb()
    router.ensure_built()
    assert router.match() == 0
    assert _status(visit) == (S.WAITING, None)


def test_it_expires_an_offer_after_the_timeout_and_sets_the_provider_offline(db, redis_client):
    visit = _age(make_visit(), 3)
    provider = make_provider(states=("CA",), available=True)
    router = _router(redis_client)
    router.match()
    assert router.run_timeouts()["offer"] == 0  # not yet: the deadline is the database's
    past_deadline(visit)
    assert router.run_timeouts()["offer"] == 1
    provider.refresh_from_db()
    assert _status(visit) == (S.WAITING, None)
    assert provider.availability == Availability.OFFLINE
    assert visit.events.last().detail.endswith("expired")
    assert redis_client.zscore(ws.queue_key("CA", 0), visit.pk) == visit.requested_at.timestamp()


def test_it_expires_a_visit_that_waited_too_long_and_opens_a_support_case(db, redis_client):
    visit = _age(make_visit(state="WY"), 31)
    fresh = _age(make_visit(state="WY"), 29)
    router = _router(redis_client, max_wait=30 * 60)
    assert router.run_timeouts()["wait"] == 1
    visit.refresh_from_db()
    assert visit.status == S.EXPIRED
    case = SupportCase.objects.get(visit=visit)
    assert (case.category, case.patient_id, case.status) == ("routing", visit.patient_id, "open")
    assert case.notes.count() == 1
    assert _status(fresh)[0] == S.WAITING


def test_it_lets_a_patient_cancel_while_an_offer_is_out(db, redis_client):
    visit = make_visit()
    provider = make_provider(states=("CA",), available=True)
    router = _router(redis_client)
    router.match()
    visit_actions.cancel_visit(visit, actor=Actor.patient_app())
    router.handle({"kind": "visit_status", "actor": "patient", "visit": str(visit.pk), "provider": str(provider.pk)})
    assert visit.offers.get().outcome == "cancelled"
    next_visit = make_visit()
    router.handle({"kind": "visit_waiting", "actor": "patient", "visit": str(next_visit.pk)})
    router.match()
    assert _status(next_visit) == (S.OFFERED, provider.pk)


def test_it_withdraws_an_offer_when_the_license_is_suspended(db, redis_client):
    visit = make_visit(state="CA")
    provider = make_provider(states=("CA", "NV"), available=True)
    router = _router(redis_client)
    router.match()
    license = provider.licenses.get(state="CA")
    license_actions.change_license_status(license, LicenseStatus.SUSPENDED, actor=Actor.system(), reason="board action")
    router.handle({"kind": "license_changed", "actor": "staff", "provider": str(provider.pk), "state": "CA"})
    provider.refresh_from_db()
    assert _status(visit) == (S.WAITING, None)
    assert provider.availability == Availability.AVAILABLE
    assert redis_client.zscore(ws.AVAILABLE.format("CA"), provider.pk) is None
    assert redis_client.zscore(ws.AVAILABLE.format("NV"), provider.pk) is not None
    assert "license no longer valid in CA" in visit.events.last().detail


def test_it_withdraws_an_offer_whose_license_expired_in_the_sweep(db, redis_client):
    visit = make_visit(state="CA")
    provider = make_provider(states=(), available=True)
    license = make_license(provider, "CA", expires_in_days=0)
    router = _router(redis_client)
    router.match()
    type(license).objects.filter(pk=license.pk).update(expires_on=state_today("CA") - dt.timedelta(days=1))
    assert router.withdraw_ineligible_offers() == 1
    assert _status(visit) == (S.WAITING, None)


def test_it_rebuilds_after_redis_loses_everything_and_loses_no_visit(db, redis_client):
    providers = [make_provider(states=("CA",), available=True) for _ in range(3)]
    visits = [_age(make_visit(), 10 - i) for i in range(5)]
    router = _router(redis_client)
    router.match()
    redis_client.flushdb()  # FLUSHALL for the router; only its own database, for other runs on this machine
    assert router.ensure_built() is True
    declined = Visit.objects.filter(status=S.OFFERED).first()
    offer_actions.decline_offer(declined, provider=declined.provider_id, actor=PROVIDER_APP)
    router.rebuild()
    router.match()
    statuses = [_status(v)[0] for v in visits]
    assert statuses.count(S.OFFERED) == 3 and statuses.count(S.WAITING) == 2
    assert redis_client.zcard(ws.queue_key("CA", 0)) == 2
    assert {v.provider_id for v in Visit.objects.filter(status=S.OFFERED)} == {p.pk for p in providers}


def _run_concurrently(redis_client, rounds=5):
    errors = []

    def work():
        try:
            router = Router(redis_client, RouterConfig(policy="longest_idle", offer_timeout=120, max_wait=1800,
                                                       batch_size=7))  # fmt: skip
            for _ in range(rounds):
                router.rebuild()
                router.match()
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_it_never_double_books_with_two_routers_running_at_once(transactional_db, redis_client):
    providers = [make_provider(states=("CA", "NV"), available=True) for _ in range(15)]
    for i in range(40):
        make_visit(state="CA" if i % 2 else "NV")
    assert _run_concurrently(redis_client) == []
    offered = list(Visit.objects.filter(status=S.OFFERED).values_list("provider_id", flat=True))
    assert len(offered) == len(set(offered)) == len(providers)
    assert Visit.objects.filter(status=S.WAITING).count() == 40 - len(providers)
    offers = VisitEvent.objects.filter(to_status=S.OFFERED).count()
    assert offers == len(providers)  # no decision was written twice


def test_it_rechecks_everything_after_a_bulk_license_import(db, redis_client):
    visit = make_visit(state="CA")
    provider = make_provider(states=("CA",), available=True)
    router = _router(redis_client)
    router.match()
    license = provider.licenses.get()
    type(license).objects.filter(pk=license.pk).update(status=LicenseStatus.SUSPENDED)  # as a bulk import writes
    router.handle({"kind": "licenses_imported", "actor": "staff", "providers": "5000"})
    assert _status(visit) == (S.WAITING, None)
    assert redis_client.zscore(ws.AVAILABLE.format("CA"), provider.pk) is None
