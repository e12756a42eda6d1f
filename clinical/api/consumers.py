"""``/ws/v1/``: the apps' websocket. Same bearer tokens and scopes as the API; pushes what ``GET`` returns.

Connect with ``Authorization: Bearer <token>``, or, where a client cannot set headers, the
subprotocols ``bearer, <token>`` (the server answers with ``bearer``). A refused token is
refused at the handshake (HTTP 403), and so is a connect past the API's rate limits (it counts as
a request of its address and token, and a refused token as a probe, as on the API). Then, server
to client, each a JSON object with a ``type``:

- ``hello``: ``scope`` (patient or provider) and ``heartbeat_seconds``.
- ``visit``: a transition of one of the token's visits: ``version``, ``event`` (from, to, at),
  ``visit`` (as ``GET /api/v1/visits/<id>`` returns it); live ones also carry, in epoch seconds,
  ``published_at`` (its transaction committed), ``relayed_at`` (the relay handed it on) and
  ``sent_at`` (this server sent it), so a client can tell where a delay came from.
- ``offer_withdrawn`` (provider): an offer that has moved on without them: ``version``,
  ``visit.id``, ``outcome`` (declined, expired, withdrawn, cancelled).
- ``heartbeat`` every ``OPS_PUSH_HEARTBEAT_SECONDS`` (20).
- ``resumed`` after a resume; ``error`` (``code``, ``field``, ``message``) for a message it
  could not read.

**Resume** in the URL: ``/ws/v1/?resume=<visit id>:<last version>,...`` replays, in order and from
PostgreSQL, every transition after those versions (and, for a provider, the visit it holds now if
it named none), then ``resumed``; what commits meanwhile follows the replay, never before it.
The same as a message, ``{"type": "resume", "visits": {"<visit id>": <version>}}``, replays the
transitions newer than those versions and than what the socket already sent (a live message may
have gone out ahead of it: reconnecting clients resume in the URL). Each ``visit`` message is one
row of the PHI access log, as each ``GET`` is. A revoked token's sockets are closed (code 4401), an expired one's at the
next heartbeat.
"""

import time
from urllib.parse import parse_qs, unquote

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.utils import timezone

from clinical.api import limits
from clinical.api.auth import NotAuthenticated, client_for
from clinical.models import ApiScope, Visit
from clinical.push import messages
from clinical.push.relay import HEARTBEAT_GROUP
from core.access import access_row
from core.asyncdb import AccessLogBatch, PooledDatabaseConsumer, in_thread

MAX_RESUME_VISITS = 100
CLOSE_NOT_AUTHENTICATED = 4401
CLOSE_INVALID = 4400


class SocketRequest:
    """What the token check and the PHI access log read of a request, from a websocket's scope."""

    method = "WS"
    user = None

    def __init__(self, scope: dict, authorization: str):
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        self.path = scope["path"]
        self.headers = {"Authorization": authorization}
        self.META = {
            "REMOTE_ADDR": (scope.get("client") or [""])[0],
            "HTTP_USER_AGENT": headers.get("user-agent", ""),
            "HTTP_X_FORWARDED_FOR": headers.get("x-forwarded-for", ""),
        }
        self.api_client = None

    def get_full_path(self) -> str:
        """Return the path (a security event names it; the resume query string is left out)."""
        return self.path


def _credentials(scope: dict) -> tuple[str, bool]:
    """Return the ``Authorization`` value the socket carries, and whether it came as subprotocols."""
    for name, value in scope["headers"]:
        if name.lower() == b"authorization":
            return value.decode("latin-1"), False
    protocols = [unquote(p) for p in scope.get("subprotocols", [])]
    if len(protocols) == 2 and protocols[0].lower() == "bearer":
        return f"Bearer {protocols[1]}", True
    return "", False


def _versions_in_url(value: str) -> dict[str, int] | None:
    """Return ``{visit id: version}`` from ``V1:12,V2:5`` (the ``resume`` query parameter), None if unreadable."""
    versions = {}
    for item in filter(None, value.split(",")):
        public_id, _, version = item.partition(":")
        if not (0 < len(public_id) <= 20 and version.isascii() and version.isdigit() and len(version) <= 18):
            return None
        versions[public_id.upper()] = int(version)
    return versions if len(versions) <= MAX_RESUME_VISITS else None


class RateLimited(Exception):
    """The socket's address or token is past the API's rate limit."""


def _authenticate(request: SocketRequest):
    """Check the token as the API does: a connect counts against the same rate limits, a refusal as a probe."""
    if limits.address_retry_after(request) is not None:
        raise RateLimited
    try:
        client = client_for(request)
    except NotAuthenticated:
        limits.note_answer(request, 401)
        raise
    request.api_client = client
    if limits.token_retry_after(client) is not None:
        raise RateLimited
    return client


_ACCESS_LOG = AccessLogBatch()  # one per server process: its sockets' rows, one INSERT at a time


