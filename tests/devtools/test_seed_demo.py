import datetime as dt
from io import StringIO

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import transaction
from django.db.models import Max
from django.test import Client
from django.utils import timezone

from clinical.models import (
    FINAL_STATUSES,
    PROVIDER_HOLDING_STATUSES,
    Availability,
    LicenseStatus,
    Patient,
    Provider,
    ProviderLicense,
    Visit,
    VisitEvent,
    VisitStatus,
)
from clinical.validators import npi_is_valid, validate_e164
from core.audit import ActorKind
from devtools.seed import demo
from devtools.seed.users import DEMO_USERS
from ops_console import roles
from support.models import CaseCategory, CaseNote, SupportCase

S = VisitStatus
SMALL = demo.DemoSize(providers=20, patients=100, visits=300)
AUDITED = (Visit, Patient, Provider, ProviderLicense, SupportCase)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Hash the demo passwords cheaply; the real hasher costs a second per user on this machine."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _last_pks() -> dict:
    models = (*AUDITED, VisitEvent, CaseNote, *(model.history.model for model in AUDITED))
    return {model: model.objects.aggregate(last=Max("pk"))["last"] or 0 for model in models}


@pytest.fixture
def seeded(db):
    """Seed the small demo and return the last primary keys from before it.

    Other test runs may commit rows to the same database meanwhile, so tests look only at rows
    the seed created (``_new``).
    """
    last_pks = _last_pks()
    demo.seed_demo(size=SMALL, seed=7)
    return last_pks


def _new(model, seeded):
    return model.objects.filter(pk__gt=seeded[model])


def _row_counts(seeded) -> dict[str, int]:
    return {model.__name__: _new(model, seeded).count() for model in seeded}


def test_it_creates_the_requested_numbers(seeded):
    assert Provider.objects.count() == 20
    assert Patient.objects.count() == 100
    assert Visit.objects.count() == 300
    assert SupportCase.objects.count() == SMALL.support_cases > 0
    assert ProviderLicense.objects.count() >= 20
    assert _new(VisitEvent, seeded).count() >= 2 * _new(Visit, seeded).count()


def test_it_adds_nothing_when_run_again(seeded):
    before = _row_counts(seeded)
    tallies = demo.seed_demo(size=SMALL, seed=7)
    assert _row_counts(seeded) == before
    assert all(tally.created == 0 for tally in tallies)


def test_it_tops_up_to_a_larger_size_without_duplicates(seeded):
    demo.seed_demo(size=demo.DemoSize(providers=25, patients=120, visits=400), seed=8)
    assert (Provider.objects.count(), Patient.objects.count(), Visit.objects.count()) == (25, 120, 400)
    assert Visit.objects.values("public_id").distinct().count() == 400
    _assert_each_holding_provider_holds_one_visit()


def test_it_chains_every_timeline_from_request_to_the_current_status(seeded):
    events_by_visit: dict[int, list[VisitEvent]] = {}
    for event in _new(VisitEvent, seeded).order_by("visit_id", "at", "id"):
        events_by_visit.setdefault(event.visit_id, []).append(event)
    for visit in _new(Visit, seeded):
        events = events_by_visit[visit.pk]
        assert (events[0].from_status, events[0].to_status) == ("", S.WAITING)
        assert events[0].at == visit.requested_at
        for previous, event in zip(events, events[1:], strict=False):
            assert event.from_status == previous.to_status
            assert event.at > previous.at
        assert events[-1].to_status == visit.status
        assert events[-1].at < timezone.now()


def test_it_names_the_actor_kind_of_each_transition(seeded):
    expected = {
        S.WAITING: {ActorKind.PATIENT, ActorKind.PROVIDER, ActorKind.ROUTER},
        S.OFFERED: {ActorKind.ROUTER},
        S.ACCEPTED: {ActorKind.PROVIDER},
        S.CONNECTING: {ActorKind.PROVIDER},
        S.IN_PROGRESS: {ActorKind.PROVIDER},
        S.COMPLETED: {ActorKind.PROVIDER},
        S.FAILED: {ActorKind.PROVIDER},
        S.CANCELLED: {ActorKind.PATIENT},
        S.EXPIRED: {ActorKind.ROUTER},
    }
    for to_status, actor_kind in _new(VisitEvent, seeded).values_list("to_status", "actor_kind").distinct():
        assert actor_kind in expected[to_status]
    requests = _new(VisitEvent, seeded).filter(from_status="")
    assert set(requests.values_list("actor_kind", flat=True)) == {ActorKind.PATIENT}


