"""Demo visits with their timelines, replayed along the visit lifecycle."""

import datetime as dt
import random
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db import connection

from clinical import backfill
from clinical.actions.visits import VISIT_TRANSITIONS
from clinical.models import (
    OPEN_STATUSES,
    PROVIDER_HOLDING_STATUSES,
    Availability,
    Patient,
    Priority,
    Provider,
    Visit,
    VisitEvent,
)
from clinical.validators import PUBLIC_ID_ALPHABET, PUBLIC_ID_LENGTH
from core.audit import ActorKind
from devtools import sampling
from devtools.seed.pool import ProviderPool
from devtools.seed.records import (
    BATCH_SIZE,
    EARLIEST,
    S,
    SeedContext,
    bulk,
    history_model,
    history_row,
    tracked_values,
)

# --- visits: one visit's life, replayed the way clinical.actions would record it ---------------


class _Timeline:
    """Move one unsaved visit through its statuses, keeping its events and a history snapshot per step."""

    def __init__(self, visit: Visit, names: dict[int, str]):
        self.visit, self.names = visit, names
        self.at = visit.requested_at
        self.events: list[VisitEvent] = []
        self.snapshots: list[tuple[dt.datetime, dict]] = []
        self._record("", S.WAITING, ActorKind.PATIENT, "requested", None)

    def _record(self, from_status: str, to: str, actor_kind: str, detail: str, provider_id: int | None) -> None:
        self.visit.status = to
        event = VisitEvent(
            visit=self.visit,
            from_status=from_status,
            to_status=to,
            at=self.at,
            actor_kind=actor_kind,
            provider_id=provider_id,
            detail=detail,
        )
        self.events.append(event)
        self.snapshots.append((self.at, tracked_values(self.visit)))

    def _move(self, to: str, actor_kind: str, detail: str, provider_id: int | None = None) -> None:
        if self.visit.status not in VISIT_TRANSITIONS[to]:
            raise AssertionError(f"demo timeline tried {self.visit.status} -> {to}")
        self._record(self.visit.status, to, actor_kind, detail, provider_id or self.visit.provider_id)

    def _provider_name(self) -> str:
        return self.names[self.visit.provider_id]

    def offer(self, provider_id: int) -> None:
        visit = self.visit
        visit.provider_id, visit.offered_at = provider_id, self.at
        visit.offer_count += 1
        self._move(S.OFFERED, ActorKind.ROUTER, f"offered to {self._provider_name()}")

    def decline(self, *, expired: bool) -> int:
        """Put the visit back in line and return the provider who had the offer."""
        provider_id, name = self.visit.provider_id, self._provider_name()
        self.visit.provider_id = None
        if expired:
            self._move(S.WAITING, ActorKind.ROUTER, f"offer to {name} expired", provider_id)
        else:
            self._move(S.WAITING, ActorKind.PROVIDER, f"offer to {name} rejected", provider_id)
        return provider_id

    def accept(self) -> None:
        self.visit.accepted_at = self.at
        self._move(S.ACCEPTED, ActorKind.PROVIDER, f"accepted by {self._provider_name()}")

    def start_connecting(self) -> None:
        self._move(S.CONNECTING, ActorKind.PROVIDER, "connecting video")

    def connected(self) -> None:
        self.visit.started_at = self.at
        self._move(S.IN_PROGRESS, ActorKind.PROVIDER, "connected")

    def complete(self) -> None:
        self.visit.ended_at = self.at
        self._move(S.COMPLETED, ActorKind.PROVIDER, "completed")

    def fail(self, detail: str) -> None:
        self.visit.ended_at = self.at
        self._move(S.FAILED, ActorKind.PROVIDER, detail)

    def cancel(self, detail: str) -> None:
        self.visit.cancelled_at = self.at
        self._move(S.CANCELLED, ActorKind.PATIENT, detail)

    def expire(self) -> None:
        self.visit.ended_at = self.at
        self._move(S.EXPIRED, ActorKind.ROUTER, "waited too long")


# --- visits: what happens to each one -----------------------------------------------------------

