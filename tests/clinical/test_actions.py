"""Visit and provider transitions: every legal one works and leaves its trail; illegal ones are refused."""

import pytest
from django.db import IntegrityError, transaction

from clinical.actions import licenses as license_actions
from clinical.actions import offers as offer_actions
from clinical.actions import providers as provider_actions
from clinical.actions import timeouts as timeout_actions
from clinical.actions import visits as visit_actions
from clinical.models import Availability, LicenseStatus, OfferOutcome, Visit, VisitEvent, VisitStatus
from core.audit import Actor
from core.errors import ActionError, IllegalTransition
from tests.builders import make_license, make_patient, make_provider, make_visit, past_deadline

ROUTER = Actor.router()
PROVIDER_APP = Actor.provider_app()
PATIENT_APP = Actor.patient_app()
S = VisitStatus


def _offered(state="CA"):
    provider = make_provider(states=(state,), available=True)
    visit = offer_actions.offer_visit(make_visit(state=state), provider, actor=ROUTER)
    return visit, provider


def _trail(visit):
    return [(e.from_status, e.to_status) for e in visit.events.order_by("at", "id")]


def _availability(provider):
    provider.refresh_from_db()
    return provider.availability


def test_it_walks_a_visit_from_request_to_completion(db):
    visit, provider = _offered()
    offer_actions.accept_visit(visit, provider=visit.provider_id, actor=PROVIDER_APP)
    visit_actions.start_connecting(visit, actor=Actor.system())
    visit_actions.mark_connected(visit, actor=PROVIDER_APP)
    assert _availability(provider) == Availability.BUSY
    visit = visit_actions.complete_visit(visit, actor=PROVIDER_APP)
    assert visit.status == S.COMPLETED
    assert visit.requested_at <= visit.offered_at <= visit.accepted_at <= visit.started_at <= visit.ended_at
    assert _trail(visit) == [
        ("", S.WAITING), (S.WAITING, S.OFFERED), (S.OFFERED, S.ACCEPTED),
        (S.ACCEPTED, S.CONNECTING), (S.CONNECTING, S.IN_PROGRESS), (S.IN_PROGRESS, S.COMPLETED),
    ]  # fmt: skip
    assert _availability(provider) == Availability.AVAILABLE
    at = {e.to_status: e.at for e in visit.events.all()}
    assert (at[S.WAITING], at[S.OFFERED], at[S.ACCEPTED], at[S.IN_PROGRESS], at[S.COMPLETED]) == (
        visit.requested_at, visit.offered_at, visit.accepted_at, visit.started_at, visit.ended_at,
    )  # fmt: skip


def test_it_writes_history_with_the_actor_for_every_transition(db, lead):
    visit, provider = _offered()
    visit_actions.cancel_visit(visit, actor=Actor.staff(lead), detail="patient called to cancel")
    records = list(Visit.history.filter(id=visit.pk).order_by("history_date", "history_id"))
    assert [r.status for r in records] == [S.WAITING, S.OFFERED, S.CANCELLED]
    assert [r.history_actor for r in records] == ["system", "router", "staff"]
    assert records[-1].history_user == lead
    assert records[-1].history_change_reason == "patient called to cancel"
    event = visit.events.last()
    assert (event.actor_kind, event.staff_user, event.provider) == ("staff", lead, provider)


def test_it_connects_straight_from_accepted(db):
    visit, _ = _offered()
    offer_actions.accept_visit(visit, provider=visit.provider_id, actor=PROVIDER_APP)
    assert visit_actions.mark_connected(visit, actor=PROVIDER_APP).status == S.IN_PROGRESS


def test_it_puts_a_rejected_offer_back_in_line_and_frees_the_provider(db):
    visit, provider = _offered()
    visit = offer_actions.decline_offer(visit, provider=provider, actor=PROVIDER_APP)
    assert (visit.status, visit.provider_id, visit.offer_count) == (S.WAITING, None, 1)
    assert _availability(provider) == Availability.AVAILABLE
    assert visit.events.last().provider == provider


def test_it_sets_a_provider_offline_when_their_offer_expires(db):
    visit, provider = _offered()
    past_deadline(visit)
    offer_actions.expire_offer(visit, provider_id=provider.pk, actor=ROUTER)
    provider.refresh_from_db()
    assert (provider.availability, provider.available_since) == (Availability.OFFLINE, None)
    assert visit.offers.get().outcome == OfferOutcome.EXPIRED


