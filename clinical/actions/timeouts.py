"""Timeouts the router applies: visits that waited too long or got stuck."""

import datetime as dt

from django.conf import settings
from django.db import transaction

from clinical import hooks
from clinical.actions.providers import _set_availability
from clinical.actions.visits import _check_transition, _lock_provider, _lock_visit, _move
from clinical.models import (
    Availability,
    Visit,
    VisitStatus,
)
from core import dbclock
from core.audit import Actor
from core.errors import IllegalTransition

S = VisitStatus

# --- timeouts (the router) ------------------------------------------------------------------


@transaction.atomic
def expire_visit(visit: Visit | int, *, actor: Actor, max_wait: int | None = None, detail: str = "") -> Visit:
    """Expire a visit that waited too long and open a support case about it, in one transaction.

    With ``max_wait`` (seconds), refuse unless it has waited that long by the database's clock.
    """
    visit = _lock_visit(visit, actor)
    _check_transition(visit, S.EXPIRED)
    at = dbclock.now()
    if max_wait is not None and at - visit.requested_at < dt.timedelta(seconds=max_wait):
        raise IllegalTransition(f"Visit {visit.public_id} has not waited {max_wait} s yet.", field="status")
    visit.ended_at = at
    _move(visit, S.EXPIRED, actor=actor, detail=detail or "waited too long", at=at)
    waited = int((at - visit.requested_at).total_seconds() // 60)
    _open_routing_case(
        visit,
        actor=actor,
        subject=f"Visit {visit.public_id} expired after {waited} min waiting in {visit.located_state}",
        note="Opened automatically: no licensed provider took the visit in time. Contact the patient.",
    )
    return visit


# What a visit stuck in each status has waited for, and the setting that bounds it.
_STUCK = {
    S.ACCEPTED: ("accepted_at", "ROUTING_CONNECT_TIMEOUT", "never connected"),
    S.CONNECTING: ("accepted_at", "ROUTING_CONNECT_TIMEOUT", "never connected"),
    S.IN_PROGRESS: ("started_at", "ROUTING_MAX_VISIT_MINUTES", "ran past the longest visit"),
}


def stuck_limit(status: str) -> dt.timedelta:
    """Return how long a visit may stay in ``status`` (accepted, connecting, in progress) before it fails."""
    setting = _STUCK[status][1]
    value = getattr(settings, setting)
    return dt.timedelta(minutes=value) if setting.endswith("_MINUTES") else dt.timedelta(seconds=value)


@transaction.atomic
def time_out_visit(visit: Visit | int, *, actor: Actor) -> Visit:
    """Fail a visit stuck past its timeout (by the database's clock): the provider app went quiet.

    The provider is set offline with the reason on the timeline, and a support case opens, all in
    one transaction. Refused if the visit is not (or no longer) past its timeout.
    """
    visit = _lock_visit(visit, actor)
    at = dbclock.now()
    if visit.status not in _STUCK:
        raise IllegalTransition(f"Visit {visit.public_id} is {visit.status}; it cannot time out.", field="status")
    since_field, setting, what = _STUCK[visit.status]
    since = getattr(visit, since_field)
    if since is None or at - since < stuck_limit(visit.status):
        raise IllegalTransition(f"Visit {visit.public_id} is within {setting}.", field="status")
    provider = _lock_provider(visit.provider_id)
    minutes = int((at - since).total_seconds() // 60)
    detail = f"timed out: {what} ({visit.status} for {minutes} min, {setting})"
    visit.ended_at = at
    _set_availability(provider, Availability.OFFLINE, actor=actor, reason=f"visit {visit.public_id} {detail}", at=at)
    _move(visit, S.FAILED, actor=actor, detail=detail, at=at, provider=provider)
    _open_routing_case(
        visit,
        actor=actor,
        subject=f"Visit {visit.public_id} failed: {what} ({provider.full_name})",
        note=f"Opened automatically: the visit {detail}. The provider was set offline. Contact patient and provider.",
    )
    return visit


def _open_routing_case(visit: Visit, *, actor: Actor, subject: str, note: str) -> None:
    """Hand ``visit`` to a person: the registered handler opens a routing case in this transaction."""
    hooks.visit_needs_attention(visit, actor=actor, subject=subject, note=note)
