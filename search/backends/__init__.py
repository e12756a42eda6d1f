"""One search interface, two backends: PostgreSQL (the default) and Elasticsearch.

Both answer ``filter(queryset, query, document=..., path=...)``: the queryset narrowed to the
matching rows and annotated with ``search_score``; the rows always come from PostgreSQL.
"""

from django.conf import settings

from search.backends.postgres import (
    NameRank,
    PostgresBackend,
    first_of,
    first_rows,
    name_rank,
    patient_names,
    patients_named,
)

__all__ = [
    "NameRank",
    "PostgresBackend",
    "first_of",
    "first_rows",
    "get_backend",
    "name_rank",
    "patient_names",
    "patients_named",
]


def get_backend():
    """Return the backend named by ``SEARCH_BACKEND``."""
    if settings.SEARCH_BACKEND == "elasticsearch":
        from search.backends.elasticsearch import ElasticsearchBackend

        return ElasticsearchBackend()
    return PostgresBackend()
