"""The console's search boxes, through the search backend (see ``OpsAdminMixin.get_search_results``).

A ModelAdmin opts in with ``search_document`` (and ``search_path`` when its rows are found
through a related record, e.g. licenses through their provider). The search narrows the
changelist's own queryset, so list filters and permissions still apply; rows are unique (no
joins, so no DISTINCT) and come in relevance order unless the user sorts by a column.
"""

import functools

from django.conf import settings
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ORDER_VAR, ChangeList
from django.db.models import Count, Value, Window
from django.urls import get_script_prefix, get_urlconf, reverse
from django.utils.functional import cached_property

from core.access import record_access
from core.pagination import EstimatedCountPaginator
from search import selectors
from search.backends import first_rows, name_rank, patient_names, patients_named
from search.query import parse


def change_url_around_key(opts, site_name: str) -> tuple[str, str]:
    """Return the admin site's change URL of the ``opts`` model's record whose key is 0, split around the key.

    ``reverse()`` costs more than the rest of a link's cell: this one is reversed once per model,
    site, URL configuration and script prefix (what ``reverse()`` reads).
    """
    urlconf = get_urlconf() or settings.ROOT_URLCONF
    return _around_key(f"admin:{opts.app_label}_{opts.model_name}_change", site_name, urlconf, get_script_prefix())


@functools.lru_cache(maxsize=256)
def _around_key(name: str, site_name: str, urlconf: str, prefix: str) -> tuple[str, str]:
    before, _, after = reverse(name, args=(0,), current_app=site_name).rpartition("/0/")
    return f"{before}/", f"/{after}"


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
    """The console's paginator for searches.

    A visit search's page reads only the rows that can fill it (``first_rows``). Any other
    search ranks every match to show its first page, so that query counts them too (a window
    over the same rows) and the count does not look for the matches a second time: at a million
    patients, finding the 3,584 Smiths is 22 ms of the 52 ms their first page takes.
    """

    counted_rows = None  # the first page's rows when read with the count (then every match if they fit)
    names = None  # a patient name search's names, best first, with their patients' count

    def first_rows(self, queryset, top: int):
        """Return the search narrowed to the rows that can be among its first ``top``, else None.

        A visit search's rows are those of its first people; a patient name search's those of its first names.
        """
        if self.names is not None:
            return patients_named(queryset, self.names, top)
        return first_rows(queryset, top)

    @cached_property
    def count(self) -> int:
        """Return the number of matches: with the first page when the search ranks them all.

        A patient name search counts from its names (their patients' count, kept by triggers).
        """
        queryset = self.object_list
        by_names = name_rank(queryset)
        if by_names is not None:
            self.names = patient_names(by_names.people, using=queryset.db)
            return sum(patients for _, _, patients, _ in self.names)
        score = queryset.query.annotations.get("search_score") if hasattr(queryset, "query") else None
        # A constant score ranks nothing (a case search by subject words reads its list's index
        # until the page is full), and a visit search's page reads only the rows that fill it.
        ranked = score is not None and not isinstance(score, Value) and not queryset.query.distinct
        if not ranked or self.first_rows(queryset, self.per_page) is not None:
            return super().count
        self.counted_rows = list(queryset.annotate(search_total=Window(Count("pk")))[: self.per_page + self.orphans])
        return self.counted_rows[0].search_total if self.counted_rows else 0

    def page(self, number):
        """Return the page; the first one as read with the count."""
        number = self.validate_number(number)
        if number == 1 and self.counted_rows is not None:
            top = self.per_page if self.per_page + self.orphans < self.count else self.count
            return self._get_page(self.counted_rows[:top], number, self)
        return super().page(number)

    @property
    def narrowed_by_key(self) -> bool:
        """Return False for a patient name search: the patient row carries all it shows (one query)."""
        return self.names is None


class LateRowsPaginator(SearchPaginator):
    """The console's paginator for a list whose page is cheaper read by key: its keys, then its rows."""

    late_rows = True


class SearchChangeList(ChangeList):
    """A changelist that records each search together with the rows it showed.

    Its rows link to their change pages with the list's filters and search carried along, as
    Django's do, but the link is worked out once for the page: Django reverses each row's URL
    and then resolves it again to learn that it is not the changelist's (``add_preserved_filters``),
    130 µs a row, a third of a provider row's rendering. ``row_filters`` holds the query
    string every row's link carries (the admin's ``get_preserved_filters``); ``preserved_filters``
    is left empty, so the template tag has nothing left to add.
    """

    def __init__(self, request, *args, **kwargs):
        """Build the changelist; work out the query string its rows' links carry."""
        super().__init__(request, *args, **kwargs)
        self.row_filters, self.preserved_filters = self.preserved_filters, ""

    def url_for_result(self, result):
        """Return the row's change URL with the list's filters: one ``reverse()`` a page for integer keys."""
        pk = getattr(result, self.pk_attname)
        if isinstance(pk, int):  # the key as Django's quote() and reverse() would write it: its digits
            before, after = change_url_around_key(self.opts, self.model_admin.admin_site.name)
            url = f"{before}{pk}{after}"
        else:
            url = super().url_for_result(result)
        return f"{url}?{self.row_filters}" if self.row_filters else url

    def get_filters_params(self, params=None):
        """Return the filter parameters; refuse a value with a NUL character as a bad filter (``?e=1``)."""
        lookups = super().get_filters_params(params)
        # PostgreSQL refuses NUL in a text parameter: the query would fail as a 500 when the page runs it.
        if any("\x00" in value for values in lookups.values() for value in values):
            raise IncorrectLookupParameters("A filter value cannot contain a NUL character.")
        return lookups

    def get_results(self, request):
        """Load the page; record a search together with the rows it showed.

        A list that shows no rows offers no actions: there is nothing to select. (Django offers
        them whenever it does not count the whole table, ``show_full_result_count`` off.)
        """
        super().get_results(request)
        self.show_admin_actions = self.show_admin_actions and self.result_count > 0
        first_page = getattr(self.paginator, "counted_rows", None)
        if first_page is not None and not self.multi_page:
            self.result_list = first_page  # every match, read with the count: not read again
        if self.query.strip() and getattr(self.model_admin, "search_document", None):  # whatever the method
            shown = list(self.result_list)  # evaluated once: the template reuses these rows
            record_access(request, kind="search", model=self.model, records=shown, terms=self.query, source="list")
