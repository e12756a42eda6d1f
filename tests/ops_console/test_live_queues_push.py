"""The live queues' websocket: session sign-in, the page's permission, two-factor, this site's pages only."""

import json
import time

import pytest
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from clinical.actions import providers as provider_actions
from core.audit import Actor
from ops_console.consumers import CLOSE_SIGNED_OUT, may_watch
from ops_console.signin import LAST_SEEN
from tests.builders import make_provider
from tests.clinical.push_server import PushServer


def _session(client, user) -> str:
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def _socket(server: PushServer, session: str | None, *, origin: str | None = None):
    headers = {"Origin": origin or server.url}
    if session:
        headers["Cookie"] = f"{settings.SESSION_COOKIE_NAME}={session}"
    url = f"ws://127.0.0.1:{server.port}/ws/console/live/"
    return connect(url, additional_headers=headers, open_timeout=10)


def _next(socket, kind: str, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        message = json.loads(socket.recv(timeout=max(0.01, deadline - time.monotonic())))
        if message["type"] == kind:
            return message


def test_it_sends_the_numbers_at_once_and_again_within_a_second_of_a_change(push, client, support_agent):
    with _socket(push, _session(client, support_agent)) as socket:
        first = _next(socket, "queues")["data"]
        assert first["totals"]["available"] == 0
        provider = make_provider(states=("CA",))  # a new provider, offline: a recount, 0 available
        changed = time.monotonic()
        provider_actions.set_provider_availability(provider, available=True, actor=Actor.system())
        while _next(socket, "queues", timeout=5)["data"]["totals"]["available"] != 1:
            pass
        assert time.monotonic() - changed < 1.0


@pytest.mark.parametrize("who", [None, "outsider"])
def test_it_refuses_a_socket_without_the_pages_permission(push, client, outsider, who):
    session = _session(client, outsider) if who else None
    with pytest.raises(InvalidStatus) as refused:
        _socket(push, session)
    assert refused.value.response.status_code == 403


def test_it_refuses_a_socket_opened_from_another_site(push, client, lead):
    with pytest.raises(InvalidStatus):
        _socket(push, _session(client, lead), origin="https://evil.example")


def test_it_refuses_an_editing_role_that_has_not_given_its_code(client, clinical_ops, support_agent, settings):
    # The server under test runs with two-factor off (push_server.py): the consumer's check, here.
    settings.OPS_REQUIRE_2FA = True
    client.force_login(clinical_ops)
    assert may_watch(clinical_ops, client.session) is False  # an editing role, no code given
    client.force_login(support_agent)
    assert may_watch(support_agent, client.session) is True  # a view-only role is not asked


@pytest.mark.parametrize("ending", ["idle", "signed_out", "permission"])
def test_it_closes_the_socket_when_its_session_ends(push, client, support_agent, ending):
    session_key = _session(client, support_agent)
    with _socket(push, session_key) as socket:
        _next(socket, "queues")
        _next(socket, "heartbeat", timeout=5)  # the session is still good: heartbeats go on
        if ending == "idle":
            session = SessionStore(session_key)
            session[LAST_SEEN] = int(time.time()) - settings.OPS_SESSION_IDLE_MINUTES * 60 - 5
            session.save()
        elif ending == "signed_out":
            client.logout()
        else:
            support_agent.groups.clear()
        with pytest.raises(ConnectionClosed) as closed:
            _next(socket, "never", timeout=5)
        assert closed.value.rcvd.code == CLOSE_SIGNED_OUT
