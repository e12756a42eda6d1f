"""Reads of the support domain, with their joins applied."""

import re

from django.db.models import Count, Max, QuerySet

from support.models import OPEN_CASE_STATUSES, AccessLog, CaseNote, SecurityEvent, SupportCase


def cases_for_list() -> QuerySet[SupportCase]:
    """Return cases with patient, visit, assignee and creator joined."""
    return SupportCase.objects.select_related("patient", "visit", "assignee", "created_by")


def case_notes(case: SupportCase) -> QuerySet[CaseNote]:
    """Return a case's notes in order with their authors."""
    return CaseNote.objects.filter(case=case).select_related("author").order_by("created_at", "id")


def open_case_count() -> int:
    """Return how many cases are open or pending."""
    return SupportCase.objects.filter(status__in=OPEN_CASE_STATUSES).count()


def security_events_for_list() -> QuerySet[SecurityEvent]:
    """Return security events with the user joined."""
    return SecurityEvent.objects.select_related("user")


def access_log_for_list() -> QuerySet[AccessLog]:
    """Return access log rows with the user and API client joined."""
    return AccessLog.objects.select_related("user", "api_client")


def patient_readers(model, object_id) -> QuerySet:
    """Return the staff who read a patient's records (page, list, search, export), latest first, one row each."""
    patient_id = record_id(object_id)
    if model._meta.label_lower != "clinical.patient" or patient_id is None:
        return AccessLog.objects.none()
    return (
        AccessLog.objects.filter(patient_ids__contains=[patient_id], user__isnull=False)
        .values("user__username")
        .annotate(last_read=Max("at"), reads=Count("id"))
        .order_by("-last_read")[:50]
    )


def record_id(value) -> int | None:
    """Return ``value`` (from a URL) as a database id, or None if it cannot be one.

    ``str.isdigit`` is not enough: it accepts "²" (which ``int`` refuses) and numbers past
    PostgreSQL's bigint (which the database refuses), both a 500 instead of "no such record".
    """
    text = str(value)
    return int(text) if re.fullmatch(r"[0-9]{1,18}", text) else None
