"""Rate limits and probing alerts for the JSON API, counted in Redis.

Each token may make ``API_RATE_PER_TOKEN`` requests a minute and each client address
``API_RATE_PER_ADDRESS`` (a fixed one-minute window); past that the answer is 429 with
``Retry-After``. Answers that refuse or find nothing (401, 403, 404) are counted per token (or per
address without one) over ten minutes: when they pass ``API_PROBE_THRESHOLD``, one security event
says someone is guessing. Redis being down never refuses a request (the limits then do not apply).
"""

import logging
import time

import redis
from django.conf import settings

from core.actions import record_security_event
from core.client_ip import client_ip
from core.models import SecurityEvent
from core.redis import get_redis

logger = logging.getLogger(__name__)
PREFIX = "ops:api"
PROBE_WINDOW = 600
PROBING_STATUSES = (401, 403, 404)


def retry_after(key: str, limit: int) -> int | None:
    """Count a request against ``key``; return seconds to wait if it is over ``limit`` a minute, else None."""
    window = int(time.time() // 60)
    counter = f"{PREFIX}:rate:{key}:{window}"
    try:
        with get_redis().pipeline() as pipe:
            count, _ = pipe.incr(counter).expire(counter, 120).execute()
    except redis.RedisError as error:
        logger.warning("API rate limit not counted (%s)", error)
        return None
    return 60 - int(time.time()) % 60 or 1 if count > limit else None


def address_retry_after(request) -> int | None:
    """Count a request from its client address (before the token is even read)."""
    return retry_after(f"ip:{client_ip(request)}", settings.API_RATE_PER_ADDRESS)


def token_retry_after(client) -> int | None:
    """Count a request of an authenticated client."""
    return retry_after(f"client:{client.pk}", settings.API_RATE_PER_TOKEN)


def note_answer(request, status: int) -> None:
    """Count a refusing answer; record one security event when a token or address passes the threshold."""
    if status not in PROBING_STATUSES:
        return
    client = getattr(request, "api_client", None)
    who = f"client:{client.pk}" if client is not None else f"ip:{client_ip(request)}"
    counter = f"{PREFIX}:probe:{who}"
    try:
        with get_redis().pipeline() as pipe:
            count, _ = pipe.incr(counter).expire(counter, PROBE_WINDOW, nx=True).execute()
    except redis.RedisError as error:
        logger.warning("API probe not counted (%s)", error)
        return
    if count == settings.API_PROBE_THRESHOLD:
        name = f"API client {client.name}" if client is not None else "requests without a valid token"
        detail = f"{name}: {count} answers 401/403/404 within {PROBE_WINDOW // 60} minutes"
        record_security_event(request, kind=SecurityEvent.Kind.API_PROBING, detail=detail)
