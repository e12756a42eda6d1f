"""The router's working set in Redis: queues, available providers per state, offer deadlines.

Everything here can be lost at any moment; ``rebuild`` recreates it from PostgreSQL and the
``refresh_*`` functions re-read one visit or provider, so applying them twice is harmless.
"""

import datetime as dt

import redis
from django.db import connection
from django.utils import timezone

from clinical.models import LICENSE_VALID_SQL, Priority, Visit, VisitStatus
from clinical.reference import states

BUILT = "rt:built"  # present only while the working set is complete
QUEUE = "rt:queue:{}"  # ZSET per state: visit -> queue score (priority, then age)
REQUESTED = "rt:requested"  # ZSET: waiting visit -> requested_at (max-wait sweep)
VISIT_STATE = "rt:visit_state"  # HASH: waiting visit -> located state
AVAILABLE = "rt:avail:{}"  # ZSET per state: available provider -> available_since
PROVIDER_STATES = "rt:provider_states"  # HASH: available provider -> "CA,NV" (licensed today)
OFFERS = "rt:offers"  # ZSET: offered visit -> offer deadline
OFFER_PROVIDER = "rt:offer_provider"  # HASH: offered visit -> provider
OFFERED_BEFORE = "rt:offered:{}"  # SET per open visit: providers it was already offered to
STATE_CODES = [row["code"] for row in states()]

_PRIORITY_SPAN = 10**10  # larger than any epoch second we will see


def queue_score(priority: int, requested_at: dt.datetime) -> float:
    """Return the queue position: higher priority first, then oldest request first."""
    return queue_score_at(priority, requested_at.timestamp())


def queue_score_at(priority: int, requested_epoch: float) -> float:
    """Return the queue position for a request time in epoch seconds."""
    return (Priority.URGENT - priority) * _PRIORITY_SPAN + requested_epoch


def _epoch(moment: dt.datetime | None) -> float:
    return (moment or timezone.now()).timestamp()


_AVAILABLE_SQL = """
SELECT p.id, p.available_since, array_agg(DISTINCT l.state ORDER BY l.state)
FROM clinical_provider p
JOIN clinical_providerlicense l ON l.provider_id = p.id AND {license_valid}
WHERE p.availability = 'available' AND p.is_active {only}
GROUP BY p.id
""".replace("{license_valid}", LICENSE_VALID_SQL)

_OFFERED_BEFORE_SQL = """
SELECT e.visit_id, e.provider_id FROM clinical_visitevent e
JOIN clinical_visit v ON v.id = e.visit_id
WHERE v.status IN ('waiting', 'offered') AND e.to_status = 'offered' AND e.provider_id IS NOT NULL {only}
"""


def _available_providers(provider_id: int | None = None) -> list[tuple[int, dt.datetime, list[str]]]:
    only = "AND p.id = %(provider)s" if provider_id else ""
    with connection.cursor() as cursor:
        cursor.execute(_AVAILABLE_SQL.format(only=only), {"today": timezone.localdate(), "provider": provider_id})
        return cursor.fetchall()


def _offered_before(visit_id: int | None = None) -> list[tuple[int, int]]:
    only = "AND v.id = %(visit)s" if visit_id else ""
    with connection.cursor() as cursor:
        cursor.execute(_OFFERED_BEFORE_SQL.format(only=only), {"visit": visit_id})
        return cursor.fetchall()


def rebuild(r: redis.Redis, *, offer_timeout: int) -> dict:
    """Replace the working set with what PostgreSQL says now; return what was loaded."""
    open_visits = list(
        Visit.objects.filter(status__in=[VisitStatus.WAITING, VisitStatus.OFFERED]).values_list(
            "id", "status", "located_state", "priority", "requested_at", "provider_id", "offered_at"
        )
    )
    providers = _available_providers()
    offered_before = _offered_before()
    pipe = r.pipeline(transaction=True)
    pipe.delete(BUILT, REQUESTED, VISIT_STATE, PROVIDER_STATES, OFFERS, OFFER_PROVIDER)
    pipe.delete(*[QUEUE.format(code) for code in STATE_CODES], *[AVAILABLE.format(code) for code in STATE_CODES])
    for key in r.scan_iter(OFFERED_BEFORE.format("*"), count=1000):
        pipe.delete(key)
    for visit_id, status, state, priority, requested_at, provider_id, offered_at in open_visits:
        if status == VisitStatus.WAITING:
            _queue(pipe, visit_id, state, priority, requested_at)
        else:
            _offer(pipe, visit_id, provider_id, offered_at, offer_timeout)
    for provider_id, since, licensed in providers:
        _make_available(pipe, provider_id, since, licensed)
    for visit_id, provider_id in offered_before:
        pipe.sadd(OFFERED_BEFORE.format(visit_id), provider_id)
    pipe.set(BUILT, timezone.now().isoformat())
    pipe.execute()
    return {"visits": len(open_visits), "providers": len(providers)}


