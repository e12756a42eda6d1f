"""A simulated day of routing on a virtual clock, to compare policies and check fairness.

It drives the router's own decision function (``engine.decide``, with its aging, last call and
re-offer rules) and policy orderings with a synthetic population: arrivals by state population
with a daytime peak, providers on shifts with one home state and some multi-state licenses, offers
accepted, rejected or ignored. No database or Redis: a day runs in seconds, so policies can be
compared on the same day, and a day can be overloaded on purpose.
"""

import heapq
import itertools
import math
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

from clinical.models import Priority
from clinical.routing import policy as policies
from clinical.routing.engine import Candidate, OfferHistory, RouterConfig, decide, place
from devtools import sampling

DAY = 24 * 3600
PRIORITY_NAMES = {Priority.ROUTINE: "routine", Priority.ELEVATED: "elevated", Priority.URGENT: "urgent"}
VISIT_SIGMA = 0.5  # spread of the log-normal visit length
ACCEPT_SECONDS = (5, 40)
DEFAULT_MIX = {Priority.ROUTINE: 85, Priority.ELEVATED: 12, Priority.URGENT: 3}


@dataclass
class DayConfig:
    visits: int = 6000
    providers: int = 260
    seed: int = 2026
    offer_timeout: int = 120
    max_wait: int = 1800
    accept: float = 0.85
    reject: float = 0.10  # the rest ignore the offer and are set offline
    mean_visit_minutes: float = 12.0  # the median; the mean is about 13.6
    shift_hours: int = 8
    mix: dict[int, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    load: float | None = None  # when set, the number of visits is chosen to make this load (see ``load_of``)
    steady: bool = False  # every provider on shift all day and arrivals spread evenly: the load holds all day
    national: bool = False  # every provider licensed in every state: no coverage gaps, only priorities decide


def load_of(config: DayConfig, visits: int | None = None) -> float:
    """Return the day's load: the provider time the visits need over the provider time on shift."""
    count = visits if visits is not None else config.visits
    return count * _seconds_per_visit(config) / _on_shift_seconds(config)


def visits_for_load(config: DayConfig) -> int:
    """Return how many visits make the configured load."""
    return round(config.load * _on_shift_seconds(config) / _seconds_per_visit(config))


def _seconds_per_visit(config: DayConfig) -> float:
    # The mean of the visit length drawn in _apply (log-normal around the median), plus the time to accept.
    return config.mean_visit_minutes * 60 * math.exp(VISIT_SIGMA**2 / 2) + sum(ACCEPT_SECONDS) / 2


def _on_shift_seconds(config: DayConfig) -> float:
    return config.providers * (DAY if config.steady else config.shift_hours * 3600)


@dataclass
class _Provider:
    id: int
    licensed: list[str]
    since: float = 0.0
    on_shift: bool = False
    busy: bool = False
    shift_until: float = 0.0


@dataclass
class _Visit:
    id: int
    state: str
    requested: float
    priority: int
    offers: int = 0


@dataclass
class _World:
    config: DayConfig
    router: RouterConfig
    rng: random.Random
    key: Callable = place
    providers: dict[int, _Provider] = field(default_factory=dict)
    waiting: dict[int, _Visit] = field(default_factory=dict)
    history: OfferHistory = field(default_factory=OfferHistory)
    waits: dict[int, list[float]] = field(default_factory=lambda: {p: [] for p in Priority.values})
    expired: dict[int, int] = field(default_factory=lambda: dict.fromkeys(Priority.values, 0))
    expired_unoffered: dict[int, int] = field(default_factory=lambda: dict.fromkeys(Priority.values, 0))
    requested: dict[int, int] = field(default_factory=lambda: dict.fromkeys(Priority.values, 0))
    events: list = field(default_factory=list)
    tie: itertools.count = field(default_factory=itertools.count)

    def at(self, when: float, kind: str, *data) -> None:
        heapq.heappush(self.events, (when, next(self.tie), kind, data))


def _weighted_states(rng: random.Random, codes: list[str], weights: list[float], k: int) -> list[str]:
    chosen: set[str] = set()
    while len(chosen) < k:
        chosen.add(rng.choices(codes, weights)[0])
    return sorted(chosen)


def _build(config: DayConfig, router: RouterConfig) -> _World:
    rng = random.Random(config.seed)
    world = _World(config, router, rng)
    codes, weights = sampling.state_weights()
    for pid in range(1, config.providers + 1):
        roll = rng.random()
        extra = 0 if roll < 0.55 else rng.randint(1, 3) if roll < 0.85 else rng.randint(10, 30)
        licensed = _weighted_states(rng, codes, weights, 1)
        if extra:
            # Multi-state doctors add licenses across the map, small states included.
            licensed = sorted(set(licensed) | set(rng.sample(codes, extra)))
        world.providers[pid] = _Provider(pid, codes if config.national else licensed)
        start = rng.choices(range(24), [1 + 3 * math.sin(math.pi * h / 24) ** 2 for h in range(24)])[0] * 3600
        world.at(0 if config.steady else start, "shift_start", pid)
    count = visits_for_load(config) if config.load is not None else config.visits
    priorities, shares = list(config.mix), list(config.mix.values())
    for visit in range(1, count + 1):
        hour = rng.choices(range(24), [0.3 + math.sin(math.pi * max(0, h - 6) / 18) ** 2 for h in range(24)])[0]
        requested = rng.random() * DAY if config.steady else hour * 3600 + rng.random() * 3600
        state = rng.choices(codes, weights)[0]
        world.at(requested, "arrive", visit, state, rng.choices(priorities, shares)[0])
    return world


def _pools(world: _World, key) -> dict[str, list[int]]:
    pools: dict[str, list[tuple]] = {}
    for p in world.providers.values():
        if p.on_shift and not p.busy:
            for state in p.licensed:
                pools.setdefault(state, []).append((key(p.id, p.since, p.licensed), p.id))
    return {state: [pid for _, pid in sorted(members)] for state, members in pools.items()}


def _route(world: _World, now: float, policy: str) -> None:
    if not world.waiting:
        return
    waiting_states = {v.state for v in world.waiting.values()}
    pools = _pools(world, policies.sort_key(policy, states_with_waiting=waiting_states))
    candidates = [Candidate(v.id, v.state, v.priority, v.requested) for v in world.waiting.values() if v.state in pools]
    for visit, pid, _ in decide(pools, candidates, world.history, now=now, config=world.router, key=world.key):
        _offer(world, now, visit, pid)


def _offer(world: _World, now: float, visit_id: int, pid: int) -> None:
    rng, config = world.rng, world.config
    world.providers[pid].busy = True
    visit = world.waiting.pop(visit_id)
    visit.offers += 1
    roll = rng.random()
    if roll < config.accept:
        world.at(now + rng.uniform(*ACCEPT_SECONDS), "accept", visit, pid)
    elif roll < config.accept + config.reject:
        world.at(now + rng.uniform(5, 30), "reject", visit, pid)
    else:
        world.at(now + config.offer_timeout, "ignore", visit, pid)


def _free(world: _World, now: float, pid: int) -> None:
    provider = world.providers[pid]
    provider.busy = False
    provider.since = now


def strict_priority(candidate: Candidate, now: float, history: OfferHistory, config: RouterConfig) -> tuple:
    """Return the place in line the router used before aging: priority, then age (for comparison)."""
    return (-candidate.priority, candidate.requested, candidate.visit)


def simulate_day(
    policy: str, config: DayConfig | None = None, router: RouterConfig | None = None, *, key: Callable = place
) -> dict:
    """Run one day under ``policy`` (and place-in-line ``key``); return waits in seconds and expiries per priority."""
    config = config or DayConfig()
    router = router or RouterConfig(policy=policy, offer_timeout=config.offer_timeout, max_wait=config.max_wait)
    world = _build(config, router)
    world.key = key
    while world.events:
        now, _, kind, data = heapq.heappop(world.events)
        _apply(world, now, kind, data)
        _route(world, now, policy)
    return _report(world, policy)


def _report(world: _World, policy: str) -> dict:
    every = sorted(w for waits in world.waits.values() for w in waits)
    per_priority = {
        PRIORITY_NAMES[p]: {
            "requested": world.requested[p],
            "served": len(world.waits[p]),
            "expired": world.expired[p],
            "expired_never_offered": world.expired_unoffered[p],
            "p90_wait_s": _p90(sorted(world.waits[p])),
        }
        for p in sorted(Priority.values, reverse=True)
        if world.requested[p]
    }
    return {
        "policy": policy,
        "load": round(load_of(world.config, sum(world.requested.values())), 2),
        "visits": sum(world.requested.values()),
        "served": len(every),
        "expired": sum(world.expired.values()),
        "mean_wait_s": round(statistics.fmean(every), 1) if every else None,
        "p90_wait_s": _p90(every),
        "priorities": per_priority,
    }


def _p90(waits: list[float]) -> float | None:
    return round(waits[int(0.9 * (len(waits) - 1))], 1) if waits else None


def _apply(world: _World, now: float, kind: str, data: tuple) -> None:
    config, rng = world.config, world.rng
    if kind == "arrive":
        visit_id, state, priority = data
        world.waiting[visit_id] = _Visit(visit_id, state, now, priority)
        world.requested[priority] += 1
        world.at(now + config.max_wait, "expire", visit_id)
    elif kind == "expire":
        visit = world.waiting.pop(data[0], None)
        if visit is not None:
            world.expired[visit.priority] += 1
            world.expired_unoffered[visit.priority] += visit.offers == 0
    elif kind == "accept":
        visit, pid = data
        world.waits[visit.priority].append(now - visit.requested)
        duration = rng.lognormvariate(math.log(config.mean_visit_minutes * 60), VISIT_SIGMA)
        world.at(now + duration, "visit_end", pid)
    elif kind in ("reject", "ignore"):
        visit, pid = data
        world.history.spurned.setdefault(visit.id, {})[pid] = now
        world.history.turned_down.add(visit.id)
        if now < visit.requested + config.max_wait:
            world.waiting[visit.id] = visit  # back at its original place: same request time and priority
        else:
            world.expired[visit.priority] += 1
        if kind == "reject":
            _free(world, now, pid)
        else:
            provider = world.providers[pid]
            provider.on_shift = provider.busy = False  # set offline; back a few minutes later
            world.at(now + rng.uniform(120, 600), "back_online", pid)
    elif kind == "visit_end":
        _free(world, now, data[0])
    elif kind == "shift_start":
        provider = world.providers[data[0]]
        provider.on_shift, provider.since = True, now
        provider.shift_until = now + (DAY if config.steady else config.shift_hours * 3600)
        world.at(provider.shift_until, "shift_end", data[0])
    elif kind == "back_online":
        provider = world.providers[data[0]]
        if now < provider.shift_until:
            provider.on_shift, provider.since = True, now
    elif kind == "shift_end":
        world.providers[data[0]].on_shift = False
