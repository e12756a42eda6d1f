"""Reads of PHI are recorded here, and only here: one ``AccessLog`` row per request.

Views, changelists, searches, exports and API reads all call ``record_access``. It writes one
row whatever the number of records shown (ids in an array), and reads nothing from the
database: patient ids come from the records already loaded. Pages that name records through
the admin log (the dashboard's recent actions) call ``record_log_entries``, which reads the
patients of the visits named in one query.
"""

from collections.abc import Iterable

from django.contrib.admin.models import LogEntry
from django.db.models import Model

from core.client_ip import client_ip
from support.models import AccessLog
from support.selectors import record_id

# Records the admin log (the dashboard's recent actions) names that the log keeps: patients, and
# visits (each names its patient). Pages choose for themselves with ``phi_access``.
PHI_LABELS = ("clinical.patient", "clinical.visit")


def record_access(
    request,
    *,
    kind: str,
    model: type[Model] | None = None,
    records: Iterable[Model] = (),
    terms: str = "",
    source: str = "",
    detail: str = "",
) -> AccessLog:
    """Record that the requester (staff user or API client) read ``records`` of ``model``, or searched ``terms``."""
    records = list(records)
    return AccessLog.objects.create(
        kind=kind,
        model=model._meta.label_lower if model is not None else "",
        object_ids=[_label(obj, model) for obj in records],
        patient_ids=sorted({pk for pk in map(_patient_id, records) if pk is not None}),
        terms=storable_text(terms, 200),
        source=source[:60],
        detail=storable_text(detail, 200),
        **_requester(request),
    )


def record_log_entries(request, entries: Iterable[LogEntry], *, source: str) -> AccessLog | None:
    """Record the patients and visits that admin log entries shown name (one row), if they name any."""
    named = _phi_named(entries)
    if not named:
        return None
    return record_access(request, kind=AccessLog.Kind.LIST, records=_phi_records(named), source=source)


def _phi_named(entries: Iterable[LogEntry]) -> list[tuple[str, int]]:
    # (label, pk) of each patient and visit named, once each, in the order shown.
    named = (
        (f"{entry.content_type.app_label}.{entry.content_type.model}", record_id(entry.object_id))
        for entry in entries
        if entry.content_type is not None
    )
    return list(dict.fromkeys((label, pk) for label, pk in named if label in PHI_LABELS and pk is not None))


def _phi_records(named: list[tuple[str, int]]) -> list[Model]:
    from clinical.models import Patient, Visit

    visit_ids = [pk for label, pk in named if label == "clinical.visit"]
    # A visit's log entry does not say whose it is: its row does, read for all of them at once.
    visits = Visit.objects.filter(pk__in=visit_ids).only("id", "patient_id").in_bulk() if visit_ids else {}
    return [Patient(pk=pk) if label == "clinical.patient" else visits.get(pk, Visit(pk=pk)) for label, pk in named]


def _requester(request) -> dict:
    user = getattr(request, "user", None)
    return {
        "user": user if user is not None and user.is_authenticated else None,
        "api_client": getattr(request, "api_client", None),
        "path": storable_text(request.path, 500),
        "method": request.method[:10],
        "ip": client_ip(request) or None,
        "user_agent": storable_text(request.META.get("HTTP_USER_AGENT", ""), 500),
    }


def storable_text(value: str, limit: int) -> str:
    """Return what a client sent, as PostgreSQL can store it: without NULs (they would fail the write), clipped."""
    return value.replace("\x00", "")[:limit]


def _label(obj: Model, model: type[Model] | None) -> str:
    # Records of the logged model by pk alone; mixed results (global search) as "app.model:pk".
    return str(obj.pk) if type(obj) is model else f"{obj._meta.label_lower}:{obj.pk}"


def _patient_id(obj: Model) -> int | None:
    # Read from the loaded row only (never a deferred field: that would be a query per row):
    # the record's own patient, or its joined visit's (a visit event's).
    if obj._meta.label_lower == "clinical.patient":
        return obj.pk
    if "patient_id" in obj.__dict__:
        return obj.__dict__["patient_id"]
    visit = obj._state.fields_cache.get("visit")
    return visit.__dict__.get("patient_id") if visit is not None else None
