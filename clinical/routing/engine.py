"""One router's decisions: match waiting visits to providers, and run the timeouts.

The working set (Redis) says who waits and who is free; PostgreSQL says everything else (who
declined what and when, deadlines, the time) and has the last word on every write.
"""

import datetime as dt
import itertools
import logging
from dataclasses import dataclass, field

import redis
from django.conf import settings
from django.db import connection

from clinical.actions import offers as offer_actions
from clinical.actions import timeouts as timeout_actions
from clinical.calendar import license_valid_sql
from clinical.routing import policy as policies
from clinical.routing import workingset as ws
from clinical.sla import sla_targets
from core.audit import Actor
from core.errors import ActionError, Fenced
from core.prepared import Statement

logger = logging.getLogger(__name__)

_INELIGIBLE_OFFERS = Statement(
    "clinical_router_ineligible_offers",
    """
SELECT v.id, v.provider_id, v.located_state FROM clinical_visit v
WHERE v.status = 'offered' AND (%s::bigint IS NULL OR v.provider_id = %s::bigint) AND NOT EXISTS (
    SELECT 1 FROM clinical_providerlicense l JOIN clinical_provider p ON p.id = l.provider_id
    WHERE l.provider_id = v.provider_id AND l.state = v.located_state AND p.is_active AND {license_valid}
)
""".replace("{license_valid}", license_valid_sql("l", "statement_timestamp()")),
)

# Everything whose time is up, by the database's clock, in one round trip.
_DUE = Statement(
    "clinical_router_due",
    """
SELECT 'offer', o.visit_id, o.provider_id FROM clinical_offer o
WHERE o.outcome IS NULL AND o.expires_at <= clock_timestamp()
UNION ALL
SELECT 'wait', v.id, NULL FROM clinical_visit v
WHERE v.status = 'waiting' AND v.requested_at <= clock_timestamp() - %s::interval
UNION ALL
SELECT 'stuck', v.id, v.provider_id FROM clinical_visit v
WHERE v.status IN ('accepted', 'connecting') AND v.accepted_at <= clock_timestamp() - %s::interval
UNION ALL
SELECT 'stuck', v.id, v.provider_id FROM clinical_visit v
WHERE v.status = 'in_progress' AND v.started_at <= clock_timestamp() - %s::interval
LIMIT %s
""",
)

# The database's time, and who declined or ignored which candidate visit when (the memory that
# keeps a visit from going back to a provider who turned it down). One row.
_HISTORY = Statement(
    "clinical_router_history",
    """
SELECT extract(epoch FROM clock_timestamp()),
       array_agg(o.visit_id), array_agg(o.provider_id), array_agg(extract(epoch FROM o.decided_at))
FROM clinical_offer o WHERE o.visit_id = ANY(%s::bigint[]) AND o.outcome IN ('declined', 'expired')
""",
)

# The working set a matching pass needs, in one round trip. For every state: waiting and available
# counts; for the states with both, the oldest ``(2 x available + 20) x ARGV[4]`` visits of each
# priority (enough for any order within a priority, which is by age), then each such state's pool,
# best first, as deep as the visits loaded plus ARGV[5] (-1: all of it).
# ARGV: queue key prefix, pool key prefix, number of priorities, depth factor, pool margin, states.
# Returns {counts: [state, waiting, available, ...], loaded: [state, queue 0, queue 1, ..., pool, ...]}.
# (Keys are built in the script, which a single Redis allows; a Redis Cluster would not.)
_SNAPSHOT = """
local counts, loaded, active, total = {}, {}, {}, 0
local priorities = tonumber(ARGV[3])
for i = 6, #ARGV do
  local state = ARGV[i]
  local waiting = 0
  for p = 0, priorities - 1 do waiting = waiting + redis.call('ZCARD', ARGV[1] .. state .. ':' .. p) end
  local available = redis.call('ZCARD', ARGV[2] .. state)
  if waiting > 0 or available > 0 then
    table.insert(counts, state); table.insert(counts, waiting); table.insert(counts, available)
  end
  if waiting > 0 and available > 0 then
    local depth = (2 * available + 20) * tonumber(ARGV[4])
    table.insert(active, state); table.insert(loaded, state)
    for p = 0, priorities - 1 do
      local queue = redis.call('ZRANGE', ARGV[1] .. state .. ':' .. p, 0, depth - 1, 'WITHSCORES')
      total = total + #queue / 2
      table.insert(loaded, queue)
    end
    table.insert(loaded, false)
  end
end
local last = -1
if tonumber(ARGV[5]) >= 0 then last = total + tonumber(ARGV[5]) end
for i, state in ipairs(active) do
  loaded[i * (priorities + 2)] = redis.call('ZRANGE', ARGV[2] .. state, 0, last, 'WITHSCORES')
end
return {counts, loaded}
"""


