"""A request id for every HTTP request and websocket: in its log lines, its response and its access-log row.

The id comes from the client's (or the proxy's) ``X-Request-ID`` header when that is a sane token
(at most 64 of ``A-Z a-z 0-9 . _ -``), so one id follows a request through the proxy's log and
ours; anything else (a newline meant to forge a log line, 500 characters) is replaced by a new
uuid4 hex. A client-chosen id identifies nothing by itself: it only ties lines together.
"""

import logging
import re
import time
import uuid

from core.logs import http_request_fields, reset_request_fields, set_request_fields

HEADER = "X-Request-ID"
_SANE = re.compile(r"[A-Za-z0-9._-]{1,64}")
# The load balancer's probes: logged at DEBUG while they pass (200), or they would be most of the log.
_PROBES = frozenset({"/healthz", "/readyz"})
logger = logging.getLogger("ops.request")


def request_id_from(value: str | None) -> str:
    """Return ``value`` if it is a sane request id, else a new one."""
    if value is not None and _SANE.fullmatch(value):
        return value
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Give the request an id (``request.request_id``), log one ``ops.request`` line, return the id.

    First in ``MIDDLEWARE``, so a redirect to HTTPS and a static file carry the id too, and the
    duration covers every other middleware. The line's ``path`` never has the query string (it may
    hold search terms: names). ``duration_ms`` ends when the response is ready; a streamed export
    goes on streaming after it.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.request_id = request_id_from(request.headers.get(HEADER))
        token = set_request_fields(http_request_fields(request))
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            response[HEADER] = request.request_id
            self._log(request, response.status_code, started)
            return response
        finally:
            reset_request_fields(token)

    @staticmethod
    def _log(request, status: int, started: float) -> None:
        quiet = request.path in _PROBES and status == 200
        logger.log(
            logging.DEBUG if quiet else logging.INFO,
            "%s %s %s",
            request.method,
            request.path,
            status,
            extra={"status": status, "duration_ms": round((time.perf_counter() - started) * 1000, 1)},
        )


class RequestIdAsgiMiddleware:
    """Give a websocket connection a request id: in its log lines, and in the handshake's response headers."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        headers = dict(scope.get("headers") or [])
        raw = headers.get(HEADER.lower().encode())
        request_id = request_id_from(raw.decode("latin-1") if raw is not None else None)
        token = set_request_fields({"request_id": request_id, "method": "WEBSOCKET", "path": scope.get("path", "")})

        async def send_with_id(message):
            if message["type"] == "websocket.accept":
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", request_id.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            reset_request_fields(token)
