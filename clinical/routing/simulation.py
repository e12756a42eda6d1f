"""A simulated day of routing on a virtual clock, to compare fairness policies.

It drives the router's own decision function (``engine.decide``) and policy orderings with a
synthetic population: arrivals by state population with a daytime peak, providers on shifts
with one home state and some multi-state licenses, offers accepted, rejected or ignored.
No database or Redis: a day runs in seconds, so policies can be compared on the same day.
"""

import heapq
import itertools
import math
import random
import statistics
from dataclasses import dataclass, field

from clinical.reference import states
from clinical.routing import policy as policies
from clinical.routing.engine import Candidate, decide
from clinical.routing.workingset import queue_score_at

DAY = 24 * 3600


@dataclass
class DayConfig:
    visits: int = 6000
    providers: int = 260
    seed: int = 2026
    offer_timeout: int = 120
    max_wait: int = 1800
    accept: float = 0.85
    reject: float = 0.10  # the rest ignore the offer and are set offline
    mean_visit_minutes: float = 12.0
    shift_hours: int = 8


@dataclass
class _Provider:
    id: int
    licensed: list[str]
    since: float = 0.0
    on_shift: bool = False
    busy: bool = False
    shift_until: float = 0.0


@dataclass
class _World:
    config: DayConfig
    rng: random.Random
    providers: dict[int, _Provider] = field(default_factory=dict)
    waiting: dict[int, tuple[str, float, int]] = field(default_factory=dict)  # visit -> (state, requested, priority)
    offered_before: dict[int, set[int]] = field(default_factory=dict)
    waits: list[float] = field(default_factory=list)
    expired: int = 0
    events: list = field(default_factory=list)
    tie: itertools.count = field(default_factory=itertools.count)

    def at(self, when: float, kind: str, *data) -> None:
        heapq.heappush(self.events, (when, next(self.tie), kind, data))


def _weighted_states(rng: random.Random, codes: list[str], weights: list[float], k: int) -> list[str]:
    chosen: set[str] = set()
    while len(chosen) < k:
        chosen.add(rng.choices(codes, weights)[0])
    return sorted(chosen)


def _build(config: DayConfig) -> _World:
    rng = random.Random(config.seed)
    world = _World(config, rng)
    codes = [row["code"] for row in states()]
    weights = [row["population_2020"] for row in states()]
    for pid in range(1, config.providers + 1):
        roll = rng.random()
        extra = 0 if roll < 0.55 else rng.randint(1, 3) if roll < 0.85 else rng.randint(10, 30)
        licensed = _weighted_states(rng, codes, weights, 1)
        if extra:
            # Multi-state doctors add licenses across the map, small states included.
            licensed = sorted(set(licensed) | set(rng.sample(codes, extra)))
        world.providers[pid] = _Provider(pid, licensed)
        start = rng.choices(range(24), [1 + 3 * math.sin(math.pi * h / 24) ** 2 for h in range(24)])[0] * 3600
        world.at(start, "shift_start", pid)
    for visit in range(1, config.visits + 1):
        hour = rng.choices(range(24), [0.3 + math.sin(math.pi * max(0, h - 6) / 18) ** 2 for h in range(24)])[0]
        requested = hour * 3600 + rng.random() * 3600
        state = rng.choices(codes, weights)[0]
        priority = rng.choices([0, 1, 2], [85, 12, 3])[0]
        world.at(requested, "arrive", visit, state, priority)
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
    waiting_states = {state for state, _, _ in world.waiting.values()}
    pools = _pools(world, policies.sort_key(policy, states_with_waiting=waiting_states))
    queues: dict[str, list[Candidate]] = {}
    for visit, (state, requested, priority) in world.waiting.items():
        if state in pools:
            queues.setdefault(state, []).append(Candidate(visit, state, queue_score_at(priority, requested)))
    for visit, pid, _ in decide(pools, queues, world.offered_before):
        _offer(world, now, visit, pid)


def _offer(world: _World, now: float, visit: int, pid: int) -> None:
    rng, config = world.rng, world.config
    world.providers[pid].busy = True
    world.offered_before.setdefault(visit, set()).add(pid)
    entry = world.waiting.pop(visit)
    roll = rng.random()
    if roll < config.accept:
        world.at(now + rng.uniform(5, 40), "accept", visit, pid, entry)
    elif roll < config.accept + config.reject:
        world.at(now + rng.uniform(5, 30), "reject", visit, pid, entry)
    else:
        world.at(now + config.offer_timeout, "ignore", visit, pid, entry)


def _free(world: _World, now: float, pid: int) -> None:
    provider = world.providers[pid]
    provider.busy = False
    provider.since = now


def simulate_day(policy: str, config: DayConfig | None = None) -> dict:
    """Run one day under ``policy``; return wait statistics in seconds."""
    config = config or DayConfig()
    world = _build(config)
    while world.events:
        now, _, kind, data = heapq.heappop(world.events)
        _apply(world, now, kind, data)
        _route(world, now, policy)
    waits = sorted(world.waits)
    return {
        "policy": policy,
        "served": len(waits),
        "expired": world.expired,
        "mean_wait_s": round(statistics.fmean(waits), 1) if waits else None,
        "p90_wait_s": round(waits[int(0.9 * (len(waits) - 1))], 1) if waits else None,
    }


def _apply(world: _World, now: float, kind: str, data: tuple) -> None:
    config, rng = world.config, world.rng
    if kind == "arrive":
        visit, state, priority = data
        world.waiting[visit] = (state, now, priority)
        world.at(now + config.max_wait, "expire", visit)
    elif kind == "expire":
        if data[0] in world.waiting:
            world.waiting.pop(data[0])
            world.expired += 1
    elif kind == "accept":
        visit, pid, (_, requested, _) = data
        world.waits.append(now - requested)
        duration = rng.lognormvariate(math.log(config.mean_visit_minutes * 60), 0.5)
        world.at(now + duration, "visit_end", pid)
    elif kind in ("reject", "ignore"):
        visit, pid, entry = data
        world.waiting[visit] = entry  # back at its original place: same request time and priority
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
        provider.shift_until = now + config.shift_hours * 3600
        world.at(provider.shift_until, "shift_end", data[0])
    elif kind == "back_online":
        provider = world.providers[data[0]]
        if now < provider.shift_until:
            provider.on_shift, provider.since = True, now
    elif kind == "shift_end":
        world.providers[data[0]].on_shift = False