def test_it_refuses_to_expire_an_offer_before_its_deadline(db):
    visit, provider = _offered()
    with pytest.raises(IllegalTransition, match="past its deadline"):
        offer_actions.expire_offer(visit, provider_id=provider.pk, actor=ROUTER)
    assert _availability(provider) == Availability.RESERVED


def test_it_frees_the_provider_when_the_patient_cancels_during_an_offer(db):
    visit, provider = _offered()
    idle_since = Visit.objects.get(pk=visit.pk).provider.available_since
    visit = visit_actions.cancel_visit(visit, actor=PATIENT_APP)
    provider.refresh_from_db()
    assert visit.status == S.CANCELLED and visit.cancelled_at
    assert provider.availability == Availability.AVAILABLE
    assert provider.available_since == idle_since  # keeps their place among idle providers


@pytest.mark.parametrize("ending", ["fail_visit", "complete_visit"])
def test_it_frees_the_provider_when_a_visit_ends(db, ending):
    visit, provider = _offered()
    offer_actions.accept_visit(visit, provider=visit.provider_id, actor=PROVIDER_APP)
    visit_actions.mark_connected(visit, actor=PROVIDER_APP)
    VISIT_STEPS[ending](visit, actor=PROVIDER_APP)
    assert _availability(provider) == Availability.AVAILABLE


def test_it_expires_a_waiting_visit(db):
    visit = timeout_actions.expire_visit(make_visit(), actor=ROUTER)
    assert visit.status == S.EXPIRED and visit.ended_at


def test_it_refuses_to_expire_a_visit_before_the_maximum_wait_by_the_database_clock(db):
    visit = make_visit()
    with pytest.raises(IllegalTransition, match="has not waited"):
        timeout_actions.expire_visit(visit, actor=ROUTER, max_wait=60)
    assert Visit.objects.get(pk=visit.pk).status == S.WAITING


ILLEGAL = [
    ("accept_visit", S.WAITING),
    ("mark_connected", S.WAITING),
    ("complete_visit", S.OFFERED),
    ("start_connecting", S.OFFERED),
    ("fail_visit", S.WAITING),
    ("decline_offer", S.WAITING),
    ("expire_visit", S.OFFERED),
    ("cancel_visit", S.COMPLETED),
    ("cancel_visit", S.IN_PROGRESS),
    ("complete_visit", S.CANCELLED),
]
# The answers to an offer name the provider who answers.
ANSWERS = {"accept_visit", "decline_offer"}
VISIT_STEPS = {
    name: getattr(module, name) for module in (visit_actions, offer_actions, timeout_actions) for name in dir(module)
}


def _visit_in(status):
    if status == S.WAITING:
        return make_visit()
    visit, _ = _offered()
    if status == S.OFFERED:
        return visit
    if status == S.CANCELLED:
        return visit_actions.cancel_visit(visit, actor=PATIENT_APP)
    offer_actions.accept_visit(visit, provider=visit.provider_id, actor=PROVIDER_APP)
    visit_actions.mark_connected(visit, actor=PROVIDER_APP)
    if status == S.COMPLETED:
        visit_actions.complete_visit(visit, actor=PROVIDER_APP)
    return Visit.objects.get(pk=visit.pk)


@pytest.mark.parametrize(("action", "status"), ILLEGAL)
def test_it_refuses_an_illegal_transition_and_writes_nothing(db, action, status):
    visit = _visit_in(status)
    events, history = visit.events.count(), visit.history.count()
    named = {"provider": make_provider()} if action in ANSWERS else {}
    with pytest.raises(IllegalTransition) as refused:
        VISIT_STEPS[action](visit, actor=ROUTER, **named)
    assert refused.value.field == "status"
    visit.refresh_from_db()
    assert (visit.status, visit.events.count(), visit.history.count()) == (status, events, history)


def test_it_refuses_offer_to_unlicensed_provider(db):
    provider = make_provider(states=("NV",), available=True)
    with pytest.raises(IllegalTransition, match="not licensed in CA now"):
        offer_actions.offer_visit(make_visit(state="CA"), provider, actor=ROUTER)


