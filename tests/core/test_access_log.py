"""The PHI access log: one row per view, list, search, export and API read; append-only; pruned by age."""

import datetime as dt
import json
from dataclasses import dataclass
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from clinical.actions import api_clients as api_client_actions
from clinical.actions import offers as offer_actions
from clinical.models import Patient, Provider, Visit, VisitEvent
from core.actions import access_log_cutoff
from core.audit import Actor
from core.models import AccessLog
from ops_console.admin_site import ops_site
from support.models import SupportCase
from tests.builders import make_patient, make_provider, make_visit
from tests.ops_console.conftest import make_case


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _url(model: str, view: str, *args) -> str:
    return reverse(f"ops:{model.replace('.', '_')}_{view}", args=args)


def test_it_records_one_row_with_every_id_when_patients_are_listed(client, support_agent):
    patients = [make_patient(last_name=f"Listed{n}") for n in range(3)]
    client.force_login(support_agent)
    response = client.get(_url("clinical.patient", "changelist"), HTTP_USER_AGENT="Firefox", REMOTE_ADDR="10.0.0.9")
    assert response.status_code == 200
    row = AccessLog.objects.get()
    assert (row.kind, row.user, row.model, row.ip, row.user_agent) == (
        "list", support_agent, "clinical.patient", "10.0.0.9", "Firefox"
    )  # fmt: skip
    assert sorted(row.object_ids) == sorted(str(p.pk) for p in patients)
    assert sorted(row.patient_ids) == sorted(p.pk for p in patients)
    assert row.path == _url("clinical.patient", "changelist")


def test_it_writes_nothing_for_a_list_or_filter_that_shows_no_rows(client, support_agent):
    make_case(visit=make_visit())  # an open case: the "closed" filter shows none
    client.force_login(support_agent)
    with CaptureQueriesContext(connection) as queries:
        assert client.get(_url("support.supportcase", "changelist"), {"status__exact": "closed"}).status_code == 200
        assert client.get(_url("clinical.patient", "changelist"), {"state__exact": "WY"}).status_code == 200
    assert not [q["sql"] for q in queries if "support_accesslog" in q["sql"]]
    assert not AccessLog.objects.exists()
    client.get(_url("support.supportcase", "changelist"), {"status__exact": "open"})
    assert list(AccessLog.objects.values_list("kind", "model")) == [("list", "support.supportcase")]


def test_it_records_the_patients_of_the_visits_listed(client, support_agent):
    visits = [make_visit(), make_visit()]
    client.force_login(support_agent)
    client.get(_url("clinical.visit", "changelist"))
    row = AccessLog.objects.get()
    assert (row.kind, row.model) == ("list", "clinical.visit")
    assert sorted(row.object_ids) == sorted(str(v.pk) for v in visits)
    assert sorted(row.patient_ids) == sorted(v.patient_id for v in visits)


@pytest.mark.parametrize("rows", [3, 30])
def test_it_writes_one_insert_whatever_the_number_of_rows_listed(client, support_agent, rows):
    for n in range(rows):
        make_patient(last_name=f"Bulk{n}")
    client.force_login(support_agent)
    with CaptureQueriesContext(connection) as queries:
        client.get(_url("clinical.patient", "changelist"))
    touching = [q["sql"] for q in queries if "support_accesslog" in q["sql"]]
    assert len(touching) == 1 and touching[0].startswith("INSERT")
    assert len(AccessLog.objects.get().object_ids) == rows


def test_it_records_one_row_per_view_of_a_patient_or_visit_page(client, support_agent):
    visit = make_visit()
    client.force_login(support_agent)
    client.get(_url("clinical.patient", "change", visit.patient_id))
    client.get(_url("clinical.visit", "change", visit.pk))
    rows = list(AccessLog.objects.order_by("id").values_list("kind", "model", "object_ids", "patient_ids"))
    assert rows == [
        ("view", "clinical.patient", [str(visit.patient_id)], [visit.patient_id]),
        ("view", "clinical.visit", [str(visit.pk)], [visit.patient_id]),
    ]


def test_it_records_each_history_page_of_a_visit_as_a_view(client, support_agent):
    visit = make_visit()
    client.force_login(support_agent)
    assert client.get(_url("clinical.visit", "history", visit.pk)).status_code == 200
    old = reverse("ops:clinical_visit_simple_history", args=[visit.pk, visit.history.earliest().history_id])
    assert client.get(old).status_code == 200
    rows = list(AccessLog.objects.values_list("kind", "source", "object_ids", "patient_ids"))
    assert rows == [("view", "history", [str(visit.pk)], [visit.patient_id])] * 2