def test_it_spreads_visits_over_every_status(seeded):
    visits = _new(Visit, seeded)
    assert set(visits.values_list("status", flat=True)) == set(S.values)
    assert visits.filter(status=S.COMPLETED).count() > visits.count() / 2


def test_it_keeps_milestones_consistent_with_the_status(seeded):
    for visit in _new(Visit, seeded):
        if visit.status == S.WAITING:
            assert visit.provider_id is None
            assert visit.ended_at is None and visit.accepted_at is None
        if visit.status in (S.COMPLETED, S.IN_PROGRESS):
            assert visit.requested_at < visit.offered_at < visit.accepted_at < visit.started_at
        if visit.status == S.COMPLETED:
            assert visit.started_at < visit.ended_at
        if visit.status in (S.EXPIRED, S.FAILED, S.COMPLETED):
            assert visit.ended_at is not None and visit.cancelled_at is None
        if visit.status == S.CANCELLED:
            assert visit.cancelled_at is not None and visit.ended_at is None
        if visit.status in PROVIDER_HOLDING_STATUSES:
            assert visit.provider_id is not None and visit.ended_at is None
        if visit.status == S.EXPIRED:
            assert visit.provider_id is None
        assert visit.offer_count == visit.events.filter(to_status=S.OFFERED).count()


def test_it_dates_each_milestone_at_its_event(seeded):
    field_of = {S.ACCEPTED: "accepted_at", S.IN_PROGRESS: "started_at", S.CANCELLED: "cancelled_at"}
    visits = _new(Visit, seeded).in_bulk()
    for event in _new(VisitEvent, seeded).filter(to_status__in=field_of):
        assert getattr(visits[event.visit_id], field_of[event.to_status]) == event.at
    for event in _new(VisitEvent, seeded).filter(to_status__in=FINAL_STATUSES).exclude(to_status=S.CANCELLED):
        assert visits[event.visit_id].ended_at == event.at


def test_it_sends_some_visits_back_to_the_queue_before_a_second_offer(seeded):
    assert _new(VisitEvent, seeded).filter(from_status=S.OFFERED, to_status=S.WAITING).exists()
    assert _new(Visit, seeded).filter(offer_count__gte=2).exists()


def _assert_each_holding_provider_holds_one_visit() -> None:
    holding = {
        Availability.RESERVED: (S.OFFERED,),
        Availability.BUSY: (S.ACCEPTED, S.CONNECTING, S.IN_PROGRESS),
    }
    for availability, statuses in holding.items():
        for provider in Provider.objects.filter(availability=availability):
            held = Visit.objects.filter(provider=provider, status__in=PROVIDER_HOLDING_STATUSES)
            assert [visit.status in statuses for visit in held] == [True]
            assert provider.available_since is not None
    holders = Visit.objects.filter(status__in=PROVIDER_HOLDING_STATUSES).values_list("provider_id", flat=True)
    assert set(Provider.objects.filter(pk__in=holders).values_list("availability", flat=True)) <= set(holding)


def test_it_makes_each_holding_provider_reserved_or_busy(seeded):
    assert Provider.objects.filter(availability__in=(Availability.RESERVED, Availability.BUSY)).exists()
    _assert_each_holding_provider_holds_one_visit()
    assert not Provider.objects.filter(availability=Availability.OFFLINE, available_since__isnull=False).exists()
    assert not Provider.objects.filter(availability=Availability.AVAILABLE, available_since__isnull=True).exists()


def test_it_offers_visits_only_to_providers_licensed_there_at_that_instant(seeded):
    for event in _new(VisitEvent, seeded).filter(to_status=S.OFFERED).select_related("visit", "provider"):
        licenses = ProviderLicense.objects.filter(provider=event.provider, state=event.visit.located_state)
        assert licenses.valid_at(event.at).exists(), event  # by the state's own calendar


def test_it_gives_providers_and_patients_valid_identifiers(seeded):
    for provider in _new(Provider, seeded):
        assert npi_is_valid(provider.npi)
        validate_e164(provider.phone)
    for patient in _new(Patient, seeded):
        validate_e164(patient.phone)
        assert dt.date(1930, 1, 1) <= patient.date_of_birth <= dt.date(2024, 12, 31)
        assert patient.mrn.startswith("M") and patient.state and patient.city
    assert Patient.objects.values("mrn").distinct().count() == Patient.objects.count()


