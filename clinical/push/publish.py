"""Append push events to a Redis stream once the transaction commits.

Like the routing events (``clinical.events``), they only name rows: the relay reads them from
PostgreSQL. If Redis is unavailable the event is dropped with a warning; the apps' clients fall
back to polling when their socket goes silent and resume from PostgreSQL when it is back.
"""

import logging
import time

import redis
from django.db import transaction

from core.redis import get_redis

PUSH_STREAM = "ops:push:events"
STREAM_MAX_LEN = 100_000
logger = logging.getLogger(__name__)


def transitions_on_commit(event_ids: list[int]) -> None:
    """Tell the apps about these timeline events (``VisitEvent`` ids) once the transaction commits."""
    if event_ids:
        ids = ",".join(str(pk) for pk in event_ids)
        transaction.on_commit(lambda: publish_now({"kind": "transition", "events": ids}))


def revoked_on_commit(client_ids: list[int]) -> None:
    """Close the sockets of these API clients once their revocation commits."""
    if client_ids:
        ids = ",".join(str(pk) for pk in client_ids)
        transaction.on_commit(lambda: publish_now({"kind": "revoked", "clients": ids}))


def queues_changed_on_commit() -> None:
    """Tell the live queues something they count changed (e.g. a provider went available)."""
    transaction.on_commit(lambda: publish_now({"kind": "queues"}))


def publish_now(payload: dict) -> None:
    """Append one push event, stamped with the time it was published (the commit, to a millisecond)."""
    try:
        get_redis().xadd(PUSH_STREAM, {**payload, "at": f"{time.time():.6f}"}, maxlen=STREAM_MAX_LEN, approximate=True)
    except redis.RedisError as error:
        logger.warning("push event %s not published (%s); clients resume from PostgreSQL", payload["kind"], error)
