"""Routing events: what changed, published to a Redis stream once the transaction commits.

The router consumes them at least once; if Redis is unavailable the event is dropped with a
warning and the router's periodic sweep over PostgreSQL repairs its working set.
"""

import logging

import redis
from django.db import transaction

from ops_console.redis import get_redis

ROUTING_STREAM = "ops:routing:events"
STREAM_MAX_LEN = 100_000
logger = logging.getLogger(__name__)


def publish_on_commit(kind: str, **fields: object) -> None:
    """Publish a routing event after the current transaction commits (now, if none is open)."""
    payload = {"kind": kind, **{key: "" if value is None else str(value) for key, value in fields.items()}}
    transaction.on_commit(lambda: _publish(payload))


def _publish(payload: dict) -> None:
    try:
        get_redis().xadd(ROUTING_STREAM, payload, maxlen=STREAM_MAX_LEN, approximate=True)
    except redis.RedisError as error:
        logger.warning("routing event %s not published (%s); the sweep will repair it", payload, error)
