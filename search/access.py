"""Searches are PHI access: every one is recorded, through ``record_search`` only.

One row per search (never one per result), written where the search ran. The access log of
the security work builds on this function; extend it here rather than logging elsewhere.
"""

from collections.abc import Iterable

from django.db.models import Model

from search.models import SearchRecord


def record_search(request, *, terms: str, source: str, results: Iterable[Model] = ()) -> SearchRecord:
    """Record that the signed-in user searched for ``terms`` in ``source`` and was shown ``results``."""
    user = getattr(request, "user", None)
    return SearchRecord.objects.create(
        user=user if user is not None and user.is_authenticated else None,
        terms=terms[:200],
        source=source[:60],
        results=[f"{obj._meta.label_lower}:{obj.pk}" for obj in results],
    )