def _access_row(request: SocketRequest, visit_pk: int, patient_pk: int):
    records = [Visit(pk=visit_pk, patient_id=patient_pk)]
    return access_row(request, kind="api_read", model=Visit, records=records, source="push")


def _missed(client, versions: dict[str, int]) -> list[messages.Message]:
    if client.scope == ApiScope.PROVIDER:
        return messages.missed(patient_id=None, provider_id=client.provider_id, versions=versions)
    return messages.missed(patient_id=client.patient_id, provider_id=None, versions=versions)


class AppConsumer(PooledDatabaseConsumer, AsyncJsonWebsocketConsumer):
    """One app's socket: joins its patient's or provider's group, relays their messages, replays on resume."""

    async def connect(self):
        authorization, as_subprotocol = _credentials(self.scope)
        self.request = SocketRequest(self.scope, authorization)
        try:
            self.client = await in_thread(_authenticate)(self.request)
        except (NotAuthenticated, RateLimited):  # refused at the handshake (HTTP 403)
            await self.close(code=CLOSE_NOT_AUTHENTICATED)
            return
        if self.client.scope == ApiScope.PROVIDER:
            self.own = messages.provider_group(self.client.provider_id)
        else:
            self.own = messages.patient_group(self.client.patient_id)
        self.versions: dict[str, int] = {}
        self.joined = [self.own, messages.client_group(self.client.pk), HEARTBEAT_GROUP]
        # Joined before the replay: what commits meanwhile waits in the channel layer until the
        # replay is sent, then goes out after it (anything replayed already is not sent twice).
        await self.join()
        await self.accept(subprotocol="bearer" if as_subprotocol else None)
        hello = {"type": "hello", "scope": self.client.scope, "heartbeat_seconds": settings.OPS_PUSH_HEARTBEAT_SECONDS}
        if not await self.greet(hello):
            return  # the client left during the handshake
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        resume = query.get("resume")  # present but empty: nothing known yet, still a resume
        if resume is not None:
            versions = _versions_in_url(resume[-1])
            if versions is None:
                await self._error("invalid", "resume", f"'resume' is visit:version pairs, at most {MAX_RESUME_VISITS}.")
                await self.close(code=CLOSE_INVALID)
                return
            await self._resume(versions)

    async def receive_json(self, content, **kwargs):
        if not isinstance(content, dict) or content.get("type") != "resume":
            await self._error("invalid", "type", 'Send {"type": "resume", "visits": {"<visit id>": <version>}}.')
            return
        versions = content.get("visits", {})
        if (
            not isinstance(versions, dict)
            or len(versions) > MAX_RESUME_VISITS
            or not all(
                isinstance(key, str) and len(key) <= 20 and type(value) is int and value >= 0
                for key, value in versions.items()
            )
        ):
            await self._error(
                "invalid", "visits", f"'visits' maps at most {MAX_RESUME_VISITS} visit ids to versions (integers ≥ 0)."
            )
            return
        await self._resume({key.upper(): value for key, value in versions.items()})

    async def _resume(self, versions: dict[str, int]) -> None:
        """Replay, in order, the transitions after ``versions`` that this socket has not sent yet."""
        for public_id, version in versions.items():
            self.versions[public_id] = max(self.versions.get(public_id, 0), version)
        replayed = 0
        for message in await in_thread(_missed)(self.client, versions):
            replayed += await self._deliver(message.body, message.visit_pk, message.patient_pk)
        await self.send_json({"type": "resumed", "replayed": replayed})

    async def decode_json(self, text_data):
        try:
            return await super().decode_json(text_data)
        except ValueError:
            return None

    async def _error(self, code: str, field: str, text: str) -> None:
        await self.send_json({"type": "error", "code": code, "field": field, "message": text})

    async def push_message(self, event):
        """A message the relay built for this socket's group."""
        await self._deliver(event["body"], event.get("visit"), event.get("patient"))

    async def _deliver(self, body: dict, visit_pk: int | None, patient_pk: int | None) -> int:
        # Never the same version of a visit twice, never an older one after a newer.
        public_id = body["visit"]["id"]
        if body["version"] <= self.versions.get(public_id, 0):
            return 0
        self.versions[public_id] = body["version"]
        if visit_pk is not None:  # recorded before it is sent, as an API answer is
            await _ACCESS_LOG.record(_access_row(self.request, visit_pk, patient_pk))
        await self.send_json({**body, "sent_at": time.time()} if "published_at" in body else body)
        return 1

    async def push_heartbeat(self, event):
        """The relay's heartbeat: pass it on; close the socket of a token that has expired meanwhile."""
        if self.client.expires_at is not None and timezone.now() >= self.client.expires_at:
            await self.close(code=CLOSE_NOT_AUTHENTICATED)
            return
        await self.send_json({"type": "heartbeat", "at": event["at"]})

    async def push_revoked(self, event):
        """The token was revoked: close at once."""
        await self.close(code=CLOSE_NOT_AUTHENTICATED)

    async def push_queues(self, event):
        """Live queue nudges are for console pages; an app socket is never in that group."""
