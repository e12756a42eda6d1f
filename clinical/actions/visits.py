"""Visits: requests, the lifecycle, locks and fencing, a visit under way, cancellation, details."""

import datetime as dt

from django.db import IntegrityError, connection, transaction

from clinical import events
from clinical.actions.providers import _set_availability
from clinical.calendar import license_valid_sql
from clinical.models import (
    OPEN_STATUSES,
    Availability,
    OfferOutcome,
    Patient,
    Priority,
    Provider,
    Visit,
    VisitEvent,
    VisitStatus,
)
from clinical.push import publish as push
from core import dbclock, outbox
from core.audit import Actor, stamp
from core.errors import ActionError, Fenced, IllegalTransition
from core.errors import full_clean_or_raise as _full_clean

S = VisitStatus

# Legal visit transitions: to-status -> the statuses it may come from.
VISIT_TRANSITIONS: dict[str, tuple[str, ...]] = {
    S.OFFERED: (S.WAITING,),
    S.WAITING: (S.OFFERED,),
    S.ACCEPTED: (S.OFFERED,),
    S.CONNECTING: (S.ACCEPTED,),
    S.IN_PROGRESS: (S.ACCEPTED, S.CONNECTING),
    S.COMPLETED: (S.IN_PROGRESS,),
    S.FAILED: (S.ACCEPTED, S.CONNECTING, S.IN_PROGRESS),
    S.CANCELLED: (S.WAITING, S.OFFERED, S.ACCEPTED, S.CONNECTING),
    S.EXPIRED: (S.WAITING,),
}


@transaction.atomic
def request_visit(
    *, patient: Patient, located_state: str, reason: str, priority: int = Priority.ROUTINE, actor: Actor
) -> Visit:
    """Create a waiting visit for a patient located in ``located_state``, requested now by the database's clock.

    Four round trips (the visit, its history record, its timeline event, the commit): a patient's
    wait starts at the insert, so everything before it is kept out of the way.
    """
    visit = Visit(patient=patient, located_state=located_state, reason=reason, priority=priority)
    # The patient is a row just read (by MRN or from a form); its existence needs no second query.
    # A new visit waits with no provider, so its check constraints (status and provider) hold by
    # construction, and PostgreSQL enforces them anyway: checking them here cost a query.
    _full_clean(visit, exclude=["public_id", "patient", "requested_at"], validate_constraints=False)
    stamp(visit, actor, "requested", at_field="requested_at")
    try:
        with transaction.atomic():
            visit.save()
    except IntegrityError as error:
        if _constraint(error) != "clinical_visit_one_open_per_patient":
            raise
        raise OpenVisitExists(Visit.objects.filter(patient=patient, status__in=OPEN_STATUSES).first()) from None
    outbox.record_instance(visit)
    _record_event(visit, "", S.WAITING, actor=actor, detail="requested", at=visit.requested_at)
    _publish_waiting(visit, actor)
    return visit


class OpenVisitExists(IllegalTransition):
    """The patient already has an open visit (``visit``): one at a time."""

    code = "open_visit_exists"

    def __init__(self, visit: Visit | None):
        named = f" ({visit.public_id})" if visit is not None else ""
        super().__init__(f"This patient already has an open visit{named}.", field="patient")
        self.visit = visit


def _constraint(error: IntegrityError) -> str | None:
    return getattr(getattr(error.__cause__, "diag", None), "constraint_name", None)


def _publish_waiting(visit: Visit, actor: Actor) -> None:
    """Tell the router a visit waits, with what its queue needs (place in line and state)."""
    events.publish_on_commit(
        "visit_waiting",
        actor=actor.kind,
        visit=visit.pk,
        state=visit.located_state,
        priority=visit.priority,
        requested_at=visit.requested_at.isoformat(),
    )


# A router holds its lease row in share mode until its transaction ends, so a takeover (which
# updates the row) waits for the write to commit, and a write after a takeover finds no row.
_FENCE_SQL = "SELECT 1 FROM clinical_routerlease WHERE id = 1 AND epoch = %s FOR SHARE"


