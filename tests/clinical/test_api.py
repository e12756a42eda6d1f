"""The JSON API the patient and provider apps call: tokens, scopes, errors, and the visit lifecycle."""

import json
import threading
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, connection, transaction
from django.test import Client

from clinical.actions import api_clients as api_client_actions
from clinical.actions import licenses as license_actions
from clinical.actions import offers as offer_actions
from clinical.actions import visits as visit_actions
from clinical.actions.api_clients import hash_token
from clinical.events import ROUTING_STREAM
from clinical.models import ApiClient, Availability, Visit, VisitStatus
from core import dbclock
from core.audit import Actor
from tests.builders import make_patient, make_provider, make_visit, past_deadline

S = VisitStatus


@pytest.fixture
def patient(db):
    return make_patient()


@pytest.fixture
def patient_token(patient):
    """A token of the patient app acting for ``patient`` only."""
    return api_client_actions.create_api_client(
        name="patient-app", scope="patient", patient=patient, actor=Actor.system()
    )[1]


@pytest.fixture
def provider(db):
    return make_provider(states=("CA",), available=True)


@pytest.fixture
def provider_token(provider):
    return api_client_actions.create_api_client(
        name="dr-app", scope="provider", provider=provider, actor=Actor.system()
    )[1]


def _call(client, method, path, token=None, body=None):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    data = json.dumps(body) if isinstance(body, dict | list) else body
    return getattr(client, method)(f"/api/v1/{path}", data=data, content_type="application/json", **headers)


def _offered_to(provider, patient=None):
    visit = make_visit(state="CA", patient=patient)
    return offer_actions.offer_visit(visit, provider, actor=Actor.router())


def test_it_creates_a_visit_for_the_tokens_patient(client, patient, patient_token):
    body = {"located_state": "ca", "reason": "Rash on arm", "priority": "urgent"}
    response = _call(client, "post", "visits", patient_token, body)
    assert response.status_code == 201, response.content
    data = response.json()
    visit = Visit.objects.get(public_id=data["id"])
    assert (data["status"], data["located_state"], data["priority"]) == ("waiting", "CA", "urgent")
    assert (visit.patient, visit.priority) == (patient, 2)
    assert visit.events.get().actor_kind == "patient"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"located_state": "XX"}, "located_state"),
        ({"located_state": 5}, "located_state"),
        ({"priority": "asap"}, "priority"),
        ({"reason": "  "}, "reason"),
        ({"reason": "x" * 2001}, "reason"),
    ],
)
def test_it_names_the_field_of_a_bad_visit_request_and_writes_nothing(client, patient_token, change, field):
    body = {"located_state": "CA", "reason": "Cough", **change}
    response = _call(client, "post", "visits", patient_token, body)
    assert response.status_code == 400
    assert response.json()["error"]["field"] == field
    assert not Visit.objects.exists()