REJECTED, OFFER_EXPIRED = "rejected", "offer_expired"
HAPPY_PATH = (S.OFFERED, S.ACCEPTED, S.CONNECTING, S.IN_PROGRESS)
# (status it reached, how it ended) -> weight; the bulk completes.
FINAL_MIX = {
    (S.IN_PROGRESS, S.COMPLETED): 81,
    (S.WAITING, S.CANCELLED): 4,
    (S.OFFERED, S.CANCELLED): 1.5,
    (S.ACCEPTED, S.CANCELLED): 1,
    (S.CONNECTING, S.CANCELLED): 1.5,
    (S.WAITING, S.EXPIRED): 5,
    (S.ACCEPTED, S.FAILED): 1.5,
    (S.CONNECTING, S.FAILED): 2,
    (S.IN_PROGRESS, S.FAILED): 2.5,
}
# Share of the visits that are open right now, per status ("a few dozen waiting" at 10,000).
LIVE_SHARE = {S.WAITING: 0.0035, S.OFFERED: 0.0008, S.ACCEPTED: 0.0005, S.CONNECTING: 0.0003, S.IN_PROGRESS: 0.0025}
# Seconds a live visit has spent in its current status.
LIVE_TAIL = {
    S.WAITING: (0, 1500),
    S.OFFERED: (3, 50),
    S.ACCEPTED: (3, 60),
    S.CONNECTING: (2, 15),
    S.IN_PROGRESS: (60, 1200),
}
GAP_BEFORE = {S.ACCEPTED: (8, 75), S.CONNECTING: (3, 20), S.IN_PROGRESS: (5, 45)}
GAP_TO_END = {
    (S.IN_PROGRESS, S.COMPLETED): (6 * 60, 28 * 60),
    (S.IN_PROGRESS, S.FAILED): (60, 20 * 60),
    (S.CONNECTING, S.FAILED): (20, 90),
    (S.ACCEPTED, S.FAILED): (60, 180),
    (S.WAITING, S.CANCELLED): (60, 25 * 60),
    (S.OFFERED, S.CANCELLED): (5, 40),
    (S.ACCEPTED, S.CANCELLED): (10, 60),
    (S.CONNECTING, S.CANCELLED): (10, 60),
    (S.WAITING, S.EXPIRED): (40 * 60, 80 * 60),
}
PRIORITY_MIX = {Priority.ROUTINE: 85, Priority.ELEVATED: 12, Priority.URGENT: 3}
# Requests per UTC hour: US daytime is busiest.
HOUR_WEIGHTS = (6, 5, 4, 2, 1, 1, 1, 1, 1, 1, 2, 4, 7, 9, 10, 10, 10, 10, 10, 10, 10, 9, 8, 7)
HISTORY_DAYS = 60
# Past visits are requested at least this long ago, so that every one has ended before now.
PAST_MARGIN = dt.timedelta(hours=3)

Step = tuple[str, dt.timedelta]


@dataclass
class _Plan:
    requested_at: dt.datetime
    script: list[Step]
    live: bool


def seed_visits(ctx: SeedContext, wanted: int, *, new_provider_ids: set[int]) -> tuple[int, int]:
    """Create the missing visits with their timelines and history; settle provider availability."""
    missing = max(0, wanted - Visit.objects.count())
    if not (missing or new_provider_ids):
        return 0, 0
    pool = ProviderPool.load()
    patients = list(Patient.objects.order_by("created_at", "pk").values_list("pk", "state", "created_at"))
    if missing and not patients:
        raise ValueError("Visits need patients: seed some patients first.")
    public_ids = _public_ids(ctx.rng, set(Visit.objects.values_list("public_id", flat=True)))
    # A patient has at most one open visit (the database enforces it): live visits stay open.
    busy = set(Visit.objects.filter(status__in=OPEN_STATUSES).values_list("patient_id", flat=True))
    timelines = []
    for plan in _plan_visits(ctx, missing):
        # A visit being offered or seen right now must be where someone can take it.
        open_states = pool.states_open_at(ctx.now) if plan.live and plan.script else None
        visit = _new_visit(ctx, plan, patients, next(public_ids), open_states, busy if plan.live else None)
        timelines.append(_play(ctx, pool, _Timeline(visit, pool.names), plan))
    events = _save_timelines(timelines)
    _settle_availability(ctx, pool, new_provider_ids, timelines)
    return missing, events


def _plan_visits(ctx: SeedContext, count: int) -> list[_Plan]:
    """Return a plan per visit, oldest request first: a live slice happening now, the rest in the past."""
    rng, plans = ctx.rng, []
    for status, share in LIVE_SHARE.items():
        for _ in range(round(count * share) or (1 if count >= 100 else 0)):
            script = _script(rng, status)
            span = sum((gap for _, gap in script), dt.timedelta())
            low, high = LIVE_TAIL[status]
            tail = sampling.seconds(rng, low, max(low, high - span.total_seconds()) if status == S.WAITING else high)
            plans.append(_Plan(ctx.now - span - tail, script, live=True))
    for _ in range(count - len(plans)):
        plans.append(_Plan(_past_request_time(ctx), _script(rng, *sampling.weighted(rng, FINAL_MIX)), live=False))
    plans.sort(key=lambda plan: plan.requested_at)
    return plans


