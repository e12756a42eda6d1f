"""Demo support cases and their notes."""

import datetime as dt
from dataclasses import dataclass, field

from clinical.models import (
    Patient,
    Visit,
    VisitEvent,
)
from devtools import sampling
from devtools.seed.records import S, SeedContext, bulk, bulk_with_history
from devtools.seed.visits import HISTORY_DAYS
from support.models import CaseCategory, CaseNote, CasePriority, CaseStatus, SupportCase

OTHER_CATEGORY_MIX = {
    CaseCategory.VISIT_PROBLEM: 30,
    CaseCategory.BILLING: 30,
    CaseCategory.CLINICAL: 15,
    CaseCategory.PRIVACY: 12,
    CaseCategory.OTHER: 13,
}
ABOUT_A_VISIT = (CaseCategory.VISIT_PROBLEM, CaseCategory.BILLING, CaseCategory.CLINICAL)
CASE_PRIORITY_MIX = {
    CaseCategory.ROUTING: {CasePriority.NORMAL: 70, CasePriority.HIGH: 30},
    CaseCategory.TECHNICAL: {CasePriority.NORMAL: 80, CasePriority.HIGH: 20},
    CaseCategory.CLINICAL: {CasePriority.HIGH: 60, CasePriority.URGENT: 40},
}
RECENT_CASE_STATUS_MIX = {CaseStatus.OPEN: 60, CaseStatus.PENDING: 25, CaseStatus.RESOLVED: 15}
OLDER_CASE_STATUS_MIX = {CaseStatus.OPEN: 12, CaseStatus.PENDING: 13, CaseStatus.RESOLVED: 40, CaseStatus.CLOSED: 35}


@dataclass
class _CaseDraft:
    case: SupportCase
    system_note: str = ""
    notes: list[CaseNote] = field(default_factory=list)


def seed_support_cases(ctx: SeedContext, wanted: int) -> tuple[int, int]:
    """Create the missing support cases: expired and failed visits, other topics; return cases, notes."""
    missing = wanted - SupportCase.objects.count()
    if missing <= 0:
        return 0, 0
    drafts = _case_drafts(ctx, missing)
    for draft in drafts:
        draft.notes = _case_notes(ctx, draft)
    bulk_with_history([draft.case for draft in drafts], at=lambda case: case.created_at)
    notes = [note for draft in drafts for note in draft.notes]
    bulk(CaseNote, notes)
    return len(drafts), len(notes)


def _visits_without_case(status: str) -> list[tuple]:
    return list(
        Visit.objects.filter(status=status, support_cases__isnull=True)
        .order_by("pk")
        .values_list("pk", "public_id", "patient_id", "located_state", "requested_at", "ended_at")
    )


def _case_drafts(ctx: SeedContext, count: int) -> list[_CaseDraft]:
    """Return about a third about expired visits, a quarter about failed ones, the rest on other topics."""
    rng = ctx.rng
    expired, failed = _visits_without_case(S.EXPIRED), _visits_without_case(S.FAILED)
    routing = rng.sample(expired, min(len(expired), round(count * 0.35)))
    technical = rng.sample(failed, min(len(failed), round(count * 0.25)))
    failures = dict(
        VisitEvent.objects.filter(visit_id__in=[row[0] for row in technical], to_status=S.FAILED).values_list(
            "visit_id", "detail"
        )
    )
    drafts = [_visit_case(ctx, row, CaseCategory.ROUTING) for row in routing]
    drafts += [_visit_case(ctx, row, CaseCategory.TECHNICAL, failures.get(row[0], "")) for row in technical]
    completed = _visits_without_case(S.COMPLETED)
    patients = list(Patient.objects.order_by("pk").values_list("pk", "state"))
    drafts += [_other_case(ctx, completed, patients) for _ in range(count - len(drafts))]
    return drafts