@pytest.mark.parametrize(
    "license_kwargs",
    [
        {"status": LicenseStatus.SUSPENDED},
        {"status": LicenseStatus.PENDING},
        {"expires_in_days": -1},
        {"issued_days_ago": -3},
    ],
    ids=["suspended", "pending", "expired-yesterday", "issued-in-future"],
)
def test_it_refuses_offer_when_the_license_is_not_valid_today(db, license_kwargs):
    provider = make_provider(states=(), available=True)
    make_license(provider, "CA", **license_kwargs)
    with pytest.raises(IllegalTransition):
        offer_actions.offer_visit(make_visit(state="CA"), provider, actor=ROUTER)


def test_it_counts_a_license_valid_on_its_last_day(db):
    provider = make_provider(states=(), available=True)
    make_license(provider, "CA", expires_in_days=0)
    assert offer_actions.offer_visit(make_visit(state="CA"), provider, actor=ROUTER).status == S.OFFERED


def test_it_refuses_offer_to_a_provider_who_is_not_available(db):
    visit, provider = _offered()
    with pytest.raises(IllegalTransition, match="not available"):
        offer_actions.offer_visit(make_visit(), provider, actor=ROUTER)


def test_it_refuses_to_take_a_reserved_provider_offline(db):
    _, provider = _offered()
    with pytest.raises(IllegalTransition):
        provider_actions.set_provider_availability(provider, available=False, actor=PROVIDER_APP)
    assert _availability(provider) == Availability.RESERVED


def test_it_refuses_to_make_an_inactive_provider_available(db):
    provider = make_provider()
    provider.is_active = False
    provider_actions.save_provider(provider, actor=Actor.system())
    with pytest.raises(IllegalTransition):
        provider_actions.set_provider_availability(provider, available=True, actor=PROVIDER_APP)


def test_it_records_availability_changes_in_history(db):
    provider = make_provider()
    provider_actions.set_provider_availability(provider, available=True, actor=PROVIDER_APP)
    provider_actions.set_provider_availability(provider, available=False, actor=PROVIDER_APP)
    assert [h.availability for h in provider.history.order_by("history_date", "history_id")][-2:] == [
        Availability.AVAILABLE,
        Availability.OFFLINE,
    ]


def test_it_lets_the_database_refuse_double_booking_when_actions_are_bypassed(db):
    visit, provider = _offered()
    other = make_visit()
    with pytest.raises(IntegrityError, match="clinical_visit_one_active_per_provider"), transaction.atomic():
        Visit.objects.filter(pk=other.pk).update(status=S.OFFERED, provider=provider)


def test_it_refuses_a_second_active_license_in_the_same_state(db):
    provider = make_provider(states=("CA",))
    with pytest.raises(ActionError, match="already has an active license"):
        make_license(provider, "CA")
    assert provider.licenses.count() == 1


def test_it_lets_the_database_refuse_a_second_active_license_when_actions_are_bypassed(db):
    provider = make_provider(states=("CA",))
    second = make_license(provider, "CA", status=LicenseStatus.PENDING)
    with pytest.raises(IntegrityError, match="clinical_providerlicense_one_active_per_state"), transaction.atomic():
        type(second).objects.filter(pk=second.pk).update(status=LicenseStatus.ACTIVE)


def test_it_refuses_a_license_that_expires_before_it_is_issued(db):
    provider = make_provider(states=())
    with pytest.raises(ActionError, match="expiry date must be after"):
        make_license(provider, "CA", issued_days_ago=10, expires_in_days=-20)


def test_it_requires_a_reason_to_change_a_license_status(db):
    license = make_license(make_provider(states=()), "TX")
    with pytest.raises(ActionError) as refused:
        license_actions.change_license_status(license, LicenseStatus.SUSPENDED, actor=Actor.system(), reason=" ")
    assert refused.value.field == "reason"


def test_it_gives_each_patient_a_unique_check_digited_mrn(db):
    first, second = make_patient(), make_patient()
    assert first.mrn != second.mrn
    assert first.mrn.startswith("M") and len(first.mrn) == 9


def test_it_names_the_field_when_a_visit_request_is_invalid(db):
    with pytest.raises(ActionError) as refused:
        visit_actions.request_visit(patient=make_patient(), located_state="ZZ", reason="x", actor=PATIENT_APP)
    assert refused.value.field == "located_state"
    assert not VisitEvent.objects.exists()


def test_it_refuses_to_edit_an_ended_visit(db):
    visit = visit_actions.cancel_visit(make_visit(), actor=PATIENT_APP)
    visit.priority = 2
    with pytest.raises(IllegalTransition):
        visit_actions.update_visit_details(visit, actor=Actor.system())