def _script(rng: random.Random, reach: str, end: str | None = None) -> list[Step]:
    """Return the steps (with the time since the previous one) that take a new visit to ``reach``, then ``end``."""
    rejections = int(rng.random() < 0.2) if reach == S.WAITING else sampling.weighted(rng, {0: 85, 1: 12, 2: 3})
    steps = []
    for _ in range(rejections):
        steps += [
            (S.OFFERED, _queue_wait(rng)),
            (sampling.weighted(rng, {REJECTED: 7, OFFER_EXPIRED: 3}), sampling.seconds(rng, 15, 90)),
        ]
    for status in _path_to(rng, reach):
        steps.append((status, _queue_wait(rng) if status == S.OFFERED else sampling.seconds(rng, *GAP_BEFORE[status])))
    if end:
        steps.append((end, sampling.seconds(rng, *GAP_TO_END[reach, end])))
    return steps


def _path_to(rng: random.Random, reach: str) -> list[str]:
    if reach == S.WAITING:
        return []
    path = list(HAPPY_PATH[: HAPPY_PATH.index(reach) + 1])
    if reach == S.IN_PROGRESS and rng.random() < 0.15:
        path.remove(S.CONNECTING)  # some apps report "connected" straight after accepting
    return path


def _queue_wait(rng: random.Random) -> dt.timedelta:
    return sampling.seconds(rng, 20, 420) if rng.random() < 0.9 else sampling.seconds(rng, 420, 1500)


def _past_request_time(ctx: SeedContext) -> dt.datetime:
    rng = ctx.rng
    day = ctx.now - dt.timedelta(days=rng.randrange(HISTORY_DAYS))
    hour = rng.choices(range(24), weights=HOUR_WEIGHTS)[0]
    at = day.replace(hour=hour, minute=rng.randrange(60), second=rng.randrange(60), microsecond=rng.randrange(10**6))
    while at > ctx.now - PAST_MARGIN:
        at -= dt.timedelta(days=1)
    return at


def _public_ids(rng: random.Random, taken: set[str]) -> Iterable[str]:
    """Yield unused visit ids in the format of ``validators.new_public_id``, drawn from ``rng``."""
    while True:
        chars = "".join(rng.choices(PUBLIC_ID_ALPHABET, k=PUBLIC_ID_LENGTH))
        public_id = f"{chars[:4]}-{chars[4:]}"
        if public_id not in taken:
            taken.add(public_id)
            yield public_id


def _new_visit(
    ctx: SeedContext, plan: _Plan, patients: list[tuple], public_id: str, states: set[str] | None, busy: set[int] | None
) -> Visit:
    """Return an unsaved visit for the plan; with ``busy``, for a patient not in it (then added to it)."""
    rng = ctx.rng
    if busy is None:
        patient_id, home_state = _pick_patient(rng, patients, plan.requested_at)
    else:
        patient_id, home_state = _pick_free_patient(rng, patients, busy)
        busy.add(patient_id)
    # Most patients call from home; some are travelling.
    located_state = home_state if home_state and rng.random() < 0.85 else sampling.random_state(rng)
    if states and located_state not in states:
        located_state = sampling.random_state(rng, among=states)
    return Visit(
        public_id=public_id,
        patient_id=patient_id,
        located_state=located_state,
        reason=rng.choice(sampling.people()["visit_reasons"]),
        priority=sampling.weighted(rng, PRIORITY_MIX),
        requested_at=plan.requested_at,
    )


def _pick_patient(rng: random.Random, patients: list[tuple], at: dt.datetime) -> tuple[int, str]:
    """Return (id, home state) of a patient registered before ``at`` (the oldest if few are)."""
    for _ in range(5):
        patient_id, state, created_at = rng.choice(patients)
        if created_at <= at:
            return patient_id, state
    return patients[0][0], patients[0][1]


def _pick_free_patient(rng: random.Random, patients: list[tuple], busy: set[int]) -> tuple[int, str]:
    """Return (id, home state) of a patient with no open visit, at random while most are free."""
    for _ in range(20):
        patient_id, state, _created_at = rng.choice(patients)
        if patient_id not in busy:
            return patient_id, state
    for patient_id, state, _created_at in patients:
        if patient_id not in busy:
            return patient_id, state
    raise ValueError("Every patient already has an open visit: seed more patients for this many live visits.")


