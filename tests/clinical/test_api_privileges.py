"""The JSON API's least privilege: bearer tokens only, and a provider token acts only on its own offers and visits.

The API is exempt from CSRF because it never reads the session: a signed-in console user's
cookies authenticate nothing here. A provider-scope token reads and answers only the visit
offered to or held by its provider, and only that provider's availability.
"""

import json

import pytest
from django.test import Client

from clinical.actions import api_clients as api_client_actions
from clinical.actions import offers as offer_actions
from clinical.models import Visit, VisitStatus
from core.audit import Actor
from tests.builders import make_patient, make_provider, make_visit
from tests.ops_console.conftest import database_snapshot

S = VisitStatus
VERBS = ("accept", "reject", "connected", "complete", "fail")


def _snapshot() -> dict:
    """Return the database snapshot, without API clients' last use (a token's use writes it)."""
    snapshot = database_snapshot()
    snapshot["clinical.apiclient"] = [{**row, "last_used_at": None} for row in snapshot["clinical.apiclient"]]
    return snapshot


def _call(client, method: str, path: str, token: str | None = None, body: dict | None = None):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    data = json.dumps(body) if body is not None else None
    return getattr(client, method)(f"/api/v1/{path}", data=data, content_type="application/json", **headers)


@pytest.fixture
def me(db):
    return make_provider(states=("CA",), available=True, last_name="Me")


@pytest.fixture
def my_token(me) -> str:
    return api_client_actions.create_api_client(name="my-app", scope="provider", provider=me, actor=Actor.system())[1]


@pytest.fixture
def patient_token(db) -> str:
    return api_client_actions.create_api_client(name="patient-app", scope="patient", patient=make_patient(),
                                     actor=Actor.system())[1]  # fmt: skip


def _offered_to(provider) -> Visit:
    return offer_actions.offer_visit(make_visit(state="CA"), provider, actor=Actor.router())


def _situation(name: str, me) -> Visit:
    """Return a visit that is not the provider's to see or answer."""
    if name == "offered to another provider":
        return _offered_to(make_provider(states=("CA",), available=True))
    if name == "waiting, offered to nobody":
        return make_visit(state="CA")
    if name == "rejected by me, now waiting":
        visit = _offered_to(me)
        return offer_actions.decline_offer(visit, provider=me, actor=Actor.provider_app())
    visit = _offered_to(make_provider(states=("CA",), available=True))  # "held by another provider"
    return offer_actions.accept_visit(visit, provider=visit.provider_id, actor=Actor.provider_app())


NOT_MINE = [
    "offered to another provider",
    "waiting, offered to nobody",
    "rejected by me, now waiting",
    "held by another provider",
]


@pytest.mark.parametrize("situation", NOT_MINE)
def test_it_refuses_a_provider_token_every_visit_that_is_not_its_providers(client, me, my_token, situation):
    visit = _situation(situation, me)
    before = _snapshot()
    responses = {"read": _call(client, "get", f"visits/{visit.public_id}", my_token)}
    responses |= {verb: _call(client, "post", f"visits/{visit.public_id}/{verb}", my_token) for verb in VERBS}
    responses["cancel"] = _call(client, "post", f"visits/{visit.public_id}/cancel", my_token)
    expected = dict.fromkeys(responses, 403)
    if situation == "rejected by me, now waiting":  # an answer to my old offer: refused as closed, not forbidden
        expected |= {"accept": 409, "reject": 409}
        assert responses["accept"].json()["error"]["code"] == "offer_declined"
    assert {name: r.status_code for name, r in responses.items()} == expected
    assert all(visit.public_id not in r.content.decode() for r in responses.values())
    assert _snapshot() == before


def test_it_lets_a_provider_token_read_and_answer_its_own_offer(client, me, my_token):
    visit = _offered_to(me)
    assert _call(client, "get", f"visits/{visit.public_id}", my_token).json()["status"] == S.OFFERED
    assert _call(client, "post", f"visits/{visit.public_id}/accept", my_token).json()["status"] == S.ACCEPTED


@pytest.mark.parametrize(("method", "path"), [("get", "providers/{npi}"), ("post", "providers/{npi}/availability")])
def test_it_refuses_a_provider_token_another_providers_page_and_availability(client, me, my_token, method, path):
    other = make_provider(states=("CA",), available=True)
    before = _snapshot()
    body = {"available": False} if method == "post" else None
    response = _call(client, method, path.format(npi=other.npi), my_token, body)
    assert (response.status_code, response.json()["error"]["code"]) == (403, "not_you")
    assert _snapshot() == before


@pytest.mark.parametrize(("method", "path"), [("get", "providers/{npi}"), ("post", "providers/{npi}/availability")])
def test_it_refuses_the_patient_app_every_provider_endpoint(client, me, patient_token, method, path):
    before = _snapshot()
    body = {"available": False} if method == "post" else None
    response = _call(client, method, path.format(npi=me.npi), patient_token, body)
    assert (response.status_code, response.json()["error"]["code"]) == (403, "wrong_scope")
    assert _snapshot() == before


# --- the session is never an API credential ---------------------------------------------------


@pytest.fixture
def signed_in(django_user_model) -> Client:
    """Return a browser signed in to the console as a superuser, enforcing CSRF as a browser would."""
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(django_user_model.objects.create_superuser("root", "root@ops.example", "Root-pass-2026!"))
    return browser


def test_it_answers_401_to_a_signed_in_console_session_without_a_token(signed_in, me):
    visit, patient = _offered_to(me), make_patient()
    before = _snapshot()
    responses = [
        _call(signed_in, "get", f"visits/{visit.public_id}"),
        _call(signed_in, "get", f"providers/{me.npi}"),
        _call(signed_in, "post", "visits", body={"patient": patient.mrn, "located_state": "CA", "reason": "Cough"}),
        _call(signed_in, "post", f"visits/{visit.public_id}/cancel"),
        _call(signed_in, "post", f"providers/{me.npi}/availability", body={"available": False}),
    ]
    assert [r.status_code for r in responses] == [401] * len(responses)
    assert all(r["WWW-Authenticate"].startswith("Bearer") for r in responses)
    assert _snapshot() == before
