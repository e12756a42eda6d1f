"""Changelist paginator that estimates large counts instead of scanning with ``COUNT(*)``.

Unfiltered lists take the row count PostgreSQL keeps in its statistics (``pg_class.reltuples``);
filtered ones take the planner's row estimate for the query (``EXPLAIN``). When either says
fewer than ``EXACT_BELOW`` rows, the exact count is cheap and is used instead, up to that many
rows (an estimate far too low shows as "at least"). Pages show an estimated count as approximate.
"""

import json

from django.core.exceptions import EmptyResultSet
from django.core.paginator import Paginator
from django.db import connections
from django.utils.functional import cached_property

EXACT_BELOW = 20_000


DEEP_OFFSET = 5_000


class EstimatedCountPaginator(Paginator):
    """A Paginator whose ``count`` may be an estimate (then ``is_estimate`` is True).

    Deep pages look their rows up late: first the page's primary keys (an index-only walk past
    the offset), then the rows with their joins for those keys alone, instead of joining every
    skipped row.
    """

    is_estimate = False
    # The count is the first EXACT_BELOW matches, and there are more: the planner's estimate said
    # fewer (a prefix word's matches, say), and counting them all would read every one of them.
    is_lower_bound = False
    # Look every page's rows up late, not only deep ones: for a list whose filters read many rows
    # and whose joins would then join them all (the license expiry filter joined every provider
    # to sort 1,137 licenses for a page of 50; its keys first, then 50 rows with their joins).
    late_rows = False
    # Read the rows ``first_rows`` narrows to by key too (their keys, then their rows with the
    # list's joins); a subclass whose narrowed rows carry all they show reads them at once.
    narrowed_by_key = True

    def page(self, number):
        """Return the page: its rows through ``first_rows`` when that narrows them, late when deep."""
        if not hasattr(self.object_list, "values_list"):
            return super().page(number)
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        top = bottom + self.per_page
        if top + self.orphans >= self.count:
            top = self.count
        narrowed = self.first_rows(self.object_list, top)
        if narrowed is not None and not self.narrowed_by_key:
            return self._get_page(narrowed[bottom:top], number, self)
        if narrowed is not None:  # the page's keys among the few rows that can fill it, then their rows
            return self._get_page(_late_lookup(narrowed, bottom, top, joined=self.object_list), number, self)
        if bottom >= DEEP_OFFSET or self.late_rows:
            return self._get_page(_late_lookup(self.object_list, bottom, top, joined=self.object_list), number, self)
        return self._get_page(self.object_list[bottom:top], number, self)

    def first_rows(self, queryset, top: int):
        """Return ``queryset`` narrowed to rows that can be among its first ``top``, or None (a hook)."""
        return None

    @cached_property
    def count(self) -> int:
        """Return the row count: exact when small, else PostgreSQL's estimate (``is_estimate``).

        The exact count stops at ``EXACT_BELOW`` rows: when the planner's estimate was far too
        low, the list says "at least" that many (``is_lower_bound``) instead of counting a number
        of rows that grows with the table.
        """
        estimate = estimated_count(self.object_list)
        if estimate is None:
            return self.object_list.count()
        if estimate < EXACT_BELOW:
            counted = self.object_list.order_by()[:EXACT_BELOW].count()
            self.is_lower_bound = counted >= EXACT_BELOW
            return counted
        self.is_estimate = True
        return estimate


def estimated_count(queryset) -> int | None:
    """Return PostgreSQL's estimate of the queryset's row count, or None if it cannot say."""
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        return None
    if not queryset.query.where and not queryset.query.distinct:
        return _table_estimate(connection, queryset.model._meta.db_table)
    try:
        sql, params = queryset.order_by().values("pk").query.sql_with_params()
    except EmptyResultSet:  # e.g. a search that matched nothing: pk IN ()
        return 0
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return int(plan[0]["Plan"]["Plan Rows"])


def _table_estimate(connection, table: str) -> int | None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [table])
        row = cursor.fetchone()
    # -1 means "never analyzed": fall back to the exact count.
    return None if row is None or row[0] < 0 else int(row[0])


def _late_lookup(queryset, bottom: int, top: int, *, joined) -> list:
    """Return rows ``bottom`` to ``top`` of ``queryset``, read with ``joined``'s joins by their keys."""
    ids = list(queryset.values_list("pk", flat=True)[bottom:top])
    rows = {row.pk: row for row in joined.filter(pk__in=ids).order_by()}
    return [rows[pk] for pk in ids if pk in rows]