def _play(ctx: SeedContext, pool: ProviderPool, timeline: _Timeline, plan: _Plan) -> _Timeline:
    """Run the plan's script on the timeline; a past visit nobody could take ends expired or cancelled."""
    rng, visit = ctx.rng, timeline.visit
    for step, gap in plan.script:
        timeline.at += gap
        if step == S.OFFERED:
            provider_id = pool.take(rng, visit.located_state, timeline.at, live=plan.live)
            if provider_id is None:
                if not plan.live:
                    _give_up(rng, timeline)
                break
            timeline.offer(provider_id)
        elif step in (REJECTED, OFFER_EXPIRED):
            pool.release(timeline.decline(expired=step == OFFER_EXPIRED), timeline.at)
        else:
            _end_or_advance(rng, timeline, step)
    if not plan.live and visit.provider_id:
        pool.release(visit.provider_id, timeline.at)
    return timeline


def _give_up(rng: random.Random, timeline: _Timeline) -> None:
    if rng.random() < 0.6:
        timeline.at += sampling.seconds(rng, *GAP_TO_END[S.WAITING, S.EXPIRED])
        timeline.expire()
    else:
        timeline.at += sampling.seconds(rng, 300, 1800)
        timeline.cancel("cancelled by patient: wait was too long")


def _end_or_advance(rng: random.Random, timeline: _Timeline, step: str) -> None:
    if step == S.FAILED:
        timeline.fail(rng.choice(sampling.people()["failure_details"]))
    elif step == S.CANCELLED:
        timeline.cancel(rng.choice(sampling.people()["cancel_details"]))
    else:
        {
            S.ACCEPTED: timeline.accept,
            S.CONNECTING: timeline.start_connecting,
            S.IN_PROGRESS: timeline.connected,
            S.COMPLETED: timeline.complete,
            S.EXPIRED: timeline.expire,
        }[step]()


def _save_timelines(timelines: list[_Timeline]) -> int:
    """Insert the visits, then their events and one history record per transition; return the events."""
    bulk(Visit, [timeline.visit for timeline in timelines])
    events = [event for timeline in timelines for event in timeline.events]
    bulk(VisitEvent, events)
    with connection.cursor() as cursor:
        backfill.derive_offers(cursor, offer_timeout=settings.ROUTING_OFFER_TIMEOUT)
    history = [
        history_row(Visit, {**values, "id": timeline.visit.pk}, at=at, history_type="~" if index else "+")
        for timeline in timelines
        for index, (at, values) in enumerate(timeline.snapshots)
    ]
    bulk(history_model(Visit), history)
    return len(events)


# --- provider availability after the visits -------------------------------------------------------

AVAILABLE_SHARE = 0.35


def _settle_availability(ctx: SeedContext, pool: ProviderPool, new_ids: set[int], timelines: list[_Timeline]) -> None:
    """Put each provider holding a live visit in reserved or busy, and some new providers online."""
    holding = {
        timeline.visit.provider_id: timeline.visit
        for timeline in timelines
        if timeline.visit.status in PROVIDER_HOLDING_STATUSES
    }
    changed, history = [], []
    for provider in Provider.objects.filter(pk__in=new_ids | holding.keys()).order_by("pk"):
        if provider.pk in holding:
            history += _hold(ctx, pool, provider, holding[provider.pk])
        elif provider.is_active and ctx.rng.random() < AVAILABLE_SHARE:
            since = max(pool.busy_until.get(provider.pk, EARLIEST), ctx.now - sampling.seconds(ctx.rng, 120, 3300))
            history += _go_available(provider, since)
        else:
            continue
        changed.append(provider)
    Provider.objects.bulk_update(changed, ["availability", "available_since"], batch_size=BATCH_SIZE)
    bulk(history_model(Provider), history)


def _go_available(provider: Provider, since: dt.datetime) -> list:
    provider.availability, provider.available_since = Availability.AVAILABLE, since
    return [history_row(Provider, tracked_values(provider), at=since, history_type="~")]


def _hold(ctx: SeedContext, pool: ProviderPool, provider: Provider, visit: Visit) -> list:
    """Make ``provider`` reserved (offer out) or busy, as offer_visit and accept_visit would have."""
    history = []
    since = provider.available_since
    if provider.availability != Availability.AVAILABLE or since is None or since > visit.offered_at:
        since = max(pool.free_since.get(provider.pk, EARLIEST), visit.offered_at - sampling.seconds(ctx.rng, 60, 1800))
        history += _go_available(provider, since)
    provider.availability = Availability.RESERVED
    history.append(history_row(Provider, tracked_values(provider), at=visit.offered_at, history_type="~"))
    if visit.status != S.OFFERED:
        provider.availability = Availability.BUSY
        history.append(history_row(Provider, tracked_values(provider), at=visit.accepted_at, history_type="~"))
    return history
