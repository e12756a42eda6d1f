"""Every write to the support domain: cases, notes and security events."""

import datetime as dt
import re
from collections.abc import Callable

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from core import outbox
from core.audit import Actor, stamp
from core.client_ip import client_ip
from core.errors import ActionError
from core.errors import full_clean_or_raise as _full_clean
from support.access import storable_text
from support.models import (
    OPEN_CASE_STATUSES,
    CaseCategory,
    CaseNote,
    CasePriority,
    CaseStatus,
    SecurityEvent,
    SupportCase,
)


@transaction.atomic
def open_case(
    *,
    subject: str,
    actor: Actor,
    patient=None,
    visit=None,
    category: str = "other",
    priority: int = 1,
    assignee=None,
    note: str = "",
) -> SupportCase:
    """Open a support case about a patient and/or a visit, with an optional first note."""
    if visit is not None and patient is None:
        patient = visit.patient
    case = SupportCase(
        subject=subject,
        category=category,
        priority=priority,
        patient=patient,
        visit=visit,
        assignee=assignee,
        created_by=actor.user,
    )
    return save_case(case, actor=actor, reason="opened", note=note)


@transaction.atomic
def save_case(case: SupportCase, *, actor: Actor, reason: str = "", note: str = "") -> SupportCase:
    """Validate and save a new or edited case; stamp ``resolved_at`` when it is resolved."""
    if case.pk is None and case.created_by_id is None:
        case.created_by = actor.user
    if case.visit_id and not case.patient_id:
        case.patient_id = case.visit.patient_id
    _stamp_resolution(case)
    _full_clean(case)
    stamp(case, actor, reason or ("opened" if case._state.adding else "edited"))
    case.save()
    outbox.record_instance(case)
    if note.strip():
        add_note(case, body=note, actor=actor)
    return case


def _stamp_resolution(case: SupportCase) -> None:
    if case.status in OPEN_CASE_STATUSES:
        case.resolved_at = None
    elif case.resolved_at is None:
        case.resolved_at = timezone.now()


def change_case_status(case: SupportCase, status: str, *, actor: Actor, reason: str = "") -> SupportCase:
    """Move a case to ``status`` (open, pending, resolved, closed)."""
    if status not in CaseStatus.values:
        raise ActionError(f"Unknown case status {status!r}.", field="status")
    case.status = status
    return save_case(case, actor=actor, reason=reason or f"status → {status}")


@transaction.atomic
def add_note(case: SupportCase, *, body: str, actor: Actor) -> CaseNote:
    """Append a note to a case."""
    if not body.strip():
        raise ActionError("A note needs some text.", field="body")
    return CaseNote.objects.create(case=case, author=actor.user, body=body.strip())


def record_security_event(request, *, kind: str, detail: str = "") -> SecurityEvent:
    """Record a security-relevant request (who, from where, what path)."""
    user = getattr(request, "user", None)
    return SecurityEvent.objects.create(
        kind=kind,
        path=request.get_full_path()[:500],
        method=request.method[:10],
        ip=client_ip(request) or None,
        # A NUL in a header is refused by PostgreSQL: the probe or failed sign-in must be kept anyway.
        user_agent=storable_text(request.META.get("HTTP_USER_AGENT", ""), 500),
        user=user if user is not None and user.is_authenticated else None,
        detail=storable_text(detail, 500),
    )


PRUNE_BATCH = 10_000  # rows per DELETE: short transactions, no long lock on the log


def access_log_cutoff(duration: str, *, now: dt.datetime) -> dt.datetime:
    """Return ``now`` minus ``duration`` ("6y" calendar years, "90d" days); raise ValueError if unreadable."""
    match = re.fullmatch(r"\s*(\d+)\s*([yd])\s*", duration.lower())
    if match is None or int(match[1]) == 0:
        raise ValueError(f"Give a duration such as 6y or 90d, got {duration!r}.")
    amount, unit = int(match[1]), match[2]
    if unit == "d":
        return now - dt.timedelta(days=amount)
    if now.month == 2 and now.day == 29:  # 29 February, N years back, may not exist
        now = now.replace(day=28)
    return now.replace(year=now.year - amount)


def prune_access_log(*, before: dt.datetime, progress: Callable[[int], None] = lambda n: None) -> int:
    """Delete access log rows recorded before ``before``, in batches, through the database's prune
    function (the table refuses any other delete); return how many.

    Refused (``ValueError``) if ``before`` is within ``OPS_ACCESS_LOG_MIN_RETENTION``.
    """
    keep_until = access_log_cutoff(settings.OPS_ACCESS_LOG_MIN_RETENTION, now=timezone.now())
    if before > keep_until:
        raise ValueError(
            f"The access log keeps every row {settings.OPS_ACCESS_LOG_MIN_RETENTION} at least "
            f"(OPS_ACCESS_LOG_MIN_RETENTION): nothing after {keep_until:%Y-%m-%d} may be pruned."
        )
    deleted = 0
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT support_prune_access_log(%s, %s)", [before, PRUNE_BATCH])
            count = cursor.fetchone()[0]
        deleted += count
        if count < PRUNE_BATCH:
            return deleted
        progress(deleted)


def open_routing_case(visit, *, actor: Actor, subject: str, note: str) -> SupportCase:
    """Open a high-priority routing case about a visit the router ended by timeout (``clinical.hooks``)."""
    return open_case(
        subject=subject, category=CaseCategory.ROUTING, priority=CasePriority.HIGH, visit=visit, actor=actor, note=note
    )
