"""Request timing recorder: duration and SQL query count per console page and API endpoint.

Kept in Redis with bounded memory: the last ``SAMPLES`` requests per endpoint (a capped list)
and at most ``ENDPOINTS`` endpoints (least recently seen dropped). Read by the Slow pages
report, which computes count, p50, p95, max and mean queries over a sliding window.
"""

import logging
import statistics
import time
from dataclasses import dataclass

import redis
from django.db import connection

from core.redis import get_redis

SAMPLES = 500
ENDPOINTS = 300
ENDPOINTS_KEY = "timing:endpoints"  # ZSET endpoint -> last seen (epoch seconds)
SAMPLES_KEY = "timing:samples:{}"  # LIST of "epoch,ms,queries", newest first
PATH_KEY = "timing:path"  # HASH endpoint -> a recent path, to open it again with the toolbar
TTL = 24 * 3600
logger = logging.getLogger(__name__)


class TimingMiddleware:
    """Time every request that resolves to a console or API view, and count its queries."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        queries = [0]

        def count(execute, sql, params, many, context):
            queries[0] += 1
            return execute(sql, params, many, context)

        started = time.perf_counter()
        with connection.execute_wrapper(count):
            response = self.get_response(request)
        endpoint = _endpoint(request)
        if endpoint:
            record(endpoint, request.path, (time.perf_counter() - started) * 1000, queries[0])
        return response


def _endpoint(request) -> str | None:
    match = getattr(request, "resolver_match", None)
    if match is None or not match.view_name or match.namespace not in ("ops", "api"):
        return None
    return f"{request.method} {match.view_name}"


def record(endpoint: str, path: str, ms: float, queries: int) -> None:
    """Store one sample; a Redis failure never fails the request."""
    now = time.time()
    try:
        pipe = get_redis().pipeline(transaction=False)
        key = SAMPLES_KEY.format(endpoint)
        pipe.lpush(key, f"{now:.3f},{ms:.2f},{queries}")
        pipe.ltrim(key, 0, SAMPLES - 1)
        pipe.expire(key, TTL)
        pipe.zadd(ENDPOINTS_KEY, {endpoint: now})
        pipe.zremrangebyrank(ENDPOINTS_KEY, 0, -ENDPOINTS - 1)
        pipe.hset(PATH_KEY, endpoint, path)
        pipe.execute()
    except redis.RedisError as error:
        logger.debug("timing sample not recorded: %s", error)


@dataclass
class EndpointStats:
    endpoint: str
    path: str
    count: int
    p50_ms: float
    p95_ms: float
    max_ms: float
    mean_queries: float

    @property
    def method(self) -> str:
        return self.endpoint.split(" ", 1)[0]


def slow_pages(*, window_seconds: int = 3600) -> list[EndpointStats]:
    """Return per-endpoint statistics over the window, slowest p95 first."""
    r = get_redis()
    endpoints = r.zrevrange(ENDPOINTS_KEY, 0, -1)
    if not endpoints:
        return []
    pipe = r.pipeline(transaction=False)
    for endpoint in endpoints:
        pipe.lrange(SAMPLES_KEY.format(endpoint), 0, -1)
    samples = pipe.execute()
    paths = dict(zip(endpoints, r.hmget(PATH_KEY, endpoints), strict=True))
    since = time.time() - window_seconds
    stats = [
        _stats(endpoint, paths.get(endpoint) or "", rows, since)
        for endpoint, rows in zip(endpoints, samples, strict=True)
    ]
    return sorted((s for s in stats if s), key=lambda s: s.p95_ms, reverse=True)


def _stats(endpoint: str, path: str, rows: list[str], since: float) -> EndpointStats | None:
    parsed = [tuple(float(v) for v in row.split(",")) for row in rows]
    recent = [(ms, queries) for at, ms, queries in parsed if at >= since]
    if not recent:
        return None
    durations = sorted(ms for ms, _ in recent)
    return EndpointStats(
        endpoint=endpoint,
        path=path,
        count=len(recent),
        p50_ms=round(percentile(durations, 50), 1),
        p95_ms=round(percentile(durations, 95), 1),
        max_ms=round(durations[-1], 1),
        mean_queries=round(statistics.fmean(q for _, q in recent), 1),
    )


def percentile(ordered: list[float], pct: int) -> float:
    """Return the nearest-rank ``pct`` percentile of an ascending list."""
    index = max(0, min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]
