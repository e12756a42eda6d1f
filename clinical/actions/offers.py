"""Offers: made in batches by the router, answered by providers, expired or withdrawn."""

import datetime as dt
import functools

from django.conf import settings
from django.db import connection, transaction

from clinical import events
from clinical.actions.providers import _set_availability
from clinical.actions.visits import _check_transition, _close_offer, _fence, _lock_provider, _lock_visit, _move
from clinical.calendar import license_valid_sql, states_licensed_at
from clinical.models import (
    Availability,
    OfferOutcome,
    Provider,
    Visit,
    VisitStatus,
)
from clinical.push import publish as push
from core import dbclock, outbox
from core.audit import Actor, history_insert_from, history_params
from core.errors import ActionError, IllegalTransition
from core.prepared import Statement

S = VisitStatus

# --- offers ---------------------------------------------------------------------------------

# Offering a batch of (visit, provider) pairs is one statement. It locks the pairs that qualify:
# the visit waits, the provider is active and available, a license of theirs counts in the
# visit's state by the state's calendar (that license locked in share mode, so a suspension either
# commits first and is seen, or waits for this offer), the provider did not decline or ignore the
# visit within the re-offer period, and a router's lease epoch is current (its row locked in share
# mode too). Only then, once every lock is held, it takes the instant from the database's clock,
# re-checks the license at that instant, and writes the offers with their deadlines, the visits
# and reservations, their history records and timeline events.
_OFFER_SQL = """
WITH pairs(visit_id, provider_id) AS (SELECT * FROM unnest(%s::bigint[], %s::bigint[])),
fence AS (SELECT epoch FROM clinical_routerlease WHERE id = 1 AND epoch = %s::bigint FOR SHARE),
locked AS (
    SELECT v.id AS visit_id, pr.id AS provider_id, l.id AS license_id
    FROM pairs p
    JOIN clinical_visit v ON v.id = p.visit_id AND v.status = 'waiting'
    JOIN clinical_provider pr ON pr.id = p.provider_id AND pr.availability = 'available' AND pr.is_active
    JOIN clinical_providerlicense l
      ON l.provider_id = pr.id AND l.state = v.located_state AND {valid_at_start}
    WHERE (%s::bigint IS NULL OR EXISTS (SELECT 1 FROM fence))
      AND NOT EXISTS (
        SELECT 1 FROM clinical_offer o
        WHERE o.visit_id = v.id AND o.provider_id = pr.id AND o.outcome IN ('declined', 'expired')
          AND o.decided_at > statement_timestamp() - %s::interval
    )
    ORDER BY v.id
    FOR UPDATE OF v, pr FOR SHARE OF l
),
clock AS (SELECT clock_timestamp() AS now FROM (SELECT count(*) FROM locked) AS after_the_locks),
eligible AS (
    SELECT k.visit_id, k.provider_id, k.license_id, c.now
    FROM locked k CROSS JOIN clock c
    JOIN clinical_providerlicense l ON l.id = k.license_id AND {valid_now}
),
offered AS (
    UPDATE clinical_visit v
    SET status = 'offered', provider_id = e.provider_id, offered_at = e.now, offer_count = v.offer_count + 1
    FROM eligible e WHERE v.id = e.visit_id
    RETURNING v.*
),
reserved AS (
    UPDATE clinical_provider pr SET availability = 'reserved'
    FROM eligible e WHERE pr.id = e.provider_id
    RETURNING pr.*
),
recorded AS (
    INSERT INTO clinical_offer (visit_id, provider_id, license_id, offered_at, expires_at, router_epoch)
    SELECT e.visit_id, e.provider_id, e.license_id, e.now, e.now + %s::interval, %s::bigint FROM eligible e
),
visit_history AS ({visit_history}),
provider_history AS ({provider_history}),
timeline AS (
    INSERT INTO clinical_visitevent (visit_id, from_status, to_status, at, actor_kind, staff_user_id, provider_id,
                                     detail)
    SELECT o.id, 'waiting', 'offered', o.offered_at, %s::varchar, %s::integer, o.provider_id,
           'offered to ' || r.first_name || ' ' || r.last_name
    FROM offered o JOIN reserved r ON r.id = o.provider_id
    RETURNING id, visit_id
)
SELECT o.id, o.provider_id, o.located_state, t.id FROM offered o JOIN timeline t ON t.visit_id = o.id
"""


