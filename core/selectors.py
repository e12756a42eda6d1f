"""Reads of the base layer's records (security events, the PHI access log), with their joins applied."""

from django.db.models import Count, Max, QuerySet

from core.access import record_id
from core.models import AccessLog, SecurityEvent


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
