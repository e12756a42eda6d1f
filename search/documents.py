"""The searchable documents: their Elasticsearch mappings and how each is built from PostgreSQL.

Four documents, one index each (behind an alias, see ``search.indexer``): patients, providers
with their licenses, visits with their patient's and provider's names, and support cases.
A document is always rebuilt from the row as it is now; ``content_hash`` lets ``search_index
--check`` tell an outdated document from a current one.
"""

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass

from django.apps import apps
from django.conf import settings
from django.db.models import Model, Prefetch, QuerySet
from elasticsearch_dsl import (
    Boolean,
    Date,
    Document,
    Keyword,
    Long,
    SearchAsYouType,
    Text,
    analyzer,
    char_filter,
    normalizer,
)

from clinical.models import Patient, Provider, ProviderLicense, Visit
from search.query import license_key

# --- analysis: names forgive case and accents; identifiers compare as people read them ---------

person_name = analyzer("person_name", tokenizer="standard", filter=["lowercase", "asciifolding"])
lowercase = normalizer("lowercase", filter=["lowercase"])
# MRNs, NPIs, license numbers and visit ids match with or without dashes and spaces, in any case.
identifier = normalizer(
    "identifier",
    char_filter=[char_filter("alnum_only", "pattern_replace", pattern="[^A-Za-z0-9]", replacement="")],
    filter=["uppercase"],
)
# Phone numbers compare as their E.164 digits: +1 (415) 555-1234 and 14155551234 are one number.
phone_digits = normalizer(
    "phone_digits", char_filter=[char_filter("digits_only", "pattern_replace", pattern="[^0-9]", replacement="")]
)
DATE_FORMATS = "yyyy-MM-dd||MM/dd/yyyy||M/d/yyyy"
INDEX_SETTINGS = {"number_of_shards": 1, "number_of_replicas": 0, "max_result_window": 10_000}


def Name() -> SearchAsYouType:  # noqa: N802 (a field factory, named like the field classes)
    """Return a person-name field: fuzzy full words plus search-as-you-type prefixes."""
    return SearchAsYouType(analyzer=person_name)


class PatientDocument(Document):
    id = Long()
    name = Name()
    mrn = Keyword(normalizer=identifier)
    phone = Keyword(normalizer=phone_digits)
    email = Keyword(normalizer=lowercase)
    date_of_birth = Date(format=DATE_FORMATS)
    state = Keyword()
    content_hash = Keyword(index=False)

    class Index:
        name = "patients"
        settings = INDEX_SETTINGS


class ProviderDocument(Document):
    id = Long()
    name = Name()
    npi = Keyword(normalizer=identifier)
    phone = Keyword(normalizer=phone_digits)
    email = Keyword(normalizer=lowercase)
    specialty = Keyword()
    is_active = Boolean()
    availability = Keyword()
    license_numbers = Keyword(normalizer=identifier)
    license_states = Keyword()
    content_hash = Keyword(index=False)

    class Index:
        name = "providers"
        settings = INDEX_SETTINGS


class VisitDocument(Document):
    id = Long()
    public_id = Keyword(normalizer=identifier)
    status = Keyword()
    located_state = Keyword()
    requested_at = Date()
    patient_id = Long()
    patient_name = Name()
    patient_mrn = Keyword(normalizer=identifier)
    patient_phone = Keyword(normalizer=phone_digits)
    patient_email = Keyword(normalizer=lowercase)
    patient_dob = Date(format=DATE_FORMATS)
    provider_id = Long()
    provider_name = Name()
    provider_npi = Keyword(normalizer=identifier)
    content_hash = Keyword(index=False)

    class Index:
        name = "visits"
        settings = INDEX_SETTINGS


class CaseDocument(Document):
    id = Long()
    subject = Text(analyzer="english")
    status = Keyword()
    category = Keyword()
    created_at = Date()
    patient_id = Long()
    patient_name = Name()
    patient_mrn = Keyword(normalizer=identifier)
    patient_phone = Keyword(normalizer=phone_digits)
    patient_email = Keyword(normalizer=lowercase)
    patient_dob = Date(format=DATE_FORMATS)
    visit_public_id = Keyword(normalizer=identifier)
    content_hash = Keyword(index=False)

    class Index:
        name = "cases"
        settings = INDEX_SETTINGS


# --- sources: the document of one row, as it is in PostgreSQL now ----------------------------


def _name(person) -> str:
    return f"{person.first_name} {person.last_name}" if person is not None else ""


