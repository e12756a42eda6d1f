"""Push over ``/ws/v1/``: real sockets to the real ASGI server and relay, on PostgreSQL and Redis."""

import json
import time

import pytest
import redis
from django.conf import settings
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from clinical.actions import api_clients
from clinical.actions import offers as offer_actions
from clinical.actions import visits as visit_actions
from clinical.api import consumers
from clinical.api.auth import NotAuthenticated
from clinical.api.consumers import SocketRequest
from clinical.models import ApiScope, VisitEvent
from clinical.push import messages
from core.audit import Actor
from core.models import AccessLog, SecurityEvent
from devtools.services import wait_until
from tests.builders import make_patient, make_provider, make_visit, past_deadline
from tests.clinical.push_server import PushServer

SYSTEM = Actor.system()
ROUTER = Actor.router()


def _token(*, patient=None, provider=None) -> tuple[object, str]:
    scope = ApiScope.PROVIDER if provider is not None else ApiScope.PATIENT
    name = f"app of {(provider or patient).pk} ({scope})"
    return api_clients.create_api_client(name=name, scope=scope, actor=SYSTEM, provider=provider, patient=patient)


def _socket(server: PushServer, token: str, *, resume: str | None = None):
    url = f"{server.ws}?resume={resume}" if resume is not None else server.ws
    return connect(url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=10)


