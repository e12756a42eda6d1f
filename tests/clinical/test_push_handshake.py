"""A client that leaves during the websocket handshake: the server stops quietly, leaving its groups."""

import asyncio

import pytest
from channels.layers import get_channel_layer

from clinical.actions import api_clients
from clinical.api.consumers import AppConsumer
from clinical.models import ApiScope
from core.audit import Actor
from tests.builders import make_patient

pytestmark = pytest.mark.django_db(transaction=True)

# What uvicorn's websockets-sansio protocol raises at the first send after an accept it dropped
# because the client was already closing the connection (uvicorn 0.54, websockets_sansio_impl.py).
DROPPED_ACCEPT = RuntimeError(
    "Expected ASGI message 'websocket.accept', 'websocket.close' or 'websocket.http.response.start' "
    "but got 'websocket.send'."
)


class ClosingConnection:
    """The server side of a connection the client closed while it was being authenticated."""

    def __init__(self, error: Exception = DROPPED_ACCEPT):
        self.error = error
        self.sent: list[str] = []
        self.incoming = [{"type": "websocket.connect"}, {"type": "websocket.disconnect", "code": 1006}]

    async def receive(self):
        if self.incoming:
            return self.incoming.pop(0)
        await asyncio.sleep(3600)

    async def send(self, message):
        self.sent.append(message["type"])
        if message["type"] == "websocket.send":
            raise self.error


async def _serve(scope: dict, connection: ClosingConnection) -> dict:
    """Run the consumer over ``connection``; return the channel layer's group memberships after it."""
    await asyncio.wait_for(AppConsumer.as_asgi()(scope, connection.receive, connection.send), timeout=10)
    return dict(get_channel_layer()._get_layer().groups)


def _scope(patient) -> dict:
    _, token = api_clients.create_api_client(name="app", scope=ApiScope.PATIENT, actor=Actor.system(), patient=patient)
    return {
        "type": "websocket", "path": "/ws/v1/", "query_string": b"", "client": ("127.0.0.1", 50000),
        "headers": [(b"authorization", f"Bearer {token}".encode())], "subprotocols": [],
    }  # fmt: skip


def test_it_stops_quietly_and_leaves_its_groups_when_the_client_left_during_the_handshake(redis_client):
    patient = make_patient()
    connection = ClosingConnection()
    groups = asyncio.run(_serve(_scope(patient), connection))  # no exception: the socket ended as the client did
    assert connection.sent == ["websocket.accept", "websocket.send"]
    assert not any(members for members in groups.values())  # it left the groups it had joined


def test_it_still_raises_any_other_error_of_the_first_send(redis_client):
    connection = ClosingConnection(RuntimeError("something else broke"))
    with pytest.raises(RuntimeError, match="something else broke"):
        asyncio.run(_serve(_scope(make_patient()), connection))
