"""Reads of PHI are recorded here, and only here: one ``AccessLog`` row per request.

Views, changelists, searches, exports and API reads all call ``record_access``. It writes one
row whatever the number of records shown (ids in an array), and reads nothing from the
database: patient ids come from the records already loaded. The dashboard's recent actions,
which name records through the admin log, record through ``ops_console.access``.
"""

import re
from collections.abc import Iterable

from django.db.models import Model

from core.client_ip import client_ip
from core.models import AccessLog

# Records whose every read the log keeps when a page names them without loading them (the
# dashboard's recent actions, a related-object link): patients, and visits (each names its
# patient). Pages that load records choose for themselves with ``phi_access``.
PHI_LABELS = ("clinical.patient", "clinical.visit")


def record_access(request, **fields) -> AccessLog:
    """Record that the requester (staff user or API client) read ``records`` of ``model``, or searched ``terms``.

    ``fields`` are ``access_row``'s: ``kind``, and ``model``, ``records``, ``terms``, ``source``, ``detail``.
    """
    row = access_row(request, **fields)
    row.save(force_insert=True)
    return row


def access_row(
    request,
    *,
    kind: str,
    model: type[Model] | None = None,
    records: Iterable[Model] = (),
    terms: str = "",
    source: str = "",
    detail: str = "",
) -> AccessLog:
    """Return the (unsaved) access log row ``record_access`` writes: for writers that insert rows in batches."""
    records = list(records)
    return AccessLog(
        kind=kind,
        model=model._meta.label_lower if model is not None else "",
        object_ids=[_label(obj, model) for obj in records],
        patient_ids=sorted({pk for pk in map(_patient_id, records) if pk is not None}),
        terms=storable_text(terms, 200),
        source=source[:60],
        detail=storable_text(detail, 200),
        **_requester(request),
    )


def _requester(request) -> dict:
    user = getattr(request, "user", None)
    return {
        "user": user if user is not None and user.is_authenticated else None,
        "api_client": getattr(request, "api_client", None),
        "path": storable_text(request.path, 500),
        "method": request.method[:10],
        "ip": client_ip(request) or None,
        "user_agent": storable_text(request.META.get("HTTP_USER_AGENT", ""), 500),
        "request_id": getattr(request, "request_id", ""),  # core.request_id; none on a request built in a test
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


def record_id(value) -> int | None:
    """Return ``value`` (from a URL) as a database id, or None if it cannot be one.

    ``str.isdigit`` is not enough: it accepts "²" (which ``int`` refuses) and numbers past
    PostgreSQL's bigint (which the database refuses), both a 500 instead of "no such record".
    """
    text = str(value)
    return int(text) if re.fullmatch(r"[0-9]{1,18}", text) else None
