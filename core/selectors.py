"""Reads of the base layer's records (security events, the PHI access log), with their joins applied."""

from django.db.models import F, QuerySet

from core.access import record_id
from core.models import AccessLog, PatientReader, SecurityEvent


def security_events_for_list() -> QuerySet[SecurityEvent]:
    """Return security events with the user joined."""
    return SecurityEvent.objects.select_related("user")


def access_log_for_list() -> QuerySet[AccessLog]:
    """Return access log rows with the user and API client joined."""
    return AccessLog.objects.select_related("user", "api_client")


def patient_readers(model, object_id) -> QuerySet:
    """Return the staff who read a patient's records (page, list, search, export), latest first, at most 50.

    From the log's summary (``PatientReader``, one row per reader, kept by PostgreSQL): as many
    rows as the staff who ever read the patient, however many times they did.
    """
    patient_id = record_id(object_id)
    if model._meta.label_lower != "clinical.patient" or patient_id is None:
        return PatientReader.objects.none()
    return (
        PatientReader.objects.filter(patient_id=patient_id)
        .order_by("-last_read_at", "user_id")
        .values("user__username", "reads", last_read=F("last_read_at"))[:50]
    )
