"""Reads through the search backend: a changelist's rows, and the global search page's sections."""

from dataclasses import dataclass, field

from django.db.models import Prefetch, QuerySet

from clinical.models import Patient, Provider, ProviderLicense, Visit
from search.backends import first_of, get_backend
from search.documents import DOCUMENTS, cases
from search.explain import matched_fields
from search.query import SearchQuery


def search(
    queryset: QuerySet, query: SearchQuery, *, document: str, path: str = "", follow: int | None = None
) -> QuerySet:
    """Return the rows of ``queryset`` matching ``query``, most relevant first, then in their usual order."""
    found = get_backend().filter(queryset, query, document=DOCUMENTS[document], path=path, follow=follow)
    return found.order_by("-search_score", *(queryset.query.order_by or queryset.model._meta.ordering))


@dataclass(frozen=True)
class Section:
    """One type of record on the global search page."""

    document: str
    title: str
    permission: str
    rows: object  # () -> QuerySet, with what the page and ``matched_fields`` read joined

    @property
    def changelist(self) -> str:
        """Return the URL name of the changelist that lists every match."""
        return f"admin:{DOCUMENTS[self.document].label.replace('.', '_')}_changelist"


def _providers() -> QuerySet:
    licenses = ProviderLicense.objects.only("provider_id", "license_number").order_by("id")
    return Provider.objects.prefetch_related(Prefetch("licenses", licenses))


SECTIONS = (
    Section("patient", "Patients", "clinical.view_patient", Patient.objects.all),
    Section("provider", "Providers", "clinical.view_provider", _providers),
    Section("visit", "Visits", "clinical.view_visit", lambda: Visit.objects.select_related("patient", "provider")),
    Section("case", "Support cases", "support.view_supportcase",
            lambda: cases().select_related("patient", "visit")),
)  # fmt: skip


@dataclass
class Found:
    """The rows of one section, each with the fields that matched."""

    section: Section
    rows: list = field(default_factory=list)  # (obj, matched field labels)
    more: bool = False


def visible_sections(user) -> list[Section]:
    """Return the sections ``user`` may see."""
    return [section for section in SECTIONS if user.has_perm(section.permission)]


def global_search(user, query: SearchQuery, *, per_section: int = 10) -> list[Found]:
    """Return, per type of record the user may view, the best matches and why each matched."""
    results = []
    for section in visible_sections(user):
        # The first rows of visits and cases are those of the first few people found, a name's
        # patients those of its best names.
        matches = search(section.rows(), query, document=section.document, follow=per_section + 1)
        rows = list(first_of(matches, per_section + 1)[: per_section + 1])
        found = [(obj, matched_fields(section.document, obj, query)) for obj in rows[:per_section]]
        results.append(Found(section, found, more=len(rows) > per_section))
    return results