def test_it_mixes_license_states_and_expiry_dates(db):
    demo.seed_demo(size=demo.DemoSize(providers=100, patients=0, visits=0), seed=3)
    today = timezone.localdate()
    licenses = ProviderLicense.objects.all()
    active = licenses.filter(status=LicenseStatus.ACTIVE)
    assert active.count() > licenses.count() * 0.8
    assert active.filter(expires_on__gte=today, expires_on__lte=today + dt.timedelta(days=30)).exists()
    assert active.filter(expires_on__lt=today).exists()
    assert set(licenses.values_list("status", flat=True)) >= {LicenseStatus.EXPIRED, LicenseStatus.PENDING}
    assert Provider.objects.filter(availability=Availability.AVAILABLE).exists()
    assert Provider.objects.filter(availability=Availability.OFFLINE).exists()


def test_it_writes_a_system_history_record_for_every_row(seeded):
    for model in AUDITED:
        by_seed = _new(model.history.model, seeded).filter(history_actor=ActorKind.SYSTEM)
        assert set(by_seed.values_list("history_actor_label", flat=True)) == {"seed_demo"}
        assert set(by_seed.values_list("id", flat=True)) == set(_new(model, seeded).values_list("pk", flat=True))
        assert set(by_seed.values_list("history_change_reason", flat=True)) == {"demo seed"}


def test_it_writes_a_visit_history_record_per_transition(seeded):
    assert _new(Visit.history.model, seeded).count() == _new(VisitEvent, seeded).count()
    visit = _new(Visit, seeded).filter(status=S.COMPLETED).first()
    statuses = list(visit.history.order_by("history_date").values_list("status", flat=True))
    events = list(visit.events.values_list("to_status", flat=True))
    assert statuses == events


def test_it_opens_support_cases_about_expired_and_failed_visits(db):
    demo.seed_demo(size=demo.DemoSize(providers=20, patients=100, visits=1000), seed=7)
    routing = SupportCase.objects.filter(category=CaseCategory.ROUTING)
    technical = SupportCase.objects.filter(category=CaseCategory.TECHNICAL)
    assert routing.exists() and not routing.exclude(visit__status=S.EXPIRED).exists()
    assert technical.exists() and not technical.exclude(visit__status=S.FAILED).exists()
    assert SupportCase.objects.filter(assignee__username="support").exists()
    assert SupportCase.objects.filter(created_by__isnull=True).exists()
    for case in SupportCase.objects.prefetch_related("notes"):
        assert 1 <= len(case.notes.all()) <= 3
        assert all(note.created_at >= case.created_at for note in case.notes.all())


def test_it_creates_the_demo_users_who_can_sign_in(seeded):
    expected = {
        "support": roles.SUPPORT_AGENT,
        "clinops": roles.CLINICAL_OPS,
        "engineer": roles.ENGINEER,
        "lead": roles.OPS_LEAD,
    }
    for username, role in expected.items():
        user = get_user_model().objects.get(username=username)
        assert user.is_staff
        assert roles.role_of(user) == role
        assert Client().login(username=username, password=settings.OPS_DEMO_PASSWORD)


def test_it_leaves_an_existing_users_password_alone(db):
    get_user_model().objects.create_user("lead", password="someone-elses-password", is_staff=True)
    demo.seed_demo(size=demo.DemoSize(providers=0, patients=0, visits=0))
    assert Client().login(username="lead", password="someone-elses-password")
    assert get_user_model().objects.filter(username__in=DEMO_USERS).count() == 4


def test_it_is_deterministic_for_a_seed(db):
    def snapshot():
        with transaction.atomic():
            demo.seed_demo(size=SMALL, seed=11)
            rows = (
                list(Provider.objects.order_by("pk").values_list("npi", "last_name", "availability")),
                list(Patient.objects.order_by("pk").values_list("last_name", "state", "date_of_birth")),
                list(Visit.objects.order_by("pk").values_list("public_id", "status", "located_state")),
            )
            transaction.set_rollback(True)
        return rows

    assert snapshot() == snapshot()


def test_it_skips_everything_with_if_empty_once_visits_exist(seeded):
    before = _row_counts(seeded)
    out = StringIO()
    call_command("seed_demo", "--if-empty", stdout=out)
    assert "already exists" in out.getvalue()
    assert _row_counts(seeded) == before


def test_it_reports_counts_and_time_from_the_command(db):
    out = StringIO()
    call_command("seed_demo", "--providers=5", "--patients=10", "--visits=20", "--seed=1", stdout=out)
    output = out.getvalue()
    assert "Demo data ready in" in output
    assert Visit.objects.count() == 20
    assert "visits" in output and "20 in total" in output