@pytest.mark.parametrize("body", ["not json", "[1, 2]", "\xff"])
def test_it_refuses_a_body_that_is_not_a_json_object(client, patient_token, body):
    response = _call(client, "post", "visits", patient_token, body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


@pytest.mark.parametrize(
    "header", [None, "Bearer nope", "Bearer opc_abcdef12_wrong", "Basic dXNlcjpwYXNz", "Token opc_x_y"]
)
def test_it_answers_401_without_a_valid_token(client, db, header):
    headers = {"HTTP_AUTHORIZATION": header} if header else {}
    response = client.get("/api/v1/visits/AAAA-BBBB", **headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_it_refuses_a_revoked_token(client, patient_token):
    api_client_actions.revoke_api_client(ApiClient.objects.get(name="patient-app"), actor=Actor.system())
    assert _call(client, "get", f"visits/{make_visit().public_id}", patient_token).status_code == 401


def test_it_stores_only_a_hash_of_the_token(patient_token):
    client = ApiClient.objects.get(name="patient-app")
    assert patient_token not in (client.token_hash, client.token_prefix)
    assert client.token_hash == hash_token(patient_token)


def test_it_answers_403_to_the_wrong_scope(client, patient_token, provider_token, provider):
    visit = _offered_to(provider)
    assert _call(client, "post", "visits", provider_token, {}).status_code == 403
    assert _call(client, "post", f"visits/{visit.public_id}/accept", patient_token).status_code == 403
    assert _call(client, "post", f"providers/{provider.npi}/availability", patient_token, {}).status_code == 403
    visit.refresh_from_db()
    assert visit.status == S.OFFERED


def test_it_answers_404_for_unknown_ids_and_paths(client, patient_token, provider_token):
    assert _call(client, "get", "visits/ZZZZ-ZZZZ", patient_token).status_code == 404
    assert _call(client, "post", "visits/ZZZZ-ZZZZ/cancel", patient_token).status_code == 404
    assert _call(client, "get", "nothing/here", patient_token).json()["error"]["code"] == "not_found"
    assert _call(client, "get", "providers/1234567893", provider_token).status_code == 404


def test_it_walks_a_visit_through_the_provider_app(client, provider_token, provider):
    visit = _offered_to(provider)
    for verb, status in [("accept", S.ACCEPTED), ("connected", S.IN_PROGRESS), ("complete", S.COMPLETED)]:
        response = _call(client, "post", f"visits/{visit.public_id}/{verb}", provider_token)
        assert response.status_code == 200, response.content
        assert response.json()["status"] == status
    provider.refresh_from_db()
    assert provider.availability == Availability.AVAILABLE
    assert {e.actor_kind for e in visit.events.filter(to_status__in=[S.ACCEPTED, S.COMPLETED])} == {"provider"}


def test_it_lets_the_provider_reject_an_offer(client, provider_token, provider):
    visit = _offered_to(provider)
    response = _call(client, "post", f"visits/{visit.public_id}/reject", provider_token)
    assert (response.status_code, response.json()["status"], response.json()["provider"]) == (200, "waiting", None)


def test_it_lets_the_provider_fail_a_running_visit(client, provider_token, provider):
    visit = _offered_to(provider)
    _call(client, "post", f"visits/{visit.public_id}/accept", provider_token)
    assert _call(client, "post", f"visits/{visit.public_id}/fail", provider_token).json()["status"] == S.FAILED


def test_it_answers_409_to_a_transition_not_legal_now(client, provider_token, provider):
    visit = _offered_to(provider)
    response = _call(client, "post", f"visits/{visit.public_id}/complete", provider_token)
    assert response.status_code == 409
    assert response.json()["error"]["field"] == "status"
    visit.refresh_from_db()
    assert visit.status == S.OFFERED


def test_it_refuses_a_provider_acting_on_someone_elses_visit(client, provider_token):
    other = make_provider(states=("CA",), available=True)
    visit = _offered_to(other)
    for verb in ("accept", "reject", "complete"):
        assert _call(client, "post", f"visits/{visit.public_id}/{verb}", provider_token).status_code == 403
    assert _call(client, "get", f"visits/{visit.public_id}", provider_token).status_code == 403
    visit.refresh_from_db()
    assert (visit.status, visit.provider) == (S.OFFERED, other)


def test_it_refuses_a_provider_changing_another_providers_availability(client, provider_token):
    other = make_provider(states=("CA",))
    assert (
        _call(client, "post", f"providers/{other.npi}/availability", provider_token, {"available": True}).status_code
        == 403
    )
    other.refresh_from_db()
    assert other.availability == Availability.OFFLINE


def test_it_sets_availability_and_shows_the_current_offer(client, provider_token, provider):
    response = _call(client, "post", f"providers/{provider.npi}/availability", provider_token, {"available": "yes"})
    assert (response.status_code, response.json()["error"]["field"]) == (400, "available")
    visit = _offered_to(provider)
    data = _call(client, "get", f"providers/{provider.npi}", provider_token).json()
    assert (data["availability"], data["visit"]["id"], data["states_today"]) == ("reserved", visit.public_id, ["CA"])
    response = _call(client, "post", f"providers/{provider.npi}/availability", provider_token, {"available": False})
    assert response.status_code == 409  # answer the offer first


def test_it_lets_the_patient_cancel_during_an_offer(client, patient, patient_token, provider):
    visit = _offered_to(provider, patient)
    response = _call(client, "post", f"visits/{visit.public_id}/cancel", patient_token)
    assert response.json()["status"] == S.CANCELLED
    provider.refresh_from_db()
    assert provider.availability == Availability.AVAILABLE
    assert _call(client, "post", f"visits/{visit.public_id}/cancel", patient_token).status_code == 409


def test_it_publishes_a_routing_event_for_every_change(
    client, patient_token, redis_client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = _call(
            client,
            "post",
            "visits",
            patient_token,
            {"located_state": "NY", "reason": "Flu"},
        )
        _call(client, "post", f"visits/{response.json()['id']}/cancel", patient_token)
    entries = [fields for _, fields in redis_client.xrange(ROUTING_STREAM)]
    assert [(e["kind"], e["actor"]) for e in entries] == [("visit_waiting", "patient"), ("visit_status", "patient")]
    assert entries[1]["status"] == "cancelled"


def test_it_prints_a_new_token_from_the_command(db, provider):
    out = StringIO()
    call_command("create_api_client", "--name", "ios", "--scope", "provider", "--provider", provider.npi, stdout=out)
    token = out.getvalue().strip()
    assert token.startswith("opc_")
    assert ApiClient.objects.get(name="ios").token_hash == hash_token(token)
    with pytest.raises(CommandError, match="--provider"):
        call_command("create_api_client", "--name", "web", "--scope", "provider")
    with pytest.raises(CommandError, match="--patient"):
        call_command("create_api_client", "--name", "web", "--scope", "patient", stdout=StringIO())
    patient = make_patient()
    with pytest.raises(CommandError, match="name"):
        call_command("create_api_client", "--name", "ios", "--scope", "patient", "--patient", patient.mrn,
                     stdout=StringIO())  # fmt: skip


def test_it_lets_a_lead_create_a_client_in_the_console_and_shows_the_token_once(client, lead):
    from django.urls import reverse

    client.force_login(lead)
    patient = make_patient()
    response = client.post(reverse("ops:clinical_apiclient_add"),
                           {"name": "web-app", "scope": "patient", "patient": patient.pk})  # fmt: skip
    assert response.status_code == 302
    page = client.get(response["Location"]).content.decode()
    token = page.split('class="ops-token-value">')[1].split("<")[0]
    api = client.__class__()
    assert _call(api, "get", "visits/ZZZZ-ZZZZ", token).status_code == 404  # authenticated, unknown visit
    assert "ops-token-value" not in client.get(response["Location"]).content.decode()
    created = ApiClient.objects.get(name="web-app")
    assert created.history.get().history_user == lead
    changelist = reverse("ops:clinical_apiclient_changelist")
    client.post(changelist, {"action": "revoke", "_selected_action": [created.pk]})
    assert _call(api, "get", "visits/ZZZZ-ZZZZ", token).status_code == 401


def test_it_shows_the_provider_the_offer_id_and_deadline(client, provider_token, provider):
    visit = _offered_to(provider)
    offer = visit.offers.get()
    data = _call(client, "get", f"providers/{provider.npi}", provider_token).json()["visit"]["offer"]
    assert data == {
        "id": offer.pk,
        "offered_at": offer.offered_at.isoformat(),
        "expires_at": offer.expires_at.isoformat(),
    }


def _refused(response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def test_it_answers_409_offer_expired_to_a_late_accept_and_books_whoever_holds_the_offer(client, provider_token,
                                                                                         provider):  # fmt: skip
    visit = _offered_to(provider)
    past_deadline(visit)
    assert _refused(_call(client, "post", f"visits/{visit.public_id}/accept", provider_token)) == (409, "offer_expired")
    offer_actions.expire_offer(visit, provider_id=provider.pk, actor=Actor.router())
    other = make_provider(states=("CA",), available=True)
    offer_actions.offer_visit(visit, other, actor=Actor.router())
    assert _refused(_call(client, "post", f"visits/{visit.public_id}/accept", provider_token)) == (409, "offer_expired")
    visit.refresh_from_db()
    assert (visit.status, visit.provider) == (S.OFFERED, other)


def test_it_answers_409_not_licensed_to_an_accept_after_a_suspension(client, provider_token, provider):
    visit = _offered_to(provider)
    license_actions.change_license_status(
        provider.licenses.get(), "suspended", actor=Actor.system(), reason="board order"
    )
    assert _refused(_call(client, "post", f"visits/{visit.public_id}/accept", provider_token)) == (409, "not_licensed")
    visit.refresh_from_db()
    assert visit.status == S.OFFERED


# --- a patient token acts for one patient --------------------------------------------------------


def test_it_treats_another_patients_visit_as_unknown(client, patient_token):
    other = make_visit()
    for method, path in (("get", f"visits/{other.public_id}"), ("post", f"visits/{other.public_id}/cancel")):
        response = _call(client, method, path, patient_token)
        assert (response.status_code, response.json()["error"]["code"]) == (404, "not_found")
        assert other.patient.mrn not in response.content.decode()
    other.refresh_from_db()
    assert other.status == S.WAITING


@pytest.mark.parametrize("named", ["M00000000", "existing", None, ["x"]])
def test_it_refuses_a_visit_for_another_patient_alike_whether_the_mrn_exists(client, patient_token, named):
    mrn = make_patient().mrn if named == "existing" else named
    response = _call(client, "post", "visits", patient_token, {"patient": mrn, "located_state": "CA", "reason": "x"})
    assert (response.status_code, response.json()["error"]) == (403, {
        "code": "not_your_patient", "message": "This token acts for one patient only.", "field": "patient",
    })  # fmt: skip
    assert not Visit.objects.exists()


def test_it_accepts_the_tokens_own_mrn_in_the_body(client, patient, patient_token):
    body = {"patient": patient.mrn, "located_state": "CA", "reason": "x"}
    assert _call(client, "post", "visits", patient_token, body).status_code == 201


def test_it_refuses_a_second_open_visit_and_names_the_first(client, patient_token):
    first = _call(client, "post", "visits", patient_token, {"located_state": "CA", "reason": "x"}).json()
    second = _call(client, "post", "visits", patient_token, {"located_state": "NV", "reason": "y"})
    assert second.status_code == 409
    assert second.json()["error"] | {"message": ""} == {
        "code": "open_visit_exists", "message": "", "field": "patient", "visit": first["id"],
    }  # fmt: skip
    assert Visit.objects.count() == 1


def test_it_lets_the_database_refuse_a_second_open_visit_when_actions_are_bypassed(patient):
    first = make_visit(patient=patient)
    with pytest.raises(IntegrityError, match="clinical_visit_one_open_per_patient"), transaction.atomic():
        Visit.objects.create(patient=patient, located_state="CA", reason="x", public_id="ZZZZ-ZZZ9")
    visit_actions.cancel_visit(first, actor=Actor.patient_app())
    assert make_visit(patient=patient).status == S.WAITING  # once the first ended, a new one is fine


def _post_with_key(client, token, key, body):
    return client.post("/api/v1/visits", data=json.dumps(body), content_type="application/json",
                       HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_IDEMPOTENCY_KEY=key)  # fmt: skip


def test_it_answers_a_retried_request_with_the_first_answer(client, patient_token):
    body = {"located_state": "CA", "reason": "x"}
    first = _post_with_key(client, patient_token, "retry-1", body)
    again = _post_with_key(client, patient_token, "retry-1", body)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json() and again["Idempotent-Replayed"] == "true"
    assert Visit.objects.count() == 1
    reused = _post_with_key(client, patient_token, "retry-1", {**body, "reason": "other"})
    assert (reused.status_code, reused.json()["error"]["code"]) == (422, "idempotency_key_reused")


def test_it_answers_two_attempts_with_one_key_at_once_with_one_visit(transactional_db, patient_token):
    barrier, answers = threading.Barrier(2), []

    def attempt():
        try:
            barrier.wait()
            answers.append(_post_with_key(Client(), patient_token, "same-moment", {"located_state": "CA",
                                                                                     "reason": "x"}))  # fmt: skip
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(a.status_code for a in answers) == [201, 201]
    assert answers[0].json()["id"] == answers[1].json()["id"]
    assert Visit.objects.count() == 1


def test_it_refuses_an_expired_token(client, patient_token):
    ApiClient.objects.filter(name="patient-app").update(expires_at=dbclock.now())
    response = _call(client, "get", "visits/ZZZZ-ZZZZ", patient_token)
    assert (response.status_code, response.json()["error"]["message"]) == (401, "The token has expired: ask for a "
                                                                                 "new one.")  # fmt: skip


def test_it_gives_a_new_token_the_configured_lifetime(db, settings, patient):
    settings.OPS_API_TOKEN_DAYS = 30
    created = api_client_actions.create_api_client(name="t", scope="patient", patient=patient, actor=Actor.system())[0]
    assert (created.expires_at - created.created_at).days == 30
