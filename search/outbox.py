"""The transactional outbox: every write records which searchable rows changed, in its own transaction.

Actions call ``record`` next to the write, so the entry commits or rolls back with the change:
a rolled-back record is never indexed and a committed one is never missed, whether or not
Elasticsearch is up. ``search_worker`` drains the entries (``search.worker``).
"""

from collections.abc import Iterable

from django.conf import settings
from django.db import connection

from search.documents import BY_LABEL

_INSERT = (
    "INSERT INTO search_outboxentry (label, object_id, created_at, available_at, attempts, last_error) "
    "SELECT %s, id, now(), now(), 0, '' FROM unnest(%s::bigint[]) AS id"
)
_INSERT_EMBEDDING = (
    "INSERT INTO search_outboxentry (label, object_id, created_at, available_at, attempts, last_error) "
    'SELECT %s, id, now(), now(), 0, \'\' FROM "{table}" WHERE "{column}" = ANY(%s::bigint[])'
)


def enabled() -> bool:
    """Return True when changes are indexed into Elasticsearch (the PostgreSQL backend needs no outbox)."""
    return bool(settings.ELASTICSEARCH_URL)


def record(label: str, ids: Iterable[int | None], *, embedded: bool = False) -> None:
    """Insert outbox entries for the ``label`` rows with these ids, in the caller's transaction.

    With ``embedded``, also the documents that copy fields of these rows. Registered with
    ``core.outbox`` (``search.apps``): the apps that write call that, never this module.
    """
    ids = sorted({pk for pk in ids if pk is not None})
    if not ids or not enabled() or label not in BY_LABEL:
        return
    doc = BY_LABEL[label]
    with connection.cursor() as cursor:
        cursor.execute(_INSERT, [label, ids])
        for other, column in doc.embedded_in if embedded else ():
            # Table and column names come from the document registry, never from input.
            table = BY_LABEL[other].model._meta.db_table
            cursor.execute(_INSERT_EMBEDDING.format(table=table, column=column), [other, ids])


def wants(label: str) -> bool:
    """Return True when changes to ``label`` rows need an outbox entry (a searchable model, Elasticsearch on)."""
    return label in BY_LABEL and enabled()


def write(label: str, ids: list[int], embedded: bool) -> None:
    """The writer ``core.outbox`` calls for every change it ``wants``."""
    record(label, ids, embedded=embedded)
