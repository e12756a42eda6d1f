"""Patients: their records and MRNs."""

from django.db import connection, transaction

from clinical.models import (
    Patient,
)
from clinical.validators import format_mrn
from core import outbox
from core.audit import Actor, stamp
from core.errors import full_clean_or_raise as _full_clean


def next_mrn() -> str:
    """Return a new MRN from the database sequence (never reused, even after a rollback)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT nextval('clinical_patient_mrn_seq')")
        return format_mrn(cursor.fetchone()[0])


@transaction.atomic
def save_patient(patient: Patient, *, actor: Actor, reason: str = "") -> Patient:
    """Validate and save a new or changed patient, assigning an MRN to a new one."""
    creating = patient.pk is None
    if creating and not patient.mrn:
        patient.mrn = next_mrn()
    _full_clean(patient)
    stamp(patient, actor, reason or ("registered" if creating else "edited"))
    patient.save()
    outbox.record_instance(patient, embedded=True)
    return patient
