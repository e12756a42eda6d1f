"""The shared Redis client. Redis holds only disposable working state; PostgreSQL is the truth."""

from functools import cache

import redis
from django.conf import settings


@cache
def get_redis() -> redis.Redis:
    """Return the process-wide Redis client for ``REDIS_URL`` (strings decoded)."""
    return redis.Redis.from_url(settings.REDIS_URL, decode_responses=True, socket_timeout=5, socket_connect_timeout=2)
