"""SQL-ish, malformed and oversized input in every search box, filter and API field: never a 500.

Every changelist of the console gets each payload in its search box (``q``), in each of its
list filters' parameters, and the generic bogus parameters (ordering, page, unknown lookups).
The global search page, the admin's autocomplete and the JSON API's fields and ids get the
same payloads. A page may answer 200, redirect (the admin's ``?e=1`` for a bad filter) or
refuse with 400; afterwards every table is still there and no record was added.
"""

import json
from urllib.parse import quote

import pytest
from django.contrib import admin
from django.db import connection
from django.urls import reverse

from clinical.actions import api_clients as api_client_actions
from clinical.models import Patient, Visit
from core.audit import Actor
from core.models import SecurityEvent
from ops_console.admin_site import ops_site
from tests.builders import make_patient, make_provider, make_visit
from tests.ops_console.conftest import make_access_log, make_case, make_security_event

pytestmark = pytest.mark.usefixtures("fast_passwords")

# What people paste, and what attackers type, into a text box or a URL parameter.
TEXT_PAYLOADS = (
    "' OR 1=1 --",
    '" OR ""="',
    "'); DROP TABLE clinical_patient; --",
    "1; SELECT pg_sleep(5) --",
    "%",
    "_",
    "\\",
    "%00",
    "\x00",
    "Grace\x00Patient",
    "x" * 10_000,
    "Zoë Ñandú 李小龍 \u202egnp.exe",
    "😀" * 50,
    "99999999999999999999999999999",
    "-1",
    "²³",
    "-99999999999999999999",
    "1e309",
    "not-a-date",
    "2026-02-30",
    "[]{}()*+?|^$.",
)
# Query parameters every changelist receives on top of its own filters' parameters.
BOGUS_PARAMS = (
    {"o": "999"},
    {"o": "1.-999.abc"},
    {"p": "-1"},
    {"p": "abc"},
    {"p": "99999999"},
    {"p": str(10**30)},
    {"status__exact": "zzz"},
    {"created_at__gte": "not-a-date"},
    {"nonexistent": "1"},
    {"id__exact": "-1"},
    {"id__exact": str(2**80)},
    {"id__in": "1,abc,\x00"},
    {"pk__gt": "' OR 1=1 --"},
    {"all": "", "p": "2"},
    {"_to_field": "password"},
)
# JSON can carry what a URL cannot: a lone surrogate, which UTF-8 (and so PostgreSQL) refuses.
JSON_ONLY_PAYLOADS = ("\ud800", "a\udfffb")
# Ids in change and history URLs.
ID_PAYLOADS = ("abc", "-1", "0", "²", str(2**80), "1.5", "%00", "' OR 1=1 --", "x" * 500)
OK = {200, 302, 400}
MODEL_ADMINS = sorted(ops_site._registry.items(), key=lambda item: item[0]._meta.label)
ADMIN_IDS = [model._meta.label_lower for model, _ in MODEL_ADMINS]


@pytest.fixture
def records(db, redis_client):
    """Return one record of every kind the console lists, built through the actions."""
    provider = make_provider(states=("CA",))
    patient = make_patient(last_name="Okonkwo")
    visit = make_visit(patient=patient)
    make_case(patient=patient, visit=visit, notes=1)
    make_security_event()
    make_access_log(patient)
    api_client_actions.create_api_client(name="patient-app", scope="patient", patient=patient, actor=Actor.system())
    return {"provider": provider, "patient": patient, "visit": visit}


def _changelist(model) -> str:
    return reverse(f"ops:{model._meta.app_label}_{model._meta.model_name}_changelist")


def _assert_survived(counts_before: dict) -> None:
    tables = set(connection.introspection.table_names())
    assert {"clinical_patient", "clinical_visit", "support_accesslog", "auth_user"} <= tables
    assert _counts() == counts_before


def _counts() -> dict:
    return {"patients": Patient.objects.count(), "visits": Visit.objects.count()}


def _get(client, url: str, params: dict) -> None:
    response = client.get(url, params)
    assert response.status_code in OK, (url, {k: v[:40] for k, v in params.items()}, response.status_code)
    if response.status_code == 302:
        assert response["Location"].endswith("?e=1"), response["Location"]


def _filter_parameters(cl, model_admin) -> set[str]:
    """Return every parameter the changelist's filters read, shown or not (a filter without choices hides)."""
    names = {name for spec in cl.filter_specs for name in spec.expected_parameters()}
    own = [f for f in model_admin.list_filter if isinstance(f, type) and issubclass(f, admin.SimpleListFilter)]
    return names | {f.parameter_name for f in own}


@pytest.mark.parametrize(("model", "model_admin"), MODEL_ADMINS, ids=ADMIN_IDS)
def test_it_answers_every_search_payload_in_every_changelist(client, superuser, records, model, model_admin):
    client.force_login(superuser)
    before = _counts()
    for payload in TEXT_PAYLOADS:
        _get(client, _changelist(model), {"q": payload})
    _assert_survived(before)