def _visit_case(ctx: SeedContext, row: tuple, category: str, failure: str = "") -> _CaseDraft:
    """Return a case about an expired (routing) or failed (technical) visit, often opened by the system."""
    rng = ctx.rng
    visit_id, public_id, patient_id, state, requested_at, ended_at = row
    by_system = rng.random() < 0.6
    latest = ended_at + (dt.timedelta(minutes=5) if by_system else dt.timedelta(days=2))
    opened_at = sampling.between(rng, ended_at, min(ctx.now, latest))
    draft = _CaseDraft(_new_case(ctx, category, opened_at, patient_id, visit_id, state, by_system=by_system))
    if by_system:
        minutes = round((ended_at - requested_at).total_seconds() / 60)
        template = sampling.people()["system_case_notes"][category]
        draft.system_note = template.format(visit=public_id, minutes=minutes, state=state, detail=failure)
    return draft


def _other_case(ctx: SeedContext, completed: list[tuple], patients: list[tuple]) -> _CaseDraft:
    rng = ctx.rng
    category = sampling.weighted(rng, OTHER_CATEGORY_MIX)
    if category in ABOUT_A_VISIT and completed:
        visit_id, _, patient_id, state, _, ended_at = rng.choice(completed)
        opened_at = sampling.between(rng, ended_at, min(ctx.now, ended_at + dt.timedelta(days=3)))
    else:
        (patient_id, state), visit_id = rng.choice(patients), None
        opened_at = ctx.now - sampling.days(rng, 0, HISTORY_DAYS)
    return _CaseDraft(_new_case(ctx, category, opened_at, patient_id, visit_id, state or "your state"))


def _new_case(ctx: SeedContext, category, opened_at, patient_id, visit_id, state, *, by_system=False) -> SupportCase:
    rng, users = ctx.rng, ctx.users
    age = ctx.now - opened_at
    status = sampling.weighted(rng, RECENT_CASE_STATUS_MIX if age < dt.timedelta(days=1) else OLDER_CASE_STATUS_MIX)
    resolved_at = None
    if status in (CaseStatus.RESOLVED, CaseStatus.CLOSED):
        resolved_at = sampling.between(rng, opened_at, opened_at + min(age, dt.timedelta(days=5)))
    if status == CaseStatus.OPEN:
        assignee = users["support"] if rng.random() < 0.5 else None
    else:
        assignee = sampling.weighted(rng, {users["support"]: 80, users["lead"]: 10, None: 10})
    return SupportCase(
        subject=rng.choice(sampling.people()["support_case_subjects"][category]).format(state=state),
        category=category,
        status=status,
        priority=sampling.weighted(
            rng, CASE_PRIORITY_MIX.get(category, {CasePriority.LOW: 30, CasePriority.NORMAL: 70})
        ),
        patient_id=patient_id,
        visit_id=visit_id,
        assignee=assignee,
        created_by=None if by_system else users["support"],
        created_at=opened_at,
        resolved_at=resolved_at,
    )


def _case_notes(ctx: SeedContext, draft: _CaseDraft) -> list[CaseNote]:
    """Return 1-3 notes, in order, between the case's opening and its resolution (or now)."""
    rng, case = ctx.rng, draft.case
    usual = sampling.people()["case_notes"][case.category]
    bodies = [usual[i] for i in sorted(rng.sample(range(len(usual)), rng.randint(1, 3)))]
    if draft.system_note:
        bodies = [draft.system_note, *bodies[:2]]
    last = case.resolved_at or ctx.now
    times = sorted(case.created_at + (last - case.created_at) * rng.random() for _ in bodies[1:])
    author = case.assignee or ctx.users["support"]
    notes = [
        CaseNote(case=case, author=None if draft.system_note else author, body=bodies[0], created_at=case.created_at)
    ]
    notes += [
        CaseNote(case=case, author=author, body=body, created_at=at) for body, at in zip(bodies[1:], times, strict=True)
    ]
    return notes