def _queue(pipe, visit_id, state, priority, requested_at) -> None:
    pipe.zadd(QUEUE.format(state), {visit_id: queue_score(priority, requested_at)})
    pipe.zadd(REQUESTED, {visit_id: requested_at.timestamp()})
    pipe.hset(VISIT_STATE, visit_id, state)


def queue_visit(r: redis.Redis, visit_id: int, state: str, priority: int, requested_at: str) -> None:
    """Put a waiting visit in its state's queue (or move it after a priority change)."""
    pipe = r.pipeline(transaction=True)
    _queue(pipe, visit_id, state, priority, dt.datetime.fromisoformat(requested_at))
    pipe.execute()


def _unqueue(pipe, visit_id, state) -> None:
    pipe.zrem(QUEUE.format(state), visit_id)
    pipe.zrem(REQUESTED, visit_id)
    pipe.hdel(VISIT_STATE, visit_id)


def _offer(pipe, visit_id, provider_id, offered_at, offer_timeout) -> None:
    pipe.zadd(OFFERS, {visit_id: _epoch(offered_at) + offer_timeout})
    pipe.hset(OFFER_PROVIDER, visit_id, provider_id)
    pipe.sadd(OFFERED_BEFORE.format(visit_id), provider_id)


def _make_available(pipe, provider_id, since, licensed) -> None:
    for state in licensed:
        pipe.zadd(AVAILABLE.format(state), {provider_id: _epoch(since)})
    pipe.hset(PROVIDER_STATES, provider_id, ",".join(licensed))


def remove_provider(pipe, provider_id: int, licensed: list[str]) -> None:
    """Take a provider out of every state's available set."""
    for state in licensed or STATE_CODES:
        pipe.zrem(AVAILABLE.format(state), provider_id)
    pipe.hdel(PROVIDER_STATES, provider_id)


def record_offers(r: redis.Redis, applied: list[tuple[int, int, str]], provider_states: dict, offer_timeout: int):
    """Update the working set after offers committed: visits leave the queue, providers the pool."""
    pipe = r.pipeline(transaction=False)
    deadline = timezone.now().timestamp() + offer_timeout
    for visit_id, provider_id, state in applied:
        _unqueue(pipe, visit_id, state)
        pipe.zadd(OFFERS, {visit_id: deadline})
        pipe.hset(OFFER_PROVIDER, visit_id, provider_id)
        pipe.sadd(OFFERED_BEFORE.format(visit_id), provider_id)
        remove_provider(pipe, provider_id, provider_states.get(provider_id, []))
    pipe.execute()


def refresh_visit(r: redis.Redis, visit_id: int, *, offer_timeout: int) -> None:
    """Make the working set agree with PostgreSQL about one visit."""
    row = (
        Visit.objects.filter(pk=visit_id)
        .values_list("status", "located_state", "priority", "requested_at", "provider_id", "offered_at", "offer_count")
        .first()
    )
    pipe = r.pipeline(transaction=True)
    old_state = r.hget(VISIT_STATE, visit_id)
    if old_state:
        _unqueue(pipe, visit_id, old_state)
    pipe.zrem(OFFERS, visit_id)
    pipe.hdel(OFFER_PROVIDER, visit_id)
    if row is None or row[0] not in (VisitStatus.WAITING, VisitStatus.OFFERED):
        pipe.delete(OFFERED_BEFORE.format(visit_id))
    elif row[0] == VisitStatus.WAITING:
        _queue(pipe, visit_id, row[1], row[2], row[3])
        if row[6]:  # offered before: remember to whom, so it is never offered to them again
            _reload_offered_before(pipe, visit_id)
    else:
        _offer(pipe, visit_id, row[4], row[5], offer_timeout)
    pipe.execute()


def _reload_offered_before(pipe, visit_id: int) -> None:
    pipe.delete(OFFERED_BEFORE.format(visit_id))
    providers = [provider for _, provider in _offered_before(visit_id)]
    if providers:
        pipe.sadd(OFFERED_BEFORE.format(visit_id), *providers)


def refresh_provider(r: redis.Redis, provider_id: int) -> None:
    """Make the working set agree with PostgreSQL about one provider (availability and licenses)."""
    rows = _available_providers(provider_id)
    pipe = r.pipeline(transaction=True)
    remove_provider(pipe, provider_id, [])
    for _, since, licensed in rows:
        _make_available(pipe, provider_id, since, licensed)
    pipe.execute()


def is_built(r: redis.Redis) -> bool:
    """Return True while the working set is complete (False after Redis lost its data)."""
    return bool(r.exists(BUILT))
