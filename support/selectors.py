"""Reads of the support domain, with their joins applied."""

from django.db.models import F, QuerySet

from support.models import OPEN_CASE_STATUSES, CaseNote, SupportCase


def cases_with_opener() -> QuerySet[SupportCase]:
    """Return cases, each with ``opener_username``: the username of the staff member who opened it (or None).

    One column of one join, where ``select_related`` would read the user's every column (and keep
    the case list from joining what its own columns show).
    """
    return SupportCase.objects.annotate(opener_username=F("created_by__username"))


def case_notes(case: SupportCase) -> QuerySet[CaseNote]:
    """Return a case's notes in order with their authors."""
    return CaseNote.objects.filter(case=case).select_related("author").order_by("created_at", "id")


def open_case_count() -> int:
    """Return how many cases are open or pending."""
    return SupportCase.objects.filter(status__in=OPEN_CASE_STATUSES).count()
