"""Query counts of every console page stay the same when the page shows more rows.

Each test measures every page with a small data set, grows every table (and every related
list on the records whose forms are opened) tenfold, measures again, and asserts the counts
are equal and within the page's budget. Every page fits on one changelist page at both sizes.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from clinical.actions import offers as offer_actions
from clinical.actions import visits as visit_actions
from clinical.models import Patient, Provider, ProviderLicense, Visit
from clinical.reference import STATE_CHOICES
from core.audit import Actor
from core.models import SecurityEvent
from ops_console import roles
from ops_console.admin_site import ops_site
from support import actions as support_actions
from support.models import SupportCase
from tests.builders import make_license, make_patient, make_provider, make_visit
from tests.conftest import PASSWORD
from tests.ops_console.conftest import make_case, make_security_event

pytestmark = pytest.mark.usefixtures("fast_passwords", "one_page_lists")

SMALL, LARGE = 3, 30

# Queries each page may make, whatever the number of rows it shows: the count measured with
# Django 5.2 plus one, so that a new query on a page is a decision, not an accident.
BUDGET = {
    "provider list": 8,
    "provider search": 9,  # +1: the planner's row estimate (EXPLAIN) before an exact count
    "license list": 7,
    "license search": 8,  # +1: the planner's row estimate (EXPLAIN) before an exact count
    "patient list": 8,  # +1: the access log row (one insert, whatever the rows listed)
    "patient search": 8,  # by name alone: the names matched (and so the count), then the page's patients
    "visit list": 8,  # +1: the access log row
    "visit status filter": 8,  # +1: the access log row
    # +1: the planner's row estimate (EXPLAIN) before an exact count; +3: the patients followed
    # (their names, then the patients of the best ones) and the providers, ranked once for the
    # count and the page.
    "visit search": 11,
    "visit event list": 8,  # +1: the access log row
    "support case list": 8,  # +1: the access log row
    # +1: the planner's row estimate (EXPLAIN) before an exact count; +1: the patients followed, ranked once.
    "support case search": 9,
    "security event list": 7,
    "access log list": 8,
    "access log of a patient": 8,
    "user list": 8,
    "group list": 8,
    "provider form": 7,  # its licenses panel also gives the states it can take patients from
    "license form": 7,
    "patient form": 8,  # +1: the access log row; +1 for leads: who read this patient
    "visit form": 9,  # + the offers table
    "visit event form": 6,
    "support case form": 10,
    "security event form": 6,
    "user form": 10,
    "group form": 7,
    "provider history": 9,
    "visit history": 8,
    "support case history": 8,
}
LEAD_ONLY = {
    "security event list",
    "security event form",
    "access log list",
    "access log of a patient",
    "user list",
    "user form",
    "group list",
    "group form",
}
DASHBOARD_BUDGET = 12


@pytest.fixture
def one_page_lists(monkeypatch):
    """Show every row of every changelist on its first page, at both data sizes."""
    for model_admin in ops_site._registry.values():
        monkeypatch.setattr(model_admin, "list_per_page", 500)


@dataclass
class Scene:
    """The records whose pages are measured, and the providers and states used to grow them."""

    actor: Actor
    provider: Provider
    router: Provider
    patient: Patient
    visit: Visit
    case: SupportCase
    security_event: SecurityEvent
    colleague: object
    group: Group
    license_states: Iterator[str] = field(repr=False)


def _offered_then_cancelled(visit: Visit, scene: Scene) -> Visit:
    """Give the visit a provider and a longer timeline, and free the provider again."""
    offer_actions.offer_visit(visit, scene.router, actor=scene.actor)
    return visit_actions.cancel_visit(visit, actor=scene.actor, detail="patient left")


def build_scene(lead) -> Scene:
    """Create the records whose change forms are measured, each with no related rows yet."""
    actor = Actor.staff(lead)
    patient = make_patient(last_name="Focus")
    # The measured visit stays open, so it belongs to another patient: the focus patient's
    # visits grow one after another (a patient has one open visit at a time).
    visit = make_visit(patient=make_patient(last_name="Visitor"))
    colleague = get_user_model().objects.create_user("colleague", "c@ops.example", PASSWORD, is_staff=True)
    colleague.groups.add(Group.objects.get(name=roles.SUPPORT_AGENT))
    return Scene(
        actor=actor,
        provider=make_provider(states=(), last_name="Focus"),
        router=make_provider(states=("CA",), available=True, last_name="Router"),
        patient=patient,
        visit=visit,
        case=make_case(patient=visit.patient, visit=visit, actor=actor, assignee=lead),
        security_event=make_security_event(user=lead),
        colleague=colleague,
        group=Group.objects.create(name="Focus group"),
        license_states=iter([code for code, _ in STATE_CHOICES if code != "CA"]),
    )


def grow(scene: Scene, count: int) -> None:
    """Add ``count`` rows to every table and to every related list the measured pages show."""
    permissions = iter(Permission.objects.exclude(group=scene.group).order_by("id"))
    for _ in range(count):
        _grow_tables(scene)
        make_license(scene.provider, next(scene.license_states), expires_in_days=20)
        offer_actions.offer_visit(scene.visit, scene.router, actor=scene.actor, reoffer_after=0)
        offer_actions.decline_offer(scene.visit, provider=scene.router, actor=scene.actor)
        _offered_then_cancelled(make_visit(patient=scene.patient), scene)
        support_actions.add_note(scene.case, body="Called back.", actor=scene.actor)
        scene.group.permissions.add(next(permissions))


def _grow_tables(scene: Scene) -> None:
    n = get_user_model().objects.count()
    provider = make_provider(states=("CA", "NV"))
    patient = make_patient()
    visit = _offered_then_cancelled(make_visit(patient=patient), scene)
    make_visit(state=provider.licenses.first().state)
    make_case(patient=patient, visit=visit, actor=scene.actor, assignee=scene.colleague, notes=1)
    make_security_event(user=scene.colleague)
    user = get_user_model().objects.create_user(f"staff{n}", f"staff{n}@ops.example", PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name=roles.ENGINEER))
    Group.objects.create(name=f"Team {n}")


def _url(model: str, view: str, *args) -> str:
    return reverse(f"ops:{model.replace('.', '_')}_{view}", args=args)


def pages(scene: Scene) -> dict[str, str]:
    """Return every page measured, by name."""
    license = ProviderLicense.objects.filter(provider=scene.provider).first() or scene.router.licenses.get()
    return {
        "provider list": _url("clinical.provider", "changelist"),
        "provider search": _url("clinical.provider", "changelist") + "?q=Provider",
        "license list": _url("clinical.providerlicense", "changelist"),
        "license search": _url("clinical.providerlicense", "changelist") + "?q=Provider",
        "patient list": _url("clinical.patient", "changelist"),
        "patient search": _url("clinical.patient", "changelist") + "?q=Patient",
        "visit list": _url("clinical.visit", "changelist"),
        "visit status filter": _url("clinical.visit", "changelist") + "?status__exact=cancelled",
        "visit search": _url("clinical.visit", "changelist") + "?q=Patient",
        "visit event list": _url("clinical.visitevent", "changelist"),
        "support case list": _url("support.supportcase", "changelist"),
        "support case search": _url("support.supportcase", "changelist") + "?q=Case",
        "security event list": _url("core.securityevent", "changelist"),
        "access log list": _url("core.accesslog", "changelist"),
        "access log of a patient": _url("core.accesslog", "changelist") + f"?patient={scene.patient.pk}",
        "user list": _url("auth.user", "changelist"),
        "group list": _url("auth.group", "changelist"),
        "provider form": _url("clinical.provider", "change", scene.provider.pk),
        "license form": _url("clinical.providerlicense", "change", license.pk),
        "patient form": _url("clinical.patient", "change", scene.patient.pk),
        "visit form": _url("clinical.visit", "change", scene.visit.pk),
        "visit event form": _url("clinical.visitevent", "change", scene.visit.events.last().pk),
        "support case form": _url("support.supportcase", "change", scene.case.pk),
        "security event form": _url("core.securityevent", "change", scene.security_event.pk),
        "user form": _url("auth.user", "change", scene.colleague.pk),
        "group form": _url("auth.group", "change", scene.group.pk),
        "provider history": _url("clinical.provider", "history", scene.router.pk),
        "visit history": _url("clinical.visit", "history", scene.visit.pk),
        "support case history": _url("support.supportcase", "history", scene.case.pk),
    }


def measure(client, urls: dict[str, str]) -> dict[str, tuple[int, list[str]]]:
    """GET each page; return its query count and SQL by name."""
    measured = {}
    for name, url in urls.items():
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url)
        assert response.status_code == 200, f"{name}: {response.status_code}"
        measured[name] = (len(queries), [query["sql"] for query in queries.captured_queries])
    return measured


def _differences(small: dict, large: dict) -> str:
    lines = []
    for name in small:
        if small[name][0] != large[name][0]:
            lines += [f"{name}: {small[name][0]} queries small, {large[name][0]} large", *large[name][1], ""]
    return "\n".join(lines)


def measure_both_sizes(client, scene: Scene, urls: dict[str, str]) -> tuple[dict, dict]:
    """Measure ``urls`` at the small size and again after growing the data to the large size."""
    grow(scene, SMALL)
    measure(client, urls)  # warm process-wide caches (content types) outside the counts
    small = measure(client, urls)
    grow(scene, LARGE - SMALL)
    return small, measure(client, urls)


@pytest.mark.parametrize("role", ["lead", "support_agent"])
def test_it_keeps_every_page_query_count_constant_as_rows_grow(client, request, role, lead):
    scene = build_scene(lead)
    urls = {name: url for name, url in pages(scene).items() if role == "lead" or name not in LEAD_ONLY}
    client.force_login(request.getfixturevalue(role))
    small, large = measure_both_sizes(client, scene, urls)
    small_counts = {name: count for name, (count, _) in small.items()}
    assert small_counts == {name: count for name, (count, _) in large.items()}, _differences(small, large)
    assert {name: count for name, count in small_counts.items() if count > BUDGET[name]} == {}


def test_it_shows_all_rows_on_one_page_at_the_large_size(client, lead):
    scene = build_scene(lead)
    grow(scene, LARGE)
    client.force_login(lead)
    response = client.get(_url("clinical.visitevent", "changelist"))
    assert response.context["cl"].result_count == len(response.context["cl"].result_list) > LARGE


@pytest.mark.parametrize("role", ["support_agent", "clinical_ops", "engineer", "lead", "outsider"])
def test_it_renders_the_dashboard_with_constant_queries_for_each_role(client, request, role, lead):
    scene = build_scene(lead)
    client.force_login(request.getfixturevalue(role))
    small, large = measure_both_sizes(client, scene, {"dashboard": reverse("ops:index")})
    assert small["dashboard"][0] == large["dashboard"][0], _differences(small, large)
    assert small["dashboard"][0] <= DASHBOARD_BUDGET