def _fence(actor: Actor) -> None:
    """Refuse the write of a router whose lease epoch is no longer current (and keep it current until commit)."""
    if actor.epoch is None:
        return
    with connection.cursor() as cursor:
        cursor.execute(_FENCE_SQL, [actor.epoch])
        if cursor.fetchone() is None:
            raise Fenced(f"Lease epoch {actor.epoch} is over: another router leads now.")


def _lock_visit(visit: Visit | int, actor: Actor) -> Visit:
    _fence(actor)
    visit_id = visit.pk if isinstance(visit, Visit) else visit
    try:
        return Visit.objects.select_for_update().get(pk=visit_id)
    except Visit.DoesNotExist:
        raise ActionError("No such visit.", field="visit", code="not_found") from None


def _lock_provider(provider_id: int | None) -> Provider | None:
    if provider_id is None:
        return None
    return Provider.objects.select_for_update().get(pk=provider_id)


def _check_transition(visit: Visit, to: str) -> None:
    if visit.status not in VISIT_TRANSITIONS[to]:
        raise IllegalTransition(
            f"Visit {visit.public_id} is {visit.get_status_display().lower()}; it cannot become {S(to).label.lower()}.",
            field="status",
        )


def _move(
    visit: Visit, to: str, *, actor: Actor, detail: str, at: dt.datetime, provider: Provider | None = None
) -> Visit:
    """Save the visit in its new status with its timeline event and history record, both dated ``at``."""
    from_status = visit.status
    visit.status = to
    stamp(visit, actor, detail or f"{from_status} → {to}", at=at)
    visit.save()
    outbox.record_instance(visit)
    _record_event(visit, from_status, to, actor=actor, detail=detail, provider=provider, at=at)
    events.publish_on_commit(
        "visit_status",
        actor=actor.kind,
        visit=visit.pk,
        status=to,
        state=visit.located_state,
        provider=provider.pk if provider else None,
    )
    return visit


def _record_event(
    visit: Visit, from_status: str, to: str, *, actor: Actor, detail: str, at: dt.datetime, provider=None
) -> VisitEvent:
    event = VisitEvent.objects.create(
        visit=visit,
        from_status=from_status,
        to_status=to,
        at=at,
        actor_kind=actor.kind,
        staff_user=actor.user,
        provider=provider or visit.provider,
        detail=detail[:500],
    )
    push.transitions_on_commit([event.pk])
    return event


_CLOSE_OFFER_SQL = """
WITH clock AS (SELECT clock_timestamp() AS now)
UPDATE clinical_offer o SET outcome = %(outcome)s, decided_at = c.now
FROM clock c, clinical_visit v, clinical_provider p
WHERE o.visit_id = %(visit)s AND o.provider_id = %(provider)s AND o.outcome IS NULL
  AND v.id = o.visit_id AND v.status = 'offered' AND v.provider_id = o.provider_id AND p.id = o.provider_id
  AND (NOT %(answer)s OR o.expires_at > c.now)
  AND (NOT %(deadline_passed)s OR o.expires_at <= c.now)
  AND (NOT %(accepting)s OR (p.is_active AND EXISTS (
        SELECT 1 FROM clinical_providerlicense l
        WHERE l.provider_id = p.id AND l.state = v.located_state AND {license_valid}
        FOR SHARE OF l
  )))
RETURNING c.now
""".replace("{license_valid}", license_valid_sql("l", "c.now"))


def _close_offer(
    visit: Visit, provider_id: int, outcome: str, *, answer: bool = False, deadline_passed: bool = False
) -> dt.datetime | None:
    """Decide the open offer of ``visit`` to ``provider_id``; return the instant, or None if a condition failed."""
    params = {
        "visit": visit.pk, "provider": provider_id, "outcome": outcome, "answer": answer,
        "deadline_passed": deadline_passed, "accepting": outcome == OfferOutcome.ACCEPTED,
    }  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(_CLOSE_OFFER_SQL, params)
        row = cursor.fetchone()
    return row[0] if row else None


# --- a visit under way ----------------------------------------------------------------------


