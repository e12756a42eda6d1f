"""API tokens: bound to their owner, expiring, revoked for good, rate limited, and probing noticed."""

import json

import pytest
import redis
from django.contrib.sessions.models import Session
from django.urls import reverse

from clinical.actions import api_clients as api_client_actions
from clinical.actions import providers as provider_actions
from clinical.api import limits
from clinical.models import ApiClient
from core.audit import Actor
from core.errors import IllegalTransition
from core.models import SecurityEvent
from tests.builders import make_patient, make_provider

SYSTEM = Actor.system("tests")


@pytest.fixture
def provider_client(db):
    provider = make_provider(states=("CA",))
    return (
        *api_client_actions.create_api_client(name="dr-app", scope="provider", provider=provider, actor=SYSTEM),
        provider,
    )


def _get(client, path, token, **extra):
    return client.get(f"/api/v1/{path}", HTTP_AUTHORIZATION=f"Bearer {token}", **extra)


def test_it_never_switches_a_revoked_token_back_on(provider_client):
    api_client, token, _ = provider_client
    api_client_actions.revoke_api_client(api_client, actor=SYSTEM)
    api_client.is_active = True
    with pytest.raises(IllegalTransition, match="stays revoked") as refused:
        api_client_actions.update_api_client(api_client, actor=SYSTEM)
    assert refused.value.field == "is_active"
    assert not ApiClient.objects.get(pk=api_client.pk).is_active


def test_it_neither_edits_nor_reverts_a_revoked_token_back_on_in_the_console(client, lead, provider_client):
    api_client, token, _ = provider_client
    client.force_login(lead)
    old = api_client.history.earliest("history_date")
    api_client_actions.revoke_api_client(api_client, actor=SYSTEM)
    change = reverse("ops:clinical_apiclient_change", args=[api_client.pk])
    client.post(change, {"name": "dr-app", "is_active": "on", "change_reason": "back please"})
    revert = reverse("ops:clinical_apiclient_simple_history", args=[api_client.pk, old.history_id])
    assert client.post(revert, {"name": "dr-app", "is_active": "on"}).status_code == 403
    assert not ApiClient.objects.get(pk=api_client.pk).is_active
    assert _get(client, "visits/ZZZZ-ZZZZ", token).status_code == 401


def test_it_revokes_a_providers_tokens_when_the_provider_is_deactivated(client, provider_client):
    api_client, token, provider = provider_client
    provider.is_active = False
    provider_actions.save_provider(provider, actor=SYSTEM)
    revoked = ApiClient.objects.get(pk=api_client.pk)
    assert not revoked.is_active
    assert revoked.history.first().history_change_reason == f"provider {provider.npi} deactivated"
    assert _get(client, f"providers/{provider.npi}", token).status_code == 401


def test_it_limits_each_token_and_answers_429_with_retry_after(client, settings, redis_client, provider_client):
    settings.API_RATE_PER_TOKEN = 3
    _, token, provider = provider_client
    answers = [_get(client, f"providers/{provider.npi}", token).status_code for _ in range(4)]
    assert answers == [200, 200, 200, 429]
    limited = _get(client, f"providers/{provider.npi}", token)
    assert limited.json()["error"]["code"] == "rate_limited" and 1 <= int(limited["Retry-After"]) <= 60


def test_it_limits_each_address_before_reading_the_token(client, settings, redis_client, db):
    settings.API_RATE_PER_ADDRESS = 2
    answers = [_get(client, "visits/ZZZZ-ZZZZ", "opc_nope_x", REMOTE_ADDR="198.51.100.8").status_code for _ in range(3)]
    assert answers == [401, 401, 429]
    assert _get(client, "visits/ZZZZ-ZZZZ", "opc_nope_x", REMOTE_ADDR="198.51.100.9").status_code == 401


def test_it_records_one_security_event_when_a_token_keeps_guessing(client, settings, redis_client, db):
    settings.API_PROBE_THRESHOLD = 5
    patient = make_patient()
    api_client, token = api_client_actions.create_api_client(
        name="curious", scope="patient", patient=patient, actor=SYSTEM
    )
    for n in range(8):  # guessed visit ids and other patients' MRNs
        _get(client, f"visits/AAAA-{n:04d}", token)
    events = SecurityEvent.objects.filter(kind="api_probing")
    assert events.count() == 1
    assert "curious" in events.get().detail and "5 answers" in events.get().detail


def test_it_counts_guesses_without_a_token_per_address(client, settings, redis_client, db):
    settings.API_PROBE_THRESHOLD = 3
    for _ in range(3):
        client.post("/api/v1/visits", data=json.dumps({}), content_type="application/json", REMOTE_ADDR="198.51.100.77")
    assert SecurityEvent.objects.get(kind="api_probing").ip == "198.51.100.77"


def test_it_keeps_answering_when_redis_is_down(client, settings, provider_client, monkeypatch):
    _, token, provider = provider_client
    nowhere = redis.Redis(port=1, socket_connect_timeout=0.2)  # a real client with no server behind it
    monkeypatch.setattr(limits, "get_redis", lambda: nowhere)
    assert _get(client, f"providers/{provider.npi}", token).status_code == 200


def test_it_shows_a_new_token_once_without_keeping_it_in_the_session(client, lead, redis_client):
    client.force_login(lead)
    patient = make_patient()
    response = client.post(reverse("ops:clinical_apiclient_add"), {"name": "web", "scope": "patient",
                                                                    "patient": patient.pk})  # fmt: skip
    page = client.get(response["Location"]).content.decode()
    token = page.split('class="ops-token-value">')[1].split("<")[0]
    assert token.startswith("opc_")
    assert all(token not in str(s.get_decoded()) for s in Session.objects.all())
    assert "ops-token-value" not in client.get(response["Location"]).content.decode()
