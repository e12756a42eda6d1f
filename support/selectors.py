"""Reads of the support domain, with their joins applied."""

from django.db.models import QuerySet

from support.models import OPEN_CASE_STATUSES, CaseNote, SupportCase


def cases_for_list() -> QuerySet[SupportCase]:
    """Return cases with patient, visit, assignee and creator joined."""
    return SupportCase.objects.select_related("patient", "visit", "assignee", "created_by")


def case_notes(case: SupportCase) -> QuerySet[CaseNote]:
    """Return a case's notes in order with their authors."""
    return CaseNote.objects.filter(case=case).select_related("author").order_by("created_at", "id")


def open_case_count() -> int:
    """Return how many cases are open or pending."""
    return SupportCase.objects.filter(status__in=OPEN_CASE_STATUSES).count()