def test_it_records_a_changelist_search_once_with_the_rows_it_showed(client, support_agent):
    patient = make_patient(last_name="Okonkwo")
    client.force_login(support_agent)
    client.get(_url("clinical.patient", "changelist"), {"q": "okonkwo"})
    row = AccessLog.objects.get()
    assert (row.kind, row.terms, row.object_ids) == ("search", "okonkwo", [str(patient.pk)])
    assert row.patient_ids == [patient.pk]


def test_it_records_nothing_for_pages_that_show_no_phi(client, support_agent):
    make_provider(states=("CA",))
    client.force_login(support_agent)
    client.get(_url("clinical.provider", "changelist"))
    assert not AccessLog.objects.exists()


def test_it_records_nothing_when_the_page_is_refused(client, outsider):
    patient = make_patient()
    client.force_login(outsider)
    assert client.get(_url("clinical.patient", "change", patient.pk)).status_code == 403
    assert client.get(_url("clinical.patient", "changelist")).status_code == 403
    assert not AccessLog.objects.exists()


def test_it_records_an_api_read_of_a_visit_with_the_client(client, db):
    visit = make_visit()
    api_client, token = api_client_actions.create_api_client(
        name="patient-app", scope="patient", patient=visit.patient, actor=Actor.system()
    )
    response = client.get(f"/api/v1/visits/{visit.public_id}", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200
    row = AccessLog.objects.get()
    assert (row.kind, row.api_client, row.user, row.object_ids) == ("api_read", api_client, None, [str(visit.pk)])
    assert row.patient_ids == [visit.patient_id]


def test_it_shows_leads_who_read_a_patient(client, support_agent, lead):
    patient = make_patient()
    client.force_login(support_agent)
    client.get(_url("clinical.patient", "changelist"))
    client.force_login(lead)
    html = client.get(_url("clinical.patient", "change", patient.pk)).content.decode()
    readers = html[html.index('id="phi-readers"') :]
    assert "support" in readers and "lead" in readers


def test_it_hides_who_read_a_patient_from_other_roles(client, support_agent):
    patient = make_patient()
    client.force_login(support_agent)
    assert 'id="phi-readers"' not in client.get(_url("clinical.patient", "change", patient.pk)).content.decode()


def test_it_filters_the_access_log_by_patient_user_and_date(client, support_agent, lead):
    seen, other = make_patient(), make_patient()
    client.force_login(support_agent)
    client.get(_url("clinical.patient", "change", seen.pk))
    client.get(_url("clinical.patient", "change", other.pk))
    client.force_login(lead)

    def listed(**params):
        response = client.get(_url("core.accesslog", "changelist"), params)
        assert response.status_code == 200
        return [row.object_ids for row in response.context["cl"].result_list]

    assert listed(patient=seen.pk) == [[str(seen.pk)]]
    assert listed(patient="not-a-number") == []
    assert len(listed(user=support_agent.pk)) == 2
    today = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)  # as the date filter's links
    assert len(listed(at__gte=str(today), at__lt=str(today + dt.timedelta(days=1)))) == 2
    assert listed(at__gte="2001-01-01 00:00:00+00:00", at__lt="2001-01-02 00:00:00+00:00") == []


def test_it_refuses_every_write_to_the_access_log_even_to_a_superuser(client, support_agent, django_user_model):
    patient = make_patient()
    client.force_login(support_agent)
    client.get(_url("clinical.patient", "change", patient.pk))
    row = AccessLog.objects.get()
    client.force_login(django_user_model.objects.create_superuser("root", "root@ops.example", "x"))
    assert client.get(_url("core.accesslog", "add")).status_code == 403
    assert client.post(_url("core.accesslog", "delete", row.pk), {"post": "yes"}).status_code == 403
    assert client.post(_url("core.accesslog", "change", row.pk), {"detail": "x"}).status_code == 403
    assert AccessLog.objects.filter(pk=row.pk, detail="").exists()


# --- exactly once: one row per PHI read, none for refusals and pages without PHI -------------


@dataclass
class Phi:
    """A patient with a visit offered to a provider, and a token of each app scope."""

    patient: Patient
    visit: Visit
    provider: Provider
    patient_token: str
    provider_token: str
    case: SupportCase


