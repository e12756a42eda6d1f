"""The router's working set in Redis: who waits where, and who is free to take them.

Everything here can be lost at any moment; ``rebuild`` recreates it from PostgreSQL and the
``refresh_*`` functions re-read one visit or provider, so applying them twice is harmless. It holds
no deadline and no memory of past offers: those live in PostgreSQL (``clinical_offer``), where the
router reads them with the database's clock.
"""

import datetime as dt

import redis
from django.db import connection

from clinical.calendar import license_valid_sql
from clinical.models import Priority, Visit, VisitStatus
from clinical.reference import states

BUILT = "rt:built"  # present only while the working set is complete
QUEUE_PREFIX = "rt:queue:"
QUEUE = QUEUE_PREFIX + "{}:{}"  # ZSET per state and priority: waiting visit -> requested_at (epoch seconds)
VISIT_PLACE = "rt:visit_place"  # HASH: waiting visit -> "state:priority" (its queue)
AVAILABLE_PREFIX = "rt:avail:"
AVAILABLE = AVAILABLE_PREFIX + "{}"  # ZSET per state: available provider -> available_since (epoch seconds)
PROVIDER_STATES = "rt:provider_states"  # HASH: available provider -> "CA,NV" (licensed now)
STATE_CODES = [row["code"] for row in states()]
PRIORITIES = [int(p) for p in Priority.values]


def script(r: redis.Redis, source: str):
    """Return ``source`` registered on this client (sent by its hash, loaded again if Redis lost it)."""
    scripts = r.__dict__.setdefault("ops_scripts", {})
    if source not in scripts:
        scripts[source] = r.register_script(source)
    return scripts[source]


def queue_key(state: str, priority: int) -> str:
    """Return the key of one state's queue for one priority."""
    return QUEUE.format(state, int(priority))


# Licensed now by the state's calendar, at the statement's instant (the database's clock).
_AVAILABLE_SQL = """
SELECT p.id, p.available_since, array_agg(DISTINCT l.state ORDER BY l.state)
FROM clinical_provider p
JOIN clinical_providerlicense l ON l.provider_id = p.id AND {license_valid}
WHERE p.availability = 'available' AND p.is_active {only}
GROUP BY p.id
""".replace("{license_valid}", license_valid_sql("l", "statement_timestamp()"))


def _available_providers(provider_id: int | None = None) -> list[tuple[int, dt.datetime, list[str]]]:
    only = "AND p.id = %(provider)s" if provider_id else ""
    with connection.cursor() as cursor:
        cursor.execute(_AVAILABLE_SQL.format(only=only), {"provider": provider_id})
        return cursor.fetchall()


def rebuild(r: redis.Redis) -> dict:
    """Replace the working set with what PostgreSQL says now; return what was loaded."""
    waiting = list(
        Visit.objects.filter(status=VisitStatus.WAITING).values_list("id", "located_state", "priority", "requested_at")
    )
    providers = _available_providers()
    pipe = r.pipeline(transaction=True)
    pipe.delete(BUILT, VISIT_PLACE, PROVIDER_STATES)
    pipe.delete(*[queue_key(code, p) for code in STATE_CODES for p in PRIORITIES])
    pipe.delete(*[AVAILABLE.format(code) for code in STATE_CODES])
    for visit_id, state, priority, requested_at in waiting:
        _queue(pipe, visit_id, state, priority, requested_at.timestamp())
    for provider_id, since, licensed in providers:
        _make_available(pipe, provider_id, since, licensed)
    pipe.set(BUILT, "1")
    pipe.execute()
    return {"visits": len(waiting), "providers": len(providers)}


def _queue(pipe, visit_id: int, state: str, priority: int, requested_epoch: float) -> None:
    pipe.zadd(queue_key(state, priority), {visit_id: requested_epoch})
    pipe.hset(VISIT_PLACE, visit_id, f"{state}:{int(priority)}")


def _unqueue(pipe, visit_id: int, place: str | None) -> None:
    if place:
        state, priority = place.split(":")
        pipe.zrem(queue_key(state, int(priority)), visit_id)
    pipe.hdel(VISIT_PLACE, visit_id)


# KEYS: the place hash. ARGV: queue key prefix, visit, "state:priority", requested (epoch seconds).
_QUEUE_VISIT = """
local old = redis.call('HGET', KEYS[1], ARGV[2])
if old then redis.call('ZREM', ARGV[1] .. old, ARGV[2]) end
redis.call('ZADD', ARGV[1] .. ARGV[3], ARGV[4], ARGV[2])
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
"""

# KEYS: the place hash, the provider-states hash. ARGV: queue prefix, pool prefix, then per offer:
# visit, its place ("state:priority"), provider. The visits leave their queues and the providers
# every pool they were in, in one round trip.
_RECORD_OFFERS = """
for i = 3, #ARGV, 3 do
  redis.call('ZREM', ARGV[1] .. ARGV[i + 1], ARGV[i])
  redis.call('HDEL', KEYS[1], ARGV[i])
  local states = redis.call('HGET', KEYS[2], ARGV[i + 2])
  if states then
    for state in string.gmatch(states, '[^,]+') do redis.call('ZREM', ARGV[2] .. state, ARGV[i + 2]) end
    redis.call('HDEL', KEYS[2], ARGV[i + 2])
  end
end
"""


def queue_visit(r: redis.Redis, visit_id: int, state: str, priority: int, requested_at: str) -> None:
    """Put a waiting visit in its queue (or move it after a priority change), in one round trip."""
    epoch = dt.datetime.fromisoformat(requested_at).timestamp()
    script(r, _QUEUE_VISIT)(keys=[VISIT_PLACE], args=[QUEUE_PREFIX, visit_id, f"{state}:{int(priority)}", epoch])


def _make_available(pipe, provider_id: int, since: dt.datetime | None, licensed: list[str]) -> None:
    for state in licensed:
        pipe.zadd(AVAILABLE.format(state), {provider_id: since.timestamp() if since else 0.0})
    pipe.hset(PROVIDER_STATES, provider_id, ",".join(licensed))


def remove_provider(pipe, provider_id: int, licensed: list[str]) -> None:
    """Take a provider out of every state's available set."""
    for state in licensed or STATE_CODES:
        pipe.zrem(AVAILABLE.format(state), provider_id)
    pipe.hdel(PROVIDER_STATES, provider_id)


def record_offers(r: redis.Redis, applied: list[tuple[int, str, int]]) -> None:
    """Update the working set after offers committed, in one round trip: each ``(visit, place,
    provider)`` leaves its queue (``place`` is "state:priority") and the provider every pool.
    """
    if applied:
        args = [value for offer in applied for value in offer]
        script(r, _RECORD_OFFERS)(keys=[VISIT_PLACE, PROVIDER_STATES], args=[QUEUE_PREFIX, AVAILABLE_PREFIX, *args])


def refresh_visit(r: redis.Redis, visit_id: int) -> None:
    """Make the working set agree with PostgreSQL about one visit."""
    row = Visit.objects.filter(pk=visit_id).values_list("status", "located_state", "priority", "requested_at").first()
    old = r.hget(VISIT_PLACE, visit_id)
    pipe = r.pipeline(transaction=True)
    _unqueue(pipe, visit_id, old)
    if row is not None and row[0] == VisitStatus.WAITING:
        _queue(pipe, visit_id, row[1], row[2], row[3].timestamp())
    pipe.execute()


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