def _lock_held(visit: Visit | int, provider: Provider | int | None, actor: Actor) -> Visit:
    """Lock a visit and, when ``provider`` is given, refuse unless that provider holds it."""
    visit = _lock_visit(visit, actor)
    provider_id = provider.pk if isinstance(provider, Provider) else provider
    if provider_id is not None and visit.provider_id != provider_id:
        raise IllegalTransition("This visit is not yours.", field="visit", code="not_your_visit")
    return visit


@transaction.atomic
def start_connecting(visit: Visit | int, *, actor: Actor, provider: Provider | int | None = None) -> Visit:
    """Mark an accepted visit as connecting the video call."""
    visit = _lock_held(visit, provider, actor)
    _check_transition(visit, S.CONNECTING)
    return _move(visit, S.CONNECTING, actor=actor, detail="connecting video", at=dbclock.now())


@transaction.atomic
def mark_connected(visit: Visit | int, *, actor: Actor, provider: Provider | int | None = None) -> Visit:
    """Record that patient and provider are connected; the visit is in progress."""
    visit = _lock_held(visit, provider, actor)
    _check_transition(visit, S.IN_PROGRESS)
    visit.started_at = dbclock.now()
    return _move(visit, S.IN_PROGRESS, actor=actor, detail="connected", at=visit.started_at)


@transaction.atomic
def complete_visit(visit: Visit | int, *, actor: Actor, provider: Provider | int | None = None) -> Visit:
    """End an in-progress visit normally; the provider becomes available again."""
    visit = _lock_held(visit, provider, actor)
    _check_transition(visit, S.COMPLETED)
    provider = _lock_provider(visit.provider_id)
    visit.ended_at = at = dbclock.now()
    _set_availability(provider, Availability.AVAILABLE, actor=actor, reason=f"completed visit {visit.public_id}", at=at)
    return _move(visit, S.COMPLETED, actor=actor, detail="completed", at=at)


@transaction.atomic
def fail_visit(visit: Visit | int, *, actor: Actor, detail: str = "", provider: Provider | int | None = None) -> Visit:
    """End an accepted or running visit as failed (e.g. the call dropped); free the provider."""
    visit = _lock_held(visit, provider, actor)
    _check_transition(visit, S.FAILED)
    provider = _lock_provider(visit.provider_id)
    visit.ended_at = at = dbclock.now()
    _set_availability(provider, Availability.AVAILABLE, actor=actor, reason=f"visit {visit.public_id} failed", at=at)
    return _move(visit, S.FAILED, actor=actor, detail=detail or "failed", at=at)


@transaction.atomic
def cancel_visit(visit: Visit | int, *, actor: Actor, detail: str = "") -> Visit:
    """Cancel a visit that has not started; a provider holding it (or its offer) is freed at once."""
    visit = _lock_visit(visit, actor)
    _check_transition(visit, S.CANCELLED)
    provider = _lock_provider(visit.provider_id)
    visit.cancelled_at = at = dbclock.now()
    if provider is not None:
        if visit.status == S.OFFERED:
            _close_offer(visit, provider.pk, OfferOutcome.CANCELLED)
        # Freed through no doing of their own: keep their place in the longest-idle order.
        _set_availability(
            provider, Availability.AVAILABLE, actor=actor, reason=f"visit {visit.public_id} cancelled", at=at,
            keep_since=True,
        )  # fmt: skip
    return _move(visit, S.CANCELLED, actor=actor, detail=detail or "cancelled", provider=provider, at=at)


@transaction.atomic
def update_visit_details(visit: Visit, *, actor: Actor, reason: str = "") -> Visit:
    """Save a change to an open visit's reason or priority (never its status)."""
    current = _lock_visit(visit, actor)
    if not current.is_open:
        raise IllegalTransition(f"Visit {current.public_id} has ended; its details are final.", field="priority")
    current.reason, current.priority = visit.reason, visit.priority
    _full_clean(current, exclude=["public_id"])
    stamp(current, actor, reason or "details edited")
    current.save(update_fields=["reason", "priority"])
    outbox.record_instance(current)
    if current.status == S.WAITING:
        _publish_waiting(current, actor)
    return current