@pytest.fixture
def phi(db, redis_client) -> Phi:
    provider = make_provider(states=("CA",), available=True)
    visit = make_visit(patient=make_patient(last_name="Exactlyonce"))
    offer_actions.offer_visit(visit, provider, actor=Actor.router())
    _, patient_token = api_client_actions.create_api_client(
        name="patient-app", scope="patient", patient=visit.patient, actor=Actor.system()
    )
    _, provider_token = api_client_actions.create_api_client(
        name="provider-app", scope="provider", provider=provider, actor=Actor.system()
    )
    case = make_case(patient=visit.patient, visit=visit)
    return Phi(visit.patient, visit, provider, patient_token, provider_token, case)


@dataclass
class Read:
    """A request that reads PHI and the row it must record."""

    url: str
    params: dict
    kind: str
    model: str
    object_ids: list[str] | None  # None: not asserted
    names_patient: bool = True


def phi_reads(p: Phi) -> dict[str, Read]:
    """Return every kind of page that reads PHI, for a support agent or an ops lead."""
    patient, visit = str(p.patient.pk), str(p.visit.pk)
    patients, visits = _url("clinical.patient", "changelist"), _url("clinical.visit", "changelist")
    first_version = p.visit.history.earliest().history_id
    autocomplete = {"app_label": "support", "model_name": "supportcase", "field_name": "patient", "term": "exactly"}
    events = [
        str(pk) for pk in VisitEvent.objects.filter(visit=p.visit).order_by("-at", "-id").values_list("pk", flat=True)
    ]
    case = str(p.case.pk)
    return {
        "patient page": Read(_url("clinical.patient", "change", patient), {}, "view", "clinical.patient", [patient]),
        "patient history": Read(
            _url("clinical.patient", "history", patient), {}, "view", "clinical.patient", [patient]
        ),
        "visit page": Read(_url("clinical.visit", "change", visit), {}, "view", "clinical.visit", [visit]),
        "visit history": Read(_url("clinical.visit", "history", visit), {}, "view", "clinical.visit", [visit]),
        "visit old version": Read(
            reverse("ops:clinical_visit_simple_history", args=[visit, first_version]), {}, "view", "clinical.visit",
            [visit],
        ),
        "patient list": Read(patients, {}, "list", "clinical.patient", [patient]),
        "visit list": Read(visits, {}, "list", "clinical.visit", [visit]),
        "visit list, filtered": Read(visits, {"status__exact": "offered"}, "list", "clinical.visit", [visit]),
        "patient search": Read(patients, {"q": "exactlyonce"}, "search", "clinical.patient", [patient]),
        "visit search": Read(visits, {"q": p.patient.mrn}, "search", "clinical.visit", [visit]),
        "search finding nothing": Read(patients, {"q": "Nobodyhere"}, "search", "clinical.patient", [], False),
        "global search": Read(
            reverse("ops:global_search"), {"q": p.patient.mrn}, "search", "",
            [f"clinical.patient:{patient}", f"clinical.visit:{visit}", f"support.supportcase:{case}"],
        ),
        "autocomplete": Read(reverse("ops:autocomplete"), autocomplete, "search", "clinical.patient", [patient]),
        "timeline list": Read(_url("clinical.visitevent", "changelist"), {}, "list", "clinical.visitevent", events),
        "timeline row": Read(
            _url("clinical.visitevent", "change", events[0]), {}, "view", "clinical.visitevent", events[:1]
        ),
        "case list": Read(_url("support.supportcase", "changelist"), {}, "list", "support.supportcase", [case]),
        "case page": Read(_url("support.supportcase", "change", case), {}, "view", "support.supportcase", [case]),
    }  # fmt: skip


PHI_READS = [
    "patient page", "patient history", "visit page", "visit history", "visit old version", "patient list",
    "visit list", "visit list, filtered", "patient search", "visit search", "search finding nothing",
    "global search", "autocomplete", "timeline list", "timeline row", "case list", "case page",
]  # fmt: skip


@pytest.mark.parametrize("name", PHI_READS)
@pytest.mark.parametrize("reader", ["support_agent", "lead"])
def test_it_records_exactly_one_row_per_phi_page_with_the_ids_shown(client, request, phi, name, reader):
    user = request.getfixturevalue(reader)
    read = phi_reads(phi)[name]
    client.force_login(user)
    for _ in range(2):  # each request is one row: never merged, never doubled
        before = AccessLog.objects.count()
        response = client.get(read.url, read.params)
        assert response.status_code == 200, response.status_code
        assert AccessLog.objects.count() == before + 1
    row = AccessLog.objects.latest("id")
    assert (row.kind, row.model, row.user, row.path) == (read.kind, read.model, user, read.url)
    if read.object_ids is not None:
        assert row.object_ids == read.object_ids
        assert row.patient_ids == ([phi.patient.pk] if read.names_patient else [])


