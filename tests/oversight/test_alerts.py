"""The alert conditions, read from real visit, provider, lease, router health and outbox rows."""

import datetime as dt

from clinical.actions import offers as offer_actions
from clinical.models import Provider, Visit
from clinical.routing.models import RouterHealth, RouterLease
from core import dbclock
from core.models import OutboxEntry
from oversight.alerts import conditions, leaderless_since
from oversight.models import AlertKind
from tests.builders import SYSTEM, make_patient, make_provider, make_visit
from tests.oversight.conftest import lead_router, leaderless_for


def _held(kind: str) -> dict[str, dict]:
    """Return the conditions of ``kind`` that hold now, by subject."""
    return {c.subject: c for c in conditions(dbclock.now()) if c.kind == kind}


def waited(visit: Visit, seconds: int) -> Visit:
    """Make the visit requested ``seconds`` ago (test set-up only)."""
    Visit.objects.filter(pk=visit.pk).update(requested_at=dbclock.now() - dt.timedelta(seconds=seconds))
    return visit


def test_it_finds_a_state_with_waiting_patients_and_no_provider_on_shift(router):
    make_visit(state="TX")
    make_visit(state="TX")
    make_provider(states=("TX",))  # licensed there, but offline
    make_provider(states=("CA",), available=True)  # available, but not licensed there
    held = _held(AlertKind.NO_PROVIDER)
    assert list(held) == ["TX"]
    assert (held["TX"].state, held["TX"].detail) == ("TX", {"waiting": 2})
    assert held["TX"].message == "TX: 2 waiting, no licensed provider on shift"


def test_it_counts_only_active_providers_licensed_in_the_state_now(router):
    make_visit(state="TX")
    inactive = make_provider(states=("TX",), available=True)
    Provider.objects.filter(pk=inactive.pk).update(is_active=False)  # set-up: deactivated while available
    make_provider(states=("TX",), available=True, expires_in_days=-2)  # license lapsed
    assert "TX" in _held(AlertKind.NO_PROVIDER)
    make_provider(states=("TX",), available=True)
    assert _held(AlertKind.NO_PROVIDER) == {}


def test_it_counts_a_provider_with_an_offer_out_as_on_shift(router):
    # Two patients wait in TX; its one provider holds an offer of a third: busy, not idle, yet on
    # shift. The alert is for states nobody covers; a slow queue is the wait-over-target alert's.
    provider = make_provider(states=("TX",), available=True)
    offer_actions.offer_visit(make_visit(state="TX"), provider, actor=SYSTEM)
    make_visit(state="TX")
    make_visit(state="TX")
    assert _held(AlertKind.NO_PROVIDER) == {}


def test_it_does_not_count_an_offered_visit_as_unserved(router):
    provider = make_provider(states=("TX",), available=True)
    offer_actions.offer_visit(make_visit(state="TX"), provider, actor=SYSTEM)
    assert _held(AlertKind.NO_PROVIDER) == {}


def test_it_finds_a_longest_wait_past_its_priority_target(router, settings):
    settings.ROUTING_SLA_URGENT, settings.ROUTING_SLA_ROUTINE = 120, 1800
    make_provider(states=("TX",), available=True)
    waited(make_visit(state="TX", priority=2), 125)
    waited(make_visit(state="TX", priority=0), 600)  # routine: well within its 30 minutes
    waited(make_visit(state="NV", priority=2), 60)
    held = _held(AlertKind.WAIT_OVER_TARGET)
    assert list(held) == ["TX/urgent"]
    assert held["TX/urgent"].detail == {"priority": "urgent", "waiting": 1, "longest_wait_s": 125, "target_s": 120}
    assert held["TX/urgent"].message == "TX urgent: longest wait 2 min, target 2 min"


def test_it_keeps_counting_a_wait_while_the_visit_is_offered(router):
    provider = make_provider(states=("TX",), available=True)
    visit = waited(make_visit(state="TX", priority=2), 300)
    offer_actions.offer_visit(visit, provider, actor=SYSTEM)
    assert list(_held(AlertKind.WAIT_OVER_TARGET)) == ["TX/urgent"]


def test_it_finds_no_router_when_none_ever_ran(db):
    RouterLease.objects.all().delete()
    RouterHealth.objects.all().delete()
    assert _held(AlertKind.NO_ROUTER)[""].message == "No router has ever led"


def test_it_finds_no_router_only_after_two_lease_periods(db, settings):
    settings.ROUTING_LEASE_SECONDS = 5
    lead_router()
    assert _held(AlertKind.NO_ROUTER) == {}
    leaderless_for(8)
    assert _held(AlertKind.NO_ROUTER) == {}
    leaderless_for(12)
    held = _held(AlertKind.NO_ROUTER)[""]
    assert held.message == "No router leading for 12 s"
    assert held.detail["last_leader"] == "tests:router"


def _report(name: str, *, seen_ago: float, started_ago: float = 3600) -> None:
    now = dbclock.now()
    RouterHealth.objects.update_or_create(
        name=name,
        defaults={
            "host": "test", "pid": 1, "started_at": now - dt.timedelta(seconds=started_ago),
            "seen_at": now - dt.timedelta(seconds=seen_ago),
        },
    )  # fmt: skip


def test_it_dates_a_released_lease_from_its_holders_last_report(db, settings):
    settings.ROUTING_LEASE_SECONDS = 5
    lead_router()
    RouterLease.objects.filter(pk=1).update(expires_at=None)  # released at a clean shutdown
    _report("tests:router", seen_ago=3)
    _report("standby", seen_ago=0)  # a standby still reporting does not count as leading
    assert _held(AlertKind.NO_ROUTER) == {}
    _report("tests:router", seen_ago=30)
    assert _held(AlertKind.NO_ROUTER)[""].message == "No router leading for 30 s"


def test_it_dates_leaderless_time_from_the_lease_the_holder_or_the_first_router():
    at = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)
    later = at + dt.timedelta(minutes=1)
    assert leaderless_since(at, "r1", at, later, at) == at
    assert leaderless_since(None, "r1", at, later, at) == later
    assert leaderless_since(None, "r1", at, None, None) == at
    assert leaderless_since(None, "", None, None, later) == later
    assert leaderless_since(None, None, None, None, None) is None


def test_it_finds_a_stale_outbox_only_with_elasticsearch(router, settings):
    settings.SEARCH_OUTBOX_ALERT_MINUTES = 10
    now = dbclock.now()
    OutboxEntry.objects.create(label="clinical.patient", object_id=1, created_at=now - dt.timedelta(minutes=11))
    OutboxEntry.objects.create(label="clinical.patient", object_id=2, created_at=now)
    settings.ELASTICSEARCH_URL = None
    assert _held(AlertKind.OUTBOX_STALE) == {}
    settings.ELASTICSEARCH_URL = "http://127.0.0.1:9"
    assert _held(AlertKind.OUTBOX_STALE)[""].message == "Search outbox: oldest entry waiting 11 min"
    OutboxEntry.objects.filter(object_id=1).delete()
    assert _held(AlertKind.OUTBOX_STALE) == {}


def test_it_names_no_patient_in_any_condition(router):
    make_visit(patient=make_patient(first_name="Jane", last_name="Roe", state="TX"), state="TX")
    waited(make_visit(patient=make_patient(first_name="Jane", last_name="Doe"), state="NV", priority=2), 3600)
    found = conditions(dbclock.now())
    assert {c.kind for c in found} == {AlertKind.NO_PROVIDER, AlertKind.WAIT_OVER_TARGET}
    assert all(name not in f"{c.message} {c.detail}" for c in found for name in ("Jane", "Roe", "Doe"))
