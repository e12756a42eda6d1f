"""One router's decisions: match waiting visits to providers, time out offers, expire long waits."""

import logging
from dataclasses import dataclass, field

import redis
from django.conf import settings
from django.db import connection
from django.utils import timezone

from clinical import actions
from clinical.models import LICENSE_VALID_SQL
from clinical.routing import policy as policies
from clinical.routing import workingset as ws
from ops_console.audit import Actor
from ops_console.errors import ActionError

logger = logging.getLogger(__name__)

_INELIGIBLE_OFFERS_SQL = """
SELECT v.id, v.provider_id, v.located_state FROM clinical_visit v
WHERE v.status = 'offered' {only} AND NOT EXISTS (
    SELECT 1 FROM clinical_providerlicense l JOIN clinical_provider p ON p.id = l.provider_id
    WHERE l.provider_id = v.provider_id AND l.state = v.located_state AND p.is_active AND {license_valid}
)
""".replace("{license_valid}", LICENSE_VALID_SQL)


# Waiting and available counts per state in one round trip: [code, waiting, available, ...]
# for the states that have either. ARGV: queue key prefix, pool key prefix, state codes.
# (Keys are built in the script, which a single Redis allows; a Redis Cluster would not.)
_COUNT_STATES = """
local out = {}
for i = 3, #ARGV do
  local waiting = redis.call('ZCARD', ARGV[1] .. ARGV[i])
  local available = redis.call('ZCARD', ARGV[2] .. ARGV[i])
  if waiting > 0 or available > 0 then
    table.insert(out, ARGV[i]); table.insert(out, waiting); table.insert(out, available)
  end
end
return out
"""


@dataclass
class RouterConfig:
    policy: str = field(default_factory=lambda: settings.ROUTING_POLICY)
    offer_timeout: int = field(default_factory=lambda: settings.ROUTING_OFFER_TIMEOUT)
    max_wait: int = field(default_factory=lambda: settings.ROUTING_MAX_WAIT)
    batch_size: int = field(default_factory=lambda: settings.ROUTING_BATCH_SIZE)


@dataclass
class Candidate:
    visit: int
    state: str
    score: float


def decide(pools: dict[str, list[int]], queues: dict[str, list[Candidate]], offered_before: dict[int, set[int]]):
    """Return ``(visit, provider, state)`` offers: visits in global priority-then-age order, each
    to the first provider in its state's policy-ordered pool who is still free this pass and was
    never offered that visit before.
    """
    candidates = sorted((c for queue in queues.values() for c in queue), key=lambda c: (c.score, c.visit))
    used: set[int] = set()
    start = dict.fromkeys(pools, 0)
    pairs = []
    for candidate in candidates:
        pool = pools.get(candidate.state, [])
        while start.get(candidate.state, 0) < len(pool) and pool[start[candidate.state]] in used:
            start[candidate.state] += 1
        excluded = offered_before.get(candidate.visit, set())
        for provider in pool[start.get(candidate.state, 0) :]:
            if provider not in used and provider not in excluded:
                used.add(provider)
                pairs.append((candidate.visit, provider, candidate.state))
                break
    return pairs


