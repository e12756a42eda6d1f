"""Reads of PHI are recorded here, and only here: one ``AccessLog`` row per request.

Views, changelists, searches, exports and API reads all call ``record_access``. It writes one
row whatever the number of records shown (ids in an array), and reads nothing from the
database: patient ids come from the records already loaded.
"""

from collections.abc import Iterable

from django.db.models import Model

from support.models import AccessLog


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
        terms=terms[:200],
        source=source[:60],
        detail=detail[:200],
        **_requester(request),
    )


def _requester(request) -> dict:
    user = getattr(request, "user", None)
    return {
        "user": user if user is not None and user.is_authenticated else None,
        "api_client": getattr(request, "api_client", None),
        "path": request.path[:500],
        "method": request.method[:10],
        "ip": request.META.get("REMOTE_ADDR") or None,
        "user_agent": request.META.get("HTTP_USER_AGENT", "")[:500],
    }


def _label(obj: Model, model: type[Model] | None) -> str:
    # Records of the logged model by pk alone; mixed results (global search) as "app.model:pk".
    return str(obj.pk) if type(obj) is model else f"{obj._meta.label_lower}:{obj.pk}"


def _patient_id(obj: Model) -> int | None:
    # Read from the loaded row only (never a deferred field: that would be a query per row).
    if obj._meta.label_lower == "clinical.patient":
        return obj.pk
    return obj.__dict__.get("patient_id")