def patient_source(patient: Patient) -> dict:
    """Return the patient's document."""
    return {
        "id": patient.pk, "name": _name(patient), "mrn": patient.mrn, "phone": patient.phone,
        "email": patient.email.lower(), "date_of_birth": patient.date_of_birth.isoformat(), "state": patient.state,
    }  # fmt: skip


def provider_source(provider: Provider) -> dict:
    """Return the provider's document, with the numbers and states of all their licenses."""
    licenses = list(provider.licenses.all())
    return {
        "id": provider.pk, "name": _name(provider), "npi": provider.npi, "phone": provider.phone,
        "email": provider.email.lower(), "specialty": provider.specialty, "is_active": provider.is_active,
        "availability": provider.availability,
        "license_numbers": sorted({license_key(lic.license_number) for lic in licenses}),
        "license_states": sorted({lic.state for lic in licenses}),
    }  # fmt: skip


def visit_source(visit: Visit) -> dict:
    """Return the visit's document, with its patient's and provider's names and identifiers."""
    patient, provider = visit.patient, visit.provider
    return {
        "id": visit.pk, "public_id": visit.public_id, "status": visit.status,
        "located_state": visit.located_state, "requested_at": visit.requested_at.isoformat(),
        "patient_id": patient.pk, "patient_name": _name(patient), "patient_mrn": patient.mrn,
        "patient_phone": patient.phone, "patient_email": patient.email.lower(),
        "patient_dob": patient.date_of_birth.isoformat(),
        "provider_id": visit.provider_id, "provider_name": _name(provider),
        "provider_npi": provider.npi if provider is not None else None,
    }  # fmt: skip


def case_source(case: Model) -> dict:
    """Return the support case's document, with its patient's name and identifiers and its visit's id."""
    patient = case.patient
    return {
        "id": case.pk, "subject": case.subject, "status": case.status, "category": case.category,
        "created_at": case.created_at.isoformat(), "patient_id": case.patient_id, "patient_name": _name(patient),
        "patient_mrn": patient.mrn if patient else None, "patient_phone": patient.phone if patient else None,
        "patient_email": patient.email.lower() if patient else None,
        "patient_dob": patient.date_of_birth.isoformat() if patient else None,
        "visit_public_id": case.visit.public_id if case.visit_id else None,
    }  # fmt: skip


@dataclass(frozen=True)
class DocumentType:
    """One searchable document: its model, index, source and the documents that embed it."""

    name: str  # "patient"
    label: str  # "clinical.patient"
    es_document: type[Document]
    rows: Callable[[], QuerySet]  # the rows with what their sources read joined
    source: Callable[[Model], dict]
    # Documents that copy fields of this one: (label, foreign key column) to re-index on a change.
    embedded_in: tuple[tuple[str, str], ...] = ()

    @property
    def model(self) -> type[Model]:
        return self.rows().model

    @property
    def alias(self) -> str:
        """Return the alias searches and the worker use, e.g. ``ops-patients``."""
        return f"{settings.SEARCH_INDEX_PREFIX}-{self.es_document._index._name}"

    def document(self, obj: Model) -> dict:
        """Return the row's document with its content hash."""
        source = self.source(obj)
        return {**source, "content_hash": content_hash(source)}


def content_hash(source: dict) -> str:
    """Return a short digest of a document's content, to spot outdated documents."""
    return hashlib.sha256(json.dumps(source, sort_keys=True, default=str).encode()).hexdigest()[:20]


def cases() -> QuerySet:
    """Return support cases, named by label like every document: search indexes them without importing support."""
    return apps.get_model("support", "SupportCase").objects.all()


def _providers() -> QuerySet:
    licenses = ProviderLicense.objects.only("provider_id", "state", "license_number").order_by("id")
    return Provider.objects.prefetch_related(Prefetch("licenses", licenses))


DOCUMENTS: dict[str, DocumentType] = {
    doc.name: doc
    for doc in (
        DocumentType(
            "patient", "clinical.patient", PatientDocument, Patient.objects.all, patient_source,
            embedded_in=(("clinical.visit", "patient_id"), ("support.supportcase", "patient_id")),
        ),
        DocumentType(
            "provider", "clinical.provider", ProviderDocument, _providers, provider_source,
            embedded_in=(("clinical.visit", "provider_id"),),
        ),
        DocumentType(
            "visit", "clinical.visit", VisitDocument, lambda: Visit.objects.select_related("patient", "provider"),
            visit_source,
        ),
        DocumentType(
            "case", "support.supportcase", CaseDocument,
            lambda: cases().select_related("patient", "visit"), case_source,
        ),
    )
}  # fmt: skip
BY_LABEL: dict[str, DocumentType] = {doc.label: doc for doc in DOCUMENTS.values()}