def test_it_lists_every_phi_read_it_checks(phi):
    assert sorted(PHI_READS) == sorted(phi_reads(phi))


@pytest.mark.parametrize("scope", ["patient", "provider"])
def test_it_records_exactly_one_row_per_api_read_of_a_visit(client, phi, scope):
    token = phi.patient_token if scope == "patient" else phi.provider_token
    url = f"/api/v1/visits/{phi.visit.public_id}"
    for n in (1, 2):
        assert client.get(url, HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200
        assert AccessLog.objects.filter(kind="api_read", object_ids=[str(phi.visit.pk)]).count() == n
    assert AccessLog.objects.count() == 2


@pytest.mark.parametrize(
    ("model", "file_format"), [("providerlicense", "0"), ("providerlicense", "1"), ("provider", "0")]
)
def test_it_records_exactly_one_row_per_export_and_none_for_its_form(client, phi, lead, model, file_format):
    client.force_login(lead)
    url = reverse(f"ops:clinical_{model}_export") + "?state__exact=CA" * (model == "providerlicense")
    assert client.get(url).status_code == 200
    assert not AccessLog.objects.exists()
    assert client.post(url, {"format": file_format, "resource": "0"}).status_code == 200
    row = AccessLog.objects.get()
    assert (row.kind, row.model, row.user) == ("export", f"clinical.{model}", lead)


def test_it_records_nothing_for_refused_phi_reads(client, phi, outsider, support_agent):
    client.force_login(outsider)
    for read in phi_reads(phi).values():
        assert client.get(read.url, read.params).status_code == 403, read.url
    client.force_login(support_agent)  # no export permission
    assert (
        client.post(reverse("ops:clinical_providerlicense_export"), {"format": "0", "resource": "0"}).status_code == 403
    )
    other_provider = make_provider(states=("CA",))
    _, stranger = api_client_actions.create_api_client(
        name="other", scope="provider", provider=other_provider, actor=Actor.system()
    )
    visit_url = f"/api/v1/visits/{phi.visit.public_id}"
    assert client.get(visit_url, HTTP_AUTHORIZATION=f"Bearer {stranger}").status_code == 403  # not the holder
    assert client.get(visit_url, HTTP_AUTHORIZATION="Bearer opc_0000_nope").status_code == 401
    assert client.get(visit_url).status_code == 401
    assert client.get("/api/v1/visits/ZZZZ-ZZZZ", HTTP_AUTHORIZATION=f"Bearer {phi.patient_token}").status_code == 404
    assert client.get(_url("clinical.patient", "changelist"), {"nonexistent": "1"}).status_code == 302  # ?e=1
    assert not AccessLog.objects.exists()


def test_it_records_nothing_for_pages_that_show_only_counts_providers_or_licenses(client, phi, lead):
    """The live queues page and its feed show counts per state, the dashboard counts and providers'
    licenses: no patient, MRN or visit id, so nothing to record (unless recent actions name one).
    """
    client.force_login(lead)
    pages = [
        reverse("ops:live_queues"), reverse("ops:live_queues_data"), reverse("ops:index"),
        _url("clinical.provider", "changelist"), _url("clinical.provider", "change", phi.provider.pk),
        _url("clinical.providerlicense", "changelist"), reverse("ops:slow_pages"),
    ]  # fmt: skip
    for url in pages:
        assert client.get(url).status_code == 200, url
    live = client.get(reverse("ops:live_queues_data")).json()
    assert phi.patient.mrn not in json.dumps(live) and phi.visit.public_id not in json.dumps(live)
    assert not AccessLog.objects.exists()


def _log_console_change(user, obj) -> None:
    """Write the admin log entry the console writes when ``user`` saves ``obj`` in its form."""
    request = RequestFactory().post("/")
    request.user = user
    ops_site._registry[type(obj)].log_change(request, obj, [{"changed": {"fields": ["Reason"]}}])


def test_it_records_the_patients_and_visits_the_dashboards_recent_actions_name(client, phi, lead):
    other = make_patient()
    for obj in (phi.patient, phi.visit, other, phi.provider, phi.visit):
        _log_console_change(lead, obj)
    client.force_login(lead)
    html = client.get(reverse("ops:index")).content.decode()
    assert phi.patient.mrn in html and phi.visit.public_id in html  # what makes the page PHI
    row = AccessLog.objects.get()
    assert (row.kind, row.model, row.source, row.user) == ("list", "", "dashboard", lead)
    # Newest first, as shown; each record once; the provider is not PHI.
    assert row.object_ids == [f"clinical.visit:{phi.visit.pk}", f"clinical.patient:{other.pk}",
                              f"clinical.patient:{phi.patient.pk}"]  # fmt: skip
    assert row.patient_ids == sorted([phi.patient.pk, other.pk])


def test_it_records_nothing_on_the_dashboard_of_someone_elses_changes(client, phi, lead, support_agent):
    _log_console_change(lead, phi.patient)
    client.force_login(support_agent)
    assert phi.patient.mrn not in client.get(reverse("ops:index")).content.decode()
    assert not AccessLog.objects.exists()


def test_it_records_the_dashboards_recent_actions_in_one_insert_whatever_their_number(client, lead, db):
    client.force_login(lead)

    def dashboard_queries(more_visits: int) -> list[str]:
        for _ in range(more_visits):
            visit = make_visit()
            _log_console_change(lead, visit)
            _log_console_change(lead, visit.patient)
        with CaptureQueriesContext(connection) as queries:
            assert client.get(reverse("ops:index")).status_code == 200
        return [q["sql"] for q in queries]

    few, many = dashboard_queries(1), dashboard_queries(4)
    assert len(few) == len(many)
    assert [sql.split()[0] for sql in many if "support_accesslog" in sql] == ["INSERT"]
    assert len(AccessLog.objects.latest("id").object_ids) == 10


# --- pruning ---------------------------------------------------------------------------------


def _row_aged(**age) -> AccessLog:
    return AccessLog.objects.create(kind="view", model="clinical.patient", at=timezone.now() - dt.timedelta(**age))


def test_it_prunes_only_rows_older_than_the_duration(db):
    old, kept = _row_aged(days=365 * 6 + 10), _row_aged(days=365 * 6 - 10)
    out = StringIO()
    call_command("prune_access_log", "--older-than", "6y", stdout=out)
    assert list(AccessLog.objects.values_list("pk", flat=True)) == [kept.pk]
    assert not AccessLog.objects.filter(pk=old.pk).exists()
    assert "Deleted 1 access log rows." in out.getvalue()


def test_it_reads_durations_in_years_and_days():
    now = dt.datetime(2028, 2, 29, 12, tzinfo=dt.UTC)
    assert access_log_cutoff("6y", now=now) == dt.datetime(2022, 2, 28, 12, tzinfo=dt.UTC)
    assert access_log_cutoff("90d", now=now) == now - dt.timedelta(days=90)


@pytest.mark.parametrize("duration", ["6", "0y", "six years", "-1d", "6m"])
def test_it_refuses_a_duration_it_cannot_read(db, duration):
    with pytest.raises(CommandError, match="6y or 90d"):
        call_command("prune_access_log", f"--older-than={duration}", stdout=StringIO())


# --- every method that renders PHI, and every API answer that names it -----------------------------


def test_it_records_a_changelist_a_post_renders(client, support_agent):
    patients = [make_patient(last_name=f"Posted{n}") for n in range(2)]
    client.force_login(support_agent)
    response = client.post(_url("clinical.patient", "changelist"), {"index": "0"})
    assert response.status_code == 200
    row = AccessLog.objects.get()
    assert (row.kind, row.method, sorted(row.object_ids)) == ("list", "POST", sorted(str(p.pk) for p in patients))


def test_it_records_a_head_of_a_patient_page(client, support_agent):
    patient = make_patient()
    client.force_login(support_agent)
    assert client.head(_url("clinical.patient", "change", patient.pk)).status_code == 200
    row = AccessLog.objects.get()
    assert (row.kind, row.method, row.object_ids) == ("view", "HEAD", [str(patient.pk)])


def test_it_records_a_history_page_a_post_renders(client, support_agent):
    visit = make_visit()
    client.force_login(support_agent)
    assert client.post(_url("clinical.visit", "history", visit.pk)).status_code == 200
    assert list(AccessLog.objects.values_list("kind", "method", "patient_ids")) == [
        ("view", "POST", [visit.patient_id])
    ]


def test_it_records_a_change_form_redrawn_after_a_failed_save(client, lead):
    patient = make_patient()
    client.force_login(lead)
    response = client.post(_url("clinical.patient", "change", patient.pk), {"first_name": "", "last_name": ""})
    assert response.status_code == 200 and response.context["errors"]
    assert list(AccessLog.objects.values_list("kind", "method", "object_ids")) == [("view", "POST", [str(patient.pk)])]


@pytest.mark.parametrize(("model", "query"), [("support.supportcase", "patient"), ("clinical.visit", "patient")])
def test_it_records_the_patient_an_add_form_names_from_the_query_string(client, lead, model, query):
    patient = make_patient(last_name="Prefilled")
    client.force_login(lead)
    response = client.get(_url(model, "add") + f"?{query}={patient.pk}")
    assert "Prefilled" in response.content.decode()
    row = AccessLog.objects.get()
    assert (row.kind, row.patient_ids, row.source) == ("view", [patient.pk], "add form")


def test_it_records_nothing_for_an_add_form_that_names_nobody(client, lead):
    client.force_login(lead)
    client.get(_url("support.supportcase", "add") + "?patient=999999999")
    assert not AccessLog.objects.exists()


def _api(client, method, path, token, body=None):
    data = json.dumps(body) if body is not None else None
    return getattr(client, method)(f"/api/v1/{path}", data=data, content_type="application/json",
                                   HTTP_AUTHORIZATION=f"Bearer {token}")  # fmt: skip


def test_it_records_every_api_answer_that_names_a_visit(client, db):
    provider = make_provider(states=("CA",), available=True)
    patient = make_patient()
    patient_app, patient_token = api_client_actions.create_api_client(name="p", scope="patient", patient=patient,
                                                           actor=Actor.system())  # fmt: skip
    doctor, doctor_token = api_client_actions.create_api_client(name="d", scope="provider", provider=provider,
                                                     actor=Actor.system())  # fmt: skip
    created = _api(client, "post", "visits", patient_token, {"patient": patient.mrn, "located_state": "CA",
                                                              "reason": "x"}).json()  # fmt: skip
    visit = Visit.objects.get(public_id=created["id"])
    offer_actions.offer_visit(visit, provider, actor=Actor.router())
    _api(client, "get", f"providers/{provider.npi}", doctor_token)
    _api(client, "post", f"visits/{visit.public_id}/accept", doctor_token)
    _api(client, "post", f"visits/{visit.public_id}/cancel", patient_token)
    rows = list(AccessLog.objects.order_by("at", "id").values_list("kind", "api_client", "path", "object_ids"))
    assert rows == [
        ("api_read", patient_app.pk, "/api/v1/visits", [str(visit.pk)]),
        ("api_read", doctor.pk, f"/api/v1/providers/{provider.npi}", [str(visit.pk)]),
        ("api_read", doctor.pk, f"/api/v1/visits/{visit.public_id}/accept", [str(visit.pk)]),
        ("api_read", patient_app.pk, f"/api/v1/visits/{visit.public_id}/cancel", [str(visit.pk)]),
    ]
    assert all(ids == [patient.pk] for ids in AccessLog.objects.values_list("patient_ids", flat=True))


def test_it_records_nothing_for_a_provider_page_that_names_no_visit(client, db):
    provider = make_provider(states=("CA",), available=True)
    token = api_client_actions.create_api_client(name="d", scope="provider", provider=provider, actor=Actor.system())[1]
    assert _api(client, "get", f"providers/{provider.npi}", token).status_code == 200
    assert not AccessLog.objects.exists()


# --- append-only in PostgreSQL itself ---------------------------------------------------------------


@pytest.mark.parametrize(
    "write",
    ["UPDATE support_accesslog SET terms = 'edited'", "DELETE FROM support_accesslog"],
    ids=["update", "delete"],
)
def test_it_refuses_updates_and_deletes_in_the_database_whoever_sends_them(db, write):
    row = _row_aged(days=1)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(write)
    assert AccessLog.objects.filter(pk=row.pk, terms="").exists()


def test_it_refuses_an_orm_delete_too(db):
    row = _row_aged(days=1)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AccessLog.objects.filter(pk=row.pk).delete()
    assert AccessLog.objects.filter(pk=row.pk).exists()


@pytest.mark.parametrize("duration", ["1d", "5y", "2190d"])
def test_it_refuses_to_prune_anything_younger_than_the_minimum_retention(db, duration):
    row = _row_aged(days=400 * 7)
    with pytest.raises(CommandError, match="OPS_ACCESS_LOG_MIN_RETENTION"):
        call_command("prune_access_log", f"--older-than={duration}", stdout=StringIO())
    assert AccessLog.objects.filter(pk=row.pk).exists()
