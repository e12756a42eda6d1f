"""The global search page: patients, providers, visits and cases from one box, grouped by type."""

from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse

from core.access import record_access
from search import selectors
from search.query import parse

KIND_LABELS = {
    "name": "name", "phone": "phone", "email": "e-mail", "dob": "date of birth", "mrn": "MRN", "npi": "NPI",
    "license": "license number", "public_id": "visit id", "case_id": "case number",
}  # fmt: skip


def global_search(request, admin_site):
    """Render the best matches of each type the user may view, with the fields that matched."""
    if not selectors.visible_sections(request.user):
        raise PermissionDenied
    # PostgreSQL refuses NUL in a text parameter (the log's terms, the search's own); nobody types one.
    terms = request.GET.get("q", "").replace("\x00", "").strip()
    query = parse(terms)
    found = selectors.global_search(request.user, query) if terms else []
    if terms:
        shown = [obj for section in found for obj, _ in section.rows]
        record_access(request, kind="search", records=shown, terms=terms, source="global search")
    context = {
        **admin_site.each_context(request),
        "title": "Search",
        "terms": terms,
        "read_as": [KIND_LABELS[kind] for kind in query.kinds],
        "found": found,
        "any_found": any(section.rows for section in found),
    }
    return TemplateResponse(request, "search/global_search.html", context)