@pytest.mark.parametrize(("model", "model_admin"), MODEL_ADMINS, ids=ADMIN_IDS)
def test_it_answers_bogus_filters_ordering_and_pages_in_every_changelist(
    client, superuser, records, model, model_admin
):
    client.force_login(superuser)
    before = _counts()
    url = _changelist(model)
    page = client.get(url)
    assert page.status_code == 200
    own = sorted(_filter_parameters(page.context["cl"], model_admin))
    assert own or not model_admin.list_filter, "the filters' parameters were read"
    for params in BOGUS_PARAMS:
        _get(client, url, params)
    for name in own:
        for payload in TEXT_PAYLOADS:
            _get(client, url, {name: payload})
    _assert_survived(before)


def test_it_answers_every_payload_in_the_global_search_and_autocomplete(client, superuser, support_agent, records):
    before = _counts()
    autocomplete = reverse("ops:autocomplete")
    for user in (superuser, support_agent):
        client.force_login(user)
        for payload in TEXT_PAYLOADS:
            _get(client, reverse("ops:global_search"), {"q": payload})
            params = {"app_label": "clinical", "model_name": "visit", "field_name": "patient", "term": payload}
            _get(client, autocomplete, params)
    _assert_survived(before)


def test_it_answers_every_payload_in_the_api_fields_with_a_json_error(client, records):
    patient = make_patient(last_name="Fuzz")
    _, token = api_client_actions.create_api_client(
        name="fuzz-patient", scope="patient", patient=patient, actor=Actor.system()
    )
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    valid = {"patient": patient.mrn, "located_state": "CA", "reason": "Cough", "priority": "routine"}
    before = _counts()
    for payload in TEXT_PAYLOADS + JSON_ONLY_PAYLOADS:
        for field in valid:
            body = json.dumps({**valid, field: payload})
            response = client.post("/api/v1/visits", body, content_type="application/json", **auth)
            created = response.status_code == 201
            refused = 403 if field == "patient" else 400  # another patient's MRN, or anything but the token's
            assert created or response.status_code == refused, (field, payload[:40], response.status_code)
            storable = "\x00" not in payload and payload not in JSON_ONLY_PAYLOADS and len(payload) <= 2000
            assert created == (field == "reason" and storable), (field, payload[:40])
            assert response.json()["error" if not created else "id"]
            if created:  # one open visit per patient: end it before the next
                client.post(f"/api/v1/visits/{response.json()['id']}/cancel", **auth)
                before["visits"] += 1
    _assert_survived(before)


@pytest.mark.parametrize("payload", TEXT_PAYLOADS, ids=range(len(TEXT_PAYLOADS)))
def test_it_answers_every_payload_as_an_api_id_with_a_json_error(client, records, payload):
    _, patient_token = api_client_actions.create_api_client(
        name="ids-patient", scope="patient", patient=records["patient"], actor=Actor.system()
    )
    provider = records["provider"]
    _, provider_token = api_client_actions.create_api_client(
        name="ids-provider", scope="provider", provider=provider, actor=Actor.system()
    )
    segment = quote(payload, safe="")
    before = _counts()
    calls = [
        ("get", f"/api/v1/visits/{segment}", patient_token),
        ("post", f"/api/v1/visits/{segment}/cancel", patient_token),
        ("post", f"/api/v1/visits/{segment}/accept", provider_token),
        ("get", f"/api/v1/providers/{segment}", provider_token),
        ("post", f"/api/v1/providers/{segment}/availability", provider_token),
    ]
    for method, path, token in calls:
        response = getattr(client, method)(path, HTTP_AUTHORIZATION=f"Bearer {token}")
        assert response.status_code in {400, 403, 404}, (path[:60], response.status_code)
        assert response.json()["error"]["code"]
    _assert_survived(before)


@pytest.mark.parametrize(("model", "model_admin"), MODEL_ADMINS, ids=ADMIN_IDS)
def test_it_answers_ids_that_cannot_be_ids_in_change_and_history_urls(client, superuser, records, model, model_admin):
    client.force_login(superuser)
    before = _counts()
    prefix = f"ops:{model._meta.app_label}_{model._meta.model_name}"
    any_id = model._default_manager.values_list("pk", flat=True).first() or 1
    for bogus in ID_PAYLOADS:
        urls = [reverse(f"{prefix}_change", args=[bogus]), reverse(f"{prefix}_history", args=[bogus])]
        if hasattr(model, "history"):
            urls.append(reverse(f"{prefix}_simple_history", args=[any_id, bogus]))
            urls.append(reverse(f"{prefix}_simple_history", args=[bogus, 1]))
        for url in urls:
            status = client.get(url).status_code
            assert status in {302, 404}, (url[:80], status)
    _assert_survived(before)


def test_it_records_a_probe_or_a_failed_sign_in_whose_user_agent_holds_a_nul(client, db):
    assert client.get("/admin/", HTTP_USER_AGENT="curl\x00/8").status_code == 404
    client.post(reverse("ops:login"), {"username": "nobody", "password": "x"}, HTTP_USER_AGENT="curl\x00/8")
    kinds = SecurityEvent.objects.values_list("kind", "user_agent")
    assert sorted(kinds) == [("admin_probe", "curl/8"), ("sign_in_failed", "curl/8")]