@functools.cache
def _offer_statement() -> Statement:
    """Return the offer statement, its history inserts built from the models (once the apps are ready)."""
    sql = (
        _OFFER_SQL.replace("{valid_at_start}", license_valid_sql("l", "statement_timestamp()"))
        .replace("{valid_now}", license_valid_sql("l", "c.now"))
        .replace("{visit_history}", history_insert_from(Visit, "offered"))
        .replace("{provider_history}", history_insert_from(Provider, "reserved"))
    )
    return Statement("clinical_offer_visits", sql)


@transaction.atomic
def offer_visits(
    pairs: list[tuple[int, int]], *, actor: Actor, offer_timeout: int | None = None, reoffer_after: int | None = None
) -> list[tuple[int, int]]:
    """Offer each waiting visit to its paired provider if it qualifies, in one statement (``_OFFER_SQL``).

    Pairs that fail a condition are skipped; a router whose lease epoch is over is refused
    (``Fenced``). Publish the applied offers' events on commit and return the applied
    ``(visit_id, provider_id)`` pairs.
    """
    if not pairs:
        return []
    reoffer_after = settings.ROUTING_REOFFER_AFTER if reoffer_after is None else reoffer_after
    timeout = dt.timedelta(seconds=offer_timeout or settings.ROUTING_OFFER_TIMEOUT)
    user = actor.user.pk if actor.user is not None else None
    params = [
        [visit for visit, _ in pairs], [provider for _, provider in pairs], actor.epoch, actor.epoch,
        dt.timedelta(seconds=reoffer_after), timeout, actor.epoch,
        *history_params(actor=actor, reason="offered by the router"),
        *history_params(actor=actor, reason="reserved for an offered visit"),
        actor.kind, user,
    ]  # fmt: skip
    with connection.cursor() as cursor:
        _offer_statement().execute(cursor, params)
        applied = cursor.fetchall()
    if not applied:
        _fence(actor)  # nothing qualified; or this router's epoch is over: say so
        return []
    outbox.record("clinical.visit", [visit for visit, _, _, _ in applied])
    outbox.record("clinical.provider", [provider for _, provider, _, _ in applied])
    events.publish_many_on_commit(
        [
            events.event("visit_status", actor=actor.kind, visit=v, status=S.OFFERED, state=state, provider=p)
            for v, p, state, _ in applied
        ]
    )
    push.transitions_on_commit([event for _, _, _, event in applied])
    return [(visit, provider) for visit, provider, _, _ in applied]


def offer_visit(visit: Visit | int, provider: Provider | int, *, actor: Actor, **timing) -> Visit:
    """Offer a waiting visit to an available provider licensed now in the visit's state."""
    visit_id = visit.pk if isinstance(visit, Visit) else visit
    provider_id = provider.pk if isinstance(provider, Provider) else provider
    if not offer_visits([(visit_id, provider_id)], actor=actor, **timing):
        _explain_refused_offer(visit_id, provider_id)
    return Visit.objects.select_related("provider").get(pk=visit_id)


def _explain_refused_offer(visit_id: int, provider_id: int) -> None:
    visit = Visit.objects.filter(pk=visit_id).first()
    if visit is None:
        raise ActionError("No such visit.", field="visit", code="not_found")
    _check_transition(visit, S.OFFERED)
    provider = Provider.objects.get(pk=provider_id)
    if provider.availability != Availability.AVAILABLE or not provider.is_active:
        raise IllegalTransition(f"{provider} is not available.", field="provider", code="not_available")
    if visit.located_state not in states_licensed_at(provider_id):
        raise IllegalTransition(
            f"{provider} is not licensed in {visit.located_state} now (the state's calendar).",
            field="provider",
            code="not_licensed",
        )
    raise IllegalTransition(
        f"{provider} declined or let this visit's offer expire within the last "
        f"{settings.ROUTING_REOFFER_AFTER // 60} minutes.",
        field="provider",
        code="recently_declined",
    )


# Close the open offer of a visit to a provider, at the database's instant, only if the conditions
# hold in the same statement: for an answer, before its deadline; for an acceptance, also the
# provider active and a license of theirs counting in the visit's state (locked in share mode).


