"""Routing events: what changed, published to a Redis stream once the transaction commits.

The router consumes them at least once and re-reads the named rows from PostgreSQL, so an
event only says *what* to look at. If Redis is unavailable the event is dropped with a
warning and the router's periodic sweep over PostgreSQL repairs its working set.
"""

import logging

import redis
from django.db import transaction

from core.redis import get_redis

ROUTING_STREAM = "ops:routing:events"
STREAM_MAX_LEN = 100_000
logger = logging.getLogger(__name__)


def publish_on_commit(kind: str, *, actor: str = "", **fields: object) -> None:
    """Publish a routing event after the current transaction commits (now, if none is open)."""
    payload = _payload(kind, actor, fields)
    transaction.on_commit(lambda: publish_now([payload]))


def publish_many_on_commit(payloads: list[dict]) -> None:
    """Publish several events in one round trip after the transaction commits."""
    if payloads:
        transaction.on_commit(lambda: publish_now(payloads))


def event(kind: str, *, actor: str = "", **fields: object) -> dict:
    """Return an event payload for ``publish_many_on_commit``."""
    return _payload(kind, actor, fields)


def _payload(kind: str, actor: str, fields: dict) -> dict:
    payload = {"kind": kind, "actor": str(actor)}
    payload.update({key: "" if value is None else str(value) for key, value in fields.items()})
    return payload


def publish_now(payloads: list[dict]) -> None:
    """Append events to the stream; log and drop them if Redis is down."""
    try:
        pipe = get_redis().pipeline(transaction=False)
        for payload in payloads:
            pipe.xadd(ROUTING_STREAM, payload, maxlen=STREAM_MAX_LEN, approximate=True)
        pipe.execute()
    except redis.RedisError as error:
        logger.warning("%d routing event(s) not published (%s); the sweep will repair it", len(payloads), error)
