"""The dashboard's recent actions name patients and visits through the admin log: recorded here.

The site reads the patients of the visits named (one query), then records one row through
``core.access.record_access`` like every other page.
"""

from collections.abc import Iterable

from django.contrib.admin.models import LogEntry
from django.db.models import Model

from clinical.models import Patient, Visit
from core.access import PHI_LABELS, record_access, record_id
from core.models import AccessLog


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
    visit_ids = [pk for label, pk in named if label == "clinical.visit"]
    # A visit's log entry does not say whose it is: its row does, read for all of them at once.
    visits = Visit.objects.filter(pk__in=visit_ids).only("id", "patient_id").in_bulk() if visit_ids else {}
    return [Patient(pk=pk) if label == "clinical.patient" else visits.get(pk, Visit(pk=pk)) for label, pk in named]