def _refuse_answer(visit: Visit, provider: Provider, to: str) -> None:
    """Explain why a provider's answer to an offer was refused, with a code for the app."""
    last = visit.offers.filter(provider=provider).order_by("-offered_at", "-id").first()
    if last is None:
        _check_transition(visit, to)
        raise IllegalTransition("This visit was never offered to you.", field="visit", code="not_your_offer")
    if last.outcome == OfferOutcome.EXPIRED or (last.outcome is None and last.expires_at <= dbclock.now()):
        raise IllegalTransition(
            f"Your offer of this visit expired at {last.expires_at:%H:%M:%S} UTC.", field="visit", code="offer_expired"
        )
    if last.outcome is not None:
        raise IllegalTransition(
            f"Your offer of this visit is closed ({last.get_outcome_display().lower()}).",
            field="visit",
            code=f"offer_{last.outcome}",
        )
    if not provider.is_active:
        raise IllegalTransition("Your account is inactive.", field="provider", code="provider_inactive")
    raise IllegalTransition(
        f"You are not licensed in {visit.located_state} now (the state's calendar).",
        field="provider",
        code="not_licensed",
    )


@transaction.atomic
def accept_visit(visit: Visit | int, *, provider: Provider | int, actor: Actor) -> Visit:
    """Record ``provider``'s acceptance of the offer they hold; they become busy.

    Refused (``IllegalTransition`` with a code) unless, at this instant by the database's clock, the
    offer is open, theirs and before its deadline, they are active, and a license of theirs counts in
    the visit's state.
    """
    visit = _lock_visit(visit, actor)
    provider = _lock_provider(provider.pk if isinstance(provider, Provider) else provider)
    at = _close_offer(visit, provider.pk, OfferOutcome.ACCEPTED, answer=True)
    if at is None:
        _refuse_answer(visit, provider, S.ACCEPTED)
    visit.accepted_at = at
    _set_availability(provider, Availability.BUSY, actor=actor, reason=f"accepted visit {visit.public_id}", at=at)
    return _move(visit, S.ACCEPTED, actor=actor, detail=f"accepted by {provider.full_name}", provider=provider, at=at)


@transaction.atomic
def decline_offer(visit: Visit | int, *, provider: Provider | int, actor: Actor) -> Visit:
    """Record ``provider``'s rejection of the offer they hold (before its deadline): the visit goes back
    to its place in line and the provider stays available.
    """
    visit = _lock_visit(visit, actor)
    provider = _lock_provider(provider.pk if isinstance(provider, Provider) else provider)
    at = _close_offer(visit, provider.pk, OfferOutcome.DECLINED, answer=True)
    if at is None:
        _refuse_answer(visit, provider, S.WAITING)
    _set_availability(provider, Availability.AVAILABLE, actor=actor, reason=f"rejected visit {visit.public_id}", at=at)
    return _requeue(visit, provider, actor=actor, detail=f"offer to {provider.full_name} rejected", at=at)


@transaction.atomic
def expire_offer(visit: Visit | int, *, provider_id: int, actor: Actor) -> Visit:
    """Time out an offer past its deadline (by the database's clock): the visit goes back to its
    place in line and the provider, who did not answer, is set offline.
    """
    visit = _lock_visit(visit, actor)
    provider = _lock_provider(provider_id)
    at = _close_offer(visit, provider_id, OfferOutcome.EXPIRED, deadline_passed=True)
    if at is None:
        raise IllegalTransition(
            f"Visit {visit.public_id} has no offer to that provider past its deadline.", field="visit"
        )
    reason = f"let offer {visit.public_id} expire"
    _set_availability(provider, Availability.OFFLINE, actor=actor, reason=reason, at=at)
    return _requeue(visit, provider, actor=actor, detail=f"offer to {provider.full_name} expired", at=at)


@transaction.atomic
def withdraw_offer(visit: Visit | int, *, provider_id: int, actor: Actor, reason: str) -> Visit:
    """Take an offer back through no fault of the provider (e.g. their license stopped covering the state)."""
    visit = _lock_visit(visit, actor)
    provider = _lock_provider(provider_id)
    at = _close_offer(visit, provider_id, OfferOutcome.WITHDRAWN)
    if at is None:
        raise IllegalTransition(f"Visit {visit.public_id} has no open offer to that provider.", field="visit")
    _set_availability(
        provider, Availability.AVAILABLE, actor=actor, reason=f"offer withdrawn: {reason}", at=at, keep_since=True
    )
    return _requeue(visit, provider, actor=actor, detail=f"offer withdrawn: {reason}", at=at)


def _requeue(visit: Visit, provider: Provider, *, actor: Actor, detail: str, at: dt.datetime) -> Visit:
    _check_transition(visit, S.WAITING)
    visit.provider = None
    return _move(visit, S.WAITING, actor=actor, detail=detail, provider=provider, at=at)