@dataclass
class RouterConfig:
    policy: str = field(default_factory=lambda: settings.ROUTING_POLICY)
    offer_timeout: int = field(default_factory=lambda: settings.ROUTING_OFFER_TIMEOUT)
    max_wait: int = field(default_factory=lambda: settings.ROUTING_MAX_WAIT)
    batch_size: int = field(default_factory=lambda: settings.ROUTING_BATCH_SIZE)
    reoffer_after: int = field(default_factory=lambda: settings.ROUTING_REOFFER_AFTER)
    targets: dict[int, int] = field(default_factory=sla_targets)


@dataclass
class Candidate:
    visit: int
    state: str
    priority: int
    requested: float  # epoch seconds, the database's clock


@dataclass
class OfferHistory:
    """What PostgreSQL remembers of past offers of the candidate visits."""

    spurned: dict[int, dict[int, float]] = field(default_factory=dict)  # visit -> provider -> decided (epoch)
    turned_down: set[int] = field(default_factory=set)  # visits declined or ignored at least once


def place(candidate: Candidate, now: float, history: OfferHistory, config: RouterConfig) -> tuple:
    """Return a waiting visit's place in line (lower goes first).

    Everyone gets a first offer before anyone gets a second: visits never turned down go before
    visits a provider declined or ignored. Within each, by level, highest first: the
    visit's priority, raised by one for every target wait (``ROUTING_SLA_*``) it has already waited
    (aging), so a steady stream of urgent visits cannot starve the others. Within a level, the
    oldest request first.
    """
    waited = max(now - candidate.requested, 0.0)
    level = candidate.priority + int(waited // config.targets[candidate.priority])
    return (candidate.visit in history.turned_down, -level, candidate.requested, candidate.visit)


def decide(
    pools: dict[str, list[int]],
    candidates: list[Candidate],
    history: OfferHistory,
    *,
    now: float,
    config: RouterConfig,
    key=place,
) -> list[tuple[int, int, str]]:
    """Return ``(visit, provider, state)`` offers: visits in ``place`` order, each to the first
    provider of its state's policy-ordered pool still free in this pass who did not decline or
    ignore it; failing that, to one who did so at least ``reoffer_after`` seconds ago.
    """
    used: set[int] = set()
    start = dict.fromkeys(pools, 0)
    pairs = []
    for candidate in sorted(candidates, key=lambda c: key(c, now, history, config)):
        pool = pools.get(candidate.state)
        if not pool:
            continue
        while start[candidate.state] < len(pool) and pool[start[candidate.state]] in used:
            start[candidate.state] += 1
        spurned = history.spurned.get(candidate.visit, {})
        chosen = _choose(pool, start[candidate.state], used, spurned, now, config)
        if chosen is not None:
            used.add(chosen)
            pairs.append((candidate.visit, chosen, candidate.state))
    return pairs


def _choose(pool: list[int], start: int, used: set[int], spurned: dict[int, float], now: float, config: RouterConfig):
    fallback = None
    for provider in itertools.islice(pool, start, None):
        if provider in used:
            continue
        decided = spurned.get(provider)
        if decided is None:
            return provider
        if fallback is None and now - decided >= config.reoffer_after:
            fallback = provider
    return fallback


class Router:
    """Routing decisions over the Redis working set; every write goes through ``clinical.actions``."""

    def __init__(self, r: redis.Redis, config: RouterConfig | None = None, *, actor: Actor | None = None):
        self.r = r
        self.config = config or RouterConfig()
        self.actor = actor or Actor.router()

    # --- working set ----------------------------------------------------------------------

    def rebuild(self) -> dict:
        """Recreate the working set from PostgreSQL."""
        loaded = ws.rebuild(self.r)
        logger.info("router working set rebuilt: %(visits)s waiting visits, %(providers)s available providers", loaded)
        return loaded

    def ensure_built(self) -> bool:
        """Rebuild if Redis lost the working set; return True if it did."""
        if ws.is_built(self.r):
            return False
        self.rebuild()
        return True

    def handle(self, event: dict) -> None:
        """Apply one routing event by re-reading the rows it names (idempotent)."""
        if event.get("actor") == Actor.router().kind:
            return  # this router already applied its own change
        if event.get("kind") == "licenses_imported":
            self.withdraw_ineligible_offers()
            self.rebuild()
            return
        if event.get("kind") == "visit_waiting" and event.get("requested_at"):
            # A new (or re-prioritised) waiting visit: the committed event carries what the queue
            # needs. If the visit changed since, PostgreSQL refuses the offer and _repair re-reads it.
            ws.queue_visit(self.r, int(event["visit"]), event["state"], int(event["priority"]), event["requested_at"])
            return
        if event.get("visit"):
            ws.refresh_visit(self.r, int(event["visit"]))
        if event.get("provider"):
            ws.refresh_provider(self.r, int(event["provider"]))
        if event.get("kind") in ("license_changed", "provider_changed") and event.get("provider"):
            self.withdraw_ineligible_offers(provider_id=int(event["provider"]))

    # --- matching -------------------------------------------------------------------------

    def match(self) -> int:
        """Offer as many waiting visits as the available providers allow; return offers made."""
        factor = 1
        while True:
            waiting, candidates, raw_pools = self._snapshot(factor)
            if not candidates:
                return 0
            history, now = self._history([c.visit for c in candidates])
            pools = self._order_pools(raw_pools, {code for code, count in waiting.items() if count})
            pairs = decide(pools, candidates, history, now=now, config=self.config)
            # A state whose free providers all declined the visits loaded so far: look deeper into
            # its queue, so visits at the head never hide the eligible ones behind them.
            if not self._blocked_states(pools, pairs, candidates, waiting):
                return self._commit(pairs, {c.visit: c for c in candidates})
            factor *= 4

    def _snapshot(self, factor: int) -> tuple[dict[str, int], list[Candidate], dict[str, list]]:
        """Return waiting counts, candidate visits and pools from Redis in one round trip (``_SNAPSHOT``)."""
        margin = 100 if self.config.policy == policies.LONGEST_IDLE else -1
        args = [ws.QUEUE_PREFIX, ws.AVAILABLE_PREFIX, len(ws.PRIORITIES), factor, margin, *ws.STATE_CODES]
        counts, loaded = ws.script(self.r, _SNAPSHOT)(keys=[], args=args)
        waiting = {counts[i]: int(counts[i + 1]) for i in range(0, len(counts), 3)}
        candidates, pools = [], {}
        step = len(ws.PRIORITIES) + 2
        for i in range(0, len(loaded), step):
            state = loaded[i]
            for priority, queue in zip(ws.PRIORITIES, loaded[i + 1 : i + step - 1], strict=True):
                candidates += [Candidate(int(queue[j]), state, priority, float(queue[j + 1]))
                               for j in range(0, len(queue), 2)]  # fmt: skip
            pool = loaded[i + step - 1]
            pools[state] = [(pool[j], float(pool[j + 1])) for j in range(0, len(pool), 2)]
        return waiting, candidates, pools

    def _history(self, visits: list[int]) -> tuple[OfferHistory, float]:
        with connection.cursor() as cursor:
            _HISTORY.execute(cursor, [visits])
            now, visit_ids, providers, decided = cursor.fetchone()
        history = OfferHistory()
        for visit, provider, at in zip(visit_ids or [], providers or [], decided or [], strict=True):
            history.turned_down.add(visit)
            spurned = history.spurned.setdefault(visit, {})
            spurned[provider] = max(spurned.get(provider, 0.0), float(at))
        return history, float(now)

    def _blocked_states(self, pools, pairs, candidates: list[Candidate], waiting: dict) -> list[str]:
        """Return the states with a provider still free after ``pairs`` and visits not loaded yet."""
        used = {provider for _, provider, _ in pairs}
        loaded: dict[str, int] = {}
        for candidate in candidates:
            loaded[candidate.state] = loaded.get(candidate.state, 0) + 1
        return [
            code
            for code, pool in pools.items()
            if loaded.get(code, 0) < waiting.get(code, 0) and any(p not in used for p in pool)
        ]

    def _order_pools(self, raw_pools: dict, states_with_waiting: set[str]) -> dict[str, list[int]]:
        if self.config.policy == policies.LONGEST_IDLE:
            # Pools are sorted sets scored by available_since: already longest-idle first.
            return {state: [int(p) for p, _ in members] for state, members in raw_pools.items()}
        provider_ids = sorted({int(p) for members in raw_pools.values() for p, _ in members})
        licensed = dict(zip(provider_ids, self.r.hmget(ws.PROVIDER_STATES, provider_ids), strict=True))
        key = policies.sort_key(self.config.policy, states_with_waiting=states_with_waiting)
        return {
            state: [
                int(p)
                for p, since in sorted(
                    members, key=lambda m: key(int(m[0]), m[1], (licensed.get(int(m[0])) or "").split(","))
                )
            ]
            for state, members in raw_pools.items()
        }

    def _commit(self, pairs, candidates: dict[int, Candidate]) -> int:
        made = 0
        for i in range(0, len(pairs), self.config.batch_size):
            batch = pairs[i : i + self.config.batch_size]
            applied = set(
                offer_actions.offer_visits(
                    [(v, p) for v, p, _ in batch], actor=self.actor, offer_timeout=self.config.offer_timeout,
                    reoffer_after=self.config.reoffer_after,
                )
            )  # fmt: skip
            done = [(v, f"{state}:{candidates[v].priority}", p) for v, p, state in batch if (v, p) in applied]
            ws.record_offers(self.r, done)
            self._repair([pair for pair in batch if (pair[0], pair[1]) not in applied])
            made += len(done)
        return made

    def _repair(self, refused) -> None:
        """PostgreSQL refused some pairs: the working set was stale about them; re-read both sides."""
        for visit, provider, _ in refused:
            ws.refresh_visit(self.r, visit)
            ws.refresh_provider(self.r, provider)

    # --- timers ---------------------------------------------------------------------------

    def run_timeouts(self, limit: int = 500) -> dict[str, int]:
        """Apply every timeout that is due by the database's clock; return how many of each kind."""
        with connection.cursor() as cursor:
            limits = [
                _seconds(self.config.max_wait),
                timeout_actions.stuck_limit("accepted"),
                timeout_actions.stuck_limit("in_progress"),
            ]
            _DUE.execute(cursor, [*limits, limit])
            due = cursor.fetchall()
        done = {"offer": 0, "wait": 0, "stuck": 0}
        for kind, visit, provider in due:
            if kind == "offer":
                ok = self._try(offer_actions.expire_offer, visit, provider_id=provider)
            elif kind == "wait":
                ok = self._try(timeout_actions.expire_visit, visit, max_wait=self.config.max_wait,
                               detail=f"no provider within {self.config.max_wait // 60} min")  # fmt: skip
            else:
                ok = self._try(timeout_actions.time_out_visit, visit)
            done[kind] += ok
            ws.refresh_visit(self.r, visit)
            if provider:
                ws.refresh_provider(self.r, provider)
        return done

    def withdraw_ineligible_offers(self, provider_id: int | None = None) -> int:
        """Withdraw offers whose provider is no longer licensed now in the visit's state (or inactive)."""
        with connection.cursor() as cursor:
            _INELIGIBLE_OFFERS.execute(cursor, [provider_id, provider_id])
            rows = cursor.fetchall()
        for visit, provider, state in rows:
            reason = f"license no longer valid in {state}"
            self._try(offer_actions.withdraw_offer, visit, reason=reason, provider_id=provider)
            ws.refresh_visit(self.r, visit)
            ws.refresh_provider(self.r, provider)
        return len(rows)

    def _try(self, action, *args, **kwargs) -> bool:
        try:
            action(*args, actor=self.actor, **kwargs)
            return True
        except Fenced:
            raise
        except ActionError as error:
            logger.info("router: %s skipped (%s)", action.__name__, error)
            return False

    def tick(self) -> dict:
        """Run the timeouts and a matching pass; return what happened."""
        done = self.run_timeouts()
        return {
            "offers_expired": done["offer"],
            "visits_expired": done["wait"],
            "visits_timed_out": done["stuck"],
            "offered": self.match(),
        }


def _seconds(value: int) -> dt.timedelta:
    return dt.timedelta(seconds=value)
