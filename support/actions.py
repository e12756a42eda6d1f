"""Every write to the support domain: cases and their notes."""

from django.db import transaction
from django.utils import timezone

from core import outbox
from core.audit import Actor, stamp
from core.errors import ActionError
from core.errors import full_clean_or_raise as _full_clean
from support.models import (
    OPEN_CASE_STATUSES,
    CaseCategory,
    CaseNote,
    CasePriority,
    CaseStatus,
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


def open_routing_case(visit, *, actor: Actor, subject: str, note: str) -> SupportCase:
    """Open a high-priority routing case about a visit the router ended by timeout (``clinical.hooks``)."""
    return open_case(
        subject=subject, category=CaseCategory.ROUTING, priority=CasePriority.HIGH, visit=visit, actor=actor, note=note
    )