class Router:
    """Routing decisions over the Redis working set; every write goes through ``clinical.actions``."""

    actor = Actor.router()

    def __init__(self, r: redis.Redis, config: RouterConfig | None = None):
        self.r = r
        self.config = config or RouterConfig()
        self._count_script = r.register_script(_COUNT_STATES)

    # --- working set ----------------------------------------------------------------------

    def rebuild(self) -> dict:
        """Recreate the working set from PostgreSQL."""
        loaded = ws.rebuild(self.r, offer_timeout=self.config.offer_timeout)
        logger.info("router working set rebuilt: %(visits)s open visits, %(providers)s available providers", loaded)
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
            ws.refresh_visit(self.r, int(event["visit"]), offer_timeout=self.config.offer_timeout)
        if event.get("provider"):
            ws.refresh_provider(self.r, int(event["provider"]))
        if event.get("kind") in ("license_changed", "provider_changed") and event.get("provider"):
            self.withdraw_ineligible_offers(provider_id=int(event["provider"]))

    # --- matching -------------------------------------------------------------------------

    def match(self) -> int:
        """Offer as many waiting visits as the available providers allow; return offers made."""
        pools, queues = self._load_pools_and_queues()
        if not pools:
            return 0
        offered_before = self._offered_before([c.visit for queue in queues.values() for c in queue])
        pairs = decide(pools, queues, offered_before)
        return self._commit(pairs)

    def _load_pools_and_queues(self):
        waiting_counts, available_counts = self._counts()
        active = [code for code in waiting_counts if waiting_counts[code] and available_counts[code]]
        if not active:
            return {}, {}
        candidates = sum(min(waiting_counts[c], 2 * available_counts[c] + 20) for c in active)
        # Longest idle needs only the head of each pool; scarcity must score the whole pool.
        depth = candidates + 50 if self.config.policy == policies.LONGEST_IDLE else -1
        pipe = self.r.pipeline(transaction=False)
        for code in active:
            pipe.zrange(ws.AVAILABLE.format(code), 0, depth, withscores=True)
            pipe.zrange(ws.QUEUE.format(code), 0, 2 * available_counts[code] + 20, withscores=True)
        loaded = pipe.execute()
        raw_pools = {code: loaded[2 * i] for i, code in enumerate(active)}
        queues = {
            code: [Candidate(int(v), code, score) for v, score in loaded[2 * i + 1]] for i, code in enumerate(active)
        }
        states_with_waiting = {code for code, count in waiting_counts.items() if count}
        return self._order_pools(raw_pools, states_with_waiting), queues

    def _counts(self) -> tuple[dict[str, int], dict[str, int]]:
        """Return waiting and available counts of every state that has either, in one round trip."""
        flat = self._count_script(keys=[], args=[ws.QUEUE.format(""), ws.AVAILABLE.format(""), *ws.STATE_CODES])
        waiting, available = {}, {}
        for i in range(0, len(flat), 3):
            waiting[flat[i]], available[flat[i]] = int(flat[i + 1]), int(flat[i + 2])
        return waiting, available

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

    def _offered_before(self, visits: list[int]) -> dict[int, set[int]]:
        pipe = self.r.pipeline(transaction=False)
        for visit in visits:
            pipe.smembers(ws.OFFERED_BEFORE.format(visit))
        return {visit: {int(p) for p in members} for visit, members in zip(visits, pipe.execute(), strict=True)}

    def _commit(self, pairs) -> int:
        made = 0
        for i in range(0, len(pairs), self.config.batch_size):
            batch = pairs[i : i + self.config.batch_size]
            applied = set(actions.offer_visits([(v, p) for v, p, _ in batch], actor=self.actor))
            done = [pair for pair in batch if (pair[0], pair[1]) in applied]
            ws.record_offers(self.r, done, self._provider_states([p for _, p, _ in done]), self.config.offer_timeout)
            self._repair([pair for pair in batch if (pair[0], pair[1]) not in applied])
            made += len(done)
        return made

    def _provider_states(self, providers: list[int]) -> dict[int, list[str]]:
        if not providers:
            return {}
        values = self.r.hmget(ws.PROVIDER_STATES, providers)
        return {p: (v or "").split(",") if v else [] for p, v in zip(providers, values, strict=True)}

    def _repair(self, refused) -> None:
        """PostgreSQL refused some pairs: the working set was stale about them; re-read both sides."""
        for visit, provider, _ in refused:
            ws.refresh_visit(self.r, visit, offer_timeout=self.config.offer_timeout)
            ws.refresh_provider(self.r, provider)

    # --- timers ---------------------------------------------------------------------------

    def expire_offers(self) -> int:
        """Time out offers past their deadline: visit back in line, provider offline."""
        due = self.r.zrangebyscore(ws.OFFERS, "-inf", timezone.now().timestamp())
        for visit in due:
            provider = self.r.hget(ws.OFFER_PROVIDER, visit)
            self._try(actions.decline_offer, int(visit), expired=True, provider_id=int(provider) if provider else None)
            ws.refresh_visit(self.r, int(visit), offer_timeout=self.config.offer_timeout)
            if provider:
                ws.refresh_provider(self.r, int(provider))
        return len(due)

    def expire_waits(self) -> int:
        """Expire visits waiting longer than the maximum wait and open a support case for each."""
        cutoff = timezone.now().timestamp() - self.config.max_wait
        due = self.r.zrangebyscore(ws.REQUESTED, "-inf", cutoff)
        for visit in due:
            self._try(actions.expire_visit, int(visit), detail=f"no provider within {self.config.max_wait // 60} min")
            ws.refresh_visit(self.r, int(visit), offer_timeout=self.config.offer_timeout)
        return len(due)

    def withdraw_ineligible_offers(self, provider_id: int | None = None) -> int:
        """Withdraw offers whose provider is no longer licensed today in the visit's state."""
        only = "AND v.provider_id = %(provider)s" if provider_id else ""
        with connection.cursor() as cursor:
            cursor.execute(
                _INELIGIBLE_OFFERS_SQL.format(only=only), {"today": timezone.localdate(), "provider": provider_id}
            )
            rows = cursor.fetchall()
        for visit, provider, state in rows:
            reason = f"license no longer valid in {state}"
            self._try(actions.withdraw_offer, visit, reason=reason, provider_id=provider)
            ws.refresh_visit(self.r, visit, offer_timeout=self.config.offer_timeout)
            ws.refresh_provider(self.r, provider)
        return len(rows)

    def _try(self, action, *args, **kwargs) -> bool:
        try:
            action(*args, actor=self.actor, **kwargs)
            return True
        except ActionError as error:
            logger.info("router: %s skipped (%s)", action.__name__, error)
            return False

    def tick(self) -> dict:
        """Run the timers and a matching pass; return what happened."""
        return {
            "offers_expired": self.expire_offers(),
            "visits_expired": self.expire_waits(),
            "offered": self.match(),
        }