def _next(socket, kinds=("visit", "offer_withdrawn"), timeout: float = 10.0) -> dict:
    """Return the next message of one of ``kinds`` (heartbeats and hellos skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        message = json.loads(socket.recv(timeout=max(0.01, deadline - time.monotonic())))
        if message["type"] in kinds:
            return message


def _quiet(socket, seconds: float = 1.5) -> list[dict]:
    """Return every non-heartbeat message received within ``seconds``."""
    got, deadline = [], time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            message = json.loads(socket.recv(timeout=left))
        except TimeoutError:
            break
        if message["type"] not in ("heartbeat", "hello"):
            got.append(message)
    return got


def test_it_refuses_a_socket_without_a_valid_token(push):
    for headers in ({}, {"Authorization": "Bearer opc_00000000_nope"}, {"Authorization": "Basic x"}):
        with pytest.raises(InvalidStatus) as refused:
            connect(push.ws, additional_headers=headers, open_timeout=10)
        assert refused.value.response.status_code == 403


def test_it_takes_the_token_as_the_bearer_subprotocol(push):
    _, token = _token(patient=make_patient())
    with connect(push.ws, subprotocols=["bearer", token], open_timeout=10) as socket:
        assert socket.subprotocol == "bearer"
        assert json.loads(socket.recv(timeout=10))["type"] == "hello"


def test_it_pushes_a_transition_to_its_patient_only_with_what_get_returns(push, client):
    grace, alan = make_patient(), make_patient(first_name="Alan")
    _, grace_token = _token(patient=grace)
    _, alan_token = _token(patient=alan)
    with _socket(push, grace_token) as mine, _socket(push, alan_token) as theirs:
        visit = visit_actions.request_visit(patient=grace, located_state="CA", reason="Cough", actor=SYSTEM)
        message = _next(mine)
        event = VisitEvent.objects.get(visit=visit)
        assert (message["version"], message["event"]["to"]) == (event.pk, "waiting")
        got = client.get(f"/api/v1/visits/{visit.public_id}", HTTP_AUTHORIZATION=f"Bearer {grace_token}").json()
        assert message["visit"] == got
        assert _quiet(theirs) == []


def test_it_tells_a_provider_of_its_offer_with_its_deadline_and_of_its_withdrawal(push):
    ada, bob = make_provider(available=True), make_provider(available=True, first_name="Bob")
    _, ada_token = _token(provider=ada)
    _, bob_token = _token(provider=bob)
    visit = make_visit()
    with _socket(push, ada_token) as ada_socket, _socket(push, bob_token) as bob_socket:
        offer_actions.offer_visit(visit, ada, actor=ROUTER)
        offered = _next(ada_socket)
        assert offered["type"] == "visit" and offered["event"]["to"] == "offered"
        assert offered["visit"]["offer"]["id"] and offered["visit"]["offer"]["expires_at"]
        past_deadline(visit)
        offer_actions.expire_offer(visit, provider_id=ada.pk, actor=ROUTER)
        withdrawn = _next(ada_socket)
        stamps = {key: withdrawn.pop(key) for key in ("published_at", "relayed_at", "sent_at")}
        assert withdrawn == {
            "type": "offer_withdrawn", "version": withdrawn["version"], "visit": {"id": visit.public_id},
            "outcome": "expired",
        }  # fmt: skip
        assert stamps["published_at"] <= stamps["relayed_at"] <= stamps["sent_at"] <= time.time()
        assert withdrawn["version"] > offered["version"]
        assert _quiet(bob_socket) == []


def test_it_records_each_pushed_visit_in_the_phi_access_log(push):
    patient = make_patient()
    client, token = _token(patient=patient)
    with _socket(push, token) as socket:
        visit = visit_actions.request_visit(patient=patient, located_state="CA", reason="Cough", actor=SYSTEM)
        _next(socket)
    row = AccessLog.objects.get(source="push")
    assert (row.kind, row.api_client_id, row.model, row.object_ids, row.patient_ids, row.path, row.method) == (
        "api_read",
        client.pk,
        "clinical.visit",
        [str(visit.pk)],
        [patient.pk],
        "/ws/v1/",
        "WS",
    )


def test_it_closes_a_revoked_tokens_socket(push):
    client, token = _token(patient=make_patient())
    with _socket(push, token) as socket:
        assert json.loads(socket.recv(timeout=10))["type"] == "hello"
        api_clients.revoke_api_client(client, actor=SYSTEM)
        with pytest.raises(ConnectionClosed) as closed:
            _next(socket, timeout=10)
        assert closed.value.rcvd.code == 4401
    with pytest.raises(InvalidStatus):
        _socket(push, token)


def test_it_replays_every_transition_made_while_the_socket_was_down_in_order(push):
    patient, provider = make_patient(), make_provider(available=True)
    _, token = _token(patient=patient)
    with _socket(push, token) as socket:
        visit = visit_actions.request_visit(patient=patient, located_state="CA", reason="Cough", actor=SYSTEM)
        seen = _next(socket)["version"]
    offer_actions.offer_visit(visit, provider, actor=ROUTER)
    offer_actions.accept_visit(visit, provider=provider, actor=Actor.provider_app("app"))
    visit_actions.start_connecting(visit, actor=Actor.provider_app("app"))
    visit_actions.mark_connected(visit, actor=Actor.provider_app("app"))
    missed = list(VisitEvent.objects.filter(visit=visit, pk__gt=seen).order_by("pk").values_list("pk", "to_status"))
    assert len(missed) == 4
    with _socket(push, token, resume=f"{visit.public_id}:{seen}") as socket:
        replayed = [_next(socket) for _ in missed]
        assert [(m["version"], m["event"]["to"]) for m in replayed] == missed
        assert _next(socket, kinds=("resumed",))["replayed"] == 4
        # Anything live after the replay is newer than what was replayed, never a repeat.
        visit_actions.complete_visit(visit, actor=Actor.provider_app("app"))
        assert _next(socket)["version"] > missed[-1][0]


def test_it_replays_on_a_resume_message_too(push):
    patient = make_patient()
    _, token = _token(patient=patient)
    visit = visit_actions.request_visit(patient=patient, located_state="CA", reason="Cough", actor=SYSTEM)
    visit_actions.cancel_visit(visit, actor=SYSTEM)
    events = list(VisitEvent.objects.filter(visit=visit).order_by("pk").values_list("pk", flat=True))
    with _socket(push, token) as socket:
        socket.send(json.dumps({"type": "resume", "visits": {visit.public_id.lower(): events[0]}}))
        assert _next(socket)["version"] == events[1]
        assert _next(socket, kinds=("resumed",))["replayed"] == 1


def test_it_names_the_resume_parameter_it_cannot_read(push):
    _, token = _token(patient=make_patient())
    with _socket(push, token, resume="V1:x") as socket:
        assert _next(socket, kinds=("error",))["field"] == "resume"
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(timeout=5)
        assert closed.value.rcvd.code == 4400


def test_it_replays_nothing_of_a_visit_that_is_not_the_tokens(push):
    mine, theirs = make_patient(), make_patient(first_name="Alan")
    _, token = _token(patient=mine)
    other = visit_actions.request_visit(patient=theirs, located_state="CA", reason="Cough", actor=SYSTEM)
    with _socket(push, token, resume=f"{other.public_id}:0") as socket:
        assert _next(socket, kinds=("resumed", "visit"))["type"] == "resumed"


def test_it_names_the_field_of_a_resume_it_cannot_read(push):
    _, token = _token(patient=make_patient())
    with _socket(push, token) as socket:
        for bad in ({"type": "resume", "visits": []}, {"type": "resume", "visits": {"V1": -1}}, "not json", {}):
            socket.send(bad if isinstance(bad, str) else json.dumps(bad))
            error = _next(socket, kinds=("error",))
            assert error["code"] == "invalid" and error["field"] in ("visits", "type")


def test_it_sends_heartbeats(push):
    _, token = _token(patient=make_patient())
    with _socket(push, token) as socket:
        assert _next(socket, kinds=("heartbeat",), timeout=5)["type"] == "heartbeat"


def test_it_keeps_pushing_after_the_servers_redis_connection_is_cut(push):
    """Pub/sub keeps nothing for a process that is away: the server reconnects and subscribes again."""
    grace = make_patient()
    _, token = _token(patient=grace)
    r = redis.Redis.from_url(settings.REDIS_URL)
    with _socket(push, token) as socket:
        assert json.loads(socket.recv(timeout=10))["type"] == "hello"
        assert r.client_kill_filter(_type="pubsub") >= 1  # the server's (and the relay's none: it only publishes)
        assert wait_until(lambda: _subscribed(r, grace.pk), timeout=10)
        visit = visit_actions.request_visit(patient=grace, located_state="CA", reason="Cough", actor=SYSTEM)
        assert _next(socket)["visit"]["id"] == visit.public_id


def _subscribed(r: redis.Redis, patient_pk: int) -> bool:
    channels = r.pubsub_channels(f"*__group__{messages.patient_group(patient_pk)}")
    return bool(channels) and r.pubsub_numsub(*channels)[0][1] > 0


def test_it_counts_a_socket_connect_against_the_apis_rate_limits(db, settings, redis_client):
    settings.API_RATE_PER_ADDRESS = 2
    _, token = _token(patient=make_patient())
    request = SocketRequest({"headers": [], "path": "/ws/v1/", "client": ("203.0.113.9", 5000)}, f"Bearer {token}")
    assert consumers._authenticate(request).scope == ApiScope.PATIENT
    assert consumers._authenticate(request).scope == ApiScope.PATIENT
    with pytest.raises(consumers.RateLimited):
        consumers._authenticate(request)


def test_it_counts_a_refused_socket_token_as_a_probe(db, settings, redis_client):
    settings.API_PROBE_THRESHOLD = 3
    request = SocketRequest({"headers": [], "path": "/ws/v1/", "client": ("203.0.113.7", 5000)}, "Bearer opc_0abc_no")
    for _ in range(4):
        with pytest.raises(NotAuthenticated):
            consumers._authenticate(request)
    probe = SecurityEvent.objects.get(kind=SecurityEvent.Kind.API_PROBING)
    assert (probe.ip, probe.path, probe.method) == ("203.0.113.7", "/ws/v1/", "WS")
