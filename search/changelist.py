"""The console's search boxes, through the search backend (see ``OpsAdminMixin.get_search_results``).

A ModelAdmin opts in with ``search_document`` (and ``search_path`` when its rows are found
through a related record, e.g. licenses through their provider). The search narrows the
changelist's own queryset, so list filters and permissions still apply; rows are unique (no
joins, so no DISTINCT) and come in relevance order unless the user sorts by a column.
"""

from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ORDER_VAR, ChangeList

from core.access import record_access
from core.pagination import EstimatedCountPaginator
from search import selectors
from search.backends import first_rows
from search.query import parse


def search_results(model_admin, request, queryset, term: str):
    """Return ``(queryset, may_have_duplicates)`` for the admin's search box and autocomplete."""
    found = selectors.search(
        queryset, parse(term), document=model_admin.search_document, path=model_admin.search_path or ""
    )
    if ORDER_VAR in request.GET:
        # The changelist orders before it searches: keep the column the user sorted by.
        found = found.order_by(*queryset.query.order_by, "-search_score")
    return found, False


class SearchPaginator(EstimatedCountPaginator):
    """The console's paginator: a search page reads only the rows that can fill it (``first_rows``)."""

    def first_rows(self, queryset, top: int):
        """Return the visit search narrowed to the rows that can be among its first ``top``, else None."""
        return first_rows(queryset, top)


class SearchChangeList(ChangeList):
    """A changelist that records each search together with the rows it showed."""

    def get_filters_params(self, params=None):
        """Return the filter parameters; refuse a value with a NUL character as a bad filter (``?e=1``)."""
        lookups = super().get_filters_params(params)
        # PostgreSQL refuses NUL in a text parameter: the query would fail as a 500 when the page runs it.
        if any("\x00" in value for values in lookups.values() for value in values):
            raise IncorrectLookupParameters("A filter value cannot contain a NUL character.")
        return lookups

    def get_results(self, request):
        """Load the page; record a search together with the rows it showed."""
        super().get_results(request)
        if self.query.strip() and getattr(self.model_admin, "search_document", None):  # whatever the method
            shown = list(self.result_list)  # evaluated once: the template reuses these rows
            record_access(request, kind="search", model=self.model, records=shown, terms=self.query, source="list")
