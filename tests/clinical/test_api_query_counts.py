"""The API's query counts do not grow with the data: each endpoint at two data sizes, within a budget."""

import json

from django.db import connection
from django.test.utils import CaptureQueriesContext

from clinical.actions import api_clients as api_client_actions
from clinical.actions import offers as offer_actions
from clinical.actions import visits as visit_actions
from core.audit import Actor
from tests.builders import make_patient, make_provider, make_visit

BUDGET = {"create visit": 13, "get visit": 4, "get provider": 6, "availability": 12, "cancel": 16, "accept": 18}


def _grow(count: int):
    for _ in range(count):
        make_visit()
        make_provider(states=("CA", "NV"))


def _measure(client, patient_token, provider_token, provider):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {patient_token}"}
    provider_headers = {"HTTP_AUTHORIZATION": f"Bearer {provider_token}"}
    counts = {}

    def run(name, method, path, body=None, auth=headers):
        kwargs = {"data": json.dumps(body or {}), "content_type": "application/json"} if method == "post" else {}
        with CaptureQueriesContext(connection) as queries:
            response = getattr(client, method)(f"/api/v1/{path}", **kwargs, **auth)
        assert response.status_code < 300, (name, response.content)
        counts[name] = len(queries)
        return response

    created = run("create visit", "post", "visits", {"located_state": "TX", "reason": "x"})
    run("get visit", "get", f"visits/{created.json()['id']}")
    run("cancel", "post", f"visits/{created.json()['id']}/cancel")
    run("availability", "post", f"providers/{provider.npi}/availability", {"available": True}, provider_headers)
    offered = offer_actions.offer_visit(make_visit(state="CA"), provider, actor=Actor.router())
    run("get provider", "get", f"providers/{provider.npi}", auth=provider_headers)
    run("accept", "post", f"visits/{offered.public_id}/accept", auth=provider_headers)
    visit_actions.complete_visit(visit_actions.mark_connected(offered, actor=Actor.system()), actor=Actor.system())
    run("availability", "post", f"providers/{provider.npi}/availability", {"available": False}, provider_headers)
    return counts


def test_it_keeps_api_query_counts_constant_as_data_grows(client, db):
    provider = make_provider(states=("CA",))
    patient_token = api_client_actions.create_api_client(
        name="p", scope="patient", patient=make_patient(), actor=Actor.system()
    )[1]
    provider_token = api_client_actions.create_api_client(
        name="d", scope="provider", provider=provider, actor=Actor.system()
    )[1]
    for token in (patient_token, provider_token):  # first use stamps last_used_at (once a minute)
        client.get("/api/v1/visits/ZZZZ-ZZZZ", HTTP_AUTHORIZATION=f"Bearer {token}")
    _grow(3)
    small = _measure(client, patient_token, provider_token, provider)
    _grow(30)
    large = _measure(client, patient_token, provider_token, provider)
    assert small == large
    assert {name: n for name, n in small.items() if n > BUDGET[name]} == {}
